"""The reports API: ``/api/v1/analytics/...`` for the analyst role."""

from __future__ import annotations

from mpaas.web.api import Api

api = Api()
