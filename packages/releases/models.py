"""Tables of releases: what a channel offers, its rollout state, counters and reports.

A *lineage* is one (app, kind, package id): the versions of one offline package,
bundle or hotfix. A release puts one package of a lineage onto a channel. The newest
release a device is eligible for is what it should run (see :mod:`mpaas.packages.releases.rollout`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from mpaas.storage.db import utcnow

STATUSES = ("active", "paused", "halted", "rolled_back")
#: Rollout percentages are stored in basis points: 10 % is 1000 of 10,000 buckets.
BUCKETS = 10_000


class Release(SQLModel, table=True):
    """One package (or the binary's embedded version) offered on one channel."""

    __tablename__ = "releases"
    __table_args__ = (
        UniqueConstraint("channel_id", "kind", "package_id", "seq", name="uq_releases_label"),
        Index("ix_releases_lineage", "channel_id", "kind", "package_id", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    app_id: int = Field(foreign_key="apps.id")
    channel_id: int = Field(foreign_key="channels.id")
    kind: str = Field(max_length=16)
    package_id: str = Field(max_length=128)
    #: 1, 2, 3 … per (channel, lineage); the CodePush label is ``v{seq}``.
    seq: int
    #: None for a rollback to the version embedded in the binary.
    package_pk: int | None = Field(default=None, foreign_key="packages.id")
    target_binary_range: str | None = Field(default=None, max_length=256)
    mandatory: bool = False
    description: str = Field(default="", max_length=4000)
    starts_at: datetime = Field(default_factory=utcnow)
    rollout_bp: int = BUCKETS
    #: Buckets are hashed from (device id, seed); a rollback re-uses its target's seed.
    seed: int = 0
    whitelist: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    rules: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    status: str = Field(default="active", max_length=16)
    status_reason: str = Field(default="", max_length=512)
    #: The release this one rolls back (devices holding its package always get this one).
    rollback_of: int | None = None
    promoted_from: int | None = None
    halt_failure_rate: float = 0.2
    halt_min_reports: int = 50
    created_by: str = Field(max_length=128)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class ReleaseCounter(SQLModel, table=True):
    """Per-release counters, only ever changed by ``UPDATE … SET n = n + k``."""

    __tablename__ = "release_counters"

    release_id: int = Field(foreign_key="releases.id", primary_key=True)
    checks: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    downloads: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    download_failures: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    installs: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    failures: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    rollbacks: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    active_devices: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))


class ReleaseEvent(SQLModel, table=True):
    """A client status report; the unique event id makes a retried report count once."""

    __tablename__ = "release_events"
    __table_args__ = (UniqueConstraint("app_id", "event_id", name="uq_release_events_event"),)

    id: int | None = Field(default=None, primary_key=True)
    app_id: int = Field(foreign_key="apps.id")
    event_id: str = Field(max_length=128)
    release_id: int = Field(foreign_key="releases.id", index=True)
    event: str = Field(max_length=32)
    device_id: str = Field(default="", max_length=128)
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    received_at: datetime = Field(default_factory=utcnow)


class ReleaseEpoch(SQLModel, table=True):
    """A counter per channel, bumped in every transaction that changes its releases.

    Every server process polls these rows and rebuilds the in-memory index of a
    channel whose epoch moved.
    """

    __tablename__ = "release_epochs"

    channel_id: int = Field(foreign_key="channels.id", primary_key=True)
    epoch: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))


class CodePushDiff(SQLModel, table=True):
    """A CodePush diff zip (changed files + ``hotcodepush.json``), built once and kept for gc."""

    __tablename__ = "codepush_diffs"
    __table_args__ = (UniqueConstraint("to_pk", "from_hash", name="uq_codepush_diffs_pair"),)

    id: int | None = Field(default=None, primary_key=True)
    to_pk: int = Field(foreign_key="packages.id")
    from_hash: str = Field(max_length=64)
    sha256: str = Field(max_length=64)
    size: int = Field(sa_column=Column(BigInteger, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
