"""Backtests and replays over stored decisions (a service: no HTTP; ``bench/risk.py`` calls it).

A backtest re-evaluates the recorded inputs of a scene's decisions since a time with a
given rule set version (any status, a draft included), in a fixed order (time, then id), and
counts what would change, split by the cases' labels (fraud, not fraud, unlabelled). The
inputs hold only what the original rule set read, so a draft rule reading a value that was
not recorded is "not evaluated". A replay re-evaluates one decision with its own version and
must give back exactly what was stored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlmodel import col, select

from mpaas.banking.risk.cases import labels_for
from mpaas.banking.risk.compose import Composed, compose
from mpaas.banking.risk.loader import compile_row
from mpaas.banking.risk.models import RiskDecision, RiskRuleSet
from mpaas.banking.risk.rules import CompiledRuleSet, compile_ruleset
from mpaas.banking.risk.scenes import fail_mode
from mpaas.banking.risk.store import Decisions, RuleSets, label
from mpaas.storage.db import Database

BATCH = 2000
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
) -> BacktestReport:
    """Re-evaluate every stored decision of ``scene`` since ``since`` with ``scene@version``."""
    rules = compiled or await load_version(db, scene, version)
    report = BacktestReport(scene, rules.version, since)
    after: tuple[datetime, str] | None = None
    while True:
        query = select(
            RiskDecision.id, RiskDecision.action, RiskDecision.inputs, RiskDecision.created_at
        ).where(RiskDecision.scene == scene, col(RiskDecision.created_at) >= since)
        if after is not None:
            query = query.where(
                (col(RiskDecision.created_at) > after[0])
                | ((col(RiskDecision.created_at) == after[0]) & (col(RiskDecision.id) > after[1]))
            )
        async with db.session() as s:
            rows = (
                await s.exec(query.order_by(col(RiskDecision.created_at), col(RiskDecision.id)).limit(BATCH))
            ).all()
        if not rows:
            return report
        labels = await labels_for(db, [r[0] for r in rows])
        for decision_id, action, inputs, _at in rows:
            new = compose(rules, inputs or {}).action
            tally = report.by_label[labels.get(decision_id, "unlabelled")]
            tally.decisions += 1
            tally.actions[new] = tally.actions.get(new, 0) + 1
            report.decisions += 1
            if new != action:
                tally.changed += 1
                report.changed += 1
                move = f"{action}→{new}"
                tally.moves[move] = tally.moves.get(move, 0) + 1
        after = (rows[-1][3], rows[-1][0])
        if progress is not None:
            progress(report.decisions)


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
