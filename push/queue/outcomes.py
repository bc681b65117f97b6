"""Outcomes: what the providers answered, written back to the rows this worker holds.

After the write, the outcomes also go to analytics as server-side events (``push.sent``,
``push.delivered``, ``push.failed``; see docs/analytics.md), in the background: a spool
that refuses them never fails or slows the push.
"""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlmodel import SQLModel

from mpaas.analytics.emit import ServerEvent, server_events
from mpaas.push.devices import INVALID_TOKEN
from mpaas.push.models import FAILED, PENDING, SENT
from mpaas.push.providers.base import Outcome, SendResult
from mpaas.push.queue.claims import Claimed, held_by
from mpaas.push.queue.retry import RetryPolicy, is_transient
from mpaas.push.queue.tables import (
    DELIVERIES,
    DEVICE_DISABLED,
    DEVICES,
    EXPIRED,
    MAX_ATTEMPTS,
    MESSAGES,
    STALE_UNREGISTERED,
    execute,
)
from mpaas.storage.db import Database

APPS = SQLModel.metadata.tables["apps"]
log = logging.getLogger("mpaas.push.queue")


@dataclass(frozen=True)
class SendOutcome:
    """The result of sending one claimed delivery."""

    delivery: Claimed
    result: SendResult


async def record(
    db: Database,
    worker_id: str,
    outcomes: Sequence[SendOutcome],
    now: datetime,
    policy: RetryPolicy,
    rng: random.Random,
) -> None:
    """Write some outcomes in one transaction; rows whose lease this worker lost are left alone.

    The worker calls it as answers arrive (a group commit of whatever came in meanwhile),
    not once per claimed slice: a crash then repeats only what was truly in flight.
    """
    d = DELIVERIES
    sent: list[int] = []
    failed: dict[str, list[int]] = defaultdict(list)
    retries: list[dict[str, Any]] = []
    disable: list[dict[str, Any]] = []
    #: Rows that give up after a transient failure: it counts too.
    last_transient: list[int] = []
    facts: list[tuple[int, str, str | None]] = [(item.delivery.id, "sent", None) for item in outcomes]
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
        else:
            retry = _retry(delivery, result, now, policy, rng)
            if isinstance(retry, str):
                failed[retry].append(delivery.id)
                if is_transient(result):
                    last_transient.append(delivery.id)
            else:
                retries.append(retry)
    async with db.write() as s:
        if sent:
            await execute(
                s,
                update(d)
                .where(held_by(worker_id, sent))
                .values(
                    status=SENT, sent_at=now, finished_at=now, reason=None, claimed_by=None, lease_until=None
                ),
            )
        if last_transient:
            await execute(
                s,
                update(d)
                .where(held_by(worker_id, last_transient))
                .values(transient_failures=d.c.transient_failures + 1),
            )
        for reason, ids in failed.items():
            await execute(
                s,
                update(d)
                .where(held_by(worker_id, ids))
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
                    transient_failures=d.c.transient_failures + bindparam("inc"),
                    claimed_by=None,
                    lease_until=None,
                ),
                retries,
            )
        facts += [(i, "delivered", None) for i in sent]
        facts += [(i, "failed", reason) for reason, ids in failed.items() for i in ids]
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
    report_deliveries(db, facts, now)


def _retry(
    delivery: Claimed, result: SendResult, now: datetime, policy: RetryPolicy, rng: random.Random
) -> dict[str, Any] | str:
    """The retry row for a RETRY answer, or the failure reason when it gives up."""
    transient = is_transient(result)
    why = f"{result.reason or result.status or 'unknown'}"
    failures = delivery.transient_failures + (1 if transient else 0)
    # Transient failures never exhaust a delivery: only the TTL ends those.
    if not transient and delivery.attempts - delivery.transient_failures >= policy.max_attempts:
        return MAX_ATTEMPTS
    at = policy.next_attempt(now, delivery.attempts, result.retry_after, delivery.expires_at, rng)
    if at is None:
        if failures:
            log.warning(
                "push delivery expired after %d transient failures (last: %s)",
                failures,
                why,
                extra={
                    "delivery_id": delivery.id,
                    "message_id": delivery.message_id,
                    "channel": delivery.channel,
                },
            )
        return EXPIRED
    if transient and policy.should_warn(failures):
        log.warning(
            "push delivery keeps failing: %d transient failures (last: %s), retrying until its TTL",
            failures,
            why,
            extra={
                "delivery_id": delivery.id,
                "message_id": delivery.message_id,
                "channel": delivery.channel,
                "expires_at": delivery.expires_at.isoformat(),
            },
        )
    return {"rid": delivery.id, "at": at, "why": f"retry:{why}"[:64], "inc": 1 if transient else 0}


async def fail_undeliverable(db: Database, worker_id: str, ids: Sequence[int], now: datetime) -> None:
    """Claimed rows whose device is disabled or has no token: nothing to send."""
    if not ids:
        return
    async with db.write() as s:
        await execute(
            s,
            update(DELIVERIES)
            .where(held_by(worker_id, ids))
            .values(
                status=FAILED, reason=DEVICE_DISABLED, finished_at=now, claimed_by=None, lease_until=None
            ),
        )
    report_deliveries(db, [(i, "failed", DEVICE_DISABLED) for i in ids], now)


def report_deliveries(db: Database, facts: Sequence[tuple[int, str, str | None]], at: datetime) -> None:
    """Hand ``(delivery id, stage, reason)`` facts to analytics as ``push.<stage>`` events."""
    events = server_events(db)
    if events is None or not facts:
        return

    async def build() -> list[ServerEvent]:
        ids = sorted({f[0] for f in facts})
        query = (
            select(
                DELIVERIES.c.id,
                DELIVERIES.c.message_id,
                DELIVERIES.c.channel,
                DEVICES.c.device_id,
                DEVICES.c.user_id,
                APPS.c.name,
            )
            .join(DEVICES, DEVICES.c.id == DELIVERIES.c.device_pk)
            .join(MESSAGES, MESSAGES.c.id == DELIVERIES.c.message_id)
            .join(APPS, APPS.c.id == MESSAGES.c.app_id)
            .where(DELIVERIES.c.id.in_(ids))
        )
        async with db.session() as s:
            rows = {r[0]: r for r in (await execute(s, query)).all()}
        out = []
        for delivery_id, stage, reason in facts:
            row = rows.get(delivery_id)
            if row is None:
                continue
            props = {"push_id": str(row[1]), "delivery_id": str(delivery_id), "provider": row[2]}
            if reason is not None:
                props["reason"] = reason
            out.append(
                ServerEvent(row[5], f"push.{stage}", props, f"push:{delivery_id}:{stage}", row[3], row[4], at)
            )
        return out

    events.submit(build)
