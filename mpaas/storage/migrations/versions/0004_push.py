"""push: devices, messages, the delivery queue and receipts

Revision ID: 0004_push
Revises: 0003_signing
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0004_push"
down_revision: str | None = "0003_signing"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: BIGINT on PostgreSQL; SQLite's INTEGER PRIMARY KEY is already 64-bit and autoincrements.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "push_app_settings",
        sa.Column("app_id", sa.Integer(), nullable=False),
        sa.Column("fallback", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("ack_timeout_seconds", sa.Integer(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["app_id"], ["apps.id"]),
        sa.PrimaryKeyConstraint("app_id"),
    )
    op.create_table(
        "push_devices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("app_id", sa.Integer(), nullable=False),
        sa.Column("device_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("provider", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
        sa.Column("token", sqlmodel.sql.sqltypes.AutoString(length=512), nullable=True),
        sa.Column("user_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
        sa.Column("locale", sqlmodel.sql.sqltypes.AutoString(length=35), nullable=True),
        sa.Column("app_version", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("os", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("secret_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("disabled_reason", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column("token_registered_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["app_id"], ["apps.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("app_id", "device_id", name="uq_push_devices_app_device"),
        sa.UniqueConstraint("app_id", "provider", "token", name="uq_push_devices_token"),
    )
    with op.batch_alter_table("push_devices", schema=None) as batch_op:
        batch_op.create_index("ix_push_devices_app_user", ["app_id", "user_id"], unique=False)

    op.create_table(
        "push_device_tags",
        sa.Column("device_pk", sa.Integer(), nullable=False),
        sa.Column("tag", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.ForeignKeyConstraint(["device_pk"], ["push_devices.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("device_pk", "tag"),
    )
    with op.batch_alter_table("push_device_tags", schema=None) as batch_op:
        batch_op.create_index("ix_push_device_tags_tag", ["tag", "device_pk"], unique=False)

    op.create_table(
        "push_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("app_id", sa.Integer(), nullable=False),
        sa.Column("audience", sa.JSON(), nullable=False),
        sa.Column("title", sqlmodel.sql.sqltypes.AutoString(length=256), nullable=True),
        sa.Column("body", sqlmodel.sql.sqltypes.AutoString(length=2048), nullable=True),
        sa.Column("locales", sa.JSON(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("priority", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
        sa.Column("push_type", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("collapse_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("ttl_seconds", sa.Integer(), nullable=False),
        sa.Column("send_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("expires_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("fallback", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("ack_timeout_seconds", sa.Integer(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("expanded_through", sa.Integer(), nullable=False),
        sa.Column("created_by", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["app_id"], ["apps.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("push_messages", schema=None) as batch_op:
        batch_op.create_index("ix_push_messages_app", ["app_id", "id"], unique=False)
        batch_op.create_index("ix_push_messages_due", ["status", "send_at"], unique=False)

    op.create_table(
        "push_deliveries",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.Column("device_pk", sa.Integer(), nullable=False),
        sa.Column("channel", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("last_attempt_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("expires_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("claimed_by", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("lease_until", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("ack_deadline", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("sent_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("finished_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["device_pk"], ["push_devices.id"]),
        sa.ForeignKeyConstraint(["message_id"], ["push_messages.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("message_id", "device_pk", "channel", name="uq_push_deliveries_target"),
    )
    with op.batch_alter_table("push_deliveries", schema=None) as batch_op:
        batch_op.create_index("ix_push_deliveries_ack", ["ack_deadline"], unique=False)
        batch_op.create_index("ix_push_deliveries_device", ["device_pk", "channel", "status"], unique=False)
        batch_op.create_index(
            "ix_push_deliveries_due", ["status", "channel", "next_attempt_at"], unique=False
        )

    op.create_table(
        "push_receipts",
        sa.Column("delivery_id", BIG_ID, autoincrement=False, nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
        sa.Column("at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["delivery_id"], ["push_deliveries.id"]),
        sa.PrimaryKeyConstraint("delivery_id", "kind"),
    )


def downgrade() -> None:
    op.drop_table("push_receipts")
    with op.batch_alter_table("push_deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_push_deliveries_due")
        batch_op.drop_index("ix_push_deliveries_device")
        batch_op.drop_index("ix_push_deliveries_ack")
    op.drop_table("push_deliveries")
    with op.batch_alter_table("push_messages", schema=None) as batch_op:
        batch_op.drop_index("ix_push_messages_due")
        batch_op.drop_index("ix_push_messages_app")
    op.drop_table("push_messages")
    with op.batch_alter_table("push_device_tags", schema=None) as batch_op:
        batch_op.drop_index("ix_push_device_tags_tag")
    op.drop_table("push_device_tags")
    with op.batch_alter_table("push_devices", schema=None) as batch_op:
        batch_op.drop_index("ix_push_devices_app_user")
    op.drop_table("push_devices")
    op.drop_table("push_app_settings")
