"""The retry rules behind "transient failures do not exhaust a delivery before its TTL"."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from mpaas.push.providers.base import Outcome, SendResult
from mpaas.push.queue.retry import RetryPolicy, is_transient

NOW = datetime(2030, 1, 1, tzinfo=UTC)


@settings(max_examples=300)
@given(
    attempts=st.integers(min_value=1, max_value=200),
    retry_after=st.none() | st.floats(min_value=0, max_value=7200),
    remaining=st.floats(min_value=0, max_value=28 * 86400),
    seed=st.integers(0, 2**32),
)
def test_the_next_attempt_is_within_the_ttl_and_never_before_retry_after(
    attempts: int, retry_after: float | None, remaining: float, seed: int
) -> None:
    policy = RetryPolicy(base_seconds=1.0, max_seconds=600.0)
    expires = NOW + timedelta(seconds=remaining)
    at = policy.next_attempt(NOW, attempts, retry_after, expires, random.Random(seed))
    if at is None:
        # Given up only when no try fits: Retry-After or the last half of the TTL is too short.
        assert (retry_after or 0) >= remaining / 2 or remaining / 2 < policy.base_seconds
        return
    assert NOW + timedelta(seconds=retry_after or 0) <= at < expires


def test_a_long_ttl_keeps_retrying_however_many_transient_failures() -> None:
    policy = RetryPolicy(base_seconds=1.0, max_seconds=600.0, max_attempts=3)
    rng, now, expires = random.Random(1), NOW, NOW + timedelta(days=1)
    for attempt in range(1, 101):
        at = policy.next_attempt(now, attempt, None, expires, rng)
        assert at is not None and at < expires
        now = max(now, at)


def test_which_failures_are_transient() -> None:
    def retry(status: int | None, reason: str | None) -> SendResult:
        return SendResult(outcome=Outcome.RETRY, status=status, reason=reason)

    transient = [retry(429, "TooManyRequests"), retry(503, "UNAVAILABLE"), retry(500, None)]
    transient += [retry(None, r) for r in ("Timeout", "ConnectionError", "NotSent", "SendError")]
    assert all(is_transient(r) for r in transient)
    counted = [retry(403, "InvalidProviderToken"), retry(401, "UNAUTHENTICATED"), retry(None, "AuthError")]
    assert not any(is_transient(r) for r in counted)


def test_warnings_at_3_6_12_then_doubling() -> None:
    policy = RetryPolicy(warn_after=3)
    assert [n for n in range(1, 100) if policy.should_warn(n)] == [3, 6, 12, 24, 48, 96]
