"""Keys the gateway verifies with: per-app HMAC secrets and per-device P-256 public keys.

App secrets are derived: ``HMAC-SHA256(master key, "mpaas-gateway-v1|app-secret|APP|KID")``.
The master key is 32 random bytes in ``<data dir>/keys/gateway-master.key`` (mode 0600),
made on first use; every server process and host must hold the same file. The database
holds only key ids, so a stolen database signs nothing, and revoking a key id is one row.

Device keys are registered once per (app, device id): a device id's key is never
replaced, so a leaked app secret cannot take over a device that has a key. Lookups on
the hot path are cached for ``gateway_cache_seconds`` (a revocation reaches every
process within that time).
"""

from __future__ import annotations

import asyncio
import base64
import enum
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import bindparam
from sqlalchemy import select as core_select
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from mpaas.errors import ConfigError, Conflict, NotFound
from mpaas.gateway.models import GatewayAppKey, GatewayDeviceKey
from mpaas.gateway.signing import key_fingerprint, load_device_key
from mpaas.identity.audit import Actor, record
from mpaas.identity.models import App
from mpaas.identity.tenancy import get_app
from mpaas.storage.compiled import Compiled
from mpaas.storage.db import Database, utcnow
from mpaas.storage.keyfiles import load_or_create_key

MASTER_KEY_FILE = "gateway-master.key"
T = TypeVar("T")
Loader = Callable[[], Awaitable[T | None]]
log = logging.getLogger("mpaas.gateway")


class MasterKey:
    """The root of derived gateway secrets (app HMAC secrets, upstream header keys, code peppers)."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) != 32:
            raise ConfigError("the gateway master key must be 32 bytes")
        self._secret = secret

    @classmethod
    def load_or_create(cls, keys_dir: Path) -> MasterKey:
        return cls(load_or_create_key(keys_dir, MASTER_KEY_FILE))

    def derive(self, purpose: str, *parts: str) -> bytes:
        label = "|".join(("mpaas-gateway-v1", purpose, *parts)).encode()
        return hmac.new(self._secret, label, hashlib.sha256).digest()


class Miss(enum.Enum):
    """Not in the cache, or stale: ask the store."""

    MISS = 0


MISS = Miss.MISS


@dataclass(frozen=True)
class DeviceKey:
    app: str
    device: str
    kid: str
    key: ec.EllipticCurvePublicKey
    #: A revoked device is refused outright, whatever it signs with.
    revoked: bool = False


class TtlCache(Generic[T]):
    """A small expiring map with single-flight loading; cleared whole past ``limit`` entries.

    Concurrent misses of one key wait for one load, so a burst of calls from a new
    device makes one query, not one per call. An expired entry is still answered while
    one refresh runs in the background (no call waits for a query it has cached), so a
    change reaches a process within ``seconds`` plus one query.
    """

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic, limit: int = 100_000):
        self.seconds, self.clock, self.limit = seconds, clock, limit
        self._items: dict[tuple[str, ...], tuple[float, T | None]] = {}
        self._loading: dict[tuple[str, ...], asyncio.Future[T | None]] = {}

    def fresh(self, key: tuple[str, ...]) -> T | Miss | None:
        """The cached value while it is fresh, else MISS (the hot path: no coroutine, no closure)."""
        hit = self._items.get(key)
        if hit is None or hit[0] < self.clock():
            return MISS
        return hit[1]

    async def fetch(self, key: tuple[str, ...], load: Loader[T]) -> T | None:
        hit = self._items.get(key)
        if hit is not None:
            if hit[0] < self.clock() and key not in self._loading:
                # Stale: answer with it while one refresh runs, so no call waits for the query.
                self._start(key, load)
            return hit[1]
        pending = self._loading.get(key) or self._start(key, load)
        return await asyncio.shield(pending)

    def _start(self, key: tuple[str, ...], load: Loader[T]) -> asyncio.Future[T | None]:
        task = asyncio.ensure_future(self._load(key, load))
        self._loading[key] = task
        return task

    async def _load(self, key: tuple[str, ...], load: Loader[T]) -> T | None:
        try:
            value = await load()
        finally:
            self._loading.pop(key, None)
        self.put(key, value)
        return value

    def put(self, key: tuple[str, ...], value: T | None) -> None:
        if self.seconds <= 0:
            return
        if len(self._items) >= self.limit:
            self._items.clear()
        self._items[key] = (self.clock() + self.seconds, value)

    def drop(self, key: tuple[str, ...]) -> None:
        self._items.pop(key, None)


def _log_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("gateway key lookup failed", exc_info=task.exception())


class KeyStore:
    def __init__(self, db: Database, master: MasterKey, cache_seconds: float) -> None:
        self.db, self.master = db, master
        self._secrets: TtlCache[bytes] = TtlCache(cache_seconds)
        self._devices: TtlCache[DeviceKey] = TtlCache(cache_seconds)
        #: Key lookups run before any rate limit (the signature comes first), so calls naming
        #: unknown devices or key ids may miss the cache at will: they share a few connections.
        self._lookups = asyncio.Semaphore(4)
        # PostgreSQL: a device key misses the cache on most signed calls of a large fleet, so
        # its read is one compiled statement on asyncpg (ADR 0019), not an ORM session
        keys, apps = GatewayDeviceKey.__table__, App.__table__  # type: ignore[attr-defined]
        self._device_read = (
            None
            if db.is_sqlite
            else Compiled(
                core_select(keys.c.kid, keys.c.public_key, keys.c.revoked_at)
                .select_from(keys.join(apps, apps.c.id == keys.c.app_id))
                .where(apps.c.name == bindparam("app"), keys.c.device_id == bindparam("device")),
                db.engine.dialect,
            )
        )

    def derive_app_secret(self, app: str, kid: str) -> bytes:
        return self.master.derive("app-secret", app, kid)

    async def app_secret(self, app: str, kid: str) -> bytes | None:
        """The HMAC secret of an active app key, or None (unknown app, unknown or revoked kid)."""
        found = self._secrets.fresh((app, kid))
        if found is not MISS:
            return found
        return await self._secrets.fetch((app, kid), lambda: self._load_secret(app, kid))

    async def _load_secret(self, app: str, kid: str) -> bytes | None:
        async with self._lookups, self.db.read() as s:
            row = (
                await s.exec(
                    select(GatewayAppKey.id)
                    .join(App, col(App.id) == col(GatewayAppKey.app_id))
                    .where(App.name == app, GatewayAppKey.kid == kid, col(GatewayAppKey.revoked_at).is_(None))
                )
            ).first()
        return self.derive_app_secret(app, kid) if row is not None else None

    async def device_key(self, app: str, device: str) -> DeviceKey | None:
        """The device's key (perhaps revoked), or None; absent keys are cached too."""
        found = self._devices.fresh((app, device))
        if found is not MISS:
            return found
        return await self._devices.fetch((app, device), lambda: self._load_device(app, device))

    async def _load_device(self, app: str, device: str) -> DeviceKey | None:
        found: tuple[Any, ...] | None
        async with self._lookups:
            if self._device_read is not None:
                found = await self.db.fetchrow(self._device_read, {"app": app, "device": device})
            else:
                async with self.db.read() as s:
                    row = (
                        await s.exec(
                            select(GatewayDeviceKey)
                            .join(App, col(App.id) == col(GatewayDeviceKey.app_id))
                            .where(App.name == app, GatewayDeviceKey.device_id == device)
                        )
                    ).first()
                found = None if row is None else (row.kid, row.public_key, row.revoked_at)
        if found is None:
            return None
        kid, public_key, revoked_at = found
        public = load_device_key(base64.b64decode(public_key))
        return DeviceKey(app, device, kid, public, revoked=revoked_at is not None)

    async def register_device(self, app: str, device: str, spki_der: bytes) -> DeviceKey:
        """Register a device's key once. The same key again is a no-op; another key is a conflict."""
        key = load_device_key(spki_der)
        kid = key_fingerprint(spki_der)
        app_row = await get_app(self.db, app)
        assert app_row.id is not None
        try:
            async with self.db.write() as s:
                row = (
                    await s.exec(
                        select(GatewayDeviceKey).where(
                            GatewayDeviceKey.app_id == app_row.id, GatewayDeviceKey.device_id == device
                        )
                    )
                ).first()
                if row is not None and (row.kid != kid or row.revoked_at is not None):
                    raise Conflict("this device id already has a key", code="device_key_exists")
                if row is None:
                    s.add(
                        GatewayDeviceKey(
                            app_id=app_row.id,
                            device_id=device,
                            kid=kid,
                            public_key=base64.b64encode(spki_der).decode(),
                        )
                    )
        except IntegrityError:
            raise Conflict("this device id already has a key", code="device_key_exists") from None
        found = DeviceKey(app, device, kid, key)
        self._devices.put((app, device), found)
        return found

    async def revoke_device(self, actor: Actor, app: str, device: str) -> None:
        """Revoke a device's key for good: that device id can no longer sign or get a new key."""
        app_row = await get_app(self.db, app)
        async with self.db.write() as s:
            row = (
                await s.exec(
                    select(GatewayDeviceKey).where(
                        GatewayDeviceKey.app_id == app_row.id, GatewayDeviceKey.device_id == device
                    )
                )
            ).first()
            if row is None:
                raise NotFound("no key is registered for this device", code="device_key_not_found")
            if row.revoked_at is None:
                row.revoked_at = utcnow()
                s.add(row)
                record(s, actor, "gateway.device_key.revoke", f"device:{app}/{device}", app=app)
        self._devices.drop((app, device))

    async def create_app_key(self, actor: Actor, app: str) -> tuple[GatewayAppKey, str]:
        """A new app key id and its secret (base64), shown once."""
        app_row = await get_app(self.db, app)
        assert app_row.id is not None
        kid = "k" + secrets.token_hex(6)
        row = GatewayAppKey(app_id=app_row.id, kid=kid, created_by=actor.name)
        async with self.db.write() as s:
            s.add(row)
            record(s, actor, "gateway.app_key.create", f"gateway-key:{app}/{kid}", app=app)
        return row, base64.b64encode(self.derive_app_secret(app, kid)).decode()

    async def list_app_keys(self, app: str) -> list[GatewayAppKey]:
        app_row = await get_app(self.db, app)
        async with self.db.session() as s:
            rows = await s.exec(
                select(GatewayAppKey)
                .where(GatewayAppKey.app_id == app_row.id)
                .order_by(col(GatewayAppKey.id))
            )
            return list(rows.all())

    async def revoke_app_key(self, actor: Actor, app: str, kid: str) -> GatewayAppKey:
        app_row = await get_app(self.db, app)
        async with self.db.write() as s:
            row = (
                await s.exec(
                    select(GatewayAppKey).where(GatewayAppKey.app_id == app_row.id, GatewayAppKey.kid == kid)
                )
            ).first()
            if row is None:
                raise NotFound(f"app key {kid!r} not found", code="gateway_key_not_found")
            if row.revoked_at is None:
                row.revoked_at = utcnow()
                s.add(row)
                record(s, actor, "gateway.app_key.revoke", f"gateway-key:{app}/{kid}", app=app)
        self._secrets.drop((app, kid))
        return row
