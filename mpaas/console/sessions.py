"""Console sign-in, sessions and the lock-out.

The cookie holds an opaque 256-bit id; only its sha256 is stored, so a copy of the
database opens no session. A session ends after ``idle`` without a request or ``max_age``
after sign-in, whichever comes first; last activity is written at most once a minute.

Lock-out, per user name (known or not): the fifth failure within 15 minutes locks the
name for 30 s, and each further failure doubles the wait, up to 15 minutes. While
locked every attempt, even with the right password, is refused with the time left.
The count is forgotten 15 minutes after the last failure or the end of the last lock.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, delete, select

from mpaas.console.accounts import USERNAME_RE, target
from mpaas.console.errors import SessionExpired, SignInFailed, SignInLocked
from mpaas.console.models import ConsoleAccount, ConsoleSession, ConsoleSignInFailures
from mpaas.console.passwords import Passwords
from mpaas.errors import Unauthorized
from mpaas.identity.audit import Actor, record
from mpaas.identity.tokens import hash_token
from mpaas.storage.db import Database, as_stored_utc, utcnow

LOCK_AFTER = 5
FAILURE_WINDOW = timedelta(minutes=15)
FIRST_LOCK = timedelta(seconds=30)
MAX_LOCK = timedelta(minutes=15)
TOUCH_RESOLUTION = timedelta(minutes=1)
LOCALES = ("en", "zh-CN")
SECRET_RE = re.compile(r"[A-Za-z0-9_-]{43}")


class ConsoleClock:
    """UTC now; tests pin it (``fixed``) to drive idle and absolute expiry and the lock-out."""

    def __init__(self) -> None:
        self.fixed: datetime | None = None

    def __call__(self) -> datetime:
        return utcnow() if self.fixed is None else self.fixed


@dataclass(frozen=True)
class SignedIn:
    account: ConsoleAccount
    session: ConsoleSession

    def body(self) -> dict[str, str]:
        """What the session API answers: the page needs the CSRF token and the locale."""
        return {
            "user": self.account.username,
            "role": self.account.role,
            "csrf_token": self.session.csrf_token,
            "locale": self.session.locale,
        }


def lock_for(failures: int) -> timedelta | None:
    """How long the name is locked after its ``failures``-th failure in a row."""
    if failures < LOCK_AFTER:
        return None
    return min(FIRST_LOCK * 2 ** min(failures - LOCK_AFTER, 16), MAX_LOCK)


class Console:
    """Sign-in, session look-up and sign-out over the console tables."""

    def __init__(self, db: Database, passwords: Passwords, *, idle: timedelta, max_age: timedelta) -> None:
        self.db = db
        self.passwords = passwords
        self.idle = idle
        self.max_age = max_age
        self.clock = ConsoleClock()

    async def sign_in(
        self, username: str, password: str, locale: str, request_id: str | None
    ) -> tuple[SignedIn, str]:
        """A new session and its cookie secret, or SignInFailed / SignInLocked."""
        name = username.strip().lower()
        if not USERNAME_RE.fullmatch(name):
            raise SignInFailed("wrong user name or password")
        actor = Actor(f"console:{name}", request_id)
        now = self.clock()
        await self._refuse_if_locked(name, now, actor)
        async with self.db.session() as s:
            account = (await s.exec(select(ConsoleAccount).where(ConsoleAccount.username == name))).first()
        stored = account.password_hash if account is not None else None
        if not await self.passwords.verify(stored, password) or account is None or account.disabled_at:
            await self._record_failure(name, now, actor)
            raise SignInFailed("wrong user name or password")
        rehashed = await self.passwords.hash(password) if self.passwords.needs_rehash(stored or "") else None
        secret = secrets.token_urlsafe(32)
        session = ConsoleSession(
            session_hash=hash_token(secret),
            account_id=account.id or 0,
            csrf_token=secrets.token_urlsafe(32),
            locale=locale,
            created_at=now,
            last_seen_at=now,
            expires_at=now + self.max_age,
        )
        async with self.db.write() as s:
            await s.exec(delete(ConsoleSignInFailures).where(col(ConsoleSignInFailures.username) == name))
            fresh = await s.get(ConsoleAccount, account.id)
            if fresh is None or fresh.disabled_at is not None:
                raise SignInFailed("wrong user name or password")
            fresh.last_sign_in_at = now
            if rehashed is not None:
                fresh.password_hash = rehashed
            s.add(fresh)
            s.add(session)
            record(s, actor, "console.sign_in", target(name), detail={"role": fresh.role})
            await s.flush()
            signed = SignedIn(fresh, session)
        return signed, secret

    async def _refuse_if_locked(self, name: str, now: datetime, actor: Actor) -> None:
        async with self.db.session() as s:
            row = await s.get(ConsoleSignInFailures, name)
        if row is None or row.locked_until is None or as_stored_utc(row.locked_until) <= now:
            return
        left = (as_stored_utc(row.locked_until) - now).total_seconds()
        async with self.db.write() as s:
            record(s, actor, "console.sign_in_refused", target(name), detail={"locked_seconds": round(left)})
        raise SignInLocked(left)

    async def _record_failure(self, name: str, now: datetime, actor: Actor) -> None:
        """Count one failure (and audit it); raise SignInLocked when it locks the name."""
        lock: timedelta | None = None
        for attempt in range(2):  # a concurrent first failure may insert the same row
            try:
                lock = await self._count_failure(name, now, actor)
                break
            except IntegrityError:
                if attempt:
                    raise
        if lock is not None:
            raise SignInLocked(lock.total_seconds())

    async def _count_failure(self, name: str, now: datetime, actor: Actor) -> timedelta | None:
        async with self.db.write() as s:
            row = await s.get(ConsoleSignInFailures, name, with_for_update=True)
            if row is None:
                row = ConsoleSignInFailures(
                    username=name, failures=0, first_failed_at=now, last_failed_at=now
                )
            locked_until = row.locked_until or row.last_failed_at
            quiet_since = max(as_stored_utc(row.last_failed_at), as_stored_utc(locked_until))
            if now - quiet_since >= FAILURE_WINDOW:
                row.failures, row.first_failed_at, row.locked_until = 0, now, None
            row.failures += 1
            row.last_failed_at = now
            lock = lock_for(row.failures)
            row.locked_until = now + lock if lock is not None else None
            s.add(row)
            detail = {"failures": row.failures, "locked_seconds": int(lock.total_seconds()) if lock else 0}
            record(s, actor, "console.sign_in_failed", target(name), detail=detail)
        return lock

    async def current(self, secret: str) -> SignedIn:
        """The signed-in session of a cookie; 401 when unknown, ended, expired or disabled."""
        if not SECRET_RE.fullmatch(secret):
            raise Unauthorized("the console session is not valid; sign in", code="invalid_session")
        query = (
            select(ConsoleSession, ConsoleAccount)
            .join(ConsoleAccount, col(ConsoleAccount.id) == col(ConsoleSession.account_id))
            .where(ConsoleSession.session_hash == hash_token(secret))
        )
        async with self.db.session() as s:
            found = (await s.exec(query)).first()
        if found is None:
            raise Unauthorized("the console session is not valid; sign in", code="invalid_session")
        session, account = found
        now = self.clock()
        idle_end = as_stored_utc(session.last_seen_at) + self.idle
        if account.disabled_at is not None or as_stored_utc(session.expires_at) <= now or idle_end <= now:
            await self._end(session.id)
            raise SessionExpired("the console session has expired; sign in again")
        if now - as_stored_utc(session.last_seen_at) >= TOUCH_RESOLUTION:
            async with self.db.write() as s:
                fresh = await s.get(ConsoleSession, session.id)
                if fresh is not None:
                    fresh.last_seen_at = now
                    s.add(fresh)
            session.last_seen_at = now
        return SignedIn(account, session)

    async def set_locale(self, signed: SignedIn, locale: str) -> SignedIn:
        async with self.db.write() as s:
            fresh = await s.get(ConsoleSession, signed.session.id)
            if fresh is None:
                raise SessionExpired("the console session has ended; sign in again")
            fresh.locale = locale
            s.add(fresh)
            await s.flush()
            return SignedIn(signed.account, fresh)

    async def sign_out(self, signed: SignedIn, request_id: str | None) -> None:
        actor = Actor(f"console:{signed.account.username}", request_id)
        async with self.db.write() as s:
            await s.exec(delete(ConsoleSession).where(col(ConsoleSession.id) == signed.session.id))
            record(s, actor, "console.sign_out", target(signed.account.username))

    async def _end(self, session_id: int | None) -> None:
        async with self.db.write() as s:
            await s.exec(delete(ConsoleSession).where(col(ConsoleSession.id) == session_id))


def preferred_locale(accept_language: str) -> str:
    """zh-CN when an Accept-Language header prefers Chinese to English, else English."""
    best, best_q = "en", -1.0
    for part in accept_language[:512].split(","):
        tag, _, params = part.strip().partition(";")
        match = re.fullmatch(r"\s*q=([01](?:\.[0-9]{0,3})?)\s*", params) if params else None
        if params and match is None:
            continue
        q = float(match.group(1)) if match is not None else 1.0
        lang = tag.strip().lower()
        if lang.startswith(("zh", "en")) and q > best_q:
            best, best_q = ("zh-CN" if lang.startswith("zh") else "en"), q
    return best
