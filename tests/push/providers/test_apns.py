"""ApnsProvider (real aioapns 4.0) against the HTTP/2 APNs stand-in."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from aioapns import APNs, NotificationRequest
from aioapns.connection import APNsProductionClientProtocol
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hpack import Decoder, NeverIndexedHeaderTuple
from hypothesis import given, settings
from hypothesis import strategies as st

from mpaas.errors import ConfigError
from mpaas.push.providers.apns import (
    ApnsProvider,
    LiteralHeaderEncoder,
    ProviderTokenSigner,
    apns_id_for,
    classify_answer,
)
from mpaas.push.providers.base import Notification, Outcome, PushProvider
from mpaas.push.standins.apns import ApnsStandin

MakeApns = Callable[..., ApnsProvider]


def token(i: int = 0) -> str:
    return f"{i:064x}"


def note(i: int = 0, **kwargs: Any) -> Notification:
    fields: dict[str, Any] = {
        "token": token(i),
        "message_id": str(uuid.uuid4()),
        "title": "Hi",
        "body": "There",
    }
    return Notification(**{**fields, **kwargs})


@pytest.mark.parametrize("tls", [False, True], ids=["cleartext", "tls"])
async def test_send_success_carries_headers_and_payload(
    tls: bool,
    apns_standin: ApnsStandin,
    apns_tls_standin: ApnsStandin,
    make_apns: MakeApns,
    apns_credentials: Any,
    clock: Any,
) -> None:
    standin = apns_tls_standin if tls else apns_standin
    provider: PushProvider = make_apns(standin, clock=clock)
    n = note(
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
    assert record.token == token(1)
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
    apns_standin: ApnsStandin, make_apns: MakeApns
) -> None:
    provider = make_apns(apns_standin)
    n = note(title=None, body=None, push_type="background", priority="high", ttl_seconds=0)

    assert (await provider.send(n)).outcome is Outcome.SENT

    [record] = apns_standin.requests
    assert record.headers["apns-priority"] == "5"
    assert record.headers["apns-expiration"] == "0"
    assert json.loads(record.payload) == {"aps": {"content-available": 1}}


async def test_voip_push_uses_voip_topic(
    apns_standin: ApnsStandin, make_apns: MakeApns, apns_credentials: Any
) -> None:
    provider = make_apns(apns_standin)
    assert (await provider.send(note(push_type="voip"))).outcome is Outcome.SENT
    assert apns_standin.requests[0].headers["apns-topic"] == apns_credentials.topic + ".voip"


async def test_dead_token_gives_invalid_token_with_timestamp(
    apns_standin: ApnsStandin, make_apns: MakeApns
) -> None:
    apns_standin.dead_tokens[token(7)] = 1_700_000_000_123
    provider = make_apns(apns_standin)

    result = await provider.send(note(7))

    assert result.outcome is Outcome.INVALID_TOKEN
    assert result.status == 410
    assert result.reason == "Unregistered"
    assert result.token_invalid_since == datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC)


async def test_bad_device_token_gives_invalid_token(apns_standin: ApnsStandin, make_apns: MakeApns) -> None:
    apns_standin.bad_tokens.add(token(8))
    result = await make_apns(apns_standin).send(note(8))
    assert (result.outcome, result.status, result.reason) == (Outcome.INVALID_TOKEN, 400, "BadDeviceToken")


async def test_local_checks_refuse_without_sending(apns_standin: ApnsStandin, make_apns: MakeApns) -> None:
    provider = make_apns(apns_standin)

    not_hex = await provider.send(note(token="abc/../x"))
    bad_type = await provider.send(note(push_type="carrier-pigeon"))
    reserved = await provider.send(note(data={"aps": "x"}))
    too_big = await provider.send(note(body="x" * 5000))

    assert (not_hex.outcome, not_hex.reason) == (Outcome.INVALID_TOKEN, "BadDeviceToken")
    assert (bad_type.outcome, bad_type.reason) == (Outcome.REJECTED, "InvalidPushType")
    assert (reserved.outcome, reserved.reason) == (Outcome.REJECTED, "ReservedDataKey")
    assert (too_big.outcome, too_big.reason, too_big.status) == (Outcome.REJECTED, "PayloadTooLarge", None)
    assert apns_standin.requests == []


async def test_payload_too_large_answer_is_rejected(apns_standin: ApnsStandin, make_apns: MakeApns) -> None:
    provider = make_apns(apns_standin, max_payload_bytes=None)
    result = await provider.send(note(body="x" * 5000))
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
    clock: Any,
) -> None:
    if retry_after == "http-date+90":
        retry_after = format_datetime(
            datetime.fromtimestamp(clock.now, UTC) + timedelta(seconds=90), usegmt=True
        )
    apns_standin.inject(status, reason, count=1, retry_after=retry_after)
    provider = make_apns(apns_standin, clock=clock)
    n = note(3)

    result = await provider.send(n)

    assert (result.outcome, result.status, result.reason) == (Outcome.RETRY, status, reason)
    assert result.retry_after == expected
    # aioapns did not resend by itself.
    assert apns_standin.by_apns_id[n.message_id] == 1
    assert len(apns_standin.requests) == 1


async def test_expired_provider_token_refreshes_jwt(apns_standin: ApnsStandin, make_apns: MakeApns) -> None:
    apns_standin.inject(403, "ExpiredProviderToken", count=1)
    provider = make_apns(apns_standin)

    first = await provider.send(note(1))
    second = await provider.send(note(2))

    assert (first.outcome, first.status, first.reason) == (Outcome.RETRY, 403, "ExpiredProviderToken")
    assert second.outcome is Outcome.SENT
    bearers = [r.headers["authorization"] for r in apns_standin.requests]
    assert len(bearers) == 2
    assert bearers[0] != bearers[1]


async def test_jwt_is_reminted_after_refresh_interval(
    apns_standin: ApnsStandin, make_apns: MakeApns, clock: Any
) -> None:
    provider = make_apns(apns_standin, clock=clock)

    await provider.send(note(1))
    clock.advance(29 * 60)
    await provider.send(note(2))
    clock.advance(61)
    await provider.send(note(3))

    bearers = [r.headers["authorization"] for r in apns_standin.requests]
    assert bearers[0] == bearers[1]
    assert bearers[2] != bearers[1]
    assert len(apns_standin.bearer_tokens) == 2  # both verified by the stand-in (ES256, team id)


def test_signer_refuses_refresh_intervals_apple_would_reject(apns_credentials: Any) -> None:
    c = apns_credentials
    with pytest.raises(ConfigError):
        ProviderTokenSigner(key=c.key, key_id=c.key_id, team_id=c.team_id, refresh_seconds=61 * 60)


def test_signer_invalidate_ignores_stale_generation(apns_credentials: Any, clock: Any) -> None:
    c = apns_credentials
    signer = ProviderTokenSigner(key=c.key, key_id=c.key_id, team_id=c.team_id, clock=clock)
    first = signer.get_header()
    signer.invalidate(signer.generation - 1)
    assert signer.get_header() == first
    signer.invalidate(signer.generation)
    assert signer.get_header() != first


def test_provider_refuses_non_p256_key(apns_credentials: Any) -> None:
    c = apns_credentials
    pem = (
        ec.generate_private_key(ec.SECP384R1())
        .private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        .decode()
    )
    with pytest.raises(ConfigError):
        ApnsProvider(key=pem, key_id=c.key_id, team_id=c.team_id, topic=c.topic)


async def test_timeout_frees_the_stream_and_connection_keeps_working(
    apns_standin: ApnsStandin, make_apns: MakeApns
) -> None:
    provider = make_apns(apns_standin, request_timeout=0.3)
    apns_standin.response_delay = 1.0
    slow = note(1)

    timed_out = await provider.send(slow)
    apns_standin.response_delay = 0.0
    after = await provider.send_many([note(i) for i in range(2, 12)])

    assert (timed_out.outcome, timed_out.reason) == (Outcome.RETRY, "Timeout")
    assert all(r.outcome is Outcome.SENT for r in after)
    await asyncio.sleep(1.0)  # the late answer to the reset stream arrives and is ignored
    assert (await provider.send(note(20))).outcome is Outcome.SENT
    assert apns_standin.by_apns_id[slow.message_id] == 1
    assert apns_standin.connections_accepted == 1


async def test_duplicate_apns_id_in_flight_is_refused(apns_standin: ApnsStandin, make_apns: MakeApns) -> None:
    provider = make_apns(apns_standin)
    apns_standin.response_delay = 0.2
    message_id = str(uuid.uuid4())

    results = await provider.send_many([note(1, message_id=message_id), note(2, message_id=message_id)])

    assert sorted(r.outcome for r in results) == [Outcome.REJECTED, Outcome.SENT]
    assert apns_standin.by_apns_id[message_id] == 1


def test_apns_id_is_a_canonical_uuid() -> None:
    known = str(uuid.uuid4())
    assert apns_id_for(known.upper()) == known
    derived = apns_id_for("delivery-42")
    assert uuid.UUID(derived).version == 5
    assert derived == apns_id_for("delivery-42") != apns_id_for("delivery-43")


DEAD_BODY_COUNT = 5000


async def test_thousands_of_error_bodies_do_not_stall_or_resend(
    apns_standin: ApnsStandin, make_apns: MakeApns
) -> None:
    """Regression: aioapns 4.0 never sends WINDOW_UPDATE, so ~64 KiB of 410 bodies stall a connection."""
    notes = [note(i) for i in range(DEAD_BODY_COUNT)]
    for n in notes:
        apns_standin.dead_tokens[n.token] = 1_700_000_000_000
    # A generous timeout: a stalled window never recovers, while a loaded CI machine is only slow.
    provider = make_apns(apns_standin, max_connections=1, concurrency=200, request_timeout=60.0)

    results = await provider.send_many(notes)

    assert [r.outcome for r in results] == [Outcome.INVALID_TOKEN] * DEAD_BODY_COUNT
    assert {r.reason for r in results} == {"Unregistered"}
    assert len(apns_standin.by_apns_id) == DEAD_BODY_COUNT
    assert set(apns_standin.by_apns_id.values()) == {1}
    assert apns_standin.connections_accepted == 1
    # Far more than the 64 KiB initial window travelled in error bodies, acknowledged by the client.
    assert apns_standin.response_body_bytes > 3 * 65535
    assert apns_standin.window_updates_received > 0


async def test_unpatched_aioapns_stalls_and_resends(apns_standin: ApnsStandin, apns_credentials: Any) -> None:
    """Characterises the upstream defect the regression test guards against (aioapns 4.0 as shipped)."""

    class StandinProtocol(APNsProductionClientProtocol):
        APNS_SERVER = "127.0.0.1"
        APNS_PORT = apns_standin.port
        INACTIVITY_TIME = 1

    async def quiet(request: NotificationRequest, result: Any) -> None:
        return None

    c = apns_credentials
    client = APNs(
        key=c.key_pem, key_id=c.key_id, team_id=c.team_id, topic=c.topic, max_connections=1, err_func=quiet
    )
    client.pool.protocol_class = StandinProtocol
    client.pool.ssl_context = None
    requests = [NotificationRequest(device_token=token(i), message={"aps": {}}) for i in range(2000)]
    for r in requests:
        apns_standin.dead_tokens[r.device_token] = 1_700_000_000_000
    try:
        await asyncio.wait_for(
            asyncio.gather(*(client.send_notification(r) for r in requests), return_exceptions=True),
            timeout=8,
        )
    except TimeoutError:
        pass
    finally:
        client.pool.close()
    # ~64 KiB of 410 bodies in, the answers stalled; the idle timeout closed the connection
    # and aioapns re-sent the stalled notifications on a new one.
    assert max(apns_standin.by_apns_id.values()) > 1
    assert apns_standin.connections_accepted >= 2
    assert apns_standin.window_updates_received == 0


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


FLOW_COUNT = 3000


async def test_full_send_window_waits_for_window_update_instead_of_retrying(
    apns_standin: ApnsStandin, make_apns: MakeApns
) -> None:
    """Regression: 1,000 requests in flight overflow the 64 KiB send window of one connection.

    The provider used to turn h2's FlowControlError into RETRY (thousands of them per run);
    it must wait for the server's WINDOW_UPDATE and send each notification exactly once.
    """
    notes = [note(i, data={"pad": "x" * 64}) for i in range(FLOW_COUNT)]
    provider = make_apns(apns_standin, max_connections=1, concurrency=1000, request_timeout=60.0)
    # An open connection, as in steady state: the whole first 1,000 leave in one event-loop tick.
    warm_up = note(FLOW_COUNT)
    assert (await provider.send(warm_up)).outcome is Outcome.SENT

    results = await provider.send_many(notes)

    assert [r.outcome for r in results] == [Outcome.SENT] * FLOW_COUNT
    assert set(apns_standin.by_apns_id) == {n.message_id for n in [warm_up, *notes]}
    assert set(apns_standin.by_apns_id.values()) == {1}
    assert apns_standin.connections_accepted == 1
    [connection] = provider.connections
    # The stand-in advertises HTTP/2's default 64 KiB window and widens it only as it reads,
    # so far more body bytes than one window went through, and the queue did wait for it.
    assert connection.peer_initial_window <= 65535
    assert sum(len(r.payload) for r in apns_standin.requests) > 3 * 65535
    assert connection.window_stalls > 0


async def test_peer_max_concurrent_streams_is_respected(apns_credentials: Any, make_apns: MakeApns) -> None:
    c = apns_credentials
    standin = ApnsStandin(verify_key=c.key.public_key(), team_id=c.team_id, max_concurrent_streams=20)
    await standin.start()
    try:
        provider = make_apns(standin, max_connections=1, concurrency=500)
        results = await provider.send_many([note(i) for i in range(500)])
        [connection] = provider.connections
        limit = connection.stream_limit
    finally:
        await standin.stop()

    assert [r.outcome for r in results] == [Outcome.SENT] * 500
    assert limit == 20
    # A 21st open stream would have been a protocol error that closes the connection.
    assert standin.connections_accepted == 1
    assert set(standin.by_apns_id.values()) == {1}


async def test_request_waiting_for_a_stream_times_out_unsent(
    apns_credentials: Any, make_apns: MakeApns
) -> None:
    """The request timeout covers the wait for a stream or window; a request that never left is not sent later."""
    c = apns_credentials
    standin = ApnsStandin(verify_key=c.key.public_key(), team_id=c.team_id, max_concurrent_streams=1)
    await standin.start()
    try:
        provider = make_apns(standin, max_connections=1, request_timeout=0.3)
        standin.response_delay = 1.0
        notes = [note(i) for i in range(3)]
        timed_out = await provider.send_many(notes)
        await asyncio.sleep(1.0)  # the late answer to the reset stream arrives and is ignored
        standin.response_delay = 0.0
        after = await provider.send(note(9))
    finally:
        await standin.stop()

    assert [(r.outcome, r.reason) for r in timed_out] == [(Outcome.RETRY, "Timeout")] * 3
    assert standin.by_apns_id[notes[0].message_id] == 1
    assert notes[1].message_id not in standin.by_apns_id
    assert notes[2].message_id not in standin.by_apns_id
    assert after.outcome is Outcome.SENT
    assert standin.connections_accepted == 1


_header_names = st.sampled_from(
    [b":method", b":scheme", b":authority", b":path", b"authorization", b"apns-id", b"apns-topic"]
) | st.from_regex(rb"[a-z][a-z0-9-]{0,30}", fullmatch=True)
_headers = st.lists(st.tuples(_header_names, st.binary(max_size=300)), max_size=12)


@settings(max_examples=200, deadline=None)
@given(blocks=st.lists(_headers, min_size=1, max_size=4))
def test_literal_header_encoder_round_trips_through_hpack(blocks: list[list[tuple[bytes, bytes]]]) -> None:
    encoder, decoder = LiteralHeaderEncoder(), Decoder()
    for headers in [*blocks, *blocks]:  # the second pass comes from the cache
        decoded = decoder.decode(encoder.encode(headers), raw=True)
        assert [(bytes(n), bytes(v)) for n, v in decoded] == headers
        assert all(isinstance(h, NeverIndexedHeaderTuple) for h in decoded if h[0] == b"authorization")
        # Nothing is ever added to the peer's dynamic table.
        assert len(decoder.header_table.dynamic_entries) == 0
