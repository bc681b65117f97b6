"""ApnsProvider against the HTTP/2 APNs stand-in: headers, payload, local refusals, status mapping."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpaas.push.providers.apns import ApnsProvider
from mpaas.push.providers.apns.answers import classify_answer
from mpaas.push.providers.apns.payload import apns_id_for
from mpaas.push.providers.base import Notification, Outcome, PushProvider
from mpaas.push.standins.apns import ApnsStandin

MakeApns = Callable[..., ApnsProvider]
MakeNote = Callable[..., Notification]


@pytest.mark.parametrize("tls", [False, True], ids=["cleartext", "tls"])
async def test_send_success_carries_headers_and_payload(
    tls: bool,
    apns_standin: ApnsStandin,
    apns_tls_standin: ApnsStandin,
    make_apns: MakeApns,
    make_note: MakeNote,
    apns_credentials: Any,
    clock: Any,
) -> None:
    standin = apns_tls_standin if tls else apns_standin
    provider: PushProvider = make_apns(standin, clock=clock)
    n = make_note(
        1,
        data={"deep_link": "app://x"},
        badge=3,
        sound="ping.caf",
        ttl_seconds=600,
        collapse_id="c-1",
        priority="normal",
    )

    result = await provider.send(n)

    assert result.outcome is Outcome.SENT
    assert result.status == 200
    assert result.provider_id == n.message_id
    [record] = standin.requests
    assert record.apns_id == n.message_id
    assert record.token == n.token
    assert record.headers["apns-topic"] == apns_credentials.topic
    assert record.headers["apns-priority"] == "5"
    assert record.headers["apns-push-type"] == "alert"
    assert record.headers["apns-collapse-id"] == "c-1"
    assert record.headers["apns-expiration"] == str(int(clock.now) + 600)
    assert record.headers["authorization"].startswith("bearer ")
    assert json.loads(record.payload) == {
        "aps": {"alert": {"title": "Hi", "body": "There"}, "badge": 3, "sound": "ping.caf"},
        "deep_link": "app://x",
    }


async def test_background_push_uses_priority_5_and_content_available(
    apns_standin: ApnsStandin, make_apns: MakeApns, make_note: MakeNote
) -> None:
    provider = make_apns(apns_standin)
    n = make_note(title=None, body=None, push_type="background", priority="high", ttl_seconds=0)

    assert (await provider.send(n)).outcome is Outcome.SENT

    [record] = apns_standin.requests
    assert record.headers["apns-priority"] == "5"
    assert record.headers["apns-expiration"] == "0"
    assert json.loads(record.payload) == {"aps": {"content-available": 1}}


async def test_voip_push_uses_voip_topic(
    apns_standin: ApnsStandin, make_apns: MakeApns, make_note: MakeNote, apns_credentials: Any
) -> None:
    provider = make_apns(apns_standin)
    assert (await provider.send(make_note(push_type="voip"))).outcome is Outcome.SENT
    assert apns_standin.requests[0].headers["apns-topic"] == apns_credentials.topic + ".voip"


async def test_dead_token_gives_invalid_token_with_timestamp(
    apns_standin: ApnsStandin, make_apns: MakeApns, make_note: MakeNote
) -> None:
    n = make_note(7)
    apns_standin.dead_tokens[n.token] = 1_700_000_000_123
    provider = make_apns(apns_standin)

    result = await provider.send(n)

    assert result.outcome is Outcome.INVALID_TOKEN
    assert result.status == 410
    assert result.reason == "Unregistered"
    assert result.token_invalid_since == datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC)


async def test_bad_device_token_gives_invalid_token(
    apns_standin: ApnsStandin, make_apns: MakeApns, make_note: MakeNote
) -> None:
    n = make_note(8)
    apns_standin.bad_tokens.add(n.token)
    result = await make_apns(apns_standin).send(n)
    assert (result.outcome, result.status, result.reason) == (Outcome.INVALID_TOKEN, 400, "BadDeviceToken")


async def test_local_checks_refuse_without_sending(
    apns_standin: ApnsStandin, make_apns: MakeApns, make_note: MakeNote
) -> None:
    provider = make_apns(apns_standin)

    not_hex = await provider.send(make_note(token="abc/../x"))
    bad_type = await provider.send(make_note(push_type="carrier-pigeon"))
    reserved = await provider.send(make_note(data={"aps": "x"}))
    too_big = await provider.send(make_note(body="x" * 5000))

    assert (not_hex.outcome, not_hex.reason) == (Outcome.INVALID_TOKEN, "BadDeviceToken")
    assert (bad_type.outcome, bad_type.reason) == (Outcome.REJECTED, "InvalidPushType")
    assert (reserved.outcome, reserved.reason) == (Outcome.REJECTED, "ReservedDataKey")
    assert (too_big.outcome, too_big.reason, too_big.status) == (Outcome.REJECTED, "PayloadTooLarge", None)
    assert apns_standin.requests == []


async def test_payload_too_large_answer_is_rejected(
    apns_standin: ApnsStandin, make_apns: MakeApns, make_note: MakeNote
) -> None:
    provider = make_apns(apns_standin, max_payload_bytes=None)
    result = await provider.send(make_note(body="x" * 5000))
    assert (result.outcome, result.status, result.reason) == (Outcome.REJECTED, 413, "PayloadTooLarge")


@pytest.mark.parametrize(
    ("status", "reason", "retry_after", "expected"),
    [
        (429, "TooManyRequests", "30", 30.0),
        (429, "TooManyRequests", "http-date+90", 90.0),
        (503, "ServiceUnavailable", "5", 5.0),
        (500, "InternalServerError", None, None),
    ],
)
async def test_transient_errors_retry_once_with_retry_after(
    status: int,
    reason: str,
    retry_after: str | None,
    expected: float | None,
    apns_standin: ApnsStandin,
    make_apns: MakeApns,
    make_note: MakeNote,
    clock: Any,
) -> None:
    if retry_after == "http-date+90":
        retry_after = format_datetime(
            datetime.fromtimestamp(clock.now, UTC) + timedelta(seconds=90), usegmt=True
        )
    apns_standin.inject(status, reason, count=1, retry_after=retry_after)
    provider = make_apns(apns_standin, clock=clock)
    n = make_note(3)

    result = await provider.send(n)

    assert (result.outcome, result.status, result.reason) == (Outcome.RETRY, status, reason)
    assert result.retry_after == expected
    # Nothing resent it by itself.
    assert apns_standin.by_apns_id[n.message_id] == 1
    assert len(apns_standin.requests) == 1


async def test_duplicate_apns_id_in_flight_is_refused(
    apns_standin: ApnsStandin, make_apns: MakeApns, make_note: MakeNote
) -> None:
    provider = make_apns(apns_standin)
    message_id, other_id = str(uuid.uuid4()), str(uuid.uuid4())
    apns_standin.hold()

    first = asyncio.ensure_future(provider.send(make_note(1, message_id=message_id)))
    await asyncio.wait_for(apns_standin.wait_for(lambda: len(apns_standin.requests) == 1), 10)
    second = await provider.send(make_note(2, message_id=message_id))  # while the first is held
    apns_standin.release()
    same_batch = await provider.send_many(
        [make_note(3, message_id=other_id), make_note(4, message_id=other_id)]
    )

    assert (second.outcome, second.reason) == (Outcome.REJECTED, "DuplicateApnsId")
    assert (await first).outcome is Outcome.SENT
    assert [(r.outcome, r.reason) for r in same_batch] == [
        (Outcome.SENT, None),
        (Outcome.REJECTED, "DuplicateApnsId"),
    ]
    assert (apns_standin.by_apns_id[message_id], apns_standin.by_apns_id[other_id]) == (1, 1)


def test_apns_id_is_a_canonical_uuid() -> None:
    known = str(uuid.uuid4())
    assert apns_id_for(known.upper()) == known
    derived = apns_id_for("delivery-42")
    assert uuid.UUID(derived).version == 5
    assert derived == apns_id_for("delivery-42") != apns_id_for("delivery-43")


@settings(max_examples=200, deadline=None)
@given(
    status=st.integers(100, 599),
    reason=st.none() | st.text(max_size=30),
    timestamp=st.none() | st.integers(-(2**70), 2**70),
    retry_after=st.none() | st.text(max_size=40),
)
def test_classify_answer_never_raises(
    status: int, reason: str | None, timestamp: int | None, retry_after: str | None
) -> None:
    result = classify_answer(
        status, reason, timestamp=timestamp, retry_after=retry_after, apns_id=None, now=datetime.now(UTC)
    )
    assert (result.outcome is Outcome.SENT) == (status == 200)
    if result.retry_after is not None:
        assert 0 <= result.retry_after <= 3600
