"""Cases: review and deny decisions wait in a queue for an analyst's label (fraud or not),
which the backtest and the training export read through :func:`labels_for`. From a reviewed
case, a rule may be snoozed for one of the case's entities (at most 180 days, audited)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

import mpaas.banking.epochs as epochs
from mpaas.banking.risk.counters import one_statement
from mpaas.banking.risk.decision import Decision
from mpaas.banking.risk.errors import CaseNotFound, InvalidCase
from mpaas.banking.risk.models import RiskCase, RiskDecision, RiskSnooze
from mpaas.banking.risk.rules import NAME_RE
from mpaas.banking.risk.store import CASES, EPOCH
from mpaas.errors import Conflict
from mpaas.identity import audit
from mpaas.identity.audit import Actor
from mpaas.storage.db import Database, utcnow

LABELS = ("fraud", "not_fraud")
STATUSES = ("open", "reviewed")
MAX_SNOOZE_DAYS = 180
MAX_NOTE = 1024


async def labels_for(db: Database, decision_ids: list[str]) -> dict[str, str]:
    """decision id → ``fraud`` or ``not_fraud`` for the labelled cases among ``decision_ids``."""
    out: dict[str, str] = {}
    for start in range(0, len(decision_ids), 500):
        chunk = decision_ids[start : start + 500]
        query = select(RiskCase.decision_id, RiskCase.label).where(
            col(RiskCase.decision_id).in_(chunk), col(RiskCase.label).is_not(None)
        )
        async with db.session() as s:
            for decision_id, label in (await s.exec(query)).all():
                out[decision_id] = str(label)
    return out


def case_row(scene: str, subject: str | None, decision: Decision, entities: dict[str, str]) -> dict[str, Any]:
    """The ``risk_cases`` row that opens a case for ``decision``."""
    return {
        "decision_id": decision.id,
        "scene": scene,
        "subject": subject,
        "action": decision.action,
        "score": decision.score,
        "entities": entities,
        "status": "open",
        "label": None,
        "note": "",
        "created_at": utcnow(),
    }


@dataclass(frozen=True)
class CaseFilter:
    status: str | None = None
    label: str | None = None
    scene: str | None = None


class Cases:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def open(
        self, scene: str, subject: str | None, decision: Decision, entities: dict[str, str]
    ) -> None:
        """Open a case for a decision already stored (the engine stores both at once:
        :meth:`~mpaas.banking.risk.store.Decisions.store` with ``case=``)."""
        async with one_statement(self.db, write=True) as conn:
            await conn.execute(insert(CASES), case_row(scene, subject, decision, entities))

    async def query(self, where: CaseFilter, limit: int, offset: int) -> tuple[list[RiskCase], int]:
        query = select(RiskCase)
        count = select(func.count()).select_from(RiskCase)
        for column, value in (
            (RiskCase.status, where.status),
            (RiskCase.label, where.label),
            (RiskCase.scene, where.scene),
        ):
            if value is not None:
                query, count = query.where(column == value), count.where(column == value)
        async with self.db.session() as s:
            total = (await s.exec(count)).one()
            rows = (await s.exec(query.order_by(col(RiskCase.id).desc()).limit(limit).offset(offset))).all()
        return list(rows), int(total)

    async def get(self, case_id: int) -> tuple[RiskCase, RiskDecision | None]:
        async with self.db.session() as s:
            row = await s.get(RiskCase, case_id)
            if row is None:
                raise CaseNotFound(f"case {case_id} not found")
            decision = await s.get(RiskDecision, row.decision_id)
        return row, decision

    async def label(self, actor: Actor, case_id: int, label: str, note: str) -> RiskCase:
        if label not in LABELS:
            raise InvalidCase(f"label must be one of {', '.join(LABELS)}")
        if len(note) > MAX_NOTE:
            raise InvalidCase(f"note must be at most {MAX_NOTE} characters")
        async with self.db.write() as s:
            row = await s.get(RiskCase, case_id)
            if row is None:
                raise CaseNotFound(f"case {case_id} not found")
            before = row.label
            row.label, row.note, row.status = label, note, "reviewed"
            row.labelled_by, row.labelled_at = actor.name, utcnow()
            s.add(row)
            audit.record(
                s, actor, "risk.case.label", f"case:{case_id}", detail={"label": label, "before": before}
            )
        return row

    async def snooze(
        self, actor: Actor, case_id: int, rule: str, entity: str, days: int, reason: str, now: datetime
    ) -> RiskSnooze:
        """Ignore ``rule`` for the case's ``entity`` for ``days`` (1..180); only from a reviewed case."""
        if re.fullmatch(NAME_RE, rule) is None:
            raise InvalidCase(f"rule must match {NAME_RE}")
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_SNOOZE_DAYS:
            raise InvalidCase(f"days must be a whole number from 1 to {MAX_SNOOZE_DAYS}")
        if len(reason) > 256:
            raise InvalidCase("reason must be at most 256 characters")
        try:
            async with self.db.write() as s:
                case = await s.get(RiskCase, case_id)
                if case is None:
                    raise CaseNotFound(f"case {case_id} not found")
                if case.status != "reviewed":
                    raise InvalidCase(
                        "a rule can be snoozed only from a reviewed case; label it first",
                        status=409,
                        code="case_not_reviewed",
                    )
                value = case.entities.get(entity)
                if not isinstance(value, str):
                    known = ", ".join(sorted(case.entities)) or "none"
                    raise InvalidCase(f"the case has no {entity!r}; its entities are {known}")
                decision = await s.get(RiskDecision, case.decision_id)
                if decision is not None and rule not in (decision.outcomes or {}):
                    raise InvalidCase(f"rule {rule!r} did not run in this case's decision")
                row = RiskSnooze(
                    scene=case.scene,
                    rule=rule,
                    entity=entity,
                    value=value,
                    case_id=case_id,
                    reason=reason,
                    expires_at=now + timedelta(days=days),
                    created_by=actor.name,
                )
                s.add(row)
                audit.record(
                    s,
                    actor,
                    "risk.snooze.add",
                    f"{case.scene}:{rule}:{entity}:{value}",
                    detail={"case": case_id, "days": days, "reason": reason},
                )
                await epochs.bump(s, EPOCH)
        except IntegrityError:
            raise Conflict(
                f"rule {rule!r} is already snoozed for this {entity}", code="snooze_exists"
            ) from None
        return row

    async def snoozes(self) -> list[RiskSnooze]:
        async with self.db.session() as s:
            return list((await s.exec(select(RiskSnooze).order_by(col(RiskSnooze.id)))).all())


def case_dict(row: RiskCase) -> dict[str, Any]:
    return {
        "id": row.id,
        "decision_id": row.decision_id,
        "scene": row.scene,
        "subject": row.subject,
        "action": row.action,
        "score": row.score,
        "entities": row.entities,
        "status": row.status,
        "label": row.label,
        "note": row.note,
        "labelled_by": row.labelled_by,
        "labelled_at": row.labelled_at,
        "created_at": row.created_at,
    }
