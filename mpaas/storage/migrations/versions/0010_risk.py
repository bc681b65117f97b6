"""banking risk: rule sets and decision records

Revision ID: 0010_risk
Revises: 0009_ledger
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0010_risk"
down_revision: str | None = "0009_ledger"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _text(length: int) -> sqlmodel.sql.sqltypes.AutoString:
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def upgrade() -> None:
    op.create_table(
        "risk_rulesets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scene", _text(32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", _text(16), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("digest", _text(64), nullable=False),
        sa.Column("created_by", _text(128), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("activated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("scene", "version", name="uq_risk_rulesets_version"),
    )
    with op.batch_alter_table("risk_rulesets", schema=None) as batch_op:
        batch_op.create_index("ix_risk_rulesets_status", ["scene", "status"], unique=False)

    op.create_table(
        "risk_decisions",
        sa.Column("id", _text(32), nullable=False),
        sa.Column("scene", _text(32), nullable=False),
        sa.Column("subject", _text(128), nullable=True),
        sa.Column("ruleset_version", _text(64), nullable=False),
        sa.Column("action", _text(16), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("outcomes", sa.JSON(), nullable=False),
        sa.Column("inputs", sa.JSON(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("risk_decisions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_risk_decisions_subject"), ["subject"], unique=False)
        batch_op.create_index(batch_op.f("ix_risk_decisions_created_at"), ["created_at"], unique=False)

    op.create_table(
        "risk_list_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", _text(16), nullable=False),
        sa.Column("entity", _text(16), nullable=False),
        sa.Column("value", _text(128), nullable=False),
        sa.Column("reason", _text(256), nullable=False),
        sa.Column("expires_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("created_by", _text(128), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("kind", "entity", "value", name="uq_risk_list_entries"),
    )
    op.create_table(
        "risk_counters",
        sa.Column("key", _text(160), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("bucket", sa.BigInteger(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("key", "width", "bucket"),
    )
    op.create_table(
        "risk_places",
        sa.Column("key", _text(160), nullable=False),
        sa.Column("lat", sa.Float(), nullable=False),
        sa.Column("lon", sa.Float(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "risk_seen",
        sa.Column("event_id", _text(128), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("event_id"),
    )
    with op.batch_alter_table("risk_seen", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_risk_seen_at"), ["at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("risk_seen", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_risk_seen_at"))
    op.drop_table("risk_seen")
    op.drop_table("risk_places")
    op.drop_table("risk_counters")
    op.drop_table("risk_list_entries")
    with op.batch_alter_table("risk_decisions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_risk_decisions_created_at"))
        batch_op.drop_index(batch_op.f("ix_risk_decisions_subject"))
    op.drop_table("risk_decisions")
    with op.batch_alter_table("risk_rulesets", schema=None) as batch_op:
        batch_op.drop_index("ix_risk_rulesets_status")
    op.drop_table("risk_rulesets")
