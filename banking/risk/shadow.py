"""Shadow mode: a draft rule set set as a scene's shadow is evaluated on the same inputs as
the live one, after the live answer has gone (a task the engine starts), with no effect but
a stored row saying whether the two agree."""

from __future__ import annotations

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


class ShadowResults:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def evaluate(
        self, scene: str, shadow: CompiledRuleSet, inputs: dict[str, Any], live: Decision
    ) -> None:
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
            async with one_statement(self.db, write=True) as conn:
                await conn.execute(insert(RiskShadowResult).values(row))
        except Exception:
            log.exception("risk shadow evaluation failed", extra={"scene": scene, "shadow": shadow.version})

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
