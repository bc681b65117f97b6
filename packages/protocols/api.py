"""Client HTTP API: the update check and reports in three protocols, and blob downloads.

Routes: mpaas native (``/client/v1/...``, :mod:`~mpaas.packages.protocols.native_api`),
CodePush (``/v0.1/public/codepush/...`` and the legacy camelCase ``/updateCheck`` and
``/reportStatus/...``, :mod:`~mpaas.packages.protocols.codepush_api`) and Expo Updates
protocol 1 (``/expo/...``, :mod:`~mpaas.packages.protocols.expo_api`). The update checks
answer from the in-memory index; only status reports write to the database. This module
is the one :class:`~mpaas.web.api.Api` the app mounts.
"""

from __future__ import annotations

from mpaas.packages.protocols import codepush_api, expo_api, native_api
from mpaas.web.api import Api

api = Api()
for part in (native_api.api, codepush_api.api, expo_api.api):
    api.extend(part)
