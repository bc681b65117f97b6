"""Expansion: a due message becomes one delivery row per matching device, a batch at a time."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, insert, literal, not_, select
from sqlmodel import col
from sqlmodel import select as model_select

from mpaas.push.models import FAILED, PENDING, PushMessage
from mpaas.push.queue.tables import DELIVERIES, DEVICES, NO_PROVIDER, TAGS, execute
from mpaas.storage.db import Database

#: Message states after expansion: something was queued, or nothing could be.
QUEUED, UNDELIVERABLE = "queued", "undeliverable"


def audience_filter(message: PushMessage) -> ColumnElement[bool]:
    """The devices (of any app) that the message's audience names."""
    audience = message.audience
    if "devices" in audience:
        return DEVICES.c.device_id.in_(audience["devices"])
    if "users" in audience:
        return DEVICES.c.user_id.in_(audience["users"])
    if "tags" in audience:
        tagged = select(TAGS.c.device_pk).where(TAGS.c.tag.in_(audience["tags"]))
        return DEVICES.c.id.in_(tagged)
    return literal(True)


async def expand_one_batch(
    db: Database, now: datetime, batch: int, channels: Collection[str] | None = None
) -> int:
    """Expand the next batch of one due message into deliveries; returns rows created (0: none due).

    The rows are built by ``INSERT … SELECT`` in the database, a device-pk range at a
    time, with the cursor advanced in the same transaction: a crash repeats nothing.
    A row on a channel outside ``channels`` (no provider configured) is created failed,
    ``no_provider``. The last step sets the message ``queued``, or ``undeliverable`` when
    no device matched or every row failed that way: a final state, not a wait forever.
    """
    async with db.write() as s:
        due = (
            model_select(PushMessage)
            .where(col(PushMessage.status).in_(("scheduled", "expanding")), col(PushMessage.send_at) <= now)
            .order_by(col(PushMessage.send_at))
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        message = (await s.exec(due)).first()
        if message is None:
            return 0
        assert message.id is not None
        matching = and_(
            DEVICES.c.app_id == message.app_id,
            DEVICES.c.enabled.is_(True),
            DEVICES.c.id > message.expanded_through,
            audience_filter(message),
        )
        window = select(DEVICES.c.id).where(matching).order_by(DEVICES.c.id).limit(batch).subquery()
        upper = (await execute(s, select(func.max(window.c.id)))).scalar()
        if upper is None:
            d = DELIVERIES
            unserved = and_(d.c.status == FAILED, d.c.reason == NO_PROVIDER)
            live = select(d.c.id).where(d.c.message_id == message.id, not_(unserved)).limit(1)
            message.status = QUEUED if (await execute(s, live)).first() is not None else UNDELIVERABLE
            s.add(message)
            return 0
        first_ws = message.fallback in ("ws", "ws_then_native")
        channel = literal("ws") if first_ws else DEVICES.c.provider
        deadline: Any = literal(None)
        if message.fallback in ("ws_then_native", "native_then_ws"):
            armed_at = now + timedelta(seconds=message.ack_timeout_seconds)
            deadline = case((DEVICES.c.provider != "ws", literal(armed_at, DELIVERIES.c.ack_deadline.type)))
        status: Any = literal(PENDING)
        reason: Any = literal(None, DELIVERIES.c.reason.type)
        finished: Any = literal(None, DELIVERIES.c.finished_at.type)
        if channels is not None:
            served = channel.in_(list(channels))
            status = case((served, literal(PENDING)), else_=literal(FAILED))
            reason = case((served, reason), else_=literal(NO_PROVIDER))
            finished = case((served, finished), else_=literal(now, DELIVERIES.c.finished_at.type))
        rows = select(
            literal(message.id),
            DEVICES.c.id,
            channel,
            status,
            reason,
            finished,
            literal(0),
            literal(now, DELIVERIES.c.next_attempt_at.type),
            literal(message.expires_at, DELIVERIES.c.expires_at.type),
            deadline,
            literal(now, DELIVERIES.c.created_at.type),
        ).where(matching, DEVICES.c.id <= upper)
        columns = [
            "message_id",
            "device_pk",
            "channel",
            "status",
            "reason",
            "finished_at",
            "attempts",
            "next_attempt_at",
            "expires_at",
            "ack_deadline",
            "created_at",
        ]
        result = await execute(s, insert(DELIVERIES).from_select(columns, rows))
        message.expanded_through = upper
        message.status = "expanding"
        s.add(message)
        return max(int(getattr(result, "rowcount", 0) or 0), 1)
