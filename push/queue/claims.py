"""Claiming: due deliveries leased to one worker, which alone may then record their outcome."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, case, or_, select, update

from mpaas.push.models import PENDING
from mpaas.push.queue.tables import DELIVERIES, DEVICES, execute
from mpaas.storage.db import Database


@dataclass(frozen=True)
class Claimed:
    """A claimed delivery with what the worker needs to send it."""

    id: int
    message_id: int
    device_pk: int
    channel: str
    attempts: int
    expires_at: datetime
    #: Attempts so far that failed for a passing reason (this claim's attempt not included).
    transient_failures: int
    token: str | None
    locale: str | None
    token_registered_at: datetime
    device_enabled: bool


async def claim(
    db: Database,
    worker_id: str,
    channels: Sequence[str],
    now: datetime,
    limit: int,
    lease: timedelta,
) -> list[Claimed]:
    """Lease up to ``limit`` due deliveries on ``channels``; counts the attempt.

    A row that still names a holder lost its lease: the worker died (or stalled) holding
    it, so that attempt counts as a transient failure, and the row is sent again now.
    """
    if not channels:
        return []
    d = DELIVERIES
    due = (
        select(d.c.id)
        .where(
            d.c.status == PENDING,
            d.c.channel.in_(channels),
            d.c.next_attempt_at <= now,
            d.c.expires_at > now,
            or_(d.c.lease_until.is_(None), d.c.lease_until < now),
        )
        .order_by(d.c.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    stmt = (
        update(d)
        .where(d.c.id.in_(due.scalar_subquery()))
        .values(
            claimed_by=worker_id,
            lease_until=now + lease,
            attempts=d.c.attempts + 1,
            transient_failures=d.c.transient_failures + case((d.c.claimed_by.is_not(None), 1), else_=0),
            last_attempt_at=now,
        )
        .returning(
            d.c.id,
            d.c.message_id,
            d.c.device_pk,
            d.c.channel,
            d.c.attempts,
            d.c.expires_at,
            d.c.transient_failures,
        )
    )
    async with db.write() as s:
        claimed = (await execute(s, stmt)).all()
        if not claimed:
            return []
        pks = {row.device_pk for row in claimed}
        devices = {
            row.id: row
            for row in (
                await execute(
                    s,
                    select(
                        DEVICES.c.id,
                        DEVICES.c.token,
                        DEVICES.c.locale,
                        DEVICES.c.token_registered_at,
                        DEVICES.c.enabled,
                    ).where(DEVICES.c.id.in_(pks)),
                )
            ).all()
        }
    out = []
    for row in claimed:
        dev = devices[row.device_pk]
        out.append(
            Claimed(
                id=row.id,
                message_id=row.message_id,
                device_pk=row.device_pk,
                channel=row.channel,
                attempts=row.attempts,
                expires_at=row.expires_at,
                transient_failures=row.transient_failures,
                token=dev.token,
                locale=dev.locale,
                token_registered_at=dev.token_registered_at,
                device_enabled=dev.enabled,
            )
        )
    return out


def held_by(worker_id: str, ids: Iterable[int]) -> ColumnElement[bool]:
    """The pending rows among ``ids`` whose lease ``worker_id`` still holds."""
    d = DELIVERIES
    return and_(d.c.id.in_(list(ids)), d.c.claimed_by == worker_id, d.c.status == PENDING)


async def renew(db: Database, worker_id: str, ids: Iterable[int], until: datetime) -> int:
    """The heartbeat: extend this worker's leases on ``ids`` (those it still holds) to ``until``."""
    wanted = list(ids)
    if not wanted:
        return 0
    async with db.write() as s:
        result = await execute(
            s, update(DELIVERIES).where(held_by(worker_id, wanted)).values(lease_until=until)
        )
    return int(getattr(result, "rowcount", 0) or 0)
