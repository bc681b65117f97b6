"""Per-message delivery statistics, overall and per provider (channel).

Counts are over delivery rows: ``targeted = sent + failed + pending`` holds because a
row is always in exactly one of those states. A device reached through a fallback has
two rows (one per channel), so the message also reports ``devices`` (distinct devices)
and its arrival and open rates are per device: ``arrived / devices``. Per provider the
rates are per row sent on that channel: ``arrived / sent``.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import distinct, func, select

from mpaas.push.models import FAILED, PENDING, SENT
from mpaas.push.queue.tables import DELIVERIES, RECEIPTS, execute
from mpaas.storage.db import Database


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _empty() -> dict[str, Any]:
    return {
        "targeted": 0,
        "sent": 0,
        "failed": 0,
        "failed_by_reason": {},
        "pending": 0,
        "arrived": 0,
        "opened": 0,
    }


async def message_stats(db: Database, message_id: int) -> dict[str, Any]:
    d, r = DELIVERIES, RECEIPTS
    async with db.session() as s:
        by_state = (
            await execute(
                s,
                select(d.c.channel, d.c.status, d.c.reason, func.count())
                .where(d.c.message_id == message_id)
                .group_by(d.c.channel, d.c.status, d.c.reason),
            )
        ).all()
        by_receipt = (
            await execute(
                s,
                select(d.c.channel, r.c.kind, func.count())
                .select_from(r.join(d, d.c.id == r.c.delivery_id))
                .where(d.c.message_id == message_id)
                .group_by(d.c.channel, r.c.kind),
            )
        ).all()
        devices = (
            await execute(s, select(func.count(distinct(d.c.device_pk))).where(d.c.message_id == message_id))
        ).scalar() or 0
        reached = dict(
            (
                await execute(
                    s,
                    select(r.c.kind, func.count(distinct(d.c.device_pk)))
                    .select_from(r.join(d, d.c.id == r.c.delivery_id))
                    .where(d.c.message_id == message_id)
                    .group_by(r.c.kind),
                )
            ).all()
        )
    total = _empty()
    providers: dict[str, dict[str, Any]] = defaultdict(_empty)
    for channel, status, reason, count in by_state:
        for bucket in (total, providers[channel]):
            bucket["targeted"] += count
            if status == SENT:
                bucket["sent"] += count
            elif status == PENDING:
                bucket["pending"] += count
            elif status == FAILED:
                bucket["failed"] += count
                key = reason or "unknown"
                bucket["failed_by_reason"][key] = bucket["failed_by_reason"].get(key, 0) + count
    for channel, kind, count in by_receipt:
        providers[channel][kind] += count
    for bucket in providers.values():
        bucket["arrival_rate"] = _rate(bucket["arrived"], bucket["sent"])
        bucket["open_rate"] = _rate(bucket["opened"], bucket["sent"])
    total["devices"] = int(devices)
    total["arrived"] = int(reached.get("arrived", 0))
    total["opened"] = int(reached.get("opened", 0))
    total["arrival_rate"] = _rate(total["arrived"], total["devices"])
    total["open_rate"] = _rate(total["opened"], total["devices"])
    total["providers"] = dict(sorted(providers.items()))
    return total
