"""The audit log: who did what, and when, for every admin write.

Services call :func:`record` inside the same transaction as the change they make,
so the log and the state can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from mpaas.identity.models import AuditEntry
from mpaas.storage.db import Database


@dataclass(frozen=True)
class Actor:
    """Who is acting: a token (``token:3:ci``) or an operator command (``cli:init``)."""

    name: str
    request_id: str | None = None


def record(
    session: AsyncSession,
    actor: Actor,
    action: str,
    target: str = "",
    *,
    app: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    session.add(
        AuditEntry(
            actor=actor.name,
            action=action,
            target=target,
            app=app,
            request_id=actor.request_id,
            detail=detail or {},
        )
    )


async def list_entries(
    db: Database, *, app: str | None = None, action: str | None = None, limit: int = 50, offset: int = 0
) -> tuple[list[AuditEntry], int]:
    from sqlalchemy import func

    query = select(AuditEntry)
    count = select(func.count()).select_from(AuditEntry)
    if app is not None:
        query = query.where(AuditEntry.app == app)
        count = count.where(AuditEntry.app == app)
    if action is not None:
        query = query.where(AuditEntry.action == action)
        count = count.where(AuditEntry.action == action)
    async with db.session() as s:
        total = (await s.exec(count)).one()
        rows = (await s.exec(query.order_by(col(AuditEntry.id).desc()).limit(limit).offset(offset))).all()
    return list(rows), int(total)
