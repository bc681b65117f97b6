"""What the risk API modules share: the one ``Api`` they register on, the roles, schemas."""

from __future__ import annotations

from typing import Any

from mpaas.banking.risk.rules import SCENE_RE
from mpaas.banking.risk.scenes import SCENES
from mpaas.web.api import Api

api = Api()

#: The bank's risk team and its systems (``admin`` may do everything too).
RISK = ("risk-officer",)
#: Who changes rules, lists, shadows and cases.
WRITERS = ("admin", *RISK)
#: Who reads them.
READERS = ("admin", "analyst", *RISK)
SCENE_SCHEMA: dict[str, Any] = {"enum": list(SCENES), "description": f"a scene ({SCENE_RE})"}
VERSION_SCHEMA: dict[str, Any] = {"type": "integer", "minimum": 1, "maximum": 10**9}
ID_SCHEMA: dict[str, Any] = {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}
