"""analytics: write keys, the event catalogue, deletion requests

Revision ID: 0006_analytics
Revises: 0005_releases
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0006_analytics"
down_revision: str | None = "0005_releases"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "analytics_write_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("app_id", sa.Integer(), nullable=False),
        sa.Column("key_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("prefix", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("label", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("created_by", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("expires_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["app_id"], ["apps.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("analytics_write_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_analytics_write_keys_app_id"), ["app_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_analytics_write_keys_key_hash"), ["key_hash"], unique=True)

    op.create_table(
        "analytics_event_defs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("app_id", sa.Integer(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("description", sqlmodel.sql.sqltypes.AutoString(length=4000), nullable=False),
        sa.Column("properties_schema", sa.JSON(), nullable=False),
        sa.Column("owner", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("mode", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("pii_allowed", sa.JSON(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("updated_by", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.ForeignKeyConstraint(["app_id"], ["apps.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("app_id", "name", name="uq_analytics_event_defs_app_name"),
    )
    with op.batch_alter_table("analytics_event_defs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_analytics_event_defs_app_id"), ["app_id"], unique=False)

    op.create_table(
        "analytics_forget_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("app_id", sa.Integer(), nullable=True),
        sa.Column("user_id", sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False),
        sa.Column("requested_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("requested_by", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("done_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("events_deleted", sa.Integer(), nullable=True),
        sa.Column("links_deleted", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["app_id"], ["apps.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("analytics_forget_requests", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_analytics_forget_requests_app_id"), ["app_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_analytics_forget_requests_done_at"), ["done_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("analytics_forget_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_analytics_forget_requests_done_at"))
        batch_op.drop_index(batch_op.f("ix_analytics_forget_requests_app_id"))
    op.drop_table("analytics_forget_requests")
    with op.batch_alter_table("analytics_event_defs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_analytics_event_defs_app_id"))
    op.drop_table("analytics_event_defs")
    with op.batch_alter_table("analytics_write_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_analytics_write_keys_key_hash"))
        batch_op.drop_index(batch_op.f("ix_analytics_write_keys_app_id"))
    op.drop_table("analytics_write_keys")
