"""``CelRiskEngine``: the :class:`~mpaas.banking.risk.decision.RiskEngine` on CEL rules.

Per decision: the active rule set of the scene (compiled once per version) says which
paths it (and its model) reads; only those features are fetched (one counter-store call)
and converted for CEL; the scene's model scores within a deadline; lists, rules, the model
and the thresholds compose the answer (:mod:`.compose`); the decision is stored with the
values read and each rule's outcome; then the engine answers. Review and deny decisions
open a case, in the same transaction as the decision. On a SQLite file the counter read and
that write each take one hop to the engine's own SQLite thread (:mod:`.sqlite_lane`). A
shadow rule set, when a scene has one, is evaluated after the answer.

Rule sets, lists, snoozes and shadows are reloaded when the ``risk`` epoch moves (polled at
most every ``poll_seconds``); each compiled version replaces the old one in a single
assignment, so a decision runs wholly on one version.

A counter store or model that fails leaves its features out; a scene that fails closed
(transfers) then raises the action to at least ``challenge`` (issue 19).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from mpaas.banking.risk.cases import Cases, case_row
from mpaas.banking.risk.compose import FACTS, compose
from mpaas.banking.risk.counters import CounterStore, Counts, Observation, Reservation
from mpaas.banking.risk.decision import Decision, ModelScorer, RiskContext
from mpaas.banking.risk.features import (
    LIST_SOURCES,
    TRAVEL_FIELDS,
    VEL_ENTITIES,
    bounded,
    counter_key,
    entities_of,
    entity_id,
    model_value,
    path_value,
    place_of,
    travel,
    velocity,
)
from mpaas.banking.risk.loader import Loaded, load_state
from mpaas.banking.risk.monitoring import RiskMetrics, Tally, check_drift, utc
from mpaas.banking.risk.rules import CompiledRuleSet, prune
from mpaas.banking.risk.shadow import ShadowResults
from mpaas.banking.risk.sqlite_lane import SqliteLane
from mpaas.banking.risk.store import LIST_KINDS, Decisions, current_epoch, label, new_decision_id, record_of
from mpaas.storage.db import Database

log = logging.getLogger("mpaas.banking.risk")
SWEEP_SECONDS = 600.0
#: How often the hit-rate drift alert is recomputed from stored decisions.
DRIFT_SECONDS = 3600.0
CASE_ACTIONS = ("review", "deny")


class CelRiskEngine:
    def __init__(
        self,
        db: Database,
        counters: CounterStore,
        *,
        clock: Callable[[], float] = time.time,
        poll_seconds: float = 2.0,
        scorer: ModelScorer | None = None,
        model_deadline: float = 0.020,
        metrics: RiskMetrics | None = None,
    ) -> None:
        self.db, self.counters, self.clock, self.poll_seconds = db, counters, clock, poll_seconds
        self.scorer, self.model_deadline = scorer, model_deadline
        self.metrics = metrics or RiskMetrics()
        self.lane = SqliteLane.open(db)  # SQLite file: the decision records' own connection
        self.decisions = Decisions(db, self.lane)
        self.cases = Cases(db)
        self.shadow_results = ShadowResults(db)
        self._state = Loaded()
        self._epoch: int | None = None
        self._checked = -1e18
        self._swept = time.monotonic()
        self._drift_checked = time.monotonic()
        self._pending: set[asyncio.Task[None]] = set()
        self._rule_tally = Tally()

    @property
    def rule_stats(self) -> dict[tuple[str, str], Counter[str]]:
        """(rule set version, rule) → outcome counts, for the not-evaluated rate per rule."""
        out: dict[tuple[str, str], Counter[str]] = {}
        for (version, rule, outcome), n in self._rule_tally.counts().items():
            out.setdefault((version, rule), Counter())[outcome] = n
        return out

    # -- keeping the rule sets fresh ------------------------------------------------------

    async def refresh(self, force: bool = False) -> None:
        """Reload rule sets, lists, snoozes and shadows if the ``risk`` epoch moved (or when forced)."""
        self._checked = time.monotonic()
        epoch = await current_epoch(self.db)
        if force or epoch != self._epoch:
            self._state = await load_state(self.db, self._state)  # one assignment swaps all
            self._epoch = epoch
        if time.monotonic() - self._swept > SWEEP_SECONDS:
            self._swept = time.monotonic()
            await self.counters.sweep(self.clock())
        if time.monotonic() - self._drift_checked > DRIFT_SECONDS:
            self._drift_checked = time.monotonic()
            self._spawn(self._drift())

    async def _drift(self) -> None:
        try:
            await check_drift(self.db, utc(self.clock()), self.metrics)
        except Exception:
            log.exception("risk hit-rate drift check failed")

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _ruleset(self, scene: str) -> CompiledRuleSet | None:
        if self._epoch is None or time.monotonic() - self._checked >= self.poll_seconds:
            try:  # one call per poll interval pays for the epoch read; the others see _checked moved
                await self.refresh()
            except Exception:
                if self._epoch is None:
                    raise
                log.exception("risk rule set refresh failed; keeping the current version")
        if scene not in self._state.compiled:
            self._state = await load_state(self.db, self._state, also=scene)
        return self._state.compiled[scene]

    async def warm(self, scenes: Iterable[str]) -> None:
        """Load each scene's rule set and model before a decision needs them: a first load
        (a query and a parse) inside a decision's model deadline would fail the scene."""
        for scene in scenes:
            compiled = await self._ruleset(scene)
            spec = compiled.doc.model if compiled is not None else None
            if spec is not None and self.scorer is not None:
                try:
                    await self.scorer.active(scene, spec.name)
                except Exception:
                    log.exception("risk model not loaded", extra={"scene": scene, "model": spec.name})

    async def drain(self) -> None:
        """Wait for the shadow evaluations already started and write their rows (tests, shutdown)."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)
        await self.shadow_results.flush()

    async def close(self) -> None:
        await self.drain()
        await self.counters.close()
        if self.lane is not None:
            await self.lane.close()

    # -- deciding -------------------------------------------------------------------------

    #: ``decide(..., defer=True)`` and ``decide(..., count=True)`` are understood (the
    #: transfers service asks for both).
    defers_records = True
    counts_on_decide = True

    async def decide(
        self, scene: str, context: RiskContext, *, defer: bool = False, count: bool = False
    ) -> Decision:
        """Decide and store the decision with the values it read. ``defer``: an ``allow`` is
        not stored here but handed back in ``decision.record``, for the caller to insert in
        the transaction it allows (one commit instead of two, ADR 0019), or to store with
        :meth:`store_record` when that transaction does not commit. ``count``: the transaction
        is counted in the velocity windows by the same call that reads them (so that
        transactions decided at the same moment see each other, and no ``committed()`` is
        needed); an ``allow`` hands its count back in ``decision.reservation`` for
        :meth:`release` should the transaction not commit, any other action gives it back here."""
        compiled = await self._ruleset(scene)
        state = self._state
        if compiled is None:
            decision = Decision(new_decision_id(), "allow", 0.0, (), label(scene, "none"), {})
            return await self._keep(decision, record_of(scene, _subject(context), decision, {}, None), defer)
        now = self.clock()
        shadow = state.shadows.get(scene)
        sets = [compiled] if shadow is None else [compiled, shadow]
        counted = self._observation(scene, context, now) if count else None
        full, facts, reservation = await self._context(scene, context, sets, now, counted)
        model_version = await self._score(scene, compiled, full, facts)
        inputs = prune(full, compiled)
        if facts:
            inputs[FACTS] = facts
        result = compose(compiled, inputs)
        decision = Decision(
            new_decision_id(), result.action, result.score, result.reasons, compiled.version, inputs
        )
        subject = _subject(context)
        case = None
        if result.action in CASE_ACTIONS:  # stored with the decision, in one transaction
            case = case_row(scene, subject, decision, entities_of(full))
        record = record_of(scene, subject, decision, dict(result.outcomes), model_version)
        decision = await self._keep(decision, record, defer and case is None, case)
        if reservation is not None:
            if decision.action == "allow":
                decision = replace(decision, reservation=reservation)
            else:  # not going ahead now (a challenge that passes is counted by committed())
                await self._release(reservation)
        self._rule_tally.add(compiled.version, result.outcomes)
        self.metrics.rules(scene, result.outcomes, result.errors)
        if shadow is not None:
            shadow_inputs = prune(full, shadow)
            if facts:
                shadow_inputs[FACTS] = facts
            self._spawn(self.shadow_results.evaluate(scene, shadow, shadow_inputs, decision))
        return decision

    async def _keep(
        self, decision: Decision, record: dict[str, Any], defer: bool, case: dict[str, Any] | None = None
    ) -> Decision:
        if defer and decision.action == "allow":
            return replace(decision, record=record)
        await self.decisions.store_row(record, case)
        return decision

    async def store_record(self, decision: Decision) -> None:
        """Store a deferred decision's record (its transaction did not commit it)."""
        if decision.record is not None:
            await self.decisions.store_row(dict(decision.record))

    async def _context(
        self,
        scene: str,
        context: RiskContext,
        sets: list[CompiledRuleSet],
        now: float,
        counted: Observation | None = None,
    ) -> tuple[dict[str, Any], dict[str, Any], Reservation | None]:
        full: dict[str, Any] = {
            "txn": context.txn,
            "user": context.user,
            "device": context.device,
            "net": context.net,
            "geo": dict(context.geo),
        }

        def reads(root: str, *prefix: str) -> bool:
            return any(c.reads_any(root, *prefix) for c in sets)

        facts: dict[str, Any] = {}
        keys = {
            entity: counter_key(scene, entity, value)
            for entity in VEL_ENTITIES
            if reads("vel", entity) and (value := entity_id(full, entity, "id")) is not None
        }
        wants_travel = any(reads("geo", f) for f in TRAVEL_FIELDS)
        user_id = entity_id(full, "user", "id")
        if wants_travel and user_id is not None:
            keys.setdefault("user", counter_key(scene, "user", user_id))
        wants_travel = wants_travel and "user" in keys
        reservation = None
        if keys or counted is not None:
            counts: dict[str, Counts] = {}
            try:
                if counted is None:
                    counts = await self.counters.read(list(keys.values()), now, places=wants_travel)
                else:
                    counts, reservation = await self.counters.read_and_count(
                        list(keys.values()), now, wants_travel, counted
                    )
            except Exception:
                log.exception("risk counter store unavailable")
                if keys:
                    facts["degraded"] = ["counters"]
            if counts:
                full["vel"] = {e: velocity(counts[k]) for e, k in keys.items()}
            if wants_travel and keys["user"] in counts:
                full["geo"].update(travel(context.geo, counts[keys["user"]].place, now))
        at = datetime.fromtimestamp(now, UTC)
        state = self._state
        entities = entities_of(full)
        on = {entity: state.lists.kinds(entity, value, at) for entity, value in entities.items()}
        if deny := [e for e in LIST_SOURCES if "deny" in on.get(e, ())]:
            facts["deny"] = deny
        if any("allow" in kinds for kinds in on.values()):
            facts["allow"] = True
        if snoozed := state.snoozes.rules(scene, entities, at):
            facts["snoozed"] = snoozed
        if reads("lists"):
            full["lists"] = {kind: {e: kind in on[e] for e in LIST_SOURCES if e in on} for kind in LIST_KINDS}
        return full, facts, reservation

    async def _score(
        self, scene: str, compiled: CompiledRuleSet, full: dict[str, Any], facts: dict[str, Any]
    ) -> str | None:
        """Score with the scene's model within the deadline; a miss leaves ``model`` unset."""
        spec = compiled.doc.model
        if spec is None or self.scorer is None:  # no model centre wired in: the rules alone decide
            return None
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.model_deadline):  # no task per call, unlike wait_for
                model = await self.scorer.active(scene, spec.name)
            if model is None:
                raise LookupError(f"no active model {spec.name!r} for scene {scene!r}")
            if tuple(model.features) != spec.features:  # never score on a schema the rules did not name
                raise ValueError(f"model {spec.name}@{model.version} reads other features than the rule set")
            # The overrun check times the scoring alone: across the await above, the loop ran
            # other requests, whose time is not this model's (regression: transfers challenged
            # on a loaded machine).
            scoring = time.perf_counter()
            score = float(model.score([model_value(path_value(full, p)) for p in model.features]))
            elapsed = time.perf_counter() - scoring
            if elapsed > self.model_deadline:  # scoring runs in-process: an overrun is discarded
                raise TimeoutError(f"model {spec.name} took {elapsed * 1000:.1f} ms")
            elapsed = time.perf_counter() - started
            if not 0.0 <= score <= 1.0:
                raise ValueError(f"model {spec.name} scored {score}, outside 0..1")
        except Exception as exc:
            self.metrics.model(spec.name, None, time.perf_counter() - started, error=True)
            log.warning(
                "risk model unavailable", extra={"scene": scene, "model": spec.name, "error": str(exc)}
            )
            facts.setdefault("degraded", []).append("model")
            return None
        self.metrics.model(spec.name, score, elapsed, error=False)
        full["model"] = {"score": score, "version": model.version}
        facts["model"] = {"name": spec.name, "version": model.version, "score": score, "weight": spec.weight}
        return f"{spec.name}@{model.version}"

    async def committed(self, scene: str, context: RiskContext) -> None:
        """Count the committed event for its user and device (once per ``txn.id``); ``txn.amount``
        (fen) is summed when the scene has one."""
        obs = self._observation(scene, context, self.clock())
        if obs is not None:
            await self.counters.record(obs)

    async def release(self, decision: Decision) -> None:
        """Give back what ``decide(..., count=True)`` counted for an ``allow`` whose transaction
        did not commit (a refusal inside it). Logged, not raised, when the store fails: the
        count then stays, on the safe side."""
        if decision.reservation is not None:
            await self._release(decision.reservation)

    async def _release(self, reservation: Reservation) -> None:
        try:
            await self.counters.release(reservation)
        except Exception:
            log.exception("risk counter store: a count was not given back")

    def _observation(self, scene: str, context: RiskContext, at: float) -> Observation | None:
        """The transaction as the counters see it: None without a ``txn.id``, an integer
        amount, or a user or device id."""
        txn_id = entity_id({"txn": context.txn}, "txn", "id")
        if txn_id is None:
            return None
        keys = tuple(
            counter_key(scene, entity, value)
            for entity, source in (("user", context.user), ("device", context.device))
            if (value := entity_id({entity: source}, entity, "id")) is not None
        )
        amount = context.txn.get("amount", 0)
        if not keys or isinstance(amount, bool) or not isinstance(amount, int):
            return None
        return Observation(f"{scene}/{bounded(txn_id)}", keys, amount, at, place_of(context.geo))


def _subject(context: RiskContext) -> str | None:
    value = context.txn.get("id")
    return str(value)[:128] if isinstance(value, str | int) and not isinstance(value, bool) else None
