"""Tables of the banking domain: users and their tiers, sessions, one-time codes, the tier
audit trail, operations declared at run time, and catalogue versions.

Nothing here holds a secret or a full identifier in clear: session tokens and one-time
codes are stored as keyed hashes, identity numbers as a keyed hash (to find duplicates),
cards as their last four digits and the verifier's reference.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from mpaas.storage.db import utcnow


class BankUser(SQLModel, table=True):
    __tablename__ = "bank_users"
    __table_args__ = (
        UniqueConstraint("app_id", "phone", name="uq_bank_users_phone"),
        UniqueConstraint("app_id", "identity_hash", name="uq_bank_users_identity"),
    )

    id: int | None = Field(default=None, primary_key=True)
    #: The id apps and operators see (``u_`` + random hex); never the row id.
    public_id: str = Field(max_length=32, unique=True)
    app_id: int = Field(foreign_key="apps.id")
    phone: str = Field(max_length=16)
    tier: str = Field(default="registered", max_length=16)
    name_masked: str | None = Field(default=None, max_length=64)
    identity_hash: str | None = Field(default=None, max_length=64)
    identity_ref: str | None = Field(default=None, max_length=128)
    card_last4: str | None = Field(default=None, max_length=4)
    card_bank: str | None = Field(default=None, max_length=64)
    card_ref: str | None = Field(default=None, max_length=128)
    branch_verified_at: datetime | None = None
    branch_verified_by: str | None = Field(default=None, max_length=128)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class BankSession(SQLModel, table=True):
    """An opaque session token (only its keyed hash), for a visitor device or a user."""

    __tablename__ = "bank_sessions"
    __table_args__ = (Index("ix_bank_sessions_user", "user_pk", "revoked_at"),)

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(max_length=64, unique=True)
    app_id: int = Field(foreign_key="apps.id")
    device_id: str = Field(max_length=64)
    user_pk: int | None = Field(default=None, foreign_key="bank_users.id")
    #: The device key (kid) the session is bound to: calls must be signed with it.
    device_kid: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    revoked_at: datetime | None = None
    revoked_reason: str | None = Field(default=None, max_length=32)


class BankOneTimeCode(SQLModel, table=True):
    __tablename__ = "bank_one_time_codes"
    __table_args__ = (Index("ix_bank_one_time_codes_phone", "app_id", "phone", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    app_id: int = Field(foreign_key="apps.id")
    phone: str = Field(max_length=16)
    device_id: str = Field(max_length=64)
    code_hash: str = Field(max_length=64)
    attempts: int = 0
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    consumed_at: datetime | None = None


class BankTierEvent(SQLModel, table=True):
    """The audit trail of tier changes, written in the transaction that changes the tier."""

    __tablename__ = "bank_tier_events"

    id: int | None = Field(default=None, primary_key=True)
    user_pk: int = Field(foreign_key="bank_users.id", index=True)
    from_tier: str = Field(max_length=16)
    to_tier: str = Field(max_length=16)
    actor: str = Field(max_length=128)
    reason: str = Field(max_length=64)
    evidence: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    at: datetime = Field(default_factory=utcnow)


class BankOperation(SQLModel, table=True):
    """An operation added at run time (``kind = upstream``), or the on/off switch of any other."""

    __tablename__ = "bank_operations"
    __table_args__ = (UniqueConstraint("name", "version", name="uq_bank_operations_name"),)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=255)
    version: int
    kind: str = Field(max_length=16)
    enabled: bool = True
    url: str | None = Field(default=None, max_length=2048)
    input_schema: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    min_tier: str = Field(default="registered", max_length=16)
    session_required: bool = True
    rate: str | None = Field(default=None, max_length=16)
    idempotent: bool = False
    timeout_seconds: float | None = None
    summary: str = Field(default="", max_length=256)
    created_by: str = Field(max_length=128)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class BankEpoch(SQLModel, table=True):
    """Bumped on every change of operations or catalogues; other processes poll it."""

    __tablename__ = "bank_epochs"

    name: str = Field(primary_key=True, max_length=32)
    epoch: int = 0


class BankCatalog(SQLModel, table=True):
    """One version of an app's catalogue; versions are never changed, only added."""

    __tablename__ = "bank_catalogs"

    app_id: int = Field(foreign_key="apps.id", primary_key=True)
    version: int = Field(primary_key=True)
    document: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_by: str = Field(max_length=128)
    created_at: datetime = Field(default_factory=utcnow)
