"""Admin API tokens and role checks.

A token is ``mpaas_`` followed by 40 random url-safe characters. Only its sha256 is
stored: tokens are high-entropy, so a fast hash is enough and lookups stay indexed.
``admin`` may do everything; other roles are listed per endpoint.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import select

from mpaas.errors import NotFound, Unauthorized, ValidationError
from mpaas.identity.audit import Actor, record
from mpaas.identity.models import ApiToken
from mpaas.identity.roles import ROLES
from mpaas.identity.tenancy import get_app
from mpaas.storage.db import Database, as_stored_utc, utcnow

TOKEN_PREFIX = "mpaas_"  # noqa: S105 - a public prefix, not a secret
LAST_USED_RESOLUTION = timedelta(minutes=5)
MIN_LIFETIME = timedelta(minutes=1)
MAX_LIFETIME = timedelta(days=3660)


@dataclass(frozen=True)
class Principal:
    token_id: int
    name: str
    role: str
    expires_at: datetime | None = None
    #: ``token`` (a bearer token), or ``console`` (a web console session; ``token_id`` is the account's id).
    kind: str = "token"
    #: The apps a scoped token may act on; None for every app.
    apps: tuple[str, ...] | None = None

    @property
    def actor(self) -> str:
        if self.kind == "console":
            return f"console:{self.name}"
        return f"token:{self.token_id}:{self.name}"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token_secret() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(30)


def check_role(role: str) -> str:
    if role not in ROLES:
        raise ValidationError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
    return role


def check_expiry(expires_at: datetime | None, now: datetime) -> datetime | None:
    """An expiry must be aware, at least a minute and at most ten years away."""
    if expires_at is None:
        return None
    if expires_at.tzinfo is None:
        raise ValidationError("expires_at needs a UTC offset, e.g. 2027-01-31T00:00:00Z")
    if expires_at - now < MIN_LIFETIME:
        raise ValidationError("expires_at must be at least a minute in the future")
    if expires_at - now > MAX_LIFETIME:
        raise ValidationError("expires_at must be at most ten years away")
    return expires_at


def is_expired(row: ApiToken, now: datetime) -> bool:
    return row.expires_at is not None and as_stored_utc(row.expires_at) <= now


async def create_token(
    db: Database,
    actor: Actor,
    *,
    name: str,
    role: str,
    expires_at: datetime | None = None,
    apps: list[str] | None = None,
) -> tuple[ApiToken, str]:
    """Create a token; the secret is returned once and never stored.

    ``apps`` limits it to those apps (each must exist); None lets it act on every app.
    """
    check_role(role)
    expires_at = check_expiry(expires_at, utcnow())
    if apps is not None:
        apps = sorted(set(apps))
        if not apps:
            raise ValidationError("a scoped token needs at least one app")
        for app_name in apps:
            await get_app(db, app_name)  # 404 for an app that does not exist
    secret = new_token_secret()
    row = ApiToken(
        name=name,
        role=role,
        token_hash=hash_token(secret),
        prefix=secret[:12],
        created_by=actor.name,
        expires_at=expires_at,
        apps=apps,
    )
    detail = {
        "role": role,
        "name": name,
        "expires_at": expires_at.isoformat() if expires_at else None,
        "apps": apps,
    }
    async with db.write() as s:
        s.add(row)
        await s.flush()
        record(s, actor, "token.create", f"token:{row.id}", detail=detail)
    return row, secret


async def revoke_token(db: Database, actor: Actor, token_id: int) -> ApiToken:
    async with db.write() as s:
        row = await s.get(ApiToken, token_id)
        if row is None:
            raise NotFound(f"token {token_id} not found", code="token_not_found")
        if row.revoked_at is None:
            row.revoked_at = utcnow()
            s.add(row)
            record(s, actor, "token.revoke", f"token:{token_id}")
        return row


async def list_tokens(db: Database) -> list[ApiToken]:
    async with db.session() as s:
        return list((await s.exec(select(ApiToken).order_by(ApiToken.id))).all())  # type: ignore[arg-type]


async def authenticate(db: Database, header: str | None, *, now: datetime | None = None) -> Principal:
    if not header:
        raise Unauthorized("missing Authorization: Bearer token", code="missing_token")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Authorization must be 'Bearer <token>'", code="invalid_token")
    digest = hash_token(token.strip())
    async with db.session() as s:
        row = (await s.exec(select(ApiToken).where(ApiToken.token_hash == digest))).first()
    if row is None or row.revoked_at is not None or row.id is None:
        raise Unauthorized("token is invalid or revoked", code="invalid_token")
    now = now or utcnow()
    if is_expired(row, now):
        raise Unauthorized("token has expired; create a new one", code="token_expired")
    if row.last_used_at is None or now - row.last_used_at > LAST_USED_RESOLUTION:
        async with db.write() as s:
            fresh = await s.get(ApiToken, row.id)
            if fresh is not None:
                fresh.last_used_at = now
                s.add(fresh)
    expires_at = row.expires_at and as_stored_utc(row.expires_at)
    apps = tuple(row.apps) if row.apps is not None else None
    return Principal(row.id, row.name, row.role, expires_at, apps=apps)
