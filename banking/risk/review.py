"""Four eyes on rule sets: draft → review → approved → active (→ retired).

Anyone with the role stores a draft; its author (or another) submits it for review; a
second person, never the submitter, approves it; activation, again never by the submitter,
retires the scene's active version and bumps the ``risk`` epoch in the same transaction.
A version's document never changes; every step writes the audit log. Versions can be
diffed, and a version's history is its audit entries.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

import mpaas.banking.epochs as epochs
from mpaas.banking.risk.errors import InvalidReview, RuleSetNotFound
from mpaas.banking.risk.models import RiskRuleSet
from mpaas.banking.risk.rules import RuleSetDoc
from mpaas.banking.risk.store import EPOCH, add_version, check_scene, label
from mpaas.errors import Conflict
from mpaas.identity import audit
from mpaas.identity.audit import Actor
from mpaas.identity.models import AuditEntry
from mpaas.storage.db import Database, utcnow


class Review:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def draft(self, actor: Actor, scene: str, doc: RuleSetDoc) -> RiskRuleSet:
        check_scene(scene)
        try:
            async with self.db.write() as s:
                row = await add_version(s, actor, scene, doc, status="draft", action="risk.ruleset.draft")
        except IntegrityError:
            raise Conflict("another version was stored at the same time; try again") from None
        return row

    async def _step(self, actor: Actor, scene: str, version: int, to: str) -> RiskRuleSet:
        check_scene(scene)
        try:
            async with self.db.write() as s:
                if to == "active":
                    # First, so concurrent activations queue on the epoch row (PostgreSQL) and
                    # each reads the statuses the previous one committed: one active per scene.
                    await epochs.bump(s, EPOCH)
                row = (
                    await s.exec(
                        select(RiskRuleSet).where(RiskRuleSet.scene == scene, RiskRuleSet.version == version)
                    )
                ).first()
                if row is None:
                    raise RuleSetNotFound(f"rule set {label(scene, version)} not found")
                name = label(scene, version)
                now = utcnow()
                if to == "review":
                    _expect(row, "draft", name)
                    row.submitted_by, row.submitted_at = actor.name, now
                elif to == "approved":
                    _second_person(row, actor, "approve")
                    _expect(row, "review", name)
                    row.approved_by, row.approved_at = actor.name, now
                else:
                    _second_person(row, actor, "activate")
                    _expect(row, "approved", name)
                    row.activated_by, row.activated_at = actor.name, now
                    conn = await s.connection()
                    await conn.execute(
                        update(RiskRuleSet)
                        .where(col(RiskRuleSet.scene) == scene, col(RiskRuleSet.status) == "active")
                        .values(status="retired")
                    )
                row.status = to
                s.add(row)
                action = {"review": "submit", "approved": "approve", "active": "activate"}[to]
                audit.record(s, actor, f"risk.ruleset.{action}", name, detail={"digest": row.digest})
        except IntegrityError:
            raise Conflict("another rule set changed at the same time; try again") from None
        return row

    async def submit(self, actor: Actor, scene: str, version: int) -> RiskRuleSet:
        return await self._step(actor, scene, version, "review")

    async def approve(self, actor: Actor, scene: str, version: int) -> RiskRuleSet:
        return await self._step(actor, scene, version, "approved")

    async def activate(self, actor: Actor, scene: str, version: int) -> RiskRuleSet:
        return await self._step(actor, scene, version, "active")

    async def history(self, scene: str, version: int | None = None) -> list[AuditEntry]:
        """The audit entries of a scene's rule sets (or of one version), oldest first."""
        query = select(AuditEntry).where(col(AuditEntry.action).startswith("risk.ruleset."))
        if version is not None:
            query = query.where(AuditEntry.target == label(scene, version))
        else:
            query = query.where(col(AuditEntry.target).startswith(f"{scene}@"))
        async with self.db.session() as s:
            return list((await s.exec(query.order_by(col(AuditEntry.id)).limit(1000))).all())


def _expect(row: RiskRuleSet, status: str, name: str) -> None:
    if row.status != status:
        raise InvalidReview(f"{name} is {row.status}, not {status}")


def _second_person(row: RiskRuleSet, actor: Actor, what: str) -> None:
    if actor.name == row.submitted_by:
        raise InvalidReview(
            f"four eyes: {actor.name} submitted {label(row.scene, row.version)} and cannot {what} it",
            code="four_eyes",
            status=403,
        )


def diff(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """What changed between two rule set documents: rules added, removed and changed (field
    by field), thresholds, model and fail mode."""
    before = {r["name"]: r for r in old.get("rules", [])}
    after = {r["name"]: r for r in new.get("rules", [])}
    changed = []
    for name in sorted(before.keys() & after.keys()):
        fields = {
            k: {"from": before[name].get(k), "to": after[name].get(k)}
            for k in ("expr", "weight", "message")
            if before[name].get(k) != after[name].get(k)
        }
        if fields:
            changed.append({"name": name, "fields": fields})
    out: dict[str, Any] = {
        "added": [after[n] for n in sorted(after.keys() - before.keys())],
        "removed": [before[n] for n in sorted(before.keys() - after.keys())],
        "changed": changed,
    }
    for key in ("thresholds", "model", "fail_mode"):
        if old.get(key) != new.get(key):
            out[key] = {"from": old.get(key), "to": new.get(key)}
    return out
