"""Admission after the signature: single use of the nonce, then the token buckets.

Both must hold across processes and hosts, so both live in a shared store: Redis
(:mod:`mpaas.gateway.redis_admission`, one round trip per call) when ``MPAAS_REDIS_URL``
is set, else the SQL database (:class:`SqlAdmission`, one transaction per call).

A call names one nonce key and the buckets it draws from (app, device, user, and the
operation's own limit). The nonce is claimed first; a used nonce refuses the call and
draws nothing. Buckets are all-or-nothing: the call takes one token from each, or, when
any is empty, from none, and learns how long until that bucket has a token again. A
refused call has still spent its nonce (a signed request is good for one try).

Buckets live in seconds of the caller's clock (``now``), so hosts must keep time (NTP),
as the clock window demands anyway; a bucket never moves backwards in time.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from mpaas.storage.db import Database

log = logging.getLogger("mpaas.gateway")
UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


@dataclass(frozen=True)
class Rate:
    """``count`` requests per ``per_seconds``, with bursts of up to ``count``."""

    count: int
    per_seconds: float

    @classmethod
    def parse(cls, value: str) -> Rate:
        m = re.fullmatch(r"([1-9][0-9]{0,8})/([smhd])", value.strip())
        if m is None:
            raise ValueError(f"{value!r} is not a rate like 20/s, 600/m or 5/h")
        return cls(int(m.group(1)), UNITS[m.group(2)])

    def __str__(self) -> str:
        unit = {v: k for k, v in UNITS.items()}.get(self.per_seconds)
        return f"{self.count}/{unit}" if unit else f"{self.count}/{self.per_seconds:g}s"

    @property
    def refill(self) -> float:
        """Tokens per second."""
        return self.count / self.per_seconds


@dataclass(slots=True)
class Bucket:
    """A named token bucket; ``scope`` (app, device, user, operation) is what a refusal reports."""

    key: str
    scope: str
    rate: Rate


@dataclass(slots=True)
class Verdict:
    fresh: bool
    limited: str | None = None
    retry_after: float = 0.0

    @property
    def admitted(self) -> bool:
        return self.fresh and self.limited is None


class NonceStore(Protocol):
    async def claim(self, key: str, expires_at: float, now: float) -> bool:
        """True when the nonce was unused (now it is used until ``expires_at``)."""


class RateLimiter(Protocol):
    async def take(self, buckets: Sequence[Bucket], now: float) -> Verdict:
        """One token from each bucket, or none and the scope of the empty one."""


class Admission(NonceStore, RateLimiter, Protocol):
    """Both checks in one round trip, the gateway's hot path."""

    async def admit(
        self, nonce_key: str, expires_at: float, buckets: Sequence[Bucket], now: float
    ) -> Verdict:
        """Claim the nonce, then take from the buckets."""

    async def sweep(self, now: float) -> None:
        """Forget expired nonces and full buckets (a no-op where the store expires keys)."""

    async def close(self) -> None: ...


def draw(tokens: float, updated: float, rate: Rate, now: float) -> tuple[float, float]:
    """The bucket's level at ``now`` (refilled, capped) and the time it is measured at."""
    if now > updated:
        tokens = min(float(rate.count), tokens + (now - updated) * rate.refill)
        updated = now
    return tokens, updated


class SqlAdmission:
    """Nonces and buckets in two tables, changed in one transaction per call.

    The nonce insert comes first, so on SQLite the transaction holds the write lock
    before it reads a bucket; on PostgreSQL the buckets are locked ``FOR UPDATE`` in
    key order, so concurrent calls on shared buckets cannot deadlock.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self._lock_clause = "" if db.is_sqlite else " FOR UPDATE"

    async def claim(self, key: str, expires_at: float, now: float) -> bool:
        async with self.db.write() as s:
            return await self._claim(await s.connection(), key, expires_at, now)

    async def take(self, buckets: Sequence[Bucket], now: float) -> Verdict:
        async with self.db.write() as s:
            return await self._take(await s.connection(), buckets, now)

    async def admit(
        self, nonce_key: str, expires_at: float, buckets: Sequence[Bucket], now: float
    ) -> Verdict:
        async with self.db.write() as s:
            conn = await s.connection()
            if not await self._claim(conn, nonce_key, expires_at, now):
                return Verdict(False)
            return await self._take(conn, buckets, now)

    @staticmethod
    async def _claim(conn: AsyncConnection, key: str, expires_at: float, now: float) -> bool:
        # A stale row (its window closed) may be reused; a live one means a replay.
        result = await conn.execute(
            text(
                "INSERT INTO gateway_nonces (key, expires_at) VALUES (:k, :e) "
                "ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at "
                "WHERE gateway_nonces.expires_at < :now RETURNING key"
            ),
            {"k": key, "e": expires_at, "now": now},
        )
        return result.first() is not None

    async def _take(self, conn: AsyncConnection, buckets: Sequence[Bucket], now: float) -> Verdict:
        if not buckets:
            return Verdict(True)
        ordered = sorted(buckets, key=lambda b: b.key)
        for b in ordered:
            await conn.execute(
                text(
                    "INSERT INTO gateway_buckets (key, tokens, updated_at, full_at) "
                    "VALUES (:k, :t, :u, :u) ON CONFLICT (key) DO NOTHING"
                ),
                {"k": b.key, "t": float(b.rate.count), "u": now},
            )
        keys = ", ".join(f":k{i}" for i in range(len(ordered)))
        rows = await conn.execute(
            text(
                f"SELECT key, tokens, updated_at FROM gateway_buckets WHERE key IN ({keys}) "
                f"ORDER BY key{self._lock_clause}"
            ),
            {f"k{i}": b.key for i, b in enumerate(ordered)},
        )
        state = {row[0]: (float(row[1]), float(row[2])) for row in rows}
        levels = []
        for b in buckets:  # the caller's order decides which scope a refusal names
            tokens, updated = draw(*state[b.key], b.rate, now)
            if tokens < 1.0:
                return Verdict(True, b.scope, (1.0 - tokens) / b.rate.refill)
            levels.append((b, tokens - 1.0, updated))
        for b, tokens, updated in levels:
            await conn.execute(
                text("UPDATE gateway_buckets SET tokens = :t, updated_at = :u, full_at = :f WHERE key = :k"),
                {
                    "k": b.key,
                    "t": tokens,
                    "u": updated,
                    "f": updated + (b.rate.count - tokens) / b.rate.refill,
                },
            )
        return Verdict(True)

    async def sweep(self, now: float) -> None:
        async with self.db.write() as s:
            conn = await s.connection()
            await conn.execute(text("DELETE FROM gateway_nonces WHERE expires_at < :now"), {"now": now})
            await conn.execute(text("DELETE FROM gateway_buckets WHERE full_at < :now"), {"now": now})

    async def close(self) -> None:
        return None


async def sweep_forever(admission: Admission, clock: Callable[[], float], interval: float = 60.0) -> None:
    """Run :meth:`Admission.sweep` every ``interval`` seconds until cancelled."""
    while True:
        await asyncio.sleep(interval)
        try:
            await admission.sweep(clock())
        except Exception:
            log.exception("gateway sweep failed")


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
