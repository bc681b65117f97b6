"""Gateway tables: app keys, device keys, and the SQL fallback for nonces and token buckets.

No secret is stored: an app's HMAC secret is derived from the data directory's gateway
master key and the key id (:mod:`mpaas.gateway.keys`), so a copy of the database alone
signs nothing. Device keys are public keys.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Float, UniqueConstraint
from sqlmodel import Field, SQLModel

from mpaas.storage.db import utcnow


class GatewayAppKey(SQLModel, table=True):
    """A per-app HMAC key id; its secret is derived, shown once at creation."""

    __tablename__ = "gateway_app_keys"
    __table_args__ = (UniqueConstraint("app_id", "kid", name="uq_gateway_app_keys_kid"),)

    id: int | None = Field(default=None, primary_key=True)
    app_id: int = Field(foreign_key="apps.id", index=True)
    kid: str = Field(max_length=64)
    created_by: str = Field(max_length=128)
    created_at: datetime = Field(default_factory=utcnow)
    revoked_at: datetime | None = None


class GatewayDeviceKey(SQLModel, table=True):
    """A device's P-256 public key, registered once at first launch (SPKI DER, base64)."""

    __tablename__ = "gateway_device_keys"
    __table_args__ = (UniqueConstraint("app_id", "device_id", name="uq_gateway_device_keys_device"),)

    id: int | None = Field(default=None, primary_key=True)
    app_id: int = Field(foreign_key="apps.id")
    device_id: str = Field(max_length=64)
    kid: str = Field(max_length=64)
    public_key: str = Field(max_length=256)
    created_at: datetime = Field(default_factory=utcnow)
    revoked_at: datetime | None = None


class GatewayNonce(SQLModel, table=True):
    """A used nonce until ``expires_at`` (Unix seconds), when its request's window has closed."""

    __tablename__ = "gateway_nonces"

    key: str = Field(primary_key=True, max_length=200)
    expires_at: float = Field(sa_column=Column(Float, nullable=False, index=True))


class GatewayBucket(SQLModel, table=True):
    """A token bucket: ``tokens`` at ``updated_at``; full again at ``full_at`` (Unix seconds)."""

    __tablename__ = "gateway_buckets"

    key: str = Field(primary_key=True, max_length=200)
    tokens: float = Field(sa_column=Column(Float, nullable=False))
    updated_at: float = Field(sa_column=Column(Float, nullable=False))
    full_at: float = Field(sa_column=Column(Float, nullable=False, index=True))
