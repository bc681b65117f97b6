"""APNs answers: the status, reason and headers of one response, and what the queue should do."""

from __future__ import annotations

import json
from datetime import datetime

from aioapns.common import NotificationResult

from mpaas.push.providers.apns.auth import REFRESH_REASONS
from mpaas.push.providers.base import Outcome, SendResult, datetime_from_epoch_ms, parse_retry_after
from mpaas.push.providers.http2 import Http2Response

#: 400 reasons that condemn the device token itself.
_DEAD_TOKEN_REASONS = frozenset({"BadDeviceToken"})


class ApnsAnswer(NotificationResult):
    """aioapns' result plus what it drops: Retry-After, the echoed apns-id, the JWT generation."""

    __slots__ = ("apns_id", "retry_after", "token_generation")

    def __init__(
        self,
        notification_id: str,
        status: str,
        *,
        description: str | None,
        timestamp: int | None,
        apns_id: str | None,
        retry_after: str | None,
        token_generation: int,
    ) -> None:
        super().__init__(notification_id, status, description=description, timestamp=timestamp)
        self.apns_id = apns_id
        self.retry_after = retry_after
        self.token_generation = token_generation

    @classmethod
    def from_response(cls, notification_id: str, response: Http2Response) -> ApnsAnswer:
        """Read an answer: ``reason`` and ``timestamp`` from a JSON error body, if there is one."""
        reason: str | None = None
        timestamp: int | None = None
        if response.body:
            try:
                parsed = json.loads(response.body)
            except ValueError:
                parsed = None
            if isinstance(parsed, dict):
                raw_reason = parsed.get("reason")
                reason = raw_reason if isinstance(raw_reason, str) else None
                raw_ts = parsed.get("timestamp")
                timestamp = raw_ts if isinstance(raw_ts, int) and not isinstance(raw_ts, bool) else None
        headers = response.headers
        retry_after = headers.get(b"retry-after")
        apns_id = headers.get(b"apns-id")
        return cls(
            notification_id,
            response.status,
            description=reason,
            timestamp=timestamp,
            apns_id=apns_id.decode("latin-1") if apns_id is not None else None,
            retry_after=retry_after.decode("latin-1") if retry_after is not None else None,
            token_generation=response.credential_generation,
        )


def classify_answer(
    status: int,
    reason: str | None,
    *,
    timestamp: int | None,
    retry_after: str | None,
    apns_id: str | None,
    now: datetime,
) -> SendResult:
    """Map an APNs answer to what the delivery queue should do."""
    if status == 200:
        return SendResult(outcome=Outcome.SENT, status=status, provider_id=apns_id)
    if status == 410:
        return SendResult(
            outcome=Outcome.INVALID_TOKEN,
            status=status,
            reason=reason,
            token_invalid_since=datetime_from_epoch_ms(timestamp) if timestamp is not None else None,
        )
    if status == 400 and reason in _DEAD_TOKEN_REASONS:
        return SendResult(outcome=Outcome.INVALID_TOKEN, status=status, reason=reason)
    if status == 403 and reason in REFRESH_REASONS:
        return SendResult(outcome=Outcome.RETRY, status=status, reason=reason, retry_after=0.0)
    if status == 429 or status >= 500:
        return SendResult(
            outcome=Outcome.RETRY,
            status=status,
            reason=reason,
            retry_after=parse_retry_after(retry_after, now),
        )
    return SendResult(outcome=Outcome.REJECTED, status=status, reason=reason)
