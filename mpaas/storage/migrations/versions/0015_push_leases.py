"""push: short leases with a heartbeat, transient attempts

Revision ID: 0015_push_leases
Revises: 0014_risk_models
Create Date: 2026-12-04

``push_deliveries.transient_failures`` counts the attempts that failed for a passing
reason (429, 5xx, timeout, connection loss, a worker that died holding the lease):
those are retried until the TTL, while ``attempts - transient_failures`` is what
``MPAAS_PUSH_MAX_ATTEMPTS`` caps. Leases and heartbeats need no schema change.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015_push_leases"
down_revision: str | None = "0014_risk_models"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("push_deliveries") as batch:
        batch.add_column(sa.Column("transient_failures", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("push_deliveries") as batch:
        batch.drop_column("transient_failures")
