"""The SQL database: one async engine per process, sessions, and migrations.

SQLite (aiosqlite) is the embedded default and PostgreSQL (asyncpg) the production
backend. The schema is owned by Alembic migrations shipped in ``mpaas.storage.migrations``;
tables are never created with ``metadata.create_all`` outside tests of migrations.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from mpaas.settings import Settings
from mpaas.storage.compiled import Compiled


def utcnow() -> datetime:
    """Aware UTC now; SQLModel's UTCDateTime columns require an offset."""
    return datetime.now(UTC)


def as_stored_utc(value: datetime) -> datetime:
    """A time read back from the database, made aware: SQLite hands back naive datetimes,
    and every stored time is UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def make_engine(settings: Settings) -> AsyncEngine:
    url = settings.database_url
    if settings.is_sqlite:
        db_path = url.split(":///", 1)[-1]
        if db_path and db_path != ":memory:":
            Path(db_path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30})
        _sqlite_pragmas(engine)
        return engine
    # No pool_pre_ping: on asyncpg it costs three round trips (BEGIN, ";", ROLLBACK) every
    # time a connection leaves the pool, 18 of the 49 statements a transfer sent (ADR 0016).
    # A connection the server has closed is known to asyncpg without a round trip.
    engine = create_async_engine(url, pool_size=10, max_overflow=20, pool_recycle=1800)
    _drop_closed_on_checkout(engine)
    return engine


def _drop_closed_on_checkout(engine: AsyncEngine) -> None:
    """Hand out no pooled connection whose socket the server has closed (a restart, a
    ``pg_terminate_backend``, an idle timeout): the pool discards it and takes another.
    A connection that died silently still fails its first statement; SQLAlchemy then
    invalidates the pool's older connections, so one call per process sees the error."""

    @event.listens_for(engine.sync_engine, "checkout")
    def _on_checkout(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
        raw = getattr(dbapi_conn, "_connection", None)
        is_closed = getattr(raw, "is_closed", None)
        if is_closed is not None and is_closed():
            raise DisconnectionError("the pooled connection was closed by the server")


def _sqlite_pragmas(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # pysqlite's implicit transaction handling is broken for SAVEPOINT and
        # emits BEGIN lazily; SQLAlchemy's documented fix is to emit BEGIN ourselves.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN")


class Database:
    """The engine and a session factory; the one object services get for SQL."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = make_engine(settings)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False, class_=AsyncSession)
        # Reads on PostgreSQL run in autocommit: no BEGIN and ROLLBACK round trips (ADR 0016).
        reader = self.engine
        if not settings.is_sqlite:
            reader = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self.readers = async_sessionmaker(reader, expire_on_commit=False, class_=AsyncSession)
        self.is_sqlite = settings.is_sqlite
        # SQLite allows one writer; serialising writers in-process (``write()``, and the risk
        # engine's own connection, banking/risk/sqlite_lane.py) avoids busy waits.
        self.write_lock = asyncio.Lock() if self.is_sqlite else None

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self.sessions() as session:
            yield session

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A session for reads that need no snapshot shared between statements: on
        PostgreSQL each statement runs alone (autocommit), which saves two round trips a
        session; what must hold across statements is checked again inside a write."""
        async with self.readers() as session:
            yield session

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A session inside one transaction that commits on success and rolls back on error."""
        if self.write_lock is None:
            async with self.sessions() as session, session.begin():
                yield session
            return
        async with self.write_lock, self.sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def driver_connection(self) -> AsyncIterator[Any]:
        """PostgreSQL: the asyncpg connection under a connection of the engine's pool (its
        size, its check of closed connections and ``dispose()`` cover it), for statements
        compiled once (:mod:`mpaas.storage.compiled`); a statement on it outside a
        transaction commits by itself. Dropped if left inside a transaction (cancelled)."""
        async with self.engine.connect() as sa_conn:
            conn = (await sa_conn.get_raw_connection()).driver_connection
            try:
                yield conn
            finally:
                if conn is not None and conn.is_in_transaction():
                    await sa_conn.invalidate()

    async def fetchrow(self, stmt: Compiled, values: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """PostgreSQL: the first row of a compiled read on the driver (autocommit), converted
        as SQLAlchemy converts it; None when there is none."""
        async with self.driver_connection() as conn:
            return stmt.row(await conn.fetchrow(stmt.sql, *stmt.args(values)))

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def close(self) -> None:
        await self.engine.dispose()


metadata = SQLModel.metadata
