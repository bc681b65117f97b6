"""risk decision centre: rule-set reviews, cases, snoozes

Revision ID: 0013_risk_review
Revises: 0012_console
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0013_risk_review"
down_revision: str | None = "0012_console"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _text(length: int) -> sqlmodel.sql.sqltypes.AutoString:
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def _time() -> sqlmodel.sql.sqltypes.UTCDateTime:
    return sqlmodel.sql.sqltypes.UTCDateTime()


def upgrade() -> None:
    with op.batch_alter_table("risk_rulesets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("submitted_by", _text(128), nullable=True))
        batch_op.add_column(sa.Column("submitted_at", _time(), nullable=True))
        batch_op.add_column(sa.Column("approved_by", _text(128), nullable=True))
        batch_op.add_column(sa.Column("approved_at", _time(), nullable=True))
        batch_op.add_column(sa.Column("activated_by", _text(128), nullable=True))
    with op.batch_alter_table("risk_decisions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("model_version", _text(160), nullable=True))

    op.create_table(
        "risk_cases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("decision_id", _text(32), nullable=False),
        sa.Column("scene", _text(32), nullable=False),
        sa.Column("subject", _text(128), nullable=True),
        sa.Column("action", _text(16), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("entities", sa.JSON(), nullable=False),
        sa.Column("status", _text(16), nullable=False),
        sa.Column("label", _text(16), nullable=True),
        sa.Column("note", _text(1024), nullable=False),
        sa.Column("labelled_by", _text(128), nullable=True),
        sa.Column("labelled_at", _time(), nullable=True),
        sa.Column("created_at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("decision_id", name="uq_risk_cases_decision"),
    )
    with op.batch_alter_table("risk_cases", schema=None) as batch_op:
        batch_op.create_index("ix_risk_cases_queue", ["status", "created_at"], unique=False)

    op.create_table(
        "risk_snoozes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scene", _text(32), nullable=False),
        sa.Column("rule", _text(64), nullable=False),
        sa.Column("entity", _text(16), nullable=False),
        sa.Column("value", _text(128), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("reason", _text(256), nullable=False),
        sa.Column("expires_at", _time(), nullable=False),
        sa.Column("created_by", _text(128), nullable=False),
        sa.Column("created_at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("scene", "rule", "entity", "value", name="uq_risk_snoozes"),
    )
    op.create_table(
        "risk_shadows",
        sa.Column("scene", _text(32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("set_by", _text(128), nullable=False),
        sa.Column("set_at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("scene"),
    )
    op.create_table(
        "risk_shadow_results",
        sa.Column("decision_id", _text(32), nullable=False),
        sa.Column("scene", _text(32), nullable=False),
        sa.Column("shadow_version", sa.Integer(), nullable=False),
        sa.Column("live_action", _text(16), nullable=False),
        sa.Column("shadow_action", _text(16), nullable=False),
        sa.Column("live_score", sa.Float(), nullable=False),
        sa.Column("shadow_score", sa.Float(), nullable=False),
        sa.Column("agree", sa.Boolean(), nullable=False),
        sa.Column("created_at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("decision_id"),
    )
    with op.batch_alter_table("risk_shadow_results", schema=None) as batch_op:
        batch_op.create_index(
            "ix_risk_shadow_results_scene", ["scene", "shadow_version", "agree"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("risk_shadow_results", schema=None) as batch_op:
        batch_op.drop_index("ix_risk_shadow_results_scene")
    op.drop_table("risk_shadow_results")
    op.drop_table("risk_shadows")
    op.drop_table("risk_snoozes")
    with op.batch_alter_table("risk_cases", schema=None) as batch_op:
        batch_op.drop_index("ix_risk_cases_queue")
    op.drop_table("risk_cases")
    with op.batch_alter_table("risk_decisions", schema=None) as batch_op:
        batch_op.drop_column("model_version")
    with op.batch_alter_table("risk_rulesets", schema=None) as batch_op:
        batch_op.drop_column("activated_by")
        batch_op.drop_column("approved_at")
        batch_op.drop_column("approved_by")
        batch_op.drop_column("submitted_at")
        batch_op.drop_column("submitted_by")
