"""banking ledger: accounts, transfers, postings, idempotency keys

Revision ID: 0009_ledger
Revises: 0008_token_expiry
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0009_ledger"
down_revision: str | None = "0008_token_expiry"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
