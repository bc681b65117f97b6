"""Sessions: opaque tokens, stored as their sha256, for a visitor device or a user.

A token is ``ms_`` and 43 random url-safe characters (256 bits), shown once. A session
belongs to one app and one device id; when the device signed its creation with its
device key, the session is bound to that key and every call using it must be signed
with it. Sessions expire after ``banking_session_days``, are revoked on logout or by an
operator, and are rotated (all of a user's sessions revoked, a new one issued) when the
user's tier changes.

:class:`SessionStore` is the gateway's :class:`mpaas.gateway.operation.SessionResolver`.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import bindparam
from sqlalchemy import select as core_select
from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from mpaas.banking.errors import SessionNotFound
from mpaas.banking.models import BankSession, BankUser
from mpaas.banking.users.tiers import LEVELS, VISITOR
from mpaas.gateway.operation import Principal
from mpaas.identity.models import App
from mpaas.identity.tokens import hash_token
from mpaas.storage.compiled import Compiled
from mpaas.storage.db import Database

TOKEN_PREFIX = "ms_"  # noqa: S105 - a public prefix, not a secret


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


@dataclass(frozen=True)
class Issued:
    token: str
    session_id: int
    tier: str
    expires_at: datetime
    bound: bool

    def to_dict(self) -> dict[str, object]:
        return {
            "session": self.token,
            "tier": self.tier,
            "expires_at": self.expires_at.isoformat(),
            "bound_to_device_key": self.bound,
        }


class SessionStore:
    def __init__(self, db: Database, days: int, clock: Callable[[], float]) -> None:
        self.db, self.lifetime, self.clock = db, timedelta(days=days), clock
        # PostgreSQL: the per-call lookup on asyncpg, one compiled statement (ADR 0019); SQLite
        # keeps the ORM (a lane here would be a third connection and thread per process).
        self.on_driver = not db.is_sqlite
        s, a, u = BankSession.__table__, App.__table__, BankUser.__table__  # type: ignore[attr-defined]
        #: the session, its app, and every column of its user (the Principal carries the user)
        self.user_columns = [c.name for c in u.c]
        query = (
            core_select(s.c.id, s.c.device_id, s.c.revoked_at, s.c.expires_at, s.c.device_kid)
            .add_columns(a.c.name, *u.c)
            .select_from(s.join(a, a.c.id == s.c.app_id).outerjoin(u, u.c.id == s.c.user_pk))
            .where(s.c.token_hash == bindparam("token_hash"))
        )
        self.lookup = Compiled(query, db.engine.dialect)

    def now(self) -> datetime:
        return at(self.clock())

    async def issue(
        self, s: AsyncSession, app_id: int, device: str, user: BankUser | None, device_kid: str | None
    ) -> Issued:
        """A new session inside the caller's transaction."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        row = BankSession(
            token_hash=hash_token(token),
            app_id=app_id,
            device_id=device,
            user_pk=user.id if user is not None else None,
            device_kid=device_kid,
            created_at=self.now(),
            expires_at=self.now() + self.lifetime,
        )
        s.add(row)
        await s.flush()
        assert row.id is not None
        tier = user.tier if user is not None else VISITOR
        return Issued(token, row.id, tier, row.expires_at, device_kid is not None)

    async def revoke_current(self, s: AsyncSession, session_id: int, reason: str) -> None:
        await s.exec(
            update(BankSession)
            .where(col(BankSession.id) == session_id, col(BankSession.revoked_at).is_(None))
            .values(revoked_at=self.now(), revoked_reason=reason)
        )

    async def revoke_user(self, s: AsyncSession, user_pk: int, reason: str) -> None:
        """Revoke every live session of a user (rotation on a tier change, operator action)."""
        await s.exec(
            update(BankSession)
            .where(col(BankSession.user_pk) == user_pk, col(BankSession.revoked_at).is_(None))
            .values(revoked_at=self.now(), revoked_reason=reason)
        )

    async def revoke(self, session_id: int, reason: str) -> None:
        async with self.db.write() as s:
            row = await s.get(BankSession, session_id)
            if row is None:
                raise SessionNotFound(f"session {session_id} not found")
            await self.revoke_current(s, session_id, reason)

    async def resolve(self, app: str, device: str, token: str, device_kid: str | None) -> Principal | None:
        if not token.startswith(TOKEN_PREFIX):
            return None
        token_hash = hash_token(token)
        if self.on_driver:
            got = await self.db.fetchrow(self.lookup, {"token_hash": token_hash})
            if got is None:
                return None
            session_id, device_id, revoked_at, expires_at, kid, app_name = got[:6]
            fields = dict(zip(self.user_columns, got[6:], strict=True))
            user = None if fields["id"] is None else BankUser(**fields)
        else:
            async with self.db.read() as s:
                found = (
                    await s.exec(
                        select(BankSession, App.name, BankUser)
                        .join(App, col(App.id) == col(BankSession.app_id))
                        .outerjoin(BankUser, col(BankUser.id) == col(BankSession.user_pk))
                        .where(BankSession.token_hash == token_hash)
                    )
                ).first()
            if found is None:
                return None
            row, app_name, user = found
            session_id, device_id, revoked_at, expires_at, kid = (
                row.id,
                row.device_id,
                row.revoked_at,
                row.expires_at,
                row.device_kid,
            )
        if app_name != app or device_id != device or revoked_at is not None:
            return None
        if expires_at <= self.now():
            return None
        if kid is not None and kid != device_kid:
            return None
        if user is None or user.tier is None:
            return Principal(str(session_id), LEVELS[VISITOR], VISITOR, None, kid)
        return Principal(str(session_id), LEVELS[user.tier], user.tier, user.public_id, kid, user)

    async def list_for_user(self, user_pk: int) -> list[BankSession]:
        async with self.db.session() as s:
            rows = await s.exec(
                select(BankSession).where(BankSession.user_pk == user_pk).order_by(col(BankSession.id).desc())
            )
            return list(rows.all())
