"""``CelRiskEngine``: the :class:`~mpaas.banking.risk.decision.RiskEngine` on CEL rules.

Per decision: the active rule set of the scene (compiled once per version) says which
paths it reads; only those features are fetched (one counter-store call) and converted
for CEL; the rules run; the decision is stored with the values read and each rule's
outcome; then the engine answers. Rule sets and lists are reloaded when the ``risk`` epoch
moves (polled at most every ``poll_seconds``), and the new compiled version replaces the
old one in a single assignment, so a decision runs wholly on one version.

A counter store that fails leaves the velocity and travel features out and raises the
action to at least ``challenge`` (transfers fail closed, issue 19).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from mpaas.banking.risk.counters import CounterStore, Observation
from mpaas.banking.risk.decision import ACTIONS, Decision, Reason, RiskContext
from mpaas.banking.risk.features import (
    LIST_SOURCES,
    TRAVEL_FIELDS,
    VEL_ENTITIES,
    ListIndex,
    bounded,
    counter_key,
    entity_id,
    place_of,
    travel,
    velocity,
)
from mpaas.banking.risk.rules import CompiledRuleSet, compile_ruleset, prune
from mpaas.banking.risk.store import (
    LIST_KINDS,
    Decisions,
    Lists,
    RuleSets,
    current_epoch,
    label,
    new_decision_id,
)
from mpaas.storage.db import Database, as_stored_utc

log = logging.getLogger("mpaas.banking.risk")
SWEEP_SECONDS = 600.0
UNAVAILABLE = Reason("counters_unavailable", 0.0, "velocity features could not be read; stepping up")


class CelRiskEngine:
    def __init__(
        self,
        db: Database,
        counters: CounterStore,
        *,
        clock: Callable[[], float] = time.time,
        poll_seconds: float = 2.0,
    ) -> None:
        self.db, self.counters, self.clock, self.poll_seconds = db, counters, clock, poll_seconds
        self.rulesets = RuleSets(db)
        self.decisions = Decisions(db)
        self.lists_store = Lists(db)
        self._compiled: dict[str, CompiledRuleSet | None] = {}
        self._lists = ListIndex()
        self._epoch: int | None = None
        self._checked = -1e18
        self._swept = time.monotonic()
        #: (rule set version, rule) → outcome counts, for the not-evaluated rate per rule.
        self.rule_stats: dict[tuple[str, str], Counter[str]] = {}

    # -- keeping the rule sets fresh ------------------------------------------------------

    async def refresh(self, force: bool = False) -> None:
        """Reload rule sets and lists if the ``risk`` epoch moved (or when forced)."""
        self._checked = time.monotonic()
        epoch = await current_epoch(self.db)
        if force or epoch != self._epoch:
            scenes = list(self._compiled)
            compiled = {scene: await self._load(scene) for scene in scenes}
            entries = await self.lists_store.all()
            lists = ListIndex(
                [(e.kind, e.entity, e.value, e.expires_at and as_stored_utc(e.expires_at)) for e in entries]
            )
            self._compiled.update(compiled)  # each scene swaps in one assignment
            self._lists, self._epoch = lists, epoch
        if time.monotonic() - self._swept > SWEEP_SECONDS:
            self._swept = time.monotonic()
            await self.counters.sweep(self.clock())

    async def _load(self, scene: str) -> CompiledRuleSet | None:
        active = await self.rulesets.active(scene)
        if active is None:
            return None
        current = self._compiled.get(scene)
        if current is not None and current.version == active.version:
            return current
        return compile_ruleset(active.version, active.doc)

    async def _ruleset(self, scene: str) -> CompiledRuleSet | None:
        if self._epoch is None or time.monotonic() - self._checked >= self.poll_seconds:
            try:  # one call per poll interval pays for the epoch read; the others see _checked moved
                await self.refresh()
            except Exception:
                if self._epoch is None:
                    raise
                log.exception("risk rule set refresh failed; keeping the current version")
        if scene not in self._compiled:
            self._compiled[scene] = await self._load(scene)
        return self._compiled[scene]

    async def close(self) -> None:
        await self.counters.close()

    # -- deciding -------------------------------------------------------------------------

    async def decide(self, scene: str, context: RiskContext) -> Decision:
        compiled = await self._ruleset(scene)
        if compiled is None:
            decision = Decision(new_decision_id(), "allow", 0.0, (), label(scene, "none"), {})
            await self.decisions.store(scene, _subject(context), decision, {})
            return decision
        now = self.clock()
        full, degraded = await self._context(scene, context, compiled, now)
        inputs = prune(full, compiled)
        result = compiled.evaluate(inputs)
        action, reasons = result.action, result.reasons
        if degraded:
            reasons = (*reasons, UNAVAILABLE)
            if ACTIONS.index(action) < ACTIONS.index("challenge"):
                action = "challenge"
        decision = Decision(new_decision_id(), action, result.score, reasons, compiled.version, inputs)
        await self.decisions.store(scene, _subject(context), decision, dict(result.outcomes))
        for rule, outcome in result.outcomes.items():
            self.rule_stats.setdefault((compiled.version, rule), Counter())[outcome] += 1
        return decision

    async def _context(
        self, scene: str, context: RiskContext, compiled: CompiledRuleSet, now: float
    ) -> tuple[dict[str, Any], bool]:
        full: dict[str, Any] = {
            "txn": context.txn,
            "user": context.user,
            "device": context.device,
            "net": context.net,
            "geo": dict(context.geo),
        }
        keys = {
            entity: counter_key(scene, entity, value)
            for entity in VEL_ENTITIES
            if compiled.reads_any("vel", entity) and (value := entity_id(full, entity, "id")) is not None
        }
        wants_travel = any(compiled.reads_any("geo", f) for f in TRAVEL_FIELDS)
        user_id = entity_id(full, "user", "id")
        if wants_travel and user_id is not None:
            keys.setdefault("user", counter_key(scene, "user", user_id))
        wants_travel = wants_travel and "user" in keys
        degraded = False
        if keys:
            try:
                counts = await self.counters.read(list(keys.values()), now, places=wants_travel)
            except Exception:
                log.exception("risk counter store unavailable")
                counts, degraded = {}, True
            if not degraded:
                full["vel"] = {e: velocity(counts[k]) for e, k in keys.items()}
            if wants_travel and keys["user"] in counts:
                full["geo"].update(travel(context.geo, counts[keys["user"]].place, now))
        if "lists" in compiled.reads:
            full["lists"] = self._lists.features(
                full, _list_paths(compiled), datetime.fromtimestamp(now, UTC)
            )
        return full, degraded

    async def committed(self, scene: str, context: RiskContext) -> None:
        """Count the committed transaction for its user and device (once per transaction id)."""
        txn_id = entity_id({"txn": context.txn}, "txn", "id")
        if txn_id is None:
            return
        keys = tuple(
            counter_key(scene, entity, value)
            for entity, source in (("user", context.user), ("device", context.device))
            if (value := entity_id({entity: source}, entity, "id")) is not None
        )
        amount = context.txn.get("amount", 0)
        if not keys or isinstance(amount, bool) or not isinstance(amount, int):
            return
        obs = Observation(f"{scene}/{bounded(txn_id)}", keys, amount, self.clock(), place_of(context.geo))
        await self.counters.record(obs)


def _subject(context: RiskContext) -> str | None:
    value = context.txn.get("id")
    return str(value)[:128] if isinstance(value, str | int) and not isinstance(value, bool) else None


def _list_paths(compiled: CompiledRuleSet) -> list[tuple[str, str]]:
    paths = compiled.reads.get("lists")
    if paths is None:
        return [(kind, entity) for kind in LIST_KINDS for entity in LIST_SOURCES]
    return [(p[0], p[1]) for p in paths if len(p) == 2]
