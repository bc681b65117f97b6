"""Velocity counters: counts and amounts of committed transactions per key in sliding
windows, and the place of each key's last transaction.

A key is ``<entity>:<id>`` (``user:u_1``, ``device:d_9``). Each committed transaction adds
to one bucket per window width: 5-minute buckets serve the 1-hour window, 1-hour buckets
the 24-hour window, 1-day buckets the 30-day window. A window sums the buckets that end
after ``now - window``, so "1 h" covers the last 60 to 65 minutes, "24 h" the last 24 to
25 hours, "30 d" the last 30 to 31 days: a bucket never falls out early.

``record`` counts a transaction once: the first call for an event id claims it (a
conditional insert); a repeated ``committed()`` after a retry adds nothing.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from mpaas.storage.db import Database

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
    """Buckets as rows of ``risk_counters``, one conditional upsert statement per transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def read(self, keys: Sequence[str], now: float, places: bool) -> dict[str, Counts]:
        result = {key: Counts() for key in keys}
        if not keys:
            return result
        async with one_statement(self.db, write=False) as conn:
            await SqlCounterStore._read_into(conn, result, now, places)
        return result

    @staticmethod
    async def _read_into(conn: AsyncConnection, result: dict[str, Counts], now: float, places: bool) -> None:
        params: dict[str, object] = {f"k{i}": key for i, key in enumerate(result)}
        key_list = ", ".join(f":k{i}" for i in range(len(result)))
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
        by_width = {width: name for name, (_window, width) in WINDOWS.items()}
        for key, width, n, s, lat, lon, at in await conn.execute(text(sql), params):
            counts = result[key]
            if width == -1:
                counts.place = Place(float(lat), float(lon), float(at))
            else:
                name = by_width[int(width)]
                counts.count[name], counts.amount[name] = int(n), int(s)

    async def record(self, obs: Observation) -> bool:
        async with self.db.write() as s:
            conn = await s.connection()
            claimed = await conn.execute(
                text(
                    "INSERT INTO risk_seen (event_id, at) VALUES (:e, :at) "
                    "ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
                ),
                {"e": obs.event_id, "at": obs.at},
            )
            if claimed.first() is None:
                return False
            rows = sorted(
                (key, width, bucket_of(obs.at, width))
                for key in set(obs.keys)
                for _window, width in WINDOWS.values()
            )
            params: dict[str, object] = {"a": obs.amount}
            values = []
            for i, (key, width, bucket) in enumerate(rows):
                params[f"k{i}"], params[f"w{i}"], params[f"b{i}"] = key, width, bucket
                values.append(f"(:k{i}, :w{i}, :b{i}, 1, :a)")
            await conn.execute(
                text(
                    "INSERT INTO risk_counters (key, width, bucket, count, amount) VALUES "
                    + ", ".join(values)
                    + " ON CONFLICT (key, width, bucket) DO UPDATE SET "
                    "count = risk_counters.count + 1, amount = risk_counters.amount + excluded.amount"
                ),
                params,
            )
            if obs.place is not None:
                await self._place(conn, obs.keys, obs.place, obs.at)
            return True

    @staticmethod
    async def _place(
        conn: AsyncConnection, keys: Sequence[str], place: tuple[float, float], at: float
    ) -> None:
        # One statement for all keys. Conditional: an older transaction committed late never
        # replaces a newer place.
        params: dict[str, object] = {"lat": place[0], "lon": place[1], "at": at}
        values = []
        for i, key in enumerate(sorted(set(keys))):
            params[f"k{i}"] = key
            values.append(f"(:k{i}, :lat, :lon, :at)")
        await conn.execute(
            text(
                "INSERT INTO risk_places (key, lat, lon, at) VALUES "
                + ", ".join(values)
                + " ON CONFLICT (key) DO UPDATE SET lat = excluded.lat, lon = excluded.lon, "
                "at = excluded.at WHERE risk_places.at <= excluded.at"
            ),
            params,
        )

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
        return None
