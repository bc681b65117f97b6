"""The provider-neutral side of push delivery: what to send, what came back, and how.

Providers never retry by themselves: one :meth:`PushProvider.send` is one attempt
at the provider, and :class:`SendResult` tells the delivery queue what to do next
(``RETRY`` with an optional ``retry_after``; the queue owns backoff and give-up).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Literal, Protocol

#: Retry-After values above this are clamped: a provider asking for more is
#: treated as "much later", and the queue's TTL decides whether to give up.
MAX_RETRY_AFTER_SECONDS = 3600.0


class Outcome(StrEnum):
    SENT = "sent"
    RETRY = "retry"
    INVALID_TOKEN = "invalid_token"  # noqa: S105 - not a secret
    #: Permanent failure of this notification (bad payload, too large, misconfigured topic...).
    REJECTED = "rejected"


@dataclass(frozen=True, kw_only=True)
class Notification:
    token: str
    #: Our delivery id. APNs uses it as ``apns-id`` (a UUID); it must be unique per attempt in flight.
    message_id: str
    title: str | None = None
    body: str | None = None
    data: Mapping[str, str] = field(default_factory=dict)
    priority: Literal["high", "normal"] = "high"
    ttl_seconds: int | None = None
    collapse_id: str | None = None
    push_type: str = "alert"
    badge: int | None = None
    sound: str | None = None


@dataclass(frozen=True, kw_only=True)
class SendResult:
    outcome: Outcome
    #: HTTP status of the provider's answer; ``None`` when no answer came (timeout, connection, local check).
    status: int | None = None
    reason: str | None = None
    #: Seconds to wait before retrying, from the provider's Retry-After; ``None`` if it sent none.
    retry_after: float | None = None
    #: APNs 410: the token has been invalid since then; disable it only if registered before.
    token_invalid_since: datetime | None = None
    #: The provider's id of the accepted message (APNs ``apns-id``, FCM message ``name``).
    provider_id: str | None = None


class PushProvider(Protocol):
    name: str

    async def send(self, n: Notification) -> SendResult: ...

    async def send_many(self, ns: Sequence[Notification]) -> list[SendResult]: ...

    async def close(self) -> None: ...


def parse_retry_after(
    value: str | None, now: datetime, max_seconds: float = MAX_RETRY_AFTER_SECONDS
) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date, RFC 9110).

    A date in the past gives 0; anything above ``max_seconds`` is clamped. An absent
    or unparsable value gives ``None``. Never raises.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isascii() and text.isdigit():
        # Compare digit counts first: int() of a huge string is slow and may raise.
        if len(text.lstrip("0")) > 12:
            return max_seconds
        return min(float(int(text)), max_seconds)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    try:
        delta = (when - now).total_seconds()
    except OverflowError:
        return None
    if math.isnan(delta):
        return None
    return min(max(delta, 0.0), max_seconds)


def datetime_from_epoch_ms(value: object) -> datetime | None:
    """A UTC datetime from milliseconds since the epoch (APNs 410 ``timestamp``); ``None`` if unusable."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        millis = float(value)
        return datetime.fromtimestamp(millis / 1000.0, tz=UTC)
    except (ValueError, OverflowError, OSError):
        return None


async def send_bounded(
    send: Callable[[Notification], Awaitable[SendResult]],
    ns: Sequence[Notification],
    limit: int,
) -> list[SendResult]:
    """Run ``send`` over ``ns`` with at most ``limit`` in flight; results keep the input order."""
    if limit < 1:
        raise ValueError("limit must be >= 1")
    semaphore = asyncio.Semaphore(limit)

    async def one(n: Notification) -> SendResult:
        async with semaphore:
            return await send(n)

    return list(await asyncio.gather(*(one(n) for n in ns)))
