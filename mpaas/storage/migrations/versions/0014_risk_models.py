"""risk model centre: scoring models and their activations per scene

Revision ID: 0014_risk_models
Revises: 0013_risk_review
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0014_risk_models"
down_revision: str | None = "0013_risk_review"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _text(length: int) -> sqlmodel.sql.sqltypes.AutoString:
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def upgrade() -> None:
    op.create_table(
        "risk_models",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", _text(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("format", _text(16), nullable=False),
        sa.Column("features", sa.JSON(), nullable=False),
        sa.Column("calibration", sa.JSON(), nullable=False),
        sa.Column("description", _text(512), nullable=False),
        sa.Column("sha256", _text(64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("artefact", sa.LargeBinary(), nullable=False),
        sa.Column("created_by", _text(128), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name", "version", name="uq_risk_models_version"),
    )
    op.create_table(
        "risk_model_activations",
        sa.Column("scene", _text(32), nullable=False),
        sa.Column("name", _text(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("activated_by", _text(128), nullable=False),
        sa.Column("activated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("scene", "name"),
    )


def downgrade() -> None:
    op.drop_table("risk_model_activations")
    op.drop_table("risk_models")
