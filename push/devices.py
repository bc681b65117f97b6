"""Device registration and device authentication.

A device is identified by the app (from its channel's deployment key) and the app's own
install id (``device_id``). The first registration returns a random *device secret*;
only its sha256 is stored. Later calls about that device (re-registration, unregister,
the WebSocket channel, receipts) must present it, so knowing a device id is not enough
to take over its push stream. An unregistered device may register afresh (new secret).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from mpaas.identity import tenancy
from mpaas.identity.models import App
from mpaas.push.errors import DeviceAuthFailed, DeviceNotFound, InvalidDeploymentKey, InvalidPushRequest
from mpaas.push.models import NATIVE_PROVIDERS, PROVIDERS, PushDevice, PushDeviceTag
from mpaas.storage.db import Database, utcnow

DEVICE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
TAG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
LOCALE_RE = re.compile(r"^[A-Za-z]{2,8}([_-][A-Za-z0-9]{1,8}){0,3}$")
APNS_TOKEN_RE = re.compile(r"^[0-9A-Fa-f]{8,200}$")
FCM_TOKEN_RE = re.compile(r"^[\x21-\x7e]{1,512}$")
MAX_TAGS = 50

#: Why a device stopped receiving pushes.
UNREGISTERED, TOKEN_MOVED, INVALID_TOKEN = "unregistered", "token_moved", "invalid_token"


@dataclass(frozen=True)
class DeviceSpec:
    device_id: str
    provider: str
    token: str | None
    user_id: str | None
    tags: tuple[str, ...] | None
    locale: str | None
    app_version: str | None
    os: str | None


@dataclass(frozen=True)
class Registration:
    device: PushDevice
    tags: tuple[str, ...]
    #: The new device secret, when one was minted (first registration); shown once.
    secret: str | None
    created: bool


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _opt_str(
    data: Mapping[str, Any], name: str, max_len: int, pattern: re.Pattern[str] | None = None
) -> str | None:
    value = data.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > max_len:
        raise InvalidPushRequest(f"field {name!r} must be a string of at most {max_len} characters")
    if pattern is not None and not pattern.fullmatch(value):
        raise InvalidPushRequest(f"field {name!r} has an invalid format")
    return value


def parse_device_spec(data: Mapping[str, Any]) -> DeviceSpec:
    device_id = data.get("device_id")
    if not isinstance(device_id, str) or not DEVICE_ID_RE.fullmatch(device_id):
        raise InvalidPushRequest("field 'device_id' must be 1-128 letters, digits or . _ : -")
    provider = data.get("provider")
    if not isinstance(provider, str) or provider not in PROVIDERS:
        raise InvalidPushRequest(f"field 'provider' must be one of {', '.join(PROVIDERS)}")
    token = _opt_str(data, "token", 512)
    if provider in NATIVE_PROVIDERS:
        pattern = APNS_TOKEN_RE if provider == "apns" else FCM_TOKEN_RE
        if token is None or not pattern.fullmatch(token):
            raise InvalidPushRequest(f"a valid 'token' is required for provider {provider}")
        if provider == "apns":
            token = token.lower()
    elif token is not None:
        raise InvalidPushRequest("provider 'ws' takes no token")
    raw_tags = data.get("tags")
    tags: tuple[str, ...] | None = None
    if raw_tags is not None:
        if not isinstance(raw_tags, list) or len(raw_tags) > MAX_TAGS:
            raise InvalidPushRequest(f"field 'tags' must be a list of at most {MAX_TAGS} strings")
        if not all(isinstance(t, str) and TAG_RE.fullmatch(t) for t in raw_tags):
            raise InvalidPushRequest("every tag must be 1-64 letters, digits or . _ : -")
        tags = tuple(sorted(set(raw_tags)))
    return DeviceSpec(
        device_id=device_id,
        provider=provider,
        token=token,
        user_id=_opt_str(data, "user_id", 128),
        tags=tags,
        locale=_opt_str(data, "locale", 35, LOCALE_RE),
        app_version=_opt_str(data, "app_version", 64),
        os=_opt_str(data, "os", 64),
    )


async def app_for_key(db: Database, deployment_key: str | None) -> App:
    if not deployment_key:
        raise InvalidDeploymentKey("a deployment key is required (X-Deployment-Key)")
    ref = await tenancy.resolve_deployment_key(db, deployment_key)
    if ref is None:
        raise InvalidDeploymentKey("unknown deployment key")
    return ref.app


def _secret_matches(device: PushDevice, secret: str | None) -> bool:
    return secret is not None and hmac.compare_digest(device.secret_hash, hash_secret(secret))


async def _find(session: AsyncSession, app_id: int, device_id: str) -> PushDevice | None:
    query = select(PushDevice).where(PushDevice.app_id == app_id, PushDevice.device_id == device_id)
    return (await session.exec(query)).first()


async def register(db: Database, app: App, spec: DeviceSpec, secret: str | None) -> Registration:
    """Create or refresh a device. A token another device holds moves here; the old binding is disabled."""
    try:
        return await _register_once(db, app, spec, secret)
    except IntegrityError:
        # A concurrent registration took the same token or device id; the retry sees it.
        return await _register_once(db, app, spec, secret)


async def _register_once(db: Database, app: App, spec: DeviceSpec, secret: str | None) -> Registration:
    assert app.id is not None
    now = utcnow()
    async with db.write() as s:
        device = await _find(s, app.id, spec.device_id)
        new_secret: str | None = None
        created = device is None
        if device is None:
            new_secret = secrets.token_urlsafe(32)
            device = PushDevice(
                app_id=app.id,
                device_id=spec.device_id,
                provider=spec.provider,
                secret_hash=hash_secret(new_secret),
            )
        elif not _secret_matches(device, secret):
            if device.enabled or device.disabled_reason != UNREGISTERED:
                raise DeviceAuthFailed(
                    "this device is registered; present its secret (X-Mpaas-Device-Secret)"
                )
            new_secret = secrets.token_urlsafe(32)
            device.secret_hash = hash_secret(new_secret)
        if spec.token is not None:
            await s.exec(
                update(PushDevice)
                .where(
                    col(PushDevice.app_id) == app.id,
                    col(PushDevice.provider) == spec.provider,
                    col(PushDevice.token) == spec.token,
                    col(PushDevice.device_id) != spec.device_id,
                )
                .values(token=None, enabled=False, disabled_reason=TOKEN_MOVED, updated_at=now)
            )
        device.provider = spec.provider
        device.token = spec.token
        device.user_id = spec.user_id
        device.locale = spec.locale
        device.app_version = spec.app_version
        device.os = spec.os
        device.enabled = True
        device.disabled_reason = None
        device.token_registered_at = now
        device.updated_at = now
        s.add(device)
        await s.flush()
        assert device.id is not None
        if spec.tags is not None:
            await s.exec(delete(PushDeviceTag).where(col(PushDeviceTag.device_pk) == device.id))
            s.add_all(PushDeviceTag(device_pk=device.id, tag=t) for t in spec.tags)
            tags = spec.tags
        else:
            tags = await _tags(s, device.id)
    return Registration(device=device, tags=tags, secret=new_secret, created=created)


async def _tags(session: AsyncSession, device_pk: int) -> tuple[str, ...]:
    rows = await session.exec(
        select(PushDeviceTag.tag).where(PushDeviceTag.device_pk == device_pk).order_by(col(PushDeviceTag.tag))
    )
    return tuple(rows.all())


async def authenticate(db: Database, app: App, device_id: str | None, secret: str | None) -> PushDevice:
    """The enabled device these credentials belong to; 401 for any mismatch (no oracle)."""
    if not device_id or not secret:
        raise DeviceAuthFailed("device id and device secret are required")
    assert app.id is not None
    async with db.session() as s:
        device = await _find(s, app.id, device_id)
    if device is None or not _secret_matches(device, secret) or device.disabled_reason == UNREGISTERED:
        raise DeviceAuthFailed("unknown device or wrong device secret")
    return device


async def unregister(db: Database, app: App, device_id: str, secret: str | None) -> None:
    assert app.id is not None
    async with db.write() as s:
        device = await _find(s, app.id, device_id)
        if device is None:
            raise DeviceNotFound(f"device {device_id!r} is not registered")
        if not _secret_matches(device, secret):
            raise DeviceAuthFailed("unknown device or wrong device secret")
        device.enabled = False
        device.disabled_reason = UNREGISTERED
        device.token = None
        device.updated_at = utcnow()
        s.add(device)


def device_dict(device: PushDevice, tags: Sequence[str]) -> dict[str, Any]:
    return {
        "device_id": device.device_id,
        "provider": device.provider,
        "user_id": device.user_id,
        "tags": list(tags),
        "locale": device.locale,
        "app_version": device.app_version,
        "os": device.os,
        "enabled": device.enabled,
        "registered_at": device.token_registered_at,
    }
