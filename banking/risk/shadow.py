"""Shadow mode: a draft rule set set as a scene's shadow is evaluated on the same inputs as
the live one, after the live answer has gone (a task the engine starts), with no effect but
a stored row saying whether the two agree.

The rows are written in batches, at most ``FLUSH_SECONDS`` or ``FLUSH_ROWS`` rows after
the decision: one transaction per shadow row cost the next live decision more than its own
work (the live p99 with a shadow was 2.3x the p99 without). Rows not yet written when a
process dies are lost; they are a comparison, not a record of what the bank decided.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy import func, insert
from sqlmodel import col, select

import mpaas.banking.epochs as epochs
from mpaas.banking.risk.compose import compose
from mpaas.banking.risk.counters import one_statement
from mpaas.banking.risk.decision import Decision
from mpaas.banking.risk.errors import InvalidReview, RuleSetNotFound
from mpaas.banking.risk.models import RiskRuleSet, RiskShadow, RiskShadowResult
from mpaas.banking.risk.rules import CompiledRuleSet
from mpaas.banking.risk.store import EPOCH, label
from mpaas.identity import audit
from mpaas.identity.audit import Actor
from mpaas.storage.db import Database, utcnow

log = logging.getLogger("mpaas.banking.risk")
SHADOWABLE = ("draft", "review", "approved")
FLUSH_ROWS = 500
FLUSH_SECONDS = 1.0


class ShadowResults:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._rows: list[dict[str, Any]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._writing: set[asyncio.Task[None]] = set()

    async def evaluate(
        self, scene: str, shadow: CompiledRuleSet, inputs: dict[str, Any], live: Decision
    ) -> None:
        """Compare the shadow's answer with the live one; the row is written with the next batch."""
        try:
            result = compose(shadow, inputs)
            row = {
                "decision_id": live.id,
                "scene": scene,
                "shadow_version": int(shadow.version.rsplit("@", 1)[1]),
                "live_action": live.action,
                "shadow_action": result.action,
                "live_score": live.score,
                "shadow_score": result.score,
                "agree": result.action == live.action,
                "created_at": utcnow(),
            }
        except Exception:
            log.exception("risk shadow evaluation failed", extra={"scene": scene, "shadow": shadow.version})
            return
        self._rows.append(row)
        if len(self._rows) >= FLUSH_ROWS:
            self._write_pending()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(FLUSH_SECONDS, self._write_pending)

    def _write_pending(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        rows, self._rows = self._rows, []
        if rows:
            task = asyncio.get_running_loop().create_task(self._write(rows))
            self._writing.add(task)
            task.add_done_callback(self._writing.discard)

    async def _write(self, rows: list[dict[str, Any]]) -> None:
        try:
            async with one_statement(self.db, write=True) as conn:
                await conn.execute(insert(RiskShadowResult), rows)
        except Exception:
            log.exception("risk shadow results not stored", extra={"rows": len(rows)})

    async def flush(self) -> None:
        """Write the rows waiting for their batch now, and wait for every write (tests, shutdown)."""
        self._write_pending()
        while self._writing:
            await asyncio.gather(*list(self._writing), return_exceptions=True)

    async def set(self, actor: Actor, scene: str, version: int) -> None:
        async with self.db.write() as s:
            row = (
                await s.exec(
                    select(RiskRuleSet).where(RiskRuleSet.scene == scene, RiskRuleSet.version == version)
                )
            ).first()
            if row is None:
                raise RuleSetNotFound(f"rule set {label(scene, version)} not found")
            if row.status not in SHADOWABLE:
                raise InvalidReview(f"{label(scene, version)} is {row.status}; only a draft can be a shadow")
            current = await s.get(RiskShadow, scene)
            if current is None:
                s.add(RiskShadow(scene=scene, version=version, set_by=actor.name))
            else:
                current.version, current.set_by, current.set_at = version, actor.name, utcnow()
                s.add(current)
            audit.record(s, actor, "risk.shadow.set", label(scene, version))
            await epochs.bump(s, EPOCH)

    async def clear(self, actor: Actor, scene: str) -> None:
        async with self.db.write() as s:
            current = await s.get(RiskShadow, scene)
            if current is None:
                raise RuleSetNotFound(f"scene {scene!r} has no shadow", code="shadow_not_found")
            await s.delete(current)
            audit.record(s, actor, "risk.shadow.clear", label(scene, current.version))
            await epochs.bump(s, EPOCH)

    async def report(self, scene: str, recent: int = 20) -> dict[str, Any]:
        """Counts of agreement per shadow version, the live × shadow action matrix of the
        current shadow, and its most recent disagreements."""
        async with self.db.session() as s:
            current = await s.get(RiskShadow, scene)
            version = current.version if current is not None else None
            if version is None:
                last = (
                    await s.exec(
                        select(func.max(RiskShadowResult.shadow_version)).where(
                            RiskShadowResult.scene == scene
                        )
                    )
                ).first()
                version = last
            matrix: list[dict[str, Any]] = []
            rows: list[RiskShadowResult] = []
            if version is not None:
                where = (col(RiskShadowResult.scene) == scene) & (
                    col(RiskShadowResult.shadow_version) == version
                )
                grouped = await s.exec(
                    select(RiskShadowResult.live_action, RiskShadowResult.shadow_action, func.count())
                    .where(where)
                    .group_by(col(RiskShadowResult.live_action), col(RiskShadowResult.shadow_action))
                )
                matrix = [{"live": a, "shadow": b, "count": int(n)} for a, b, n in grouped.all()]
                matrix.sort(key=lambda m: (m["live"], m["shadow"]))
                rows = list(
                    (
                        await s.exec(
                            select(RiskShadowResult)
                            .where(where, col(RiskShadowResult.agree).is_(False))
                            .order_by(col(RiskShadowResult.created_at).desc())
                            .limit(recent)
                        )
                    ).all()
                )
        total = sum(m["count"] for m in matrix)
        disagree = sum(m["count"] for m in matrix if m["live"] != m["shadow"])
        return {
            "scene": scene,
            "shadow": label(scene, version) if version is not None else None,
            "active": current is not None,
            "decisions": total,
            "disagreements": disagree,
            "matrix": matrix,
            "recent": [
                {
                    "decision_id": r.decision_id,
                    "live_action": r.live_action,
                    "shadow_action": r.shadow_action,
                    "live_score": r.live_score,
                    "shadow_score": r.shadow_score,
                    "created_at": r.created_at,
                }
                for r in rows
            ],
        }
