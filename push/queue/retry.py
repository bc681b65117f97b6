"""How long a failed delivery waits before its next attempt, and which failures are transient."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from mpaas.push.providers.base import SendResult

#: No answer came: the request timed out, the connection broke, it was never sent, or the
#: worker's send raised. (``AuthError``, ``MalformedAnswer`` are ours or the provider's bug.)
TRANSIENT_REASONS = frozenset({"Timeout", "ConnectionError", "NotSent", "ProviderClosed", "SendError"})


def is_transient(result: SendResult) -> bool:
    """A RETRY that says nothing about the delivery itself: throttling, an outage, a lost connection.

    Those are retried until the TTL. The other RETRYs (401/403 credential trouble, an
    unreadable answer) count against ``max_attempts``: retrying them forever would hide
    a misconfiguration.
    """
    if result.status is not None:
        return result.status == 429 or result.status >= 500
    return result.reason is None or result.reason in TRANSIENT_REASONS


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, never sooner than the provider's Retry-After."""

    base_seconds: float = 1.0
    max_seconds: float = 600.0
    #: Attempts that failed for a reason other than a transient one (see :func:`is_transient`).
    max_attempts: int = 10
    #: A WARNING when a delivery's transient failures reach this, then twice as many, and so on.
    warn_after: int = 3

    def delay(self, attempts: int, retry_after: float | None, rng: random.Random) -> float:
        ceiling = min(self.max_seconds, self.base_seconds * 2 ** max(attempts - 1, 0))
        jittered = rng.uniform(0.0, ceiling)
        return max(jittered, retry_after or 0.0)

    def next_attempt(
        self,
        now: datetime,
        attempts: int,
        retry_after: float | None,
        expires_at: datetime,
        rng: random.Random,
    ) -> datetime | None:
        """When to try again, or ``None`` when no try fits in the TTL any more.

        When the drawn backoff would fall after the TTL, one more try goes halfway to it
        (if Retry-After allows, and the half is at least ``base_seconds``): a run of
        transient failures late in the TTL still gets its chances instead of giving up early.
        """
        at = now + timedelta(seconds=self.delay(attempts, retry_after, rng))
        if at < expires_at:
            return at
        half = (expires_at - now).total_seconds() / 2
        if half < self.base_seconds:
            return None
        last = now + timedelta(seconds=max(half, retry_after or 0.0))
        return last if last < expires_at else None

    def should_warn(self, transient_failures: int) -> bool:
        """True at ``warn_after`` transient failures, then at 2x, 4x, ... (a log line, not a flood)."""
        n, step = transient_failures, max(self.warn_after, 1)
        if n < step or n % step:
            return False
        ratio = n // step
        return ratio & (ratio - 1) == 0
