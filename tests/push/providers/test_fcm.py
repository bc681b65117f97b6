"""FcmProvider (real pyfcm 2.1 + google-auth) against the FCM v1 stand-in; Retry-After parsing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpaas.errors import ConfigError
from mpaas.push.providers.base import (
    MAX_RETRY_AFTER_SECONDS,
    Notification,
    Outcome,
    PushProvider,
    parse_retry_after,
)
from mpaas.push.providers.fcm import FcmProvider, classify_response
from mpaas.push.standins.fcm import FcmStandin, fcm_error

MakeFcm = Callable[..., FcmProvider]


def note(i: int = 0, **kwargs: Any) -> Notification:
    fields: dict[str, Any] = {
        "token": f"fcm-token-{i}",
        "message_id": f"d-{i}",
        "title": "Hi",
        "body": "There",
    }
    return Notification(**{**fields, **kwargs})


async def test_send_success_builds_the_v1_message(
    fcm_standin: FcmStandin, make_fcm: MakeFcm, clock: Any
) -> None:
    provider: PushProvider = make_fcm(concurrency=1, clock=clock)
    n = note(1, data={"k": "v"}, ttl_seconds=300, collapse_id="c", priority="normal", badge=2, sound="ping")

    first = await provider.send(n)
    second = await provider.send(note(2))

    assert first.outcome is Outcome.SENT and second.outcome is Outcome.SENT
    assert first.provider_id is not None
    assert first.provider_id.startswith("projects/mpaas-test/messages/")
    assert fcm_standin.token_requests == 1  # the access token is reused
    record = fcm_standin.requests[0]
    assert record.project == "mpaas-test"
    assert record.message == {
        "token": "fcm-token-1",
        "notification": {"title": "Hi", "body": "There"},
        "data": {"k": "v"},
        "android": {
            "priority": "NORMAL",
            "ttl": "300s",
            "collapse_key": "c",
            "notification": {"sound": "ping"},
        },
        "apns": {
            "headers": {
                "apns-priority": "5",
                "apns-push-type": "alert",
                "apns-collapse-id": "c",
                "apns-expiration": str(int(clock.now) + 300),
            },
            "payload": {"aps": {"badge": 2, "sound": "ping"}},
        },
    }


async def test_unregistered_token_is_invalid(fcm_standin: FcmStandin, make_fcm: MakeFcm) -> None:
    fcm_standin.dead_tokens.add("fcm-token-4")
    result = await make_fcm().send(note(4))
    assert (result.outcome, result.status, result.reason) == (Outcome.INVALID_TOKEN, 404, "UNREGISTERED")


async def test_malformed_token_is_invalid_but_bad_argument_is_rejected(
    fcm_standin: FcmStandin, make_fcm: MakeFcm
) -> None:
    fcm_standin.malformed_tokens.add("fcm-token-5")
    provider = make_fcm()

    malformed = await provider.send(note(5))
    fcm_standin.inject(400, "INVALID_ARGUMENT", count=1)
    bad_message = await provider.send(note(6))

    assert (malformed.outcome, malformed.status, malformed.reason) == (
        Outcome.INVALID_TOKEN,
        400,
        "INVALID_ARGUMENT",
    )
    assert (bad_message.outcome, bad_message.status) == (Outcome.REJECTED, 400)


@pytest.mark.parametrize(
    ("status", "code", "retry_after", "expected"),
    [
        (429, "QUOTA_EXCEEDED", "17", 17.0),
        (429, "QUOTA_EXCEEDED", "http-date+90", 90.0),
        (503, "UNAVAILABLE", None, None),
        (503, "UNAVAILABLE", "2", 2.0),
        (500, "INTERNAL", None, None),
    ],
)
async def test_transient_errors_make_exactly_one_request(
    status: int,
    code: str,
    retry_after: str | None,
    expected: float | None,
    fcm_standin: FcmStandin,
    make_fcm: MakeFcm,
    clock: Any,
) -> None:
    """pyfcm alone would sleep and retry forever (or raise on an HTTP-date); urllib3 would retry 503."""
    if retry_after == "http-date+90":
        retry_after = format_datetime(
            datetime.fromtimestamp(clock.now, UTC) + timedelta(seconds=90), usegmt=True
        )
    fcm_standin.inject(status, code, count=3, retry_after=retry_after)
    provider = make_fcm(clock=clock)

    result = await provider.send(note(9))

    assert (result.outcome, result.status, result.reason) == (Outcome.RETRY, status, code)
    assert result.retry_after == expected
    assert len(fcm_standin.requests) == 1


async def test_revoked_access_token_retries_then_recovers(fcm_standin: FcmStandin, make_fcm: MakeFcm) -> None:
    provider = make_fcm(concurrency=1)
    assert (await provider.send(note(1))).outcome is Outcome.SENT
    fcm_standin.revoke_tokens()

    refused = await provider.send(note(2))
    recovered = await provider.send(note(3))

    assert (refused.outcome, refused.status) == (Outcome.RETRY, 401)
    assert recovered.outcome is Outcome.SENT
    assert fcm_standin.token_requests == 2
    assert fcm_standin.requests[0].access_token != fcm_standin.requests[-1].access_token


async def test_sends_run_off_the_event_loop_and_are_bounded(
    fcm_standin: FcmStandin, make_fcm: MakeFcm
) -> None:
    provider = make_fcm(concurrency=8, request_timeout=60.0)  # held sends end by release, not a deadline
    fcm_standin.hold()
    sending = asyncio.create_task(provider.send_many([note(i) for i in range(50)]))

    async def all_workers_waiting() -> None:
        while fcm_standin.in_flight < 8:
            await asyncio.sleep(0.01)

    # The stand-in shares this event loop: it can take 8 sends at once only if the sends
    # block worker threads, not the loop (a blocking send would never let it answer).
    await asyncio.wait_for(all_workers_waiting(), 30)
    assert not sending.done()
    fcm_standin.release()
    results = await asyncio.wait_for(sending, 30)

    assert [r.outcome for r in results] == [Outcome.SENT] * 50
    assert fcm_standin.max_in_flight == 8  # all 8 threads at once, never a 9th
    assert fcm_standin.token_requests == 1  # one access token shared by the worker threads


async def test_closed_provider_asks_for_retry(make_fcm: MakeFcm) -> None:
    provider = make_fcm()
    await provider.close()
    assert (await provider.send(note())).reason == "ProviderClosed"


def test_unusable_service_account_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    with pytest.raises(ConfigError):
        FcmProvider(service_account_file=missing)
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"type": "service_account"}))
    with pytest.raises(ConfigError):
        FcmProvider(service_account_file=broken)


# -- answer classification -------------------------------------------------------------

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def body(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode()


def test_classify_google_error_bodies() -> None:
    unregistered_400 = body(fcm_error(400, "x", "UNREGISTERED"))
    sender_mismatch = body(fcm_error(403, "x", "SENDER_ID_MISMATCH"))
    plain_404 = b"<html>Not Found</html>"

    assert classify_response(400, unregistered_400, None, NOW).outcome is Outcome.INVALID_TOKEN
    assert classify_response(403, sender_mismatch, None, NOW).outcome is Outcome.REJECTED
    assert classify_response(404, plain_404, None, NOW).outcome is Outcome.REJECTED
    assert classify_response(200, b'{"name":"projects/p/messages/1"}', None, NOW).provider_id == (
        "projects/p/messages/1"
    )


@settings(max_examples=200, deadline=None)
@given(
    status=st.integers(100, 599), raw=st.binary(max_size=200), retry_after=st.none() | st.text(max_size=40)
)
def test_classify_response_never_raises(status: int, raw: bytes, retry_after: str | None) -> None:
    result = classify_response(status, raw, retry_after, NOW)
    assert (result.outcome is Outcome.SENT) == (status == 200)


# -- Retry-After parsing (shared by both providers) ------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_parse_retry_after_never_raises_and_is_bounded(value: str) -> None:
    result = parse_retry_after(value, NOW)
    assert result is None or 0.0 <= result <= MAX_RETRY_AFTER_SECONDS


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10**30))
def test_parse_retry_after_delta_seconds(seconds: int) -> None:
    assert parse_retry_after(f" {seconds} ", NOW) == min(float(seconds), MAX_RETRY_AFTER_SECONDS)


@settings(max_examples=200, deadline=None)
@given(st.integers(-(10**6), 10**6))
def test_parse_retry_after_http_date(offset: int) -> None:
    when = NOW + timedelta(seconds=offset)
    expected = min(max(float(offset), 0.0), MAX_RETRY_AFTER_SECONDS)
    assert parse_retry_after(format_datetime(when, usegmt=True), NOW) == expected


@pytest.mark.parametrize("value", [None, "", "  ", "-5", "1.5", "soon", "Sun, 99 Foo 2025 00:00:00 GMT"])
def test_parse_retry_after_rejects_garbage(value: str | None) -> None:
    assert parse_retry_after(value, NOW) is None
