"""The decision path's own SQLite connection: one thread, one ``sqlite3`` connection, one
thread hop per call.

Through SQLAlchemy and aiosqlite, one statement costs a session, a ``BEGIN``, and a hop to
aiosqlite's thread for each of cursor, execute, fetch, close and commit or rollback (about
2 ms of CPU for a counter read and a decision insert on a loaded 2-core machine, 30 µs of
which is SQLite). Here a whole unit of work (a read; an insert of a decision and its case in
one transaction) runs in the lane's thread as one call.

Writes take the :class:`~mpaas.storage.db.Database`'s in-process write lock, as
``db.write()`` does, and ``BEGIN IMMEDIATE``; SQLite's busy timeout covers other processes.
Reads run in autocommit (SQLite's own read transaction per statement), so a transaction
committed through the engine's pool before the call is seen. Values are converted by the
tables' own SQLAlchemy types (JSON, datetimes), so a row reads back exactly as one written
through SQLAlchemy. An in-memory database has no second connection: :meth:`SqliteLane.open`
answers None and callers keep SQLAlchemy.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, TypeVar

import orjson
from sqlalchemy import Table, insert
from sqlalchemy.engine import Dialect, make_url

from mpaas.storage.db import Database

T = TypeVar("T")
BUSY_MS = 30_000


class SqliteLane:
    def __init__(self, path: str, write_lock: asyncio.Lock | None, name: str = "risk-sqlite") -> None:
        self.path, self.write_lock, self.name = path, write_lock, name
        # (work or None to stop, the caller's future, its loop); a bare thread and queue, as
        # aiosqlite does: an executor's futures cost twice the Python per hop
        self._jobs: queue.SimpleQueue[Job] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closed = False

    @classmethod
    def open(cls, db: Database, name: str = "risk-sqlite") -> SqliteLane | None:
        """A lane on ``db``'s file, or None (PostgreSQL, or SQLite in memory); ``name`` names its
        thread (the risk engine's lane, the transfers' lane: one connection each)."""
        if not db.is_sqlite:
            return None
        path = make_url(db.settings.database_url).database
        if not path or path == ":memory:" or path.startswith("file:"):
            return None
        # Database serialises its SQLite writers with this lock; the lane's writes join it.
        return cls(path, db.write_lock, name)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=BUSY_MS / 1000)
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
            conn.execute(f"PRAGMA {pragma}")
        conn.execute(f"PRAGMA busy_timeout={BUSY_MS}")
        return conn

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        while True:
            work, future, loop = self._jobs.get()
            if work is None:
                if conn is not None:
                    conn.close()
                loop.call_soon_threadsafe(_settle, future, None, None)
                return
            try:
                if conn is None:
                    conn = self._connect()
                result = work(conn)
            except BaseException as exc:  # handed to the awaiting caller
                loop.call_soon_threadsafe(_settle, future, None, exc)
            else:
                loop.call_soon_threadsafe(_settle, future, result, None)

    async def read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work(conn)`` in the lane's thread, outside any transaction."""
        if self._closed:
            raise RuntimeError("the SQLite lane is closed")
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put((work, future, loop))
        return await future

    async def write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work(conn)`` in one ``BEGIN IMMEDIATE`` transaction, committed when it returns."""
        async with self._locked():
            return await self.read(lambda conn: _transaction(conn, work))

    @contextlib.asynccontextmanager
    async def _locked(self) -> AsyncIterator[None]:
        if self.write_lock is None:
            yield
            return
        async with self.write_lock:
            yield

    async def close(self) -> None:
        """Close the connection once the calls already queued are done."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            loop = asyncio.get_running_loop()
            done: asyncio.Future[None] = loop.create_future()
            self._jobs.put((None, done, loop))
            await done


Job = tuple[Callable[[sqlite3.Connection], Any] | None, "asyncio.Future[Any]", asyncio.AbstractEventLoop]


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():  # the caller gave up; a write still committed, as with aiosqlite
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _transaction(conn: sqlite3.Connection, work: Callable[[sqlite3.Connection], T]) -> T:
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = work(conn)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


class PreparedInsert:
    """``INSERT INTO table (columns)`` compiled once by SQLAlchemy for ``dialect`` (``?`` for
    sqlite3, ``$1::TYPE`` for asyncpg), with each column's bind conversion (JSON text,
    datetimes), to run on the driver's own connection: the same statement and values
    SQLAlchemy would send, without its per-call machinery."""

    def __init__(
        self,
        table: Table,
        columns: Sequence[str],
        dialect: Dialect,
        encoders: Mapping[str, Callable[[Any], Any]] | None = None,
    ) -> None:
        """``encoders``: a column's own conversion instead of its type's (see :func:`json_text`)."""
        compiled = insert(table).compile(dialect=dialect, column_keys=list(columns))
        self.sql = compiled.string
        self.columns = tuple(compiled.positiontup or ())
        if sorted(self.columns) != sorted(columns):
            raise ValueError(f"cannot prepare an insert of {sorted(columns)} into {table.name}")
        own = encoders or {}
        self.processors = tuple(
            own.get(c) or table.c[c].type.dialect_impl(dialect).bind_processor(dialect) for c in self.columns
        )

    def params(self, row: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(
            row[c] if p is None else p(row[c]) for c, p in zip(self.columns, self.processors, strict=True)
        )

    def run(self, conn: sqlite3.Connection, row: Mapping[str, Any]) -> None:
        conn.execute(self.sql, self.params(row))


def json_text(value: Any) -> str:
    """JSON text through orjson (7x faster than ``json.dumps``), for values the engine builds
    itself from strings and finite numbers (rule outcomes, reasons): both read back equal
    through ``json.loads``. Anything orjson refuses goes to ``json.dumps``, as before."""
    try:
        return orjson.dumps(value, option=_STRICT).decode()
    except TypeError:
        return json.dumps(value)


_STRICT = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_SUBCLASS
