"""ApnsProvider under load and slowness: no stalls, no resends, no sends after a timeout.

These are the regressions the HTTP/2 client exists for (aioapns 4.0 stalls on error
bodies and resends; it overflows the send window); the client itself is tested directly
in test_http2.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aioapns import APNs, NotificationRequest
from aioapns.connection import APNsProductionClientProtocol

from mpaas.push.providers.apns import ApnsProvider
from mpaas.push.providers.base import Notification, Outcome
from mpaas.push.standins.apns import ApnsStandin
from tests_support import LoopClock

MakeApns = Callable[..., ApnsProvider]
MakeNote = Callable[..., Notification]

#: A safety net for event waits (a hung test fails instead of waiting for pytest's timeout).
WAIT = 10
#: The request timeout where a test ends held requests by moving the loop clock past it: long
#: enough for answered requests on a busy machine, shorter than aioapns' 10 s idle timer, which
#: the same clock moves (a connection closed for idleness would end the test differently).
TIMEOUT = 5.0


async def test_timeout_frees_the_stream_and_connection_keeps_working(
    apns_standin: ApnsStandin, make_apns: MakeApns, make_note: MakeNote, loop_clock: LoopClock
) -> None:
    provider = make_apns(apns_standin, request_timeout=TIMEOUT)
    assert (await provider.send(make_note(0))).outcome is Outcome.SENT  # the connection is open
    apns_standin.hold()
    slow = make_note(1)

    sending = asyncio.create_task(provider.send(slow))  # held by the stand-in: only the deadline ends it
    await asyncio.wait_for(apns_standin.wait_for(lambda: len(apns_standin.held) == 1), WAIT)
    loop_clock.advance(TIMEOUT)
    timed_out = await sending
    await asyncio.wait_for(apns_standin.wait_for(lambda: apns_standin.resets_received == 1), WAIT)
    apns_standin.release()  # the answer to the reset stream is dropped
    after = await provider.send_many([make_note(i) for i in range(2, 12)])

    assert (timed_out.outcome, timed_out.reason) == (Outcome.RETRY, "Timeout")
    assert all(r.outcome is Outcome.SENT for r in after)
    assert apns_standin.by_apns_id[slow.message_id] == 1
    assert apns_standin.connections_accepted == 1


#: 410 bodies are ~51 bytes: 2,800 of them carry more than twice the 64 KiB initial window.
DEAD_BODY_COUNT = 2800


async def test_thousands_of_error_bodies_do_not_stall_or_resend(
    apns_standin: ApnsStandin, make_apns: MakeApns, make_note: MakeNote
) -> None:
    """Regression: aioapns 4.0 never sends WINDOW_UPDATE, so ~64 KiB of 410 bodies stall a connection."""
    notes = [make_note(i) for i in range(DEAD_BODY_COUNT)]
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
    assert apns_standin.response_body_bytes > 2 * 65535
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
    requests = [NotificationRequest(device_token=f"{i:064x}", message={"aps": {}}) for i in range(2000)]
    for r in requests:
        apns_standin.dead_tokens[r.device_token] = 1_700_000_000_000
    sends = asyncio.gather(*(client.send_notification(r) for r in requests), return_exceptions=True)
    try:
        # Decided by the event itself, not by a window: the stand-in sees one apns-id a
        # second time. The bound only turns a hang into a failure on a very busy machine.
        await asyncio.wait_for(
            apns_standin.wait_for(lambda: max(apns_standin.by_apns_id.values(), default=0) > 1), 120
        )
    finally:
        sends.cancel()
        client.pool.close()
        await asyncio.gather(sends, return_exceptions=True)
    # ~64 KiB of 410 bodies in, the answers stalled; the idle timeout closed the connection
    # and aioapns re-sent the stalled notifications on a new one.
    assert max(apns_standin.by_apns_id.values()) > 1
    assert apns_standin.connections_accepted >= 2
    assert apns_standin.window_updates_received == 0


#: More than the 1,000 in flight, with bodies large enough to fill several send windows.
FLOW_COUNT = 1500


async def test_full_send_window_waits_for_window_update_instead_of_retrying(
    apns_standin: ApnsStandin, make_apns: MakeApns, make_note: MakeNote
) -> None:
    """Regression: 1,000 requests in flight overflow the 64 KiB send window of one connection.

    The provider used to turn h2's FlowControlError into RETRY (thousands of them per run);
    it must wait for the server's WINDOW_UPDATE and send each notification exactly once.
    """
    notes = [make_note(i, data={"pad": "x" * 256}) for i in range(FLOW_COUNT)]
    provider = make_apns(apns_standin, max_connections=1, concurrency=1000, request_timeout=60.0)
    # An open connection, as in steady state: the whole first 1,000 leave in one event-loop tick.
    warm_up = make_note(FLOW_COUNT)
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


async def test_peer_max_concurrent_streams_is_respected(
    apns_credentials: Any, make_apns: MakeApns, make_note: MakeNote
) -> None:
    c = apns_credentials
    standin = ApnsStandin(verify_key=c.key.public_key(), team_id=c.team_id, max_concurrent_streams=20)
    await standin.start()
    try:
        provider = make_apns(standin, max_connections=1, concurrency=500)
        results = await provider.send_many([make_note(i) for i in range(500)])
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
    apns_credentials: Any, make_apns: MakeApns, make_note: MakeNote, loop_clock: LoopClock
) -> None:
    """The request timeout covers the wait for a stream or window; a request that never left is not sent later."""
    c = apns_credentials
    standin = ApnsStandin(verify_key=c.key.public_key(), team_id=c.team_id, max_concurrent_streams=1)
    await standin.start()
    try:
        provider = make_apns(standin, max_connections=1, request_timeout=TIMEOUT)
        standin.hold()  # the one stream stays busy: only the deadline ends the three requests
        notes = [make_note(i) for i in range(3)]
        sending = asyncio.create_task(provider.send_many(notes))
        await asyncio.wait_for(standin.wait_for(lambda: len(standin.held) == 1), WAIT)
        loop_clock.advance(TIMEOUT)
        timed_out = await sending
        await asyncio.wait_for(standin.wait_for(lambda: standin.resets_received == 1), WAIT)
        standin.release()  # the answer to the reset stream is dropped
        after = await provider.send(make_note(9))
    finally:
        await standin.stop()

    assert [(r.outcome, r.reason) for r in timed_out] == [(Outcome.RETRY, "Timeout")] * 3
    assert standin.by_apns_id[notes[0].message_id] == 1
    assert notes[1].message_id not in standin.by_apns_id
    assert notes[2].message_id not in standin.by_apns_id
    assert after.outcome is Outcome.SENT
    assert standin.connections_accepted == 1
