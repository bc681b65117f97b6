"""The durable delivery queue, in SQL: expansion, claiming with a lease, outcomes, sweeps.

Every function is one short transaction. Claiming uses ``FOR UPDATE SKIP LOCKED`` on
PostgreSQL so that worker processes never wait on each other's rows; on SQLite the
``UPDATE … RETURNING`` runs under the single writer lock. A claim stamps
``claimed_by``/``lease_until`` and counts the attempt, so a worker killed mid-batch
only delays its rows until the lease ends, and a row that kills workers still runs
out of attempts. Outcomes are written only by the worker that holds the lease.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Table,
    and_,
    bindparam,
    case,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.sql.base import Executable
from sqlmodel import SQLModel, col
from sqlmodel import select as model_select
from sqlmodel.ext.asyncio.session import AsyncSession

from mpaas.push.devices import INVALID_TOKEN
from mpaas.push.models import (
    FAILED,
    PENDING,
    SENT,
    PushDelivery,
    PushDevice,
    PushDeviceTag,
    PushMessage,
    PushReceipt,
)
from mpaas.push.providers.base import Outcome, SendResult
from mpaas.storage.db import Database


async def execute(session: AsyncSession, statement: Executable, params: Any = None) -> Any:
    """A Core statement on the session's connection (and transaction), without ORM overhead."""
    conn = await session.connection()
    if params is None:
        return await conn.execute(statement)
    return await conn.execute(statement, params)


def _table(model: type[SQLModel]) -> Table:
    return SQLModel.metadata.tables[str(model.__tablename__)]


DELIVERIES = _table(PushDelivery)
DEVICES = _table(PushDevice)
TAGS = _table(PushDeviceTag)
MESSAGES = _table(PushMessage)
RECEIPTS = _table(PushReceipt)

#: Failure reasons (``push_deliveries.reason`` when ``status = failed``).
EXPIRED, MAX_ATTEMPTS, DEVICE_DISABLED, SUPERSEDED = (
    "expired",
    "max_attempts",
    "device_disabled",
    "superseded",
)
#: An APNs 410 older than the token's registration: the send failed, the token stays.
STALE_UNREGISTERED = "unregistered_stale"


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, never sooner than the provider's Retry-After."""

    base_seconds: float = 1.0
    max_seconds: float = 600.0
    max_attempts: int = 10

    def delay(self, attempts: int, retry_after: float | None, rng: random.Random) -> float:
        ceiling = min(self.max_seconds, self.base_seconds * 2 ** max(attempts - 1, 0))
        jittered = rng.uniform(0.0, ceiling)
        return max(jittered, retry_after or 0.0)


@dataclass(frozen=True)
class Claimed:
    """A claimed delivery with what the worker needs to send it."""

    id: int
    message_id: int
    device_pk: int
    channel: str
    attempts: int
    expires_at: datetime
    token: str | None
    locale: str | None
    token_registered_at: datetime
    device_enabled: bool


@dataclass(frozen=True)
class SendOutcome:
    """The result of sending one claimed delivery."""

    delivery: Claimed
    result: SendResult


def _audience_filter(message: PushMessage) -> ColumnElement[bool]:
    audience = message.audience
    if "devices" in audience:
        return DEVICES.c.device_id.in_(audience["devices"])
    if "users" in audience:
        return DEVICES.c.user_id.in_(audience["users"])
    if "tags" in audience:
        tagged = select(TAGS.c.device_pk).where(TAGS.c.tag.in_(audience["tags"]))
        return DEVICES.c.id.in_(tagged)
    return literal(True)


async def expand_one_batch(db: Database, now: datetime, batch: int) -> int:
    """Expand the next batch of one due message into deliveries; returns rows created (0: none due).

    The rows are built by ``INSERT … SELECT`` in the database, a device-pk range at a
    time, with the cursor advanced in the same transaction: a crash repeats nothing.
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
            _audience_filter(message),
        )
        window = select(DEVICES.c.id).where(matching).order_by(DEVICES.c.id).limit(batch).subquery()
        upper = (await execute(s, select(func.max(window.c.id)))).scalar()
        if upper is None:
            message.status = "queued"
            s.add(message)
            return 0
        first_ws = message.fallback in ("ws", "ws_then_native")
        channel = literal("ws") if first_ws else DEVICES.c.provider
        deadline: Any = literal(None)
        if message.fallback in ("ws_then_native", "native_then_ws"):
            armed_at = now + timedelta(seconds=message.ack_timeout_seconds)
            deadline = case((DEVICES.c.provider != "ws", literal(armed_at, DELIVERIES.c.ack_deadline.type)))
        rows = select(
            literal(message.id),
            DEVICES.c.id,
            channel,
            literal(PENDING),
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


async def claim(
    db: Database,
    worker_id: str,
    channels: Sequence[str],
    now: datetime,
    limit: int,
    lease: timedelta,
) -> list[Claimed]:
    """Lease up to ``limit`` due deliveries on ``channels``; counts the attempt."""
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
            last_attempt_at=now,
        )
        .returning(d.c.id, d.c.message_id, d.c.device_pk, d.c.channel, d.c.attempts, d.c.expires_at)
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
                token=dev.token,
                locale=dev.locale,
                token_registered_at=dev.token_registered_at,
                device_enabled=dev.enabled,
            )
        )
    return out


def _release(worker_id: str, ids: Iterable[int]) -> ColumnElement[bool]:
    d = DELIVERIES
    return and_(d.c.id.in_(list(ids)), d.c.claimed_by == worker_id, d.c.status == PENDING)


async def record(
    db: Database,
    worker_id: str,
    outcomes: Sequence[SendOutcome],
    now: datetime,
    policy: RetryPolicy,
    rng: random.Random,
) -> None:
    """Write the outcomes of one batch; rows whose lease this worker lost are left alone."""
    d = DELIVERIES
    sent: list[int] = []
    failed: dict[str, list[int]] = defaultdict(list)
    retries: list[dict[str, Any]] = []
    disable: list[dict[str, Any]] = []
    for item in outcomes:
        delivery, result = item.delivery, item.result
        if result.outcome is Outcome.SENT:
            sent.append(delivery.id)
        elif result.outcome is Outcome.REJECTED:
            failed[f"rejected:{result.reason or result.status or 'unknown'}"[:64]].append(delivery.id)
        elif result.outcome is Outcome.INVALID_TOKEN:
            since = result.token_invalid_since
            if since is not None and since <= delivery.token_registered_at:
                failed[STALE_UNREGISTERED].append(delivery.id)
            else:
                failed[INVALID_TOKEN].append(delivery.id)
                disable.append({"pk": delivery.device_pk, "tok": delivery.token, "since": since or now})
        elif delivery.attempts >= policy.max_attempts:
            failed[MAX_ATTEMPTS].append(delivery.id)
        else:
            at = now + timedelta(seconds=policy.delay(delivery.attempts, result.retry_after, rng))
            if at >= delivery.expires_at:
                failed[EXPIRED].append(delivery.id)
            else:
                reason = f"retry:{result.reason or result.status or 'unknown'}"[:64]
                retries.append({"rid": delivery.id, "at": at, "why": reason})
    async with db.write() as s:
        if sent:
            await execute(
                s,
                update(d)
                .where(_release(worker_id, sent))
                .values(
                    status=SENT, sent_at=now, finished_at=now, reason=None, claimed_by=None, lease_until=None
                ),
            )
        for reason, ids in failed.items():
            await execute(
                s,
                update(d)
                .where(_release(worker_id, ids))
                .values(status=FAILED, reason=reason, finished_at=now, claimed_by=None, lease_until=None),
            )
        if retries:
            await execute(
                s,
                update(d)
                .where(
                    d.c.id == bindparam("rid"),
                    d.c.claimed_by == worker_id,
                    d.c.status == PENDING,
                )
                .values(
                    next_attempt_at=bindparam("at"),
                    reason=bindparam("why"),
                    claimed_by=None,
                    lease_until=None,
                ),
                retries,
            )
        if disable:
            # Only if the token is still the one we sent to and was registered before APNs' verdict.
            await execute(
                s,
                update(DEVICES)
                .where(
                    DEVICES.c.id == bindparam("pk"),
                    DEVICES.c.token == bindparam("tok"),
                    DEVICES.c.token_registered_at < bindparam("since"),
                )
                .values(enabled=False, disabled_reason=INVALID_TOKEN, updated_at=now),
                disable,
            )


async def fail_undeliverable(db: Database, worker_id: str, ids: Sequence[int], now: datetime) -> None:
    """Claimed rows whose device is disabled or has no token: nothing to send."""
    if not ids:
        return
    async with db.write() as s:
        await execute(
            s,
            update(DELIVERIES)
            .where(_release(worker_id, ids))
            .values(
                status=FAILED, reason=DEVICE_DISABLED, finished_at=now, claimed_by=None, lease_until=None
            ),
        )


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
            .values(status=FAILED, reason=EXPIRED, finished_at=now, claimed_by=None, lease_until=None),
        )
    return int(getattr(result, "rowcount", 0) or 0)


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
        await execute(
            s,
            update(d)
            .where(
                d.c.id.in_(ids),
                d.c.status == PENDING,
                or_(d.c.lease_until.is_(None), d.c.lease_until < now),
                has_follow_up,
            )
            .values(status=FAILED, reason=SUPERSEDED, finished_at=now, claimed_by=None, lease_until=None),
        )
        await execute(s, update(d).where(d.c.id.in_(ids)).values(ack_deadline=None))
    return len(ids)
