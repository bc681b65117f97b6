"""release engineers' CLI: app signing policy, scoped tokens

Revision ID: 0016_release_cli
Revises: 0015_push_leases
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016_release_cli"
down_revision: str | None = "0015_push_leases"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("apps") as batch:
        batch.add_column(
            sa.Column("require_signing", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(sa.Column("apps", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("apps")
    with op.batch_alter_table("apps") as batch:
        batch.drop_column("require_signing")
