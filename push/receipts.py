"""Arrival and open receipts: from the app (``POST /client/v1/push/receipts``) and from WebSocket acks.

A receipt is stored once per (delivery, kind); repeats are no-ops. ``opened`` implies
``arrived``. An arrival also settles a delivery still pending (say, retried after a
timeout that had in fact delivered), so it is not sent again. Stored receipts also go
to analytics as ``push.arrived`` / ``push.opened`` server-side events, in the background.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from mpaas.push.errors import InvalidPushRequest
from mpaas.push.models import PENDING, RECEIPT_KINDS, SENT
from mpaas.push.queue.outcomes import report_deliveries
from mpaas.push.queue.tables import DELIVERIES, RECEIPTS, execute
from mpaas.storage.db import Database

MAX_RECEIPTS = 500


@dataclass(frozen=True)
class ReceiptResult:
    accepted: list[int]
    unknown: list[int]


def parse_receipts(raw: Any) -> list[tuple[int, str]]:
    """``[{"delivery_id": "12", "type": "arrived"}, ...]`` → [(12, "arrived"), ...]."""
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_RECEIPTS:
        raise InvalidPushRequest(f"field 'receipts' must be a list of 1-{MAX_RECEIPTS} objects")
    out: list[tuple[int, str]] = []
    for item in raw:
        if not isinstance(item, dict):
            raise InvalidPushRequest("every receipt must be an object {delivery_id, type}")
        kind = item.get("type")
        if not isinstance(kind, str) or kind not in RECEIPT_KINDS:
            raise InvalidPushRequest(f"receipt type must be one of {', '.join(RECEIPT_KINDS)}")
        out.append((parse_delivery_id(item.get("delivery_id")), kind))
    return out


def parse_delivery_id(value: Any) -> int:
    if isinstance(value, bool):
        raise InvalidPushRequest("delivery_id must be the id from the notification payload")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InvalidPushRequest("delivery_id must be the id from the notification payload") from None
    if not 0 < number < 2**63:
        raise InvalidPushRequest("delivery_id is out of range")
    return number


async def record_receipts(
    db: Database, device_pk: int, items: Sequence[tuple[int, str]], now: datetime
) -> ReceiptResult:
    """Store receipts for deliveries that belong to ``device_pk``; others are reported unknown."""
    wanted: set[tuple[int, str]] = set()
    for delivery_id, kind in items:
        wanted.add((delivery_id, kind))
        if kind == "opened":
            wanted.add((delivery_id, "arrived"))
    ids = sorted({d for d, _ in wanted})
    async with db.write() as s:
        owned = set(
            (
                await execute(
                    s,
                    select(DELIVERIES.c.id).where(
                        DELIVERIES.c.id.in_(ids), DELIVERIES.c.device_pk == device_pk
                    ),
                )
            )
            .scalars()
            .all()
        )
        rows = [{"delivery_id": d, "kind": k, "at": now} for d, k in sorted(wanted) if d in owned]
        if rows:
            insert = sqlite_insert if db.is_sqlite else pg_insert
            await execute(s, insert(RECEIPTS).values(rows).on_conflict_do_nothing())
            await _settle(s, owned, now)
    report_deliveries(db, [(d, k, None) for d, k in sorted(wanted) if d in owned], now)
    return ReceiptResult(accepted=sorted(owned), unknown=[d for d in ids if d not in owned])


async def _settle(s: Any, ids: Iterable[int], now: datetime) -> None:
    d = DELIVERIES
    ids = list(ids)
    await execute(
        s,
        update(d)
        .where(
            d.c.id.in_(list(ids)),
            d.c.status == PENDING,
            or_(d.c.lease_until.is_(None), d.c.lease_until < now),
        )
        .values(status=SENT, sent_at=now, finished_at=now, reason=None),
    )
    # Arrived: a fallback armed on these deliveries is no longer needed.
    await execute(
        s, update(d).where(d.c.id.in_(list(ids)), d.c.ack_deadline.is_not(None)).values(ack_deadline=None)
    )
