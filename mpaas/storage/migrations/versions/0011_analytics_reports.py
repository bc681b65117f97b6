"""analytics: saved reports

Revision ID: 0011_analytics_reports
Revises: 0010_risk
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0011_analytics_reports"
down_revision: str | None = "0010_risk"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
