"""Velocity counters: counts and amounts of committed transactions per key in sliding
windows, and the place of each key's last transaction.

A key is ``<entity>:<id>`` (``user:u_1``, ``device:d_9``). Each committed transaction adds
to one bucket per window width: 5-minute buckets serve the 1-hour window, 1-hour buckets
the 24-hour window, 1-day buckets the 30-day window. A window sums the buckets that end
after ``now - window``, so "1 h" covers the last 60 to 65 minutes, "24 h" the last 24 to
25 hours, "30 d" the last 30 to 31 days: a bucket never falls out early.

``record`` counts a transaction once: the first call for an event id claims it (a
conditional insert); a repeated ``committed()`` after a retry adds nothing.

``read_and_count`` reads a transaction's windows and counts it in one step, so that
transfers decided at the same moment see each other, across server processes too (on
Redis one script; in SQL one transaction that counts first, under the keys' row locks or
SQLite's write lock, and reads after).
Its :class:`Reservation` is given back with ``release`` when the transaction does not
commit: the counts leave the windows, and the last place moves back unless a later
transaction moved it since.
"""

from __future__ import annotations

import logging
import math
import sqlite3
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from mpaas.banking.risk.sqlite_lane import SqliteLane
from mpaas.storage.db import Database

log = logging.getLogger("mpaas.banking.risk")

#: window name → (window seconds, bucket width seconds)
WINDOWS: dict[str, tuple[int, int]] = {"1h": (3600, 300), "24h": (86400, 3600), "30d": (30 * 86400, 86400)}
#: How long a counted event id is remembered against a repeated ``committed()``.
SEEN_SECONDS = 2 * 86400


@dataclass(frozen=True)
class Place:
    lat: float
    lon: float
    at: float


@dataclass
class Counts:
    """One key's windows: ``count[window]`` and ``amount[window]`` (fen), and its last place."""

    count: dict[str, int] = field(default_factory=lambda: dict.fromkeys(WINDOWS, 0))
    amount: dict[str, int] = field(default_factory=lambda: dict.fromkeys(WINDOWS, 0))
    place: Place | None = None


@dataclass(frozen=True)
class Observation:
    """A committed transaction as the counters see it."""

    event_id: str
    keys: tuple[str, ...]
    amount: int
    at: float
    #: (lat, lon) when known; stored as the last place of every key.
    place: tuple[float, float] | None = None


@dataclass(frozen=True)
class Reservation:
    """A transaction counted when it was decided: what ``release`` gives back."""

    obs: Observation
    #: each key's last place before this transaction moved it (None: it had none)
    previous: dict[str, Place | None] = field(default_factory=dict)


@asynccontextmanager
async def one_statement(db: Database, *, write: bool) -> AsyncIterator[AsyncConnection]:
    """A connection for one statement on the decision path. On PostgreSQL it runs in
    autocommit (one round trip, not BEGIN, statement, COMMIT); SQLite serialises its writers."""
    if db.is_sqlite:
        async with db.write() if write else db.session() as s:
            yield await s.connection()
        return
    async with db.engine.connect() as conn:
        yield await conn.execution_options(isolation_level="AUTOCOMMIT")


class CounterStore(Protocol):
    async def read(self, keys: Sequence[str], now: float, places: bool) -> dict[str, Counts]:
        """Counts of each key in every window at ``now`` (and their last places when asked)."""
        ...

    async def record(self, obs: Observation) -> bool:
        """Add a committed transaction; False when its event id was already counted."""
        ...

    async def read_and_count(
        self, keys: Sequence[str], now: float, places: bool, obs: Observation
    ) -> tuple[dict[str, Counts], Reservation | None]:
        """:meth:`read`, then ``obs`` counted as :meth:`record` would; None for the
        reservation when its event id was counted already."""
        ...

    async def release(self, reservation: Reservation) -> None:
        """Give a reservation back (its transaction did not commit); a second call does nothing."""
        ...

    async def sweep(self, now: float) -> None:
        """Forget buckets and event ids no window can reach."""
        ...

    async def close(self) -> None: ...


def bucket_of(at: float, width: int) -> int:
    return math.floor(at / width) * width


def first_bucket(now: float, window: int, width: int) -> int:
    """The oldest bucket start that still counts toward ``window`` at ``now``."""
    return bucket_of(now - window, width) + width


class SqlCounterStore:
    """Buckets as rows of ``risk_counters``, one conditional upsert statement per transaction.
    On a SQLite file, reads and records run on the store's own connection in one thread hop
    each (:mod:`.sqlite_lane`); elsewhere through SQLAlchemy."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.lane = SqliteLane.open(db)

    async def read(self, keys: Sequence[str], now: float, places: bool) -> dict[str, Counts]:
        result = {key: Counts() for key in keys}
        if not keys:
            return result
        sql, params = _read_query(list(result), now, places)
        rows: Iterable[Sequence[Any]]
        if self.lane is not None:
            rows = await self.lane.read(lambda conn: conn.execute(sql, params).fetchall())
        else:
            async with one_statement(self.db, write=False) as conn:
                rows = list(await conn.execute(text(sql), params))
        _fill(result, rows)
        return result

    async def record(self, obs: Observation) -> bool:
        claimed, _where, _windows = await self._run(_Count((), obs.at, False, obs, read=False))
        return claimed

    async def read_and_count(
        self, keys: Sequence[str], now: float, places: bool, obs: Observation
    ) -> tuple[dict[str, Counts], Reservation | None]:
        """One transaction: claim the event id, count it, read the last places, move them, read
        the windows (less this transaction). The count's upsert comes first and locks the
        keys' current buckets (PostgreSQL; SQLite takes the write lock), so transactions of
        one key decided at the same moment, in any process, run one after the other and see
        each other. When it fails, a plain read answers and ``committed()`` counts later."""
        count = _Count(keys, now, places, obs)
        try:
            done = await self._run(count)
        except Exception:
            log.warning("risk counters: a decided transaction was not counted", exc_info=True)
            return await self.read(keys, now, places), None
        return count.outcome(*done)

    async def _run(self, count: _Count) -> tuple[bool, Rows, Rows]:
        """``count``'s statements in one write transaction, on the lane or through SQLAlchemy."""
        if self.lane is not None:
            return await self.lane.write(count.on_sqlite)
        async with self.db.write() as s:
            return await count.on_sqlalchemy(await s.connection())

    async def release(self, reservation: Reservation) -> None:
        obs = reservation.obs
        async with self.db.write() as s:
            conn = await s.connection()
            gone = await conn.execute(text("DELETE FROM risk_seen WHERE event_id = :e"), {"e": obs.event_id})
            if not gone.rowcount:  # released already, or never counted
                return
            for key in sorted(set(obs.keys)):
                for _window, width in WINDOWS.values():
                    where = {"k": key, "w": width, "b": bucket_of(obs.at, width), "a": obs.amount}
                    await conn.execute(text(_GIVE_BACK), where)
                if obs.place is not None:
                    await conn.execute(*_place_back(key, obs.at, reservation.previous.get(key)))

    async def sweep(self, now: float) -> None:
        clauses, params = [], {"seen": now - SEEN_SECONDS}
        for name, (window, width) in WINDOWS.items():
            params[f"w_{name}"], params[f"b_{name}"] = width, first_bucket(now, window, width)
            clauses.append(f"(width = :w_{name} AND bucket < :b_{name})")
        async with self.db.write() as s:
            conn = await s.connection()
            await conn.execute(text(f"DELETE FROM risk_counters WHERE {' OR '.join(clauses)}"), params)
            await conn.execute(text("DELETE FROM risk_seen WHERE at < :seen"), params)

    async def close(self) -> None:
        if self.lane is not None:
            await self.lane.close()


Statement = tuple[str, dict[str, object]]
Rows = list[Sequence[Any]]


class _Count:
    """The statements of a count, in order, on either connection: claim the event id, add to
    the buckets, read the last places, move them, read the windows. ``read=False`` (a plain
    :meth:`SqlCounterStore.record`) leaves the two reads out."""

    def __init__(
        self, keys: Sequence[str], now: float, places: bool, obs: Observation, *, read: bool = True
    ) -> None:
        self.keys, self.now, self.places, self.obs = list(dict.fromkeys(keys)), now, places, obs
        self.unique = sorted(set(obs.keys))
        self.seen, self.counts, self.move = _record_statements(obs)
        self.windows = _read_query(self.keys, now, False) if self.keys else None
        wanted = list(dict.fromkeys([*self.keys, *self.unique])) if read and (places or obs.place) else []
        names = ", ".join(f":p{i}" for i in range(len(wanted)))
        self.where: Statement | None = (
            (
                f"SELECT key, lat, lon, at FROM risk_places WHERE key IN ({names})",
                {f"p{i}": k for i, k in enumerate(wanted)},
            )
            if wanted
            else None
        )

    def on_sqlite(self, conn: sqlite3.Connection) -> tuple[bool, Rows, Rows]:
        claimed = bool(conn.execute(*self.seen).fetchall())
        if claimed:
            conn.execute(*self.counts)
        where = conn.execute(*self.where).fetchall() if self.where else []
        if claimed and self.move is not None:
            conn.execute(*self.move)
        return claimed, where, conn.execute(*self.windows).fetchall() if self.windows else []

    async def on_sqlalchemy(self, conn: AsyncConnection) -> tuple[bool, Rows, Rows]:
        async def rows(statement: Statement) -> Rows:
            return list(await conn.execute(text(statement[0]), statement[1]))

        claimed = bool(await rows(self.seen))
        if claimed:
            await conn.execute(text(self.counts[0]), self.counts[1])
        where = await rows(self.where) if self.where else []
        if claimed and self.move is not None:
            await conn.execute(text(self.move[0]), self.move[1])
        return claimed, where, await rows(self.windows) if self.windows else []

    def outcome(
        self, claimed: bool, where: Rows, windows: Rows
    ) -> tuple[dict[str, Counts], Reservation | None]:
        result = {key: Counts() for key in self.keys}
        _fill(result, windows)
        before = {key: Place(float(lat), float(lon), float(at)) for key, lat, lon, at in where}
        if self.places:
            for key, counts in result.items():
                counts.place = before.get(key)
        if not claimed:
            return result, None
        obs = self.obs
        for key in set(self.unique) & set(result):  # the windows hold this transaction: not its own past
            for name, (window, width) in WINDOWS.items():
                if bucket_of(obs.at, width) >= first_bucket(self.now, window, width):
                    result[key].count[name] -= 1
                    result[key].amount[name] -= obs.amount
        previous = {key: before.get(key) for key in self.unique} if obs.place is not None else {}
        return result, Reservation(obs, previous)


_GIVE_BACK = (
    "UPDATE risk_counters SET count = count - 1, amount = amount - :a "
    "WHERE key = :k AND width = :w AND bucket = :b"
)


def _place_back(key: str, at: float, previous: Place | None) -> tuple[Any, dict[str, object]]:
    """The last place of ``key`` as it was before the transaction at ``at``, unless a later
    transaction has moved it since."""
    if previous is None:
        return text("DELETE FROM risk_places WHERE key = :k AND at = :at"), {"k": key, "at": at}
    sql = "UPDATE risk_places SET lat = :lat, lon = :lon, at = :prev WHERE key = :k AND at = :at"
    return text(sql), {"k": key, "at": at, "lat": previous.lat, "lon": previous.lon, "prev": previous.at}


def _read_query(keys: list[str], now: float, places: bool) -> Statement:
    """One statement for every key's windows (and last places): the same text runs on
    SQLAlchemy (``text``) and on ``sqlite3`` (named parameters)."""
    params: dict[str, object] = {f"k{i}": key for i, key in enumerate(keys)}
    key_list = ", ".join(f":k{i}" for i in range(len(keys)))
    windows = []
    for name, (window, width) in WINDOWS.items():
        params[f"w_{name}"], params[f"b_{name}"] = width, first_bucket(now, window, width)
        windows.append(f"(width = :w_{name} AND bucket >= :b_{name})")
    null = "CAST(NULL AS DOUBLE PRECISION)"
    sql = (
        f"SELECT key, width, SUM(count) AS n, SUM(amount) AS s, {null}, {null}, {null} "
        f"FROM risk_counters WHERE key IN ({key_list}) AND ({' OR '.join(windows)}) GROUP BY key, width"
    )
    if places:
        sql += f" UNION ALL SELECT key, -1, 0, 0, lat, lon, at FROM risk_places WHERE key IN ({key_list})"
    return sql, params


_BY_WIDTH = {width: name for name, (_window, width) in WINDOWS.items()}


def _fill(result: dict[str, Counts], rows: Iterable[Sequence[Any]]) -> None:
    for key, width, n, s, lat, lon, at in rows:
        counts = result[key]
        if width == -1:
            counts.place = Place(float(lat), float(lon), float(at))
        else:
            name = _BY_WIDTH[int(width)]
            counts.count[name], counts.amount[name] = int(n), int(s)


def _record_statements(obs: Observation) -> tuple[Statement, Statement, Statement | None]:
    """The claim of the event id, the bucket upsert, and the conditional move of the place."""
    seen = (
        "INSERT INTO risk_seen (event_id, at) VALUES (:e, :at) "
        "ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
        {"e": obs.event_id, "at": obs.at},
    )
    rows = sorted(
        (key, width, bucket_of(obs.at, width)) for key in set(obs.keys) for _window, width in WINDOWS.values()
    )
    params: dict[str, object] = {"a": obs.amount}
    values = []
    for i, (key, width, bucket) in enumerate(rows):
        params[f"k{i}"], params[f"w{i}"], params[f"b{i}"] = key, width, bucket
        values.append(f"(:k{i}, :w{i}, :b{i}, 1, :a)")
    counts = (
        "INSERT INTO risk_counters (key, width, bucket, count, amount) VALUES "
        + ", ".join(values)
        + " ON CONFLICT (key, width, bucket) DO UPDATE SET "
        "count = risk_counters.count + 1, amount = risk_counters.amount + excluded.amount",
        params,
    )
    if obs.place is None:
        return seen, counts, None
    # One statement for all keys. Conditional: an older transaction committed late never
    # replaces a newer place.
    where: dict[str, object] = {"lat": obs.place[0], "lon": obs.place[1], "at": obs.at}
    places = []
    for i, key in enumerate(sorted(set(obs.keys))):
        where[f"k{i}"] = key
        places.append(f"(:k{i}, :lat, :lon, :at)")
    place = (
        "INSERT INTO risk_places (key, lat, lon, at) VALUES "
        + ", ".join(places)
        + " ON CONFLICT (key) DO UPDATE SET lat = excluded.lat, lon = excluded.lon, "
        "at = excluded.at WHERE risk_places.at <= excluded.at",
        where,
    )
    return seen, counts, place
