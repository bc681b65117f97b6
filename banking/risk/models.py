"""SQL tables of the risk engine: rule set versions, decision records, lists, and the
velocity counters of the SQL counter store.

Rule sets are never changed once stored: a change is a new version, activated in the
same transaction that retires the previous one. A decision row holds everything needed
to replay it: the values the rules read, the rule set version, each rule's outcome.
Counter times are Unix seconds (``float``/``BigInteger``), like the gateway's buckets.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from mpaas.storage.db import utcnow


class RiskRuleSet(SQLModel, table=True):
    """One immutable version of a scene's rules and thresholds; ``status`` is active or retired
    (draft and review come with four-eyes activation, issue 19)."""

    __tablename__ = "risk_rulesets"
    __table_args__ = (
        UniqueConstraint("scene", "version", name="uq_risk_rulesets_version"),
        Index("ix_risk_rulesets_status", "scene", "status"),
    )

    id: int | None = Field(default=None, primary_key=True)
    scene: str = Field(max_length=32)
    version: int
    status: str = Field(max_length=16)
    #: ``{"thresholds": {...}, "rules": [...]}`` exactly as validated.
    document: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    digest: str = Field(max_length=64)
    created_by: str = Field(max_length=128)
    created_at: datetime = Field(default_factory=utcnow)
    activated_at: datetime | None = None


class RiskDecision(SQLModel, table=True):
    """A decision as it was made, written before the engine answers."""

    __tablename__ = "risk_decisions"

    id: str = Field(primary_key=True, max_length=32)
    scene: str = Field(max_length=32)
    #: What was decided on (the transfer id for a transfer), to find its decisions.
    subject: str | None = Field(default=None, max_length=128, index=True)
    ruleset_version: str = Field(max_length=64)
    action: str = Field(max_length=16)
    score: float
    reasons: list[Any] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    #: rule name → ``hit``, ``miss`` or ``not_evaluated``.
    outcomes: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    #: The context the rules read, as read (features included).
    inputs: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, index=True)


class RiskListEntry(SQLModel, table=True):
    """A device, IP, account, counterparty or user on a deny, allow or watch list."""

    __tablename__ = "risk_list_entries"
    __table_args__ = (UniqueConstraint("kind", "entity", "value", name="uq_risk_list_entries"),)

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=16)
    entity: str = Field(max_length=16)
    value: str = Field(max_length=128)
    reason: str = Field(default="", max_length=256)
    expires_at: datetime | None = None
    created_by: str = Field(max_length=128)
    created_at: datetime = Field(default_factory=utcnow)


class RiskCounter(SQLModel, table=True):
    """Count and amount of committed transactions of one key (``user:u_1``) in one time
    bucket of one width (300 s, 3,600 s or 86,400 s); windows sum their buckets."""

    __tablename__ = "risk_counters"

    key: str = Field(primary_key=True, max_length=160)
    width: int = Field(primary_key=True)
    bucket: int = Field(primary_key=True, sa_type=BigInteger)
    count: int = 0
    amount: int = Field(default=0, sa_type=BigInteger)


class RiskPlace(SQLModel, table=True):
    """Where and when a key (a user) last committed a transaction: impossible travel."""

    __tablename__ = "risk_places"

    key: str = Field(primary_key=True, max_length=160)
    lat: float
    lon: float
    at: float


class RiskSeen(SQLModel, table=True):
    """Transactions already counted, so a repeated ``committed()`` counts once."""

    __tablename__ = "risk_seen"

    event_id: str = Field(primary_key=True, max_length=128)
    at: float = Field(index=True)
