"""A new transfer's reads and its write transaction on the database driver (ADR 0019).

Through the ORM a transfer cost 7.5 ms of server CPU on PostgreSQL, three quarters of it
SQLAlchemy sessions and result machinery around 16 small statements. Here the statements are
built with SQLAlchemy (Core, or ``text()`` for the PostgreSQL chain) and compiled once per
dialect (:class:`~mpaas.banking.transfers.chain.Compiled`: the SQL text, the order of its
parameters, each parameter's and result column's own conversion), then run on the driver:

- PostgreSQL: the asyncpg connection under a connection of SQLAlchemy's own pool (so the
  pool's size, its closed-connection check and ``dispose()`` cover it, and no second pool
  needs closing); asyncpg prepares each statement once per connection. One autocommit read,
  then the whole transaction as one statement (``chain.py``): two round trips a transfer.
- SQLite on a file: a :class:`~mpaas.banking.risk.sqlite_lane.SqliteLane` of its own (one
  ``sqlite3`` connection and thread): the read is one call, the transaction another (the ORM
  path's statements, in its order, under ``BEGIN IMMEDIATE`` and the Database's write lock).
  SQLite in memory keeps the ORM path (``for_database`` is None).

The read is one statement: the idempotency key's request id, the sender's account and the
payee with their account. What is rare goes back to the ORM: a stored request (replayed), a
transfer id that exists, and explaining a refused account update.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, and_, bindparam, insert, literal_column, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect

from mpaas.banking.ledger.models import (
    BankLimitUsage,
    BankTransferRequest,
    LedgerAccount,
    LedgerPosting,
    LedgerTransfer,
)
from mpaas.banking.ledger.service import credit_condition, debit_condition
from mpaas.banking.models import BankUser
from mpaas.banking.risk.models import RiskDecision
from mpaas.banking.risk.sqlite_lane import SqliteLane
from mpaas.banking.risk.store import RECORD_COLUMNS
from mpaas.banking.transfers.chain import compile_chain, refused_step
from mpaas.storage.compiled import Compiled
from mpaas.storage.db import Database

USER_PREFIX = "user:"


def _upsert_module(dialect: Dialect) -> Any:
    return postgresql if dialect.name == "postgresql" else sqlite


class Statements:
    """Every statement of the driver path, for one dialect."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        r, a = BankTransferRequest.__table__.alias("r"), LedgerAccount.__table__.alias("a")  # type: ignore[attr-defined]
        u, pa = BankUser.__table__.alias("u"), LedgerAccount.__table__.alias("pa")  # type: ignore[attr-defined]
        one = select(literal_column("1").label("one")).subquery("x")
        joined = (
            one.outerjoin(
                r, and_(r.c.user_pk == bindparam("user_pk"), r.c.idempotency_key == bindparam("key"))
            )
            .outerjoin(a, a.c.code == bindparam("code"))
            .outerjoin(u, and_(u.c.app_id == bindparam("app_id"), u.c.public_id == bindparam("payee")))
            .outerjoin(pa, pa.c.code == literal_column(f"'{USER_PREFIX}'") + u.c.public_id)
        )
        columns = (r.c.id, a.c.id, a.c.account_class, u.c.public_id, u.c.tier, pa.c.id)
        self.read = Compiled(select(*columns).select_from(joined), dialect)
        ups = _upsert_module(dialect)
        usage = BankLimitUsage.__table__  # type: ignore[attr-defined]
        count = ups.insert(usage).values(
            account_id=bindparam("account_id"), period=bindparam("period"), used=bindparam("amount")
        )
        self.limit = Compiled(
            count.on_conflict_do_update(
                index_elements=[usage.c.account_id, usage.c.period],
                set_={"used": usage.c.used + count.excluded.used},
                where=usage.c.used + count.excluded.used <= bindparam("limit", type_=BigInteger),
            ),
            dialect,
        )
        transfers = LedgerTransfer.__table__  # type: ignore[attr-defined]
        columns_t = [c.name for c in transfers.c if c.name != "id"]
        made = ups.insert(transfers).values({c: bindparam(c) for c in columns_t}).on_conflict_do_nothing()
        self.transfer = Compiled(made.returning(transfers.c.id), dialect)
        self.legs: dict[tuple[str, str], Compiled] = {}
        accounts = LedgerAccount.__table__  # type: ignore[attr-defined]
        amount = bindparam("amount", type_=BigInteger)
        for which in ("debits", "credits"):
            check = debit_condition(amount) if which == "debits" else credit_condition(amount)
            for side in ("pending", "posted"):
                column = accounts.c[f"{which}_{side}"]
                stmt = (
                    update(accounts)
                    .where(
                        accounts.c.id == bindparam("account_id"), accounts.c.currency == bindparam("currency")
                    )
                    .where(check)
                    .values({column: column + amount})
                )
                self.legs[which, side] = Compiled(stmt, dialect)
        legs: list[dict[str, Any]] = [
            {"transfer_pk": bindparam("pk"), "account_id": bindparam(f"a{i}"), "amount": bindparam(f"n{i}")}
            | {"posted_at": bindparam("now")}
            for i in (1, 2)
        ]
        self.postings = Compiled(insert(LedgerPosting.__table__).values(legs), dialect)  # type: ignore[attr-defined]
        requests = BankTransferRequest.__table__  # type: ignore[attr-defined]
        columns_r = [c.name for c in requests.c if c.name != "id"]
        self.request = Compiled(insert(requests).values({c: bindparam(c) for c in columns_r}), dialect)
        decisions = RiskDecision.__table__  # type: ignore[attr-defined]
        self.decision = Compiled(insert(decisions).values({c: bindparam(c) for c in RECORD_COLUMNS}), dialect)
        #: PostgreSQL: the whole transaction as one statement, by (pending, debit has the lower
        #: id, with the risk decision's record)
        self.chains: dict[tuple[bool, bool, bool], Compiled] = {}
        if dialect.name == "postgresql":
            for key in [(p, d, r) for p in (False, True) for d in (False, True) for r in (False, True)]:
                self.chains[key] = compile_chain(dialect, *key)


@dataclass(frozen=True)
class Found:
    """What the one read found: a stored request's id, the sender's account, the payee."""

    request_id: int | None
    account_id: int | None
    account_class: str | None
    payee_public_id: str | None
    payee_tier: str | None
    payee_account_id: int | None


@dataclass(frozen=True)
class Step:
    """One statement of the transaction, and what a rowcount other than 1 means."""

    sql: str
    args: tuple[Any, ...]
    refusal: Callable[[], Exception]


@dataclass(frozen=True)
class Write:
    """A new transfer's transaction, its parameters converted. SQLite: the limit steps, the
    transfer's insert, the leg steps in account id order, the postings (None for a pending
    transfer), the request. PostgreSQL: the chain's shape and arguments, and what each of its
    steps' refusal raises (``limit:daily``, ``limit:yearly``, ``leg:lo``, ``leg:hi``)."""

    limits: Sequence[Step] = ()
    transfer: tuple[Any, ...] = ()
    legs: Sequence[Step] = ()
    postings: Callable[[int], tuple[Any, ...]] | None = None
    request: tuple[Any, ...] = ()
    #: the risk decision's record (SQLite; on PostgreSQL it is in the chain), or empty
    decision: tuple[Any, ...] = ()
    chain: tuple[bool, bool, bool] | None = None
    chain_args: tuple[Any, ...] = ()
    refusals: Mapping[str, Callable[[], Exception]] | None = None


class TransferExistsHere(Exception):
    """The ledger transfer id exists (a retry or a racer): the ORM path answers this one."""


class LegRefused(Exception):
    """A conditional account update changed no row; the ORM path explains why."""

    def __init__(self, account_id: int, which: str) -> None:
        super().__init__(account_id, which)
        self.account_id, self.which = account_id, which


class DuplicateRequest(Exception):
    """The request row's unique key (user and idempotency key) was taken by a racer."""


class Driver:
    """Runs :class:`Statements` on asyncpg (PostgreSQL) or a SQLite lane."""

    def __init__(self, db: Database, lane: SqliteLane | None) -> None:
        self.db, self.lane = db, lane
        self.statements = Statements(db.engine.dialect)

    @classmethod
    def for_database(cls, db: Database, name: str = "transfers-sqlite") -> Driver | None:
        """A driver for ``db``, or None where the ORM path stays (SQLite in memory)."""
        if not db.is_sqlite:
            return cls(db, None)
        lane = SqliteLane.open(db, name=name)
        return None if lane is None else cls(db, lane)

    async def fetchrow(self, stmt: Compiled, values: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """The first row of ``stmt`` (autocommit), converted as SQLAlchemy converts it."""
        if self.lane is None:
            return await self.db.fetchrow(stmt, values)
        args, sql = stmt.args(values), stmt.sql
        return stmt.row(await self.lane.read(lambda conn: conn.execute(sql, args).fetchone()))

    async def close(self) -> None:
        if self.lane is not None:
            await self.lane.close()

    async def read(self, values: Mapping[str, Any]) -> Found:
        row = await self.fetchrow(self.statements.read, values)
        assert row is not None  # one row always: the joins hang off a one-row subquery
        return Found(*row)

    async def write(self, work: Write) -> None:
        """Run ``work`` in one transaction; raises a step's refusal, :class:`TransferExistsHere`,
        :class:`LegRefused` or :class:`DuplicateRequest`, and nothing of it is kept."""
        if self.lane is not None:
            await self.lane.write(lambda conn: _sqlite_write(conn, self.statements, work))
            return
        import asyncpg

        assert work.chain is not None and work.refusals is not None
        sql = self.statements.chains[work.chain].sql
        async with self.db.driver_connection() as conn:
            try:
                await conn.fetchval(sql, *work.chain_args)  # autocommit: one statement, one transaction
            except asyncpg.InvalidTextRepresentationError as exc:
                step = refused_step(str(exc))
                if step == "exists":
                    raise TransferExistsHere() from None
                if step is None or step not in work.refusals:
                    raise
                raise work.refusals[step]() from None
            except asyncpg.UniqueViolationError as exc:
                if exc.table_name == "bank_transfer_requests":
                    raise DuplicateRequest() from exc
                raise


def _sqlite_write(conn: sqlite3.Connection, st: Statements, work: Write) -> None:
    for step in work.limits:
        if conn.execute(step.sql, step.args).rowcount != 1:
            raise step.refusal()
    made = conn.execute(st.transfer.sql, work.transfer).fetchall()
    if not made:
        raise TransferExistsHere()
    for step in work.legs:
        if conn.execute(step.sql, step.args).rowcount != 1:
            raise step.refusal()
    if work.postings is not None:
        conn.execute(st.postings.sql, work.postings(made[0][0]))
    try:
        conn.execute(st.request.sql, work.request)
    except sqlite3.IntegrityError as exc:
        if "bank_transfer_requests" in str(exc):
            raise DuplicateRequest() from exc
        raise
    if work.decision:
        conn.execute(st.decision.sql, work.decision)
