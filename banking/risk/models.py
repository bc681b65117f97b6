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
    """One immutable version of a scene's rules and thresholds. ``status`` moves draft →
    review → approved → active → retired (four eyes: whoever submitted it can neither approve
    nor activate it); the document never changes."""

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
    submitted_by: str | None = Field(default=None, max_length=128)
    submitted_at: datetime | None = None
    approved_by: str | None = Field(default=None, max_length=128)
    approved_at: datetime | None = None
    activated_by: str | None = Field(default=None, max_length=128)


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
    #: ``name@version`` of the scoring model that scored it, when one did.
    model_version: str | None = Field(default=None, max_length=160)


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


class RiskCase(SQLModel, table=True):
    """A review or deny decision waiting for (or given) an analyst's label."""

    __tablename__ = "risk_cases"
    __table_args__ = (
        UniqueConstraint("decision_id", name="uq_risk_cases_decision"),
        Index("ix_risk_cases_queue", "status", "created_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    decision_id: str = Field(max_length=32)
    scene: str = Field(max_length=32)
    subject: str | None = Field(default=None, max_length=128)
    action: str = Field(max_length=16)
    score: float
    #: entity → id as the decision saw them (user, device, counterparty, ...), for snoozes.
    entities: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    #: ``open`` until labelled, then ``reviewed``.
    status: str = Field(default="open", max_length=16)
    #: ``fraud`` or ``not_fraud`` once reviewed.
    label: str | None = Field(default=None, max_length=16)
    note: str = Field(default="", max_length=1024)
    labelled_by: str | None = Field(default=None, max_length=128)
    labelled_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)


class RiskSnooze(SQLModel, table=True):
    """One rule ignored for one entity of one scene until ``expires_at`` (from a reviewed case)."""

    __tablename__ = "risk_snoozes"
    __table_args__ = (UniqueConstraint("scene", "rule", "entity", "value", name="uq_risk_snoozes"),)

    id: int | None = Field(default=None, primary_key=True)
    scene: str = Field(max_length=32)
    rule: str = Field(max_length=64)
    entity: str = Field(max_length=16)
    value: str = Field(max_length=128)
    case_id: int
    reason: str = Field(default="", max_length=256)
    expires_at: datetime
    created_by: str = Field(max_length=128)
    created_at: datetime = Field(default_factory=utcnow)


class RiskShadow(SQLModel, table=True):
    """The draft rule set version evaluated beside a scene's live one, with no effect."""

    __tablename__ = "risk_shadows"

    scene: str = Field(primary_key=True, max_length=32)
    version: int
    set_by: str = Field(max_length=128)
    set_at: datetime = Field(default_factory=utcnow)


class RiskShadowResult(SQLModel, table=True):
    """What the shadow rule set would have answered for one live decision."""

    __tablename__ = "risk_shadow_results"
    __table_args__ = (Index("ix_risk_shadow_results_scene", "scene", "shadow_version", "agree"),)

    decision_id: str = Field(primary_key=True, max_length=32)
    scene: str = Field(max_length=32)
    shadow_version: int
    live_action: str = Field(max_length=16)
    shadow_action: str = Field(max_length=16)
    live_score: float
    shadow_score: float
    agree: bool
    created_at: datetime = Field(default_factory=utcnow)
