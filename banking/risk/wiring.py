"""Which risk engine the banking domain runs (replaced by the CEL engine)."""

from __future__ import annotations

import uuid

from mpaas.banking.risk.decision import Decision, RiskContext, RiskEngine
from mpaas.settings import Settings
from mpaas.storage.db import Database


class AllowAll:
    """Placeholder until the CEL engine lands: allows everything, stores nothing."""

    async def decide(self, scene: str, context: RiskContext) -> Decision:
        return Decision(uuid.uuid4().hex, "allow", 0.0, (), "none", {})

    async def committed(self, scene: str, context: RiskContext) -> None:
        return None


def make_risk_engine(settings: Settings, db: Database) -> RiskEngine:
    return AllowAll()
