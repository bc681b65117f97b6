"""Tables of the push domain: devices, messages, the delivery queue and receipts.

A message expands (in batches, inside the database) into one :class:`PushDelivery`
row per targeted device and channel. The delivery row *is* the queue entry: workers
claim due rows with a lease (``claimed_by``/``lease_until``), send them, and record the
outcome on the same row, so nothing lives only in a worker's memory.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, ForeignKey, Index, Integer, UniqueConstraint
from sqlmodel import Field, SQLModel

from mpaas.storage.db import utcnow

PROVIDERS = ("apns", "fcm", "ws")
NATIVE_PROVIDERS = ("apns", "fcm")
#: Delivery states. ``targeted = pending + sent + failed`` holds by construction.
PENDING, SENT, FAILED = "pending", "sent", "failed"
#: Fallback policies: which channel first, and which one when no arrival comes in time.
FALLBACKS = ("native", "ws", "ws_then_native", "native_then_ws")
RECEIPT_KINDS = ("arrived", "opened")

#: Delivery ids grow fast; BIGINT on PostgreSQL, SQLite's INTEGER is already 64-bit (rowid).
BigId = BigInteger().with_variant(Integer(), "sqlite")


class PushDevice(SQLModel, table=True):
    """One app install. ``provider`` is its native channel (``ws`` = only the self-built one).

    Every device can also be reached over the WebSocket channel, authenticated by the
    secret returned at registration (only its sha256 is stored).
    """

    __tablename__ = "push_devices"
    __table_args__ = (
        UniqueConstraint("app_id", "device_id", name="uq_push_devices_app_device"),
        # Tokens are unique per provider within an app; NULL (ws-only, moved away) repeats freely.
        UniqueConstraint("app_id", "provider", "token", name="uq_push_devices_token"),
        Index("ix_push_devices_app_user", "app_id", "user_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    app_id: int = Field(foreign_key="apps.id")
    device_id: str = Field(max_length=128)
    provider: str = Field(max_length=8)
    token: str | None = Field(default=None, max_length=512)
    user_id: str | None = Field(default=None, max_length=128)
    locale: str | None = Field(default=None, max_length=35)
    app_version: str | None = Field(default=None, max_length=64)
    os: str | None = Field(default=None, max_length=64)
    secret_hash: str = Field(max_length=64)
    enabled: bool = True
    disabled_reason: str | None = Field(default=None, max_length=32)
    #: Last time the app registered this token; an APNs 410 older than this is stale.
    token_registered_at: datetime = Field(default_factory=utcnow)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class PushDeviceTag(SQLModel, table=True):
    """A device's tag; a table (not JSON) so that tag audiences are an indexed join."""

    __tablename__ = "push_device_tags"
    __table_args__ = (Index("ix_push_device_tags_tag", "tag", "device_pk"),)

    device_pk: int = Field(
        sa_column=Column(Integer, ForeignKey("push_devices.id", ondelete="CASCADE"), primary_key=True)
    )
    tag: str = Field(max_length=64, primary_key=True)


class PushAppSettings(SQLModel, table=True):
    """Per-app push defaults (fallback policy); provider credentials are global for now."""

    __tablename__ = "push_app_settings"

    app_id: int = Field(foreign_key="apps.id", primary_key=True)
    fallback: str = Field(default="native", max_length=16)
    ack_timeout_seconds: int = 30
    updated_at: datetime = Field(default_factory=utcnow)


class PushMessage(SQLModel, table=True):
    """What to send and to whom. ``status``: scheduled → expanding → queued, or ``undeliverable``.

    ``undeliverable``: when it expanded, no enabled device of the app matched the audience on
    a channel a provider is configured for (or on any channel): nothing was queued.
    """

    __tablename__ = "push_messages"
    __table_args__ = (
        Index("ix_push_messages_app", "app_id", "id"),
        Index("ix_push_messages_due", "status", "send_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    app_id: int = Field(foreign_key="apps.id")
    audience: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    title: str | None = Field(default=None, max_length=256)
    body: str | None = Field(default=None, max_length=2048)
    #: ``{"de": {"title": ..., "body": ...}}``; the device's locale (or its language) picks one.
    locales: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    priority: str = Field(default="high", max_length=8)
    push_type: str = Field(default="alert", max_length=16)
    collapse_id: str | None = Field(default=None, max_length=64)
    ttl_seconds: int
    send_at: datetime
    expires_at: datetime
    fallback: str = Field(max_length=16)
    ack_timeout_seconds: int
    status: str = Field(default="scheduled", max_length=16)
    #: Expansion cursor: the highest device pk already expanded.
    expanded_through: int = 0
    created_by: str = Field(max_length=128)
    created_at: datetime = Field(default_factory=utcnow)


class PushDelivery(SQLModel, table=True):
    """One (message, device, channel) send: the durable queue entry and its outcome."""

    __tablename__ = "push_deliveries"
    __table_args__ = (
        UniqueConstraint("message_id", "device_pk", "channel", name="uq_push_deliveries_target"),
        Index("ix_push_deliveries_due", "status", "channel", "next_attempt_at"),
        Index("ix_push_deliveries_device", "device_pk", "channel", "status"),
        Index("ix_push_deliveries_ack", "ack_deadline"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    message_id: int = Field(foreign_key="push_messages.id")
    device_pk: int = Field(foreign_key="push_devices.id")
    channel: str = Field(max_length=8)
    status: str = Field(default=PENDING, max_length=8)
    reason: str | None = Field(default=None, max_length=64)
    #: Claims so far (each is one attempt at the provider, or one lost to a crash).
    attempts: int = 0
    #: Attempts that failed for a passing reason (429, 5xx, no answer, a dead worker): retried
    #: until the TTL; ``attempts - transient_failures`` is what ``max_attempts`` caps.
    transient_failures: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    next_attempt_at: datetime
    last_attempt_at: datetime | None = None
    expires_at: datetime
    claimed_by: str | None = Field(default=None, max_length=64)
    lease_until: datetime | None = None
    #: Set while a fallback is armed: no arrival by then → a follow-up on the other channel.
    ack_deadline: datetime | None = None
    sent_at: datetime | None = None
    finished_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)


class PushReceipt(SQLModel, table=True):
    """An ``arrived`` or ``opened`` report from the app; one per (delivery, kind)."""

    __tablename__ = "push_receipts"

    delivery_id: int = Field(
        sa_column=Column(BigId, ForeignKey("push_deliveries.id"), primary_key=True, autoincrement=False)
    )
    kind: str = Field(max_length=8, primary_key=True)
    at: datetime = Field(default_factory=utcnow)
