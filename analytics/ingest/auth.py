"""Who sends events: write keys (Segment) and deployment keys (native), resolved through a cache.

The hot path must not query the database per request: resolved keys are kept for
:data:`TTL` seconds (so a rotated or expired key stops working within that time), and
unknown keys for :data:`NEGATIVE_TTL`, so a flood of bad keys cannot reach the database
either. Concurrent misses for one key share one query. Keys are held by their sha256.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import select

from mpaas.analytics.errors import RetryLater
from mpaas.analytics.models import WriteKey
from mpaas.identity.models import App
from mpaas.identity.tenancy import resolve_deployment_key
from mpaas.identity.tokens import hash_token
from mpaas.storage.db import Database, utcnow

TTL, NEGATIVE_TTL = 10.0, 2.0
MAX_ENTRIES = 50_000
MAX_KEY = 256


@dataclass(frozen=True, slots=True)
class Sender:
    app: str
    channel: str | None = None


def basic_user(header: str | None) -> str | None:
    """The user name of ``Authorization: Basic base64(user:password)``, or None."""
    if not header or header[:6].lower() != "basic ":
        return None
    return _basic_user(header) if len(header) <= 4 * MAX_KEY else _basic_user.__wrapped__(header)


@functools.lru_cache(maxsize=4096)
def _basic_user(header: str) -> str | None:
    """Decoding is a pure function of the header: an SDK sends the same one every time."""
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except ValueError:  # not base64 (binascii.Error), not ASCII, or not UTF-8 once decoded
        return None
    return decoded.partition(":")[0] or None


class KeyCache:
    def __init__(
        self,
        resolve: Callable[[str], Awaitable[Sender | None]],
        *,
        ttl: float = TTL,
        negative_ttl: float = NEGATIVE_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._resolve = resolve
        self._ttl, self._negative_ttl = ttl, negative_ttl
        self._clock = clock
        self._entries: dict[str, tuple[Sender | None, float]] = {}
        self._inflight: dict[str, asyncio.Future[Sender | None]] = {}

    def clear(self) -> None:
        """Forget every resolved key (this process sees a rotation at once; others within TTL)."""
        self._entries.clear()

    def cached(self, key: str) -> tuple[bool, Sender | None]:
        """``(True, sender)`` when the answer for ``key`` is known without a query (None: an
        unknown key), ``(False, None)`` when :meth:`get` would have to ask the database."""
        if not key or len(key) > MAX_KEY:
            return True, None
        found = self._entries.get(_digest(key))
        if found is not None and found[1] > self._clock():
            return True, found[0]
        return False, None

    async def get(self, key: str) -> Sender | None:
        if not key or len(key) > MAX_KEY:
            return None
        digest = _digest(key)
        found = self._entries.get(digest)
        if found is not None and found[1] > self._clock():
            return found[0]
        pending = self._inflight.get(digest)
        if pending is None:
            pending = asyncio.ensure_future(self._load(digest, key))
            self._inflight[digest] = pending
        return await asyncio.shield(pending)

    async def _load(self, digest: str, key: str) -> Sender | None:
        try:
            sender = await self._resolve(key)
        except (SQLAlchemyError, OSError) as exc:
            raise RetryLater(f"cannot check keys right now ({type(exc).__name__})", retry_after=5) from None
        finally:
            self._inflight.pop(digest, None)
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()  # crude but bounded; refilled from the database on demand
        ttl = self._ttl if sender is not None else self._negative_ttl
        self._entries[digest] = (sender, self._clock() + ttl)
        return sender


@functools.lru_cache(maxsize=4096)
def _digest(key: str) -> str:
    """sha256 of a key, remembered (pure; the entries' TTL lives in :class:`KeyCache`)."""
    return hash_token(key)


def write_key_resolver(db: Database) -> Callable[[str], Awaitable[Sender | None]]:
    async def resolve(key: str) -> Sender | None:
        async with db.session() as s:
            query = select(WriteKey, App).join(App).where(WriteKey.key_hash == hash_token(key))
            found = (await s.exec(query)).first()
        if found is None:
            return None
        row, app = found
        if row.expires_at is not None and row.expires_at <= utcnow():
            return None
        return Sender(app.name)

    return resolve


def deployment_key_resolver(db: Database) -> Callable[[str], Awaitable[Sender | None]]:
    async def resolve(key: str) -> Sender | None:
        ref = await resolve_deployment_key(db, key)
        return None if ref is None else Sender(ref.app.name, ref.channel.name)

    return resolve


def now_ms() -> int:
    return time.time_ns() // 1_000_000
