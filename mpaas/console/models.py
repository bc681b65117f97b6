"""Console tables: accounts (argon2id password hashes), sessions and sign-in failures."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from mpaas.storage.db import utcnow


class ConsoleAccount(SQLModel, table=True):
    """A person who signs in to the web console, with one of the admin roles."""

    __tablename__ = "console_accounts"

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(index=True, unique=True, max_length=64)
    role: str = Field(max_length=32)
    #: An argon2id PHC string; the password itself is never stored.
    password_hash: str = Field(max_length=256)
    created_by: str = Field(default="", max_length=128)
    created_at: datetime = Field(default_factory=utcnow)
    password_changed_at: datetime = Field(default_factory=utcnow)
    disabled_at: datetime | None = None
    last_sign_in_at: datetime | None = None


class ConsoleSession(SQLModel, table=True):
    """A signed-in browser. Only the sha256 of the cookie's opaque id is stored."""

    __tablename__ = "console_sessions"

    id: int | None = Field(default=None, primary_key=True)
    session_hash: str = Field(index=True, unique=True, max_length=64)
    account_id: int = Field(foreign_key="console_accounts.id", index=True)
    #: The synchroniser token every unsafe cookie request must echo in X-CSRF-Token.
    csrf_token: str = Field(max_length=64)
    locale: str = Field(default="en", max_length=8)
    created_at: datetime = Field(default_factory=utcnow)
    last_seen_at: datetime = Field(default_factory=utcnow)
    #: The absolute end (created_at + MPAAS_CONSOLE_MAX_HOURS), whatever the activity.
    expires_at: datetime


class ConsoleSignInFailures(SQLModel, table=True):
    """Recent failed sign-ins for one user name (known or not), for the lock-out."""

    __tablename__ = "console_sign_in_failures"

    username: str = Field(primary_key=True, max_length=64)
    failures: int = 0
    first_failed_at: datetime = Field(default_factory=utcnow)
    last_failed_at: datetime = Field(default_factory=utcnow)
    locked_until: datetime | None = None
