"""banking risk: rule sets and decision records

Revision ID: 0010_risk
Revises: 0009_ledger
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0010_risk"
down_revision: str | None = "0009_ledger"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
