"""Housekeeping: overdue deliveries expire, unacknowledged ones fall back to the other channel.

Rows closed here go to analytics as ``push.failed`` events (reason ``expired`` or
``superseded``), the same events a worker's outcomes emit (ADR 0011).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import case, exists, insert, literal, or_, select, update

from mpaas.push.models import FAILED, PENDING
from mpaas.push.queue.outcomes import report_deliveries
from mpaas.push.queue.tables import DELIVERIES, DEVICES, EXPIRED, MESSAGES, RECEIPTS, SUPERSEDED, execute
from mpaas.storage.db import Database


async def expire_overdue(db: Database, now: datetime, limit: int) -> int:
    """Pending deliveries past their TTL (and not leased) fail as ``expired``."""
    d = DELIVERIES
    overdue = (
        select(d.c.id)
        .where(
            d.c.status == PENDING,
            d.c.expires_at <= now,
            or_(d.c.lease_until.is_(None), d.c.lease_until < now),
        )
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    async with db.write() as s:
        result = await execute(
            s,
            update(d)
            .where(d.c.id.in_(overdue.scalar_subquery()))
            .values(status=FAILED, reason=EXPIRED, finished_at=now, claimed_by=None, lease_until=None)
            .returning(d.c.id),
        )
        ids = list(result.scalars().all())
    report_deliveries(db, [(i, "failed", EXPIRED) for i in ids], now)
    return len(ids)


async def fire_fallbacks(db: Database, now: datetime, limit: int) -> int:
    """Deliveries whose ack deadline passed without an arrival get a follow-up on the other channel.

    The follow-up is a new delivery row; a first delivery still pending (e.g. a WebSocket
    delivery to a device that never connected) is closed as ``superseded``.
    """
    d, dev, m = DELIVERIES, DEVICES, MESSAGES
    arrived = exists().where(RECEIPTS.c.delivery_id == d.c.id, RECEIPTS.c.kind == "arrived")
    due = (
        select(d.c.id)
        .where(d.c.ack_deadline.is_not(None), d.c.ack_deadline <= now, ~arrived)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    async with db.write() as s:
        ids = list((await execute(s, due)).scalars().all())
        if not ids:
            return 0
        channel = case((m.c.fallback == "native_then_ws", literal("ws")), else_=dev.c.provider)
        follow_ups = (
            select(
                d.c.message_id,
                d.c.device_pk,
                channel,
                literal(PENDING),
                literal(0),
                literal(now, d.c.next_attempt_at.type),
                d.c.expires_at,
                literal(now, d.c.created_at.type),
            )
            .select_from(d.join(dev, dev.c.id == d.c.device_pk).join(m, m.c.id == d.c.message_id))
            .where(d.c.id.in_(ids), dev.c.enabled.is_(True), d.c.expires_at > now, channel != d.c.channel)
        )
        columns = [
            "message_id",
            "device_pk",
            "channel",
            "status",
            "attempts",
            "next_attempt_at",
            "expires_at",
            "created_at",
        ]
        await execute(s, insert(d).from_select(columns, follow_ups))
        other = d.alias("follow_up")
        has_follow_up = exists().where(
            other.c.message_id == d.c.message_id,
            other.c.device_pk == d.c.device_pk,
            other.c.channel != d.c.channel,
        )
        superseded = await execute(
            s,
            update(d)
            .where(
                d.c.id.in_(ids),
                d.c.status == PENDING,
                or_(d.c.lease_until.is_(None), d.c.lease_until < now),
                has_follow_up,
            )
            .values(status=FAILED, reason=SUPERSEDED, finished_at=now, claimed_by=None, lease_until=None)
            .returning(d.c.id),
        )
        closed = list(superseded.scalars().all())
        await execute(s, update(d).where(d.c.id.in_(ids)).values(ack_deadline=None))
    report_deliveries(db, [(i, "failed", SUPERSEDED) for i in closed], now)
    return len(ids)
