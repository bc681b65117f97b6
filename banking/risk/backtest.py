"""Backtests and replays over stored decisions (a service: no HTTP; ``bench/risk.py`` calls it).

A backtest re-evaluates the recorded inputs of a scene's decisions since a time with a
given rule set version (any status, a draft included), in a fixed order (time, then id), and
counts what would change, split by the cases' labels (fraud, not fraud, unlabelled). The
inputs hold only what the original rule set read, so a draft rule reading a value that was
not recorded is "not evaluated". A replay re-evaluates one decision with its own version and
must give back exactly what was stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Text, type_coerce
from sqlalchemy.types import NullType
from sqlmodel import col, select

from mpaas.banking.risk.backtest_columns import RulePlan, actions, plan
from mpaas.banking.risk.compose import Composed, compose
from mpaas.banking.risk.loader import compile_row
from mpaas.banking.risk.models import RiskCase, RiskDecision, RiskRuleSet
from mpaas.banking.risk.rules import CompiledRuleSet, compile_ruleset
from mpaas.banking.risk.scenes import fail_mode
from mpaas.banking.risk.store import Decisions, RuleSets, label
from mpaas.storage.db import Database

BATCH = 2000
#: Decisions per page of the columnar path: large pages amortise each rule's vector operations.
PAGE = 20_000
GROUPS = ("fraud", "not_fraud", "unlabelled")
Progress = Callable[[int], None]


@dataclass
class Tally:
    decisions: int = 0
    changed: int = 0
    #: "live→new" → count, for the decisions whose action changes.
    moves: dict[str, int] = field(default_factory=dict)
    #: new action → count
    actions: dict[str, int] = field(default_factory=dict)


@dataclass
class BacktestReport:
    scene: str
    ruleset: str
    since: datetime
    decisions: int = 0
    changed: int = 0
    by_label: dict[str, Tally] = field(default_factory=lambda: {g: Tally() for g in GROUPS})

    def to_dict(self) -> dict[str, Any]:
        return {
            "scene": self.scene,
            "ruleset": self.ruleset,
            "since": self.since.isoformat(),
            "decisions": self.decisions,
            "changed": self.changed,
            "by_label": {
                g: {
                    "decisions": t.decisions,
                    "changed": t.changed,
                    "moves": dict(sorted(t.moves.items())),
                    "actions": dict(sorted(t.actions.items())),
                }
                for g, t in self.by_label.items()
            },
        }


async def load_version(db: Database, scene: str, version: int) -> CompiledRuleSet:
    return compile_row(await RuleSets(db).get(scene, version))


async def backtest(
    db: Database,
    scene: str,
    version: int,
    since: datetime,
    *,
    progress: Progress | None = None,
    compiled: CompiledRuleSet | None = None,
    columnar: bool = True,
) -> BacktestReport:
    """Re-evaluate every stored decision of ``scene`` since ``since`` with ``scene@version``.

    ``columnar`` (the default) evaluates a page of decisions at a time over columns
    (``backtest_columns``); False runs :func:`compose` row by row. Both report the same."""
    rules = compiled or await load_version(db, scene, version)
    plans = plan(rules)
    report = BacktestReport(scene, rules.version, since)
    labels = await _labels(db, scene, since)
    size = PAGE if columnar else BATCH
    pending = asyncio.create_task(_page(db, scene, since, None, size))
    try:
        while True:
            rows = await pending
            if not rows:
                return report
            # the next page is read while this one is evaluated off the event loop
            pending = asyncio.create_task(_page(db, scene, since, (rows[-1][3], rows[-1][0]), size))
            raw = [r[2] for r in rows]
            new_actions = await asyncio.to_thread(_evaluate_page, rules, plans if columnar else None, raw)
            _tally(report, labels, rows, new_actions)
            if progress is not None:
                progress(report.decisions)
    finally:
        if not pending.done():
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pending


def _tally(report: BacktestReport, labels: dict[str, str], rows: list[Any], new_actions: list[str]) -> None:
    groups = (labels.get(r[0], "unlabelled") for r in rows)
    for (group, action, new), count in Counter(
        zip(groups, (r[1] for r in rows), new_actions, strict=True)
    ).items():
        tally = report.by_label[group]
        tally.decisions += count
        tally.actions[new] = tally.actions.get(new, 0) + count
        report.decisions += count
        if new != action:
            tally.changed += count
            report.changed += count
            move = f"{action}→{new}"
            tally.moves[move] = tally.moves.get(move, 0) + count


def _evaluate_page(rules: CompiledRuleSet, plans: list[RulePlan] | None, raw: list[Any]) -> list[str]:
    """The new action of each decision of a page: columnar with ``plans``, else row by row.

    The page's inputs are many small objects that all live until the page is done: the
    cyclic garbage collector would only rescan them, so it pauses for the page."""
    paused = gc.isenabled()
    gc.disable()
    try:
        inputs = _decode_all(raw)
        if plans is None:
            return [compose(rules, i).action for i in inputs]
        return list(actions(rules, plans, inputs))
    finally:
        if paused:
            gc.enable()


async def _page(
    db: Database, scene: str, since: datetime, after: tuple[Any, str] | None, size: int
) -> list[Any]:
    """The next ``size`` decisions in (time, id) order, as the driver gives them: inputs as
    stored text (decoded later by orjson), the time unconverted (it only bounds the next page)."""
    at = type_coerce(col(RiskDecision.created_at), NullType())
    query = select(
        RiskDecision.id, RiskDecision.action, type_coerce(col(RiskDecision.inputs), Text), at
    ).where(RiskDecision.scene == scene)
    if after is None:
        query = query.where(col(RiskDecision.created_at) >= since)
    else:  # one lower bound, so the index range starts at the page's end, not at ``since``
        query = query.where(at >= after[0], (at > after[0]) | (col(RiskDecision.id) > after[1]))
    query = query.order_by(col(RiskDecision.created_at), col(RiskDecision.id)).limit(size)
    async with db.session() as s:
        conn = await s.connection()  # Core rows: no ORM loading for a million of them
        return list((await conn.execute(query)).all())


def _decode_all(raw: list[Any]) -> list[dict[str, Any]]:
    try:  # the usual case: every row is JSON text orjson reads
        return [value or {} for value in map(orjson.loads, raw)]
    except (orjson.JSONDecodeError, TypeError):
        return [_decode(r) for r in raw]


def _decode(raw: Any) -> dict[str, Any]:
    if raw is None:
        return {}
    if isinstance(raw, dict):  # a driver that decodes JSON itself
        return raw
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:  # NaN, Infinity or ints beyond 64 bits: Python's json reads them
        value = json.loads(raw)
    return value or {}


async def _labels(db: Database, scene: str, since: datetime) -> dict[str, str]:
    """decision id → label, for the labelled cases among the decisions backtested."""
    query = (
        select(RiskCase.decision_id, RiskCase.label)
        .join(RiskDecision, col(RiskDecision.id) == col(RiskCase.decision_id))
        .where(
            RiskDecision.scene == scene,
            col(RiskDecision.created_at) >= since,
            col(RiskCase.label).is_not(None),
        )
    )
    async with db.session() as s:
        return {decision_id: str(label) for decision_id, label in (await s.exec(query)).all()}


async def own_version(db: Database, row: RiskDecision) -> CompiledRuleSet:
    """The compiled rule set a stored decision was made with (a stored version or the shipped default)."""
    scene, _, tag = row.ruleset_version.rpartition("@")
    if tag.isdigit():
        return await load_version(db, scene, int(tag))
    active = await RuleSets(db).active_default(scene)
    if active is None or active.version != row.ruleset_version:
        raise LookupError(f"the rules of {row.ruleset_version} are no longer shipped")
    return compile_ruleset(active.version, active.doc, fail_mode=fail_mode(scene))


async def replay(db: Database, decision_id: str) -> tuple[RiskDecision, Composed]:
    """A stored decision, and what its own rule set version answers on its recorded inputs."""
    row = await Decisions(db).get(decision_id)
    compiled = await own_version(db, row)
    return row, compose(compiled, row.inputs)


def same(row: RiskDecision, result: Composed) -> bool:
    """Whether a replay gives back exactly what was stored (action, score, reasons, outcomes)."""
    reasons = [{"rule": r.rule, "weight": r.weight, "message": r.message} for r in result.reasons]
    return (row.action, row.score, row.reasons, row.outcomes) == (
        result.action,
        result.score,
        reasons,
        result.outcomes,
    )


def ruleset_label(row: RiskRuleSet) -> str:
    return label(row.scene, row.version)
