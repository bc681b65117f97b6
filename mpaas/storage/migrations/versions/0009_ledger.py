"""banking ledger: accounts, transfers, postings; transfer requests (idempotency) and limit usage

Revision ID: 0009_ledger
Revises: 0008_token_expiry
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0009_ledger"
down_revision: str | None = "0008_token_expiry"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "bank_transfer_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_pk", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("request_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("transfer_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("request", sa.JSON(), nullable=False),
        sa.Column("response", sa.JSON(), nullable=False),
        sa.Column("decision_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("decision_action", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
        sa.Column("limit_day", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=True),
        sa.Column("limit_year", sqlmodel.sql.sqltypes.AutoString(length=4), nullable=True),
        sa.Column("limited", sa.Boolean(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_pk"],
            ["bank_users.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("transfer_id"),
        sa.UniqueConstraint("user_pk", "idempotency_key", name="uq_bank_transfer_requests_key"),
    )
    op.create_table(
        "ledger_accounts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sqlmodel.sql.sqltypes.AutoString(length=96), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("currency", sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
        sa.Column("user_pk", sa.Integer(), nullable=True),
        sa.Column("account_class", sqlmodel.sql.sqltypes.AutoString(length=3), nullable=True),
        sa.Column("no_negative", sa.Boolean(), nullable=False),
        sa.Column("balance_cap", sa.BigInteger(), nullable=True),
        sa.Column("debits_pending", sa.BigInteger(), nullable=False),
        sa.Column("debits_posted", sa.BigInteger(), nullable=False),
        sa.Column("credits_pending", sa.BigInteger(), nullable=False),
        sa.Column("credits_posted", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_pk"],
            ["bank_users.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("code"),
    )
    op.create_index(op.f("ix_ledger_accounts_user_pk"), "ledger_accounts", ["user_pk"], unique=False)
    op.create_table(
        "bank_limit_usage",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("period", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column("used", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["ledger_accounts.id"],
        ),
        sa.PrimaryKeyConstraint("account_id", "period"),
    )
    op.create_table(
        "ledger_transfers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("transfer_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("debit_account_id", sa.Integer(), nullable=False),
        sa.Column("credit_account_id", sa.Integer(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
        sa.Column("chain", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("memo", sqlmodel.sql.sqltypes.AutoString(length=140), nullable=False),
        sa.Column("timeout_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("resolved_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["credit_account_id"],
            ["ledger_accounts.id"],
        ),
        sa.ForeignKeyConstraint(
            ["debit_account_id"],
            ["ledger_accounts.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("transfer_id"),
    )
    op.create_index(
        op.f("ix_ledger_transfers_credit_account_id"), "ledger_transfers", ["credit_account_id"], unique=False
    )
    op.create_index(
        op.f("ix_ledger_transfers_debit_account_id"), "ledger_transfers", ["debit_account_id"], unique=False
    )
    op.create_index("ix_ledger_transfers_pending", "ledger_transfers", ["status", "timeout_at"], unique=False)
    op.create_table(
        "ledger_postings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("transfer_pk", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("posted_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["ledger_accounts.id"],
        ),
        sa.ForeignKeyConstraint(
            ["transfer_pk"],
            ["ledger_transfers.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_ledger_postings_account", "ledger_postings", ["account_id", "id"], unique=False)
    op.create_index(op.f("ix_ledger_postings_transfer_pk"), "ledger_postings", ["transfer_pk"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_ledger_postings_transfer_pk"), table_name="ledger_postings")
    op.drop_index("ix_ledger_postings_account", table_name="ledger_postings")
    op.drop_table("ledger_postings")
    op.drop_index("ix_ledger_transfers_pending", table_name="ledger_transfers")
    op.drop_index(op.f("ix_ledger_transfers_debit_account_id"), table_name="ledger_transfers")
    op.drop_index(op.f("ix_ledger_transfers_credit_account_id"), table_name="ledger_transfers")
    op.drop_table("ledger_transfers")
    op.drop_table("bank_limit_usage")
    op.drop_index(op.f("ix_ledger_accounts_user_pk"), table_name="ledger_accounts")
    op.drop_table("ledger_accounts")
    op.drop_table("bank_transfer_requests")
