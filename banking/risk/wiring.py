"""Which risk engine the banking domain runs: the CEL engine (``MPAAS_RISK_ENGINE=cel``, the
default), its counters in Redis when ``MPAAS_REDIS_URL`` is set, else in the SQL database;
or nothing at all (``off``), only to measure what the check costs."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from prometheus_client import CollectorRegistry

from mpaas.banking.risk.counters import CounterStore, SqlCounterStore
from mpaas.banking.risk.decision import Decision, ModelScorer, RiskContext, RiskEngine
from mpaas.banking.risk.engine import CelRiskEngine
from mpaas.banking.risk.monitoring import RiskMetrics
from mpaas.settings import Settings
from mpaas.storage.db import Database


class AllowAll:
    """``MPAAS_RISK_ENGINE=off``: allows everything, stores nothing (benchmarks only)."""

    async def decide(self, scene: str, context: RiskContext) -> Decision:
        return Decision(uuid.uuid4().hex, "allow", 0.0, (), "off", {})

    async def committed(self, scene: str, context: RiskContext) -> None:
        return None


def make_counter_store(settings: Settings, db: Database) -> CounterStore:
    if settings.redis_url:
        from mpaas.banking.risk.redis_counters import RedisCounterStore

        return RedisCounterStore(settings.redis_url, settings.redis_prefix)
    return SqlCounterStore(db)


def make_risk_engine(
    settings: Settings,
    db: Database,
    *,
    clock: Callable[[], float] = time.time,
    poll_seconds: float | None = None,
    scorer: ModelScorer | None = None,
    registry: CollectorRegistry | None = None,
) -> RiskEngine:
    """The engine; rule set changes reach it within ``banking_poll_seconds`` (or ``poll_seconds``).
    ``scorer`` is the model centre's loader (rule sets with a ``model:`` section need one);
    ``registry`` receives the per-rule and per-model metrics."""
    if settings.risk_engine == "off":
        return AllowAll()
    poll = settings.banking_poll_seconds if poll_seconds is None else poll_seconds
    if scorer is None:  # the model centre: the shipped model until one is activated
        from mpaas.banking.risk.modelcentre.scorer import ModelCentreScorer

        scorer = ModelCentreScorer(db, poll_seconds=poll)
    return CelRiskEngine(
        db,
        make_counter_store(settings, db),
        clock=clock,
        poll_seconds=poll,
        scorer=scorer,
        model_deadline=settings.risk_model_deadline_ms / 1000.0,
        metrics=RiskMetrics(registry),
    )
