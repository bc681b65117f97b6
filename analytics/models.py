"""SQL tables of the analytics domain: write keys, the event catalogue, deletion requests.

Events themselves live in the event store (DuckDB), not here: this database holds
only what admins manage, so that it stays small and every change is audited.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from mpaas.storage.db import utcnow

#: Catalogue modes: how the loader treats properties a definition does not declare.
MODES = ("record", "warn", "reject")


class WriteKey(SQLModel, table=True):
    """A Segment write key of an app. Only the sha256 of the key is stored.

    A rotated key keeps working until ``expires_at`` (a grace period for apps in the
    field that still carry it); ``None`` means it does not expire.
    """

    __tablename__ = "analytics_write_keys"

    id: int | None = Field(default=None, primary_key=True)
    app_id: int = Field(foreign_key="apps.id", index=True)
    key_hash: str = Field(index=True, unique=True, max_length=64)
    prefix: str = Field(max_length=16)
    label: str = Field(default="", max_length=128)
    created_by: str = Field(default="", max_length=128)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime | None = None


class EventDefinition(SQLModel, table=True):
    """A declared tracking point of an app (``mpaas events define``)."""

    __tablename__ = "analytics_event_defs"
    __table_args__ = (UniqueConstraint("app_id", "name", name="uq_analytics_event_defs_app_name"),)

    id: int | None = Field(default=None, primary_key=True)
    app_id: int = Field(foreign_key="apps.id", index=True)
    name: str = Field(max_length=128)
    description: str = Field(default="", max_length=4000)
    #: A JSON Schema (draft 2020-12) for the event's properties.
    properties_schema: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    owner: str = Field(default="", max_length=128)
    mode: str = Field(default="record", max_length=16)
    #: Property paths (``a`` or ``a.b``) that may hold card, ID or phone numbers unmasked.
    pii_allowed: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    updated_by: str = Field(default="", max_length=128)


class ForgetRequest(SQLModel, table=True):
    """A request to delete a user's events and identity links (PIPL's right to deletion).

    The event store's writer carries it out and sets ``done_at``; events of that user
    received before ``requested_at`` and still in the spool are dropped when loaded.
    ``app_id`` None means every app.
    """

    __tablename__ = "analytics_forget_requests"

    id: int | None = Field(default=None, primary_key=True)
    app_id: int | None = Field(default=None, foreign_key="apps.id", index=True)
    user_id: str = Field(max_length=256)
    requested_at: datetime = Field(default_factory=utcnow)
    requested_by: str = Field(default="", max_length=128)
    done_at: datetime | None = Field(default=None, index=True)
    events_deleted: int | None = None
    links_deleted: int | None = None
