"""What the risk engine keeps in SQL: rule set versions, lists, and decision records.

Activating a rule set stores a new immutable version, retires the previous one, writes the
audit entry and bumps the ``risk`` epoch in one transaction; every engine polls that epoch
and swaps in the new version. The four-eyes path to that activation (draft → review →
approved → active) is in :mod:`.review`; :meth:`RuleSets.activate` alone is for operators
and tests.
"""

from __future__ import annotations

import re
import sqlite3
import uuid
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any

import yaml
from sqlalchemy import Table, func, insert, text, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

import mpaas.banking.epochs as epochs
from mpaas.banking.risk.counters import one_statement
from mpaas.banking.risk.decision import Decision
from mpaas.banking.risk.errors import (
    DecisionNotFound,
    InvalidListEntry,
    InvalidRuleSet,
    RuleSetNotFound,
)
from mpaas.banking.risk.models import RiskCase, RiskDecision, RiskListEntry, RiskRuleSet
from mpaas.banking.risk.rules import SCENE_RE, RuleSetDoc, parse_document
from mpaas.banking.risk.scenes import check_known, shipped_document
from mpaas.banking.risk.sqlite_lane import PreparedInsert, SqliteLane, json_text
from mpaas.errors import Conflict
from mpaas.identity import audit
from mpaas.identity.audit import Actor
from mpaas.storage.db import Database, utcnow

EPOCH = "risk"
LIST_KINDS = ("deny", "allow", "watch")
LIST_ENTITIES = ("counterparty", "account", "device", "ip", "user", "card_bin")
MAX_YAML = 256 << 10
DECISIONS: Table = SQLModel.metadata.tables[RiskDecision.__tablename__]
CASES: Table = SQLModel.metadata.tables[RiskCase.__tablename__]
#: Decision columns the engine builds from strings and finite numbers only (never the caller's values).
ENGINE_BUILT = {"reasons": json_text, "outcomes": json_text}


def parse_text(raw: bytes) -> Any:
    """A rule set file (YAML or JSON, which is YAML) as data."""
    if len(raw) > MAX_YAML:
        raise InvalidRuleSet(f"the rule set is larger than {MAX_YAML} bytes")
    try:
        return yaml.safe_load(raw.decode())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        raise InvalidRuleSet(f"the rule set is not valid YAML or JSON{line}") from None


def default_document(scene: str) -> RuleSetDoc | None:
    """The shipped rules of ``scene``, used until a version is active."""
    if scene != "transfer":
        return shipped_document(scene)
    raw = resources.files("mpaas.banking.risk").joinpath("default_rules.yaml").read_bytes()
    return parse_document({k: v for k, v in parse_text(raw).items() if k != "scene"})


def check_scene(scene: str) -> str:
    if re.fullmatch(SCENE_RE, scene) is None:
        raise InvalidRuleSet(f"a scene name must match {SCENE_RE}")
    return check_known(scene)


def label(scene: str, version: int | str) -> str:
    return f"{scene}@{version}"


@dataclass(frozen=True)
class ActiveRuleSet:
    scene: str
    version: str
    doc: RuleSetDoc


class RuleSets:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def active(self, scene: str) -> ActiveRuleSet | None:
        """The active stored version, else the shipped default, else None."""
        async with self.db.session() as s:
            row = (
                await s.exec(
                    select(RiskRuleSet).where(RiskRuleSet.scene == scene, RiskRuleSet.status == "active")
                )
            ).first()
        if row is not None:
            return ActiveRuleSet(scene, label(scene, row.version), parse_document(row.document))
        return await self.active_default(scene)

    async def active_default(self, scene: str) -> ActiveRuleSet | None:
        """The shipped rules of ``scene`` as a version labelled by their digest."""
        doc = default_document(scene)
        if doc is None:
            return None
        return ActiveRuleSet(scene, label(scene, f"default-{doc.digest()[:12]}"), doc)

    async def activate(self, actor: Actor, scene: str, doc: RuleSetDoc) -> RiskRuleSet:
        """Store ``doc`` as the scene's active version at once, without review (benchmarks and
        tests; the API and CLI go through :class:`~mpaas.banking.risk.review.Review`)."""
        check_scene(scene)
        try:
            async with self.db.write() as s:
                conn = await s.connection()
                await conn.execute(
                    update(RiskRuleSet)
                    .where(col(RiskRuleSet.scene) == scene, col(RiskRuleSet.status) == "active")
                    .values(status="retired")
                )
                row = await add_version(s, actor, scene, doc, status="active", action="risk.ruleset.activate")
                await epochs.bump(s, EPOCH)
        except IntegrityError:
            raise Conflict("another rule set was activated at the same time; try again") from None
        return row

    async def versions(self, scene: str | None = None) -> list[RiskRuleSet]:
        query = select(RiskRuleSet).order_by(col(RiskRuleSet.scene), col(RiskRuleSet.version).desc())
        if scene is not None:
            query = query.where(RiskRuleSet.scene == scene)
        async with self.db.session() as s:
            return list((await s.exec(query.limit(500))).all())

    async def get(self, scene: str, version: int) -> RiskRuleSet:
        async with self.db.session() as s:
            row = (
                await s.exec(
                    select(RiskRuleSet).where(RiskRuleSet.scene == scene, RiskRuleSet.version == version)
                )
            ).first()
        if row is None:
            raise RuleSetNotFound(f"rule set {label(scene, version)} not found")
        return row


async def add_version(
    s: AsyncSession, actor: Actor, scene: str, doc: RuleSetDoc, *, status: str, action: str
) -> RiskRuleSet:
    """A new version of ``scene``'s rule set (the next number) in the caller's transaction,
    audited as ``action``; two writers racing for one number meet the unique key."""
    latest = (await s.exec(select(func.max(RiskRuleSet.version)).where(RiskRuleSet.scene == scene))).first()
    row = RiskRuleSet(
        scene=scene,
        version=(latest or 0) + 1,
        status=status,
        document=doc.to_dict(),
        digest=doc.digest(),
        created_by=actor.name,
        activated_at=utcnow() if status == "active" else None,
    )
    s.add(row)
    audit.record(
        s, actor, action, label(scene, row.version), detail={"digest": row.digest, "rules": len(doc.rules)}
    )
    return row


async def current_epoch(db: Database) -> int:
    async with one_statement(db, write=False) as conn:
        query = text("SELECT epoch FROM bank_epochs WHERE name = :n")
        value = (await conn.execute(query, {"n": EPOCH})).scalar()
    return int(value or 0)


class Lists:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(
        self, actor: Actor, kind: str, entity: str, value: str, reason: str, expires_at: datetime | None
    ) -> RiskListEntry:
        if kind not in LIST_KINDS:
            raise InvalidListEntry(f"kind must be one of {', '.join(LIST_KINDS)}")
        if entity not in LIST_ENTITIES:
            raise InvalidListEntry(f"entity must be one of {', '.join(LIST_ENTITIES)}")
        if re.fullmatch(r"[\x21-\x7e]{1,128}", value) is None:
            raise InvalidListEntry("value must be 1 to 128 printable ASCII characters without spaces")
        if len(reason) > 256:
            raise InvalidListEntry("reason must be at most 256 characters")
        row = RiskListEntry(
            kind=kind, entity=entity, value=value, reason=reason, expires_at=expires_at, created_by=actor.name
        )
        try:
            async with self.db.write() as s:
                s.add(row)
                audit.record(s, actor, "risk.list.add", f"{kind}:{entity}:{value}", detail={"reason": reason})
                await epochs.bump(s, EPOCH)
        except IntegrityError:
            raise Conflict(
                f"{value!r} is already on the {kind} list of {entity}s", code="list_entry_exists"
            ) from None
        return row

    async def remove(self, actor: Actor, kind: str, entity: str, value: str) -> None:
        async with self.db.write() as s:
            row = (
                await s.exec(
                    select(RiskListEntry).where(
                        RiskListEntry.kind == kind,
                        RiskListEntry.entity == entity,
                        RiskListEntry.value == value,
                    )
                )
            ).first()
            if row is None:
                raise InvalidListEntry(f"{value!r} is not on the {kind} list of {entity}s", status=404)
            await s.delete(row)
            audit.record(s, actor, "risk.list.remove", f"{kind}:{entity}:{value}")
            await epochs.bump(s, EPOCH)

    async def all(self) -> list[RiskListEntry]:
        async with self.db.session() as s:
            return list((await s.exec(select(RiskListEntry).order_by(col(RiskListEntry.id)))).all())

    async def page(self, limit: int, offset: int) -> tuple[list[RiskListEntry], int]:
        async with self.db.session() as s:
            total = (await s.exec(select(func.count()).select_from(RiskListEntry))).one()
            query = select(RiskListEntry).order_by(col(RiskListEntry.id)).limit(limit).offset(offset)
            return list((await s.exec(query)).all()), int(total)


class Decisions:
    """Decision records. ``lane``: the engine's own SQLite connection (:mod:`.sqlite_lane`),
    which stores a decision and its case in one thread hop; on PostgreSQL the same prepared
    statements run on asyncpg's connection. Either way SQLAlchemy compiles the statement and
    converts the values, so the row is the one its ORM would write."""

    def __init__(self, db: Database, lane: SqliteLane | None = None) -> None:
        self.db, self.lane = db, lane
        self._prepared: dict[tuple[str, tuple[str, ...]], PreparedInsert] = {}

    async def store(
        self,
        scene: str,
        subject: str | None,
        decision: Decision,
        outcomes: dict[str, str],
        model_version: str | None = None,
        case: dict[str, Any] | None = None,
    ) -> None:
        """Insert the record, and ``case`` (a ``risk_cases`` row) with it in the same
        transaction when given; the caller answers only after."""
        await self.store_row(record_of(scene, subject, decision, outcomes, model_version), case)

    async def store_row(self, row: dict[str, Any], case: dict[str, Any] | None = None) -> None:
        """Insert a record made by :func:`record_of` (and its case)."""
        if self.lane is not None:
            rows = [(self._insert(DECISIONS, row), row)]
            if case is not None:
                rows.append((self._insert(CASES, case), case))

            def work(conn: sqlite3.Connection) -> None:
                for prepared, values in rows:
                    prepared.run(conn, values)

            await self.lane.write(work)
        elif not self.db.is_sqlite:
            await self._store_pg(row, case)
        elif case is None:
            async with one_statement(self.db, write=True) as conn:
                await conn.execute(insert(DECISIONS), row)
        else:  # a review or deny decision never stands without its case
            async with self.db.write() as s:
                conn = await s.connection()
                await conn.execute(insert(DECISIONS), row)
                await conn.execute(insert(CASES), case)

    async def _store_pg(self, row: dict[str, Any], case: dict[str, Any] | None) -> None:
        """On asyncpg itself, on a pooled connection: the decision alone is one statement
        (autocommit); with its case, one transaction."""
        decision = self._insert(DECISIONS, row)
        # SQLAlchemy only checks the connection out: a statement sent on the driver outside a
        # transaction SQLAlchemy began commits by itself, and giving it back sends nothing
        # (no isolation level to set and reset, no ROLLBACK)
        async with self.db.engine.connect() as conn:
            driver: Any = (await conn.get_raw_connection()).driver_connection
            if case is None:
                await driver.execute(decision.sql, *decision.params(row))
                return
            opened = self._insert(CASES, case)
            async with driver.transaction():
                await driver.execute(decision.sql, *decision.params(row))
                await driver.execute(opened.sql, *opened.params(case))

    def _insert(self, table: Table, row: dict[str, Any]) -> PreparedInsert:
        key = (table.name, tuple(row))
        prepared = self._prepared.get(key)
        if prepared is None:
            prepared = self._prepared[key] = PreparedInsert(
                table, key[1], self.db.engine.dialect, ENGINE_BUILT if table is DECISIONS else None
            )
        return prepared

    async def get(self, decision_id: str) -> RiskDecision:
        if re.fullmatch(r"[0-9a-f]{32}", decision_id) is None:
            raise DecisionNotFound(f"decision {decision_id!r} not found")
        async with self.db.session() as s:
            row = await s.get(RiskDecision, decision_id)
        if row is None:
            raise DecisionNotFound(f"decision {decision_id} not found")
        return row

    async def for_subject(self, subject: str, limit: int = 50) -> list[RiskDecision]:
        async with self.db.session() as s:
            query = select(RiskDecision).where(RiskDecision.subject == subject)
            return list(
                (await s.exec(query.order_by(col(RiskDecision.created_at).desc()).limit(limit))).all()
            )


#: The columns of a decision's record, as :func:`record_of` fills them.
RECORD_COLUMNS = (
    "id", "scene", "subject", "ruleset_version", "action", "score", "reasons", "outcomes", "inputs",
    "created_at", "model_version",
)  # fmt: skip


def record_of(
    scene: str, subject: str | None, decision: Decision, outcomes: dict[str, str], model_version: str | None
) -> dict[str, Any]:
    """A decision's ``risk_decisions`` row (every column the engine writes)."""
    return {
        "id": decision.id,
        "scene": scene,
        "subject": subject,
        "ruleset_version": decision.ruleset_version,
        "action": decision.action,
        "score": decision.score,
        "reasons": [{"rule": r.rule, "weight": r.weight, "message": r.message} for r in decision.reasons],
        "outcomes": outcomes,
        "inputs": dict(decision.values),
        "created_at": utcnow(),
        "model_version": model_version,
    }


def new_decision_id() -> str:
    return uuid.uuid4().hex
