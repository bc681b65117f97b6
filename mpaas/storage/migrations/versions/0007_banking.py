"""banking: gateway keys, nonces and token buckets (core gateway); bank users, sessions,
one-time codes, tier events, operations, epochs and catalogues

Revision ID: 0007_banking
Revises: 0006_analytics
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0007_banking"
down_revision: str | None = "0006_analytics"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "bank_epochs",
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "bank_operations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("url", sqlmodel.sql.sqltypes.AutoString(length=2048), nullable=True),
        sa.Column("input_schema", sa.JSON(), nullable=False),
        sa.Column("min_tier", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("session_required", sa.Boolean(), nullable=False),
        sa.Column("rate", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
        sa.Column("idempotent", sa.Boolean(), nullable=False),
        sa.Column("timeout_seconds", sa.Float(), nullable=True),
        sa.Column("summary", sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False),
        sa.Column("created_by", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name", "version", name="uq_bank_operations_name"),
    )
    op.create_table(
        "gateway_buckets",
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("tokens", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("full_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    with op.batch_alter_table("gateway_buckets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_gateway_buckets_full_at"), ["full_at"], unique=False)

    op.create_table(
        "gateway_nonces",
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    with op.batch_alter_table("gateway_nonces", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_gateway_nonces_expires_at"), ["expires_at"], unique=False)

    op.create_table(
        "bank_catalogs",
        sa.Column("app_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("created_by", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["app_id"],
            ["apps.id"],
        ),
        sa.PrimaryKeyConstraint("app_id", "version"),
    )
    op.create_table(
        "bank_one_time_codes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("app_id", sa.Integer(), nullable=False),
        sa.Column("phone", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("device_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("code_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("expires_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("consumed_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["app_id"],
            ["apps.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("bank_one_time_codes", schema=None) as batch_op:
        batch_op.create_index("ix_bank_one_time_codes_phone", ["app_id", "phone", "id"], unique=False)

    op.create_table(
        "bank_users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("public_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("app_id", sa.Integer(), nullable=False),
        sa.Column("phone", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("tier", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("name_masked", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("identity_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("identity_ref", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
        sa.Column("card_last4", sqlmodel.sql.sqltypes.AutoString(length=4), nullable=True),
        sa.Column("card_bank", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("card_ref", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
        sa.Column("branch_verified_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("branch_verified_by", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["app_id"],
            ["apps.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("app_id", "identity_hash", name="uq_bank_users_identity"),
        sa.UniqueConstraint("app_id", "phone", name="uq_bank_users_phone"),
        sa.UniqueConstraint("public_id"),
    )
    op.create_table(
        "gateway_app_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("app_id", sa.Integer(), nullable=False),
        sa.Column("kid", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("created_by", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("revoked_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["app_id"],
            ["apps.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("app_id", "kid", name="uq_gateway_app_keys_kid"),
    )
    with op.batch_alter_table("gateway_app_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_gateway_app_keys_app_id"), ["app_id"], unique=False)

    op.create_table(
        "gateway_device_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("app_id", sa.Integer(), nullable=False),
        sa.Column("device_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("kid", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("public_key", sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("revoked_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["app_id"],
            ["apps.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("app_id", "device_id", name="uq_gateway_device_keys_device"),
    )
    op.create_table(
        "bank_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("app_id", sa.Integer(), nullable=False),
        sa.Column("device_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("user_pk", sa.Integer(), nullable=True),
        sa.Column("device_kid", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("expires_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("revoked_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("revoked_reason", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.ForeignKeyConstraint(
            ["app_id"],
            ["apps.id"],
        ),
        sa.ForeignKeyConstraint(
            ["user_pk"],
            ["bank_users.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    with op.batch_alter_table("bank_sessions", schema=None) as batch_op:
        batch_op.create_index("ix_bank_sessions_user", ["user_pk", "revoked_at"], unique=False)

    op.create_table(
        "bank_tier_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_pk", sa.Integer(), nullable=False),
        sa.Column("from_tier", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("to_tier", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("actor", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_pk"],
            ["bank_users.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("bank_tier_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_bank_tier_events_user_pk"), ["user_pk"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("bank_tier_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_bank_tier_events_user_pk"))

    op.drop_table("bank_tier_events")
    with op.batch_alter_table("bank_sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_bank_sessions_user")

    op.drop_table("bank_sessions")
    op.drop_table("gateway_device_keys")
    with op.batch_alter_table("gateway_app_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_gateway_app_keys_app_id"))

    op.drop_table("gateway_app_keys")
    op.drop_table("bank_users")
    with op.batch_alter_table("bank_one_time_codes", schema=None) as batch_op:
        batch_op.drop_index("ix_bank_one_time_codes_phone")

    op.drop_table("bank_one_time_codes")
    op.drop_table("bank_catalogs")
    with op.batch_alter_table("gateway_nonces", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_gateway_nonces_expires_at"))

    op.drop_table("gateway_nonces")
    with op.batch_alter_table("gateway_buckets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_gateway_buckets_full_at"))

    op.drop_table("gateway_buckets")
    op.drop_table("bank_operations")
    op.drop_table("bank_epochs")
