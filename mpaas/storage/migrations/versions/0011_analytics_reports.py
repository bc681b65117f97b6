"""analytics: saved reports

Revision ID: 0011_analytics_reports
Revises: 0010_risk
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0011_analytics_reports"
down_revision: str | None = "0010_risk"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "analytics_saved_reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("app_id", sa.Integer(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("description", sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("created_by", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("updated_by", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.ForeignKeyConstraint(["app_id"], ["apps.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("app_id", "name", name="uq_analytics_saved_reports_app_name"),
    )
    with op.batch_alter_table("analytics_saved_reports", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_analytics_saved_reports_app_id"), ["app_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("analytics_saved_reports", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_analytics_saved_reports_app_id"))
    op.drop_table("analytics_saved_reports")
