"""The HTTP/2 client on its own, against a real HTTP/2 peer (the APNs stand-in), no provider on top.

Slowness is made by the stand-in holding its answers until told (``hold``/``release``);
progress is awaited on the stand-in's counters (``wait_for``), never on a sleep.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any

import pytest
from hpack import Decoder, NeverIndexedHeaderTuple
from hypothesis import given, settings
from hypothesis import strategies as st

from mpaas.push.providers.apns.auth import ProviderTokenSigner
from mpaas.push.providers.http2 import (
    ConnectionClosed,
    Http2ClientProtocol,
    Http2Pool,
    Http2Request,
    Http2Response,
    LiteralHeaderEncoder,
    RequestTimeout,
)
from mpaas.push.standins.apns import ApnsStandin

#: A safety net for event waits (a hung test fails instead of waiting for pytest's timeout).
WAIT = 10
MakePool = Callable[..., Http2Pool]


@pytest.fixture
def signer(apns_credentials: Any) -> ProviderTokenSigner:
    c = apns_credentials
    return ProviderTokenSigner(key=c.key, key_id=c.key_id, team_id=c.team_id)


@pytest.fixture
async def make_pool(signer: ProviderTokenSigner) -> AsyncIterator[MakePool]:
    pools: list[Http2Pool] = []

    def make(standin: ApnsStandin, max_connections: int = 1) -> Http2Pool:
        context = None
        if standin.tls:
            context = standin.client_ssl_context()
            context.set_alpn_protocols(["h2"])
        connection = partial(Http2ClientProtocol, "127.0.0.1", credential=signer)
        pool = Http2Pool(
            connection,
            host="127.0.0.1",
            port=standin.port,
            ssl_context=context,
            max_connections=max_connections,
        )
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.close()
    await asyncio.sleep(0)  # let connection_lost callbacks run


async def started_standin(apns_credentials: Any, *, streams: int = 1000, tls: bool = False) -> ApnsStandin:
    c = apns_credentials
    standin = ApnsStandin(verify_key=c.key.public_key(), team_id=c.team_id, max_concurrent_streams=streams)
    await standin.start(tls=tls)
    return standin


def submit(connection: Http2ClientProtocol, i: int = 0, *, timeout: float = 30.0) -> Http2Request:
    """One valid APNs request (to device ``i``) on ``connection``."""
    fields = [(b"apns-id", str(uuid.uuid4()).encode()), (b"apns-topic", b"com.example.app")]
    return connection.submit(f"/3/device/{i:064x}".encode(), fields, b'{"aps":{}}', timeout)


async def answer(request: Http2Request) -> Http2Response:
    return await asyncio.wait_for(request.future, WAIT)


async def until(standin: ApnsStandin, condition: Callable[[], bool]) -> None:
    await asyncio.wait_for(standin.wait_for(condition), WAIT)


async def warm(pool: Http2Pool) -> Http2ClientProtocol:
    """A connection that has had one answer, so the peer's SETTINGS are known."""
    connection = await pool.acquire()
    assert (await answer(submit(connection))).status == "200"
    return connection


@pytest.mark.parametrize("tls", [False, True], ids=["cleartext", "tls"])
async def test_requests_reuse_one_connection_until_it_is_busy(
    tls: bool, apns_credentials: Any, make_pool: MakePool
) -> None:
    standin = await started_standin(apns_credentials, streams=2, tls=tls)
    try:
        pool = make_pool(standin, max_connections=2)
        first = await pool.acquire()
        answers = [await answer(submit(first, i)) for i in range(3)]
        again = await pool.acquire()
        standin.hold()
        held = [submit(first, 10), submit(first, 11)]  # the peer's two streams: busy
        other = await pool.acquire()
        on_other = submit(other, 12)
        await until(standin, lambda: len(standin.requests) == 6)
        standin.release()
        late = [await answer(r) for r in [*held, on_other]]
    finally:
        await standin.stop()

    assert [a.status for a in [*answers, *late]] == ["200"] * 6
    assert again is first
    assert other is not first
    assert pool.open_connections == [first, other]
    assert standin.connections_accepted == 2


async def test_streams_in_flight_never_exceed_the_peer_limit(
    apns_credentials: Any, make_pool: MakePool
) -> None:
    standin = await started_standin(apns_credentials, streams=2)
    try:
        connection = await warm(make_pool(standin))
        standin.hold()
        requests = [submit(connection, i) for i in range(1, 6)]
        await until(standin, lambda: len(standin.requests) == 3)
        # Everything the client wrote so far has been read: two streams opened, three wait.
        counts = (len(standin.requests), connection.in_flight, connection.queued, connection.is_busy)
        standin.release()
        answers = [await answer(r) for r in requests]
    finally:
        await standin.stop()

    assert connection.stream_limit == 2
    assert counts == (3, 2, 3, True)
    assert [a.status for a in answers] == ["200"] * 5
    # A third open stream would have been a protocol error that closes the connection.
    assert standin.connections_accepted == 1
    assert len(standin.requests) == 6


@pytest.mark.parametrize("ending", ["goaway", "drop"])
async def test_an_ended_connection_fails_what_it_carries_and_the_pool_reconnects(
    ending: str, apns_standin: ApnsStandin, make_pool: MakePool
) -> None:
    pool = make_pool(apns_standin)
    connection = await warm(pool)
    apns_standin.hold()
    requests = [submit(connection, i) for i in range(1, 4)]
    await until(apns_standin, lambda: len(apns_standin.requests) == 4)

    if ending == "goaway":
        apns_standin.goaway()
    else:
        apns_standin.drop_connections()
    outcomes = await asyncio.wait_for(
        asyncio.gather(*(r.future for r in requests), return_exceptions=True), WAIT
    )
    forgotten = pool.open_connections == []
    apns_standin.release()  # to a closed connection: nothing arrives
    fresh = await warm(pool)

    assert all(isinstance(o, ConnectionClosed) for o in outcomes), outcomes
    assert forgotten
    assert fresh is not connection
    assert pool.open_connections == [fresh]
    assert apns_standin.connections_accepted == 2


async def test_a_sent_request_times_out_and_its_stream_is_reset(
    apns_standin: ApnsStandin, make_pool: MakePool
) -> None:
    connection = await warm(make_pool(apns_standin))
    apns_standin.hold()

    request = submit(connection, 1, timeout=0.2)  # held by the stand-in: only the deadline ends it
    with pytest.raises(RequestTimeout) as timed_out:
        await answer(request)
    await until(apns_standin, lambda: apns_standin.resets_received == 1)
    in_flight = connection.in_flight
    apns_standin.release()  # the answer to the reset stream is dropped
    after = await answer(submit(connection, 2))

    assert timed_out.value.sent
    assert in_flight == 0
    assert after.status == "200"
    assert apns_standin.connections_accepted == 1


async def test_a_queued_request_times_out_unsent_and_is_never_sent(
    apns_credentials: Any, make_pool: MakePool
) -> None:
    standin = await started_standin(apns_credentials, streams=1)
    try:
        connection = await warm(make_pool(standin))
        standin.hold()
        first = submit(connection, 1)
        second = submit(connection, 2, timeout=0.2)  # waits for the one stream, held by the stand-in
        with pytest.raises(RequestTimeout) as timed_out:
            await answer(second)
        standin.release()
        answers = [await answer(first), await answer(submit(connection, 3))]
    finally:
        await standin.stop()

    assert not timed_out.value.sent
    assert [a.status for a in answers] == ["200", "200"]
    assert [r.token for r in standin.requests] == [f"{i:064x}" for i in (0, 1, 3)]


async def test_an_abandoned_request_is_reset_and_the_connection_keeps_working(
    apns_standin: ApnsStandin, make_pool: MakePool
) -> None:
    connection = await warm(make_pool(apns_standin))
    apns_standin.hold()
    request = submit(connection, 1)
    await until(apns_standin, lambda: len(apns_standin.requests) == 2)

    connection.abandon(request)
    await until(apns_standin, lambda: apns_standin.resets_received == 1)
    apns_standin.release()
    after = await answer(submit(connection, 2))

    assert request.future.cancelled()
    assert after.status == "200"
    assert apns_standin.connections_accepted == 1


async def test_answer_bodies_are_acknowledged_so_answers_never_stall(
    apns_standin: ApnsStandin, make_pool: MakePool
) -> None:
    count = 1400  # ~70 KB of 410 bodies: more than the 64 KiB window the client starts with
    for i in range(count):
        apns_standin.dead_tokens[f"{i:064x}"] = 1_700_000_000_000
    connection = await make_pool(apns_standin).acquire()

    answers = [await answer(r) for r in [submit(connection, i) for i in range(count)]]

    assert {a.status for a in answers} == {"410"}
    assert {a.body for a in answers} == {b'{"reason":"Unregistered","timestamp":1700000000000}'}
    assert sum(len(a.body) for a in answers) > 65535
    assert apns_standin.window_updates_received > 0
    assert apns_standin.connections_accepted == 1


async def test_each_stream_carries_the_credential_minted_when_it_opens(
    apns_credentials: Any, make_pool: MakePool, signer: ProviderTokenSigner
) -> None:
    standin = await started_standin(apns_credentials, streams=1)
    try:
        connection = await warm(make_pool(standin))
        standin.hold()
        first = submit(connection, 1)
        queued = submit(connection, 2)  # opens only once the first is answered
        await until(standin, lambda: len(standin.requests) == 2)
        signer.invalidate(signer.generation)
        standin.release()
        answers = [await answer(first), await answer(queued)]
    finally:
        await standin.stop()

    assert [a.status for a in answers] == ["200", "200"]  # the stand-in verified both tokens
    assert [a.credential_generation for a in answers] == [1, 2]
    bearers = [r.headers["authorization"] for r in standin.requests]
    assert bearers[0] == bearers[1] != bearers[2]


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
