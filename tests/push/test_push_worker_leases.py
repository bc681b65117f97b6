"""The push worker under crashes, in-process against the FCM stand-in: each decided by events.

Workers run with an injected clock where leases matter, so the lease arithmetic is checked
exactly (a row comes back when its lease ends, not when a test's sleep guesses it did);
the stand-in's ``hold()``/``release()`` keeps requests in flight for as long as a test needs.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import pytest

from mpaas.push.standins.fcm import FcmStandin
from mpaas.push.worker import PushWorker
from mpaas.storage.db import utcnow

from .conftest import MakeFcm
from .worker_env import Clock, Env, config, env, until

__all__ = ["env"]  # the fixture


async def test_outcomes_are_recorded_as_they_arrive(
    env: Env, fcm_standin: FcmStandin, make_fcm: MakeFcm
) -> None:
    await env.devices(12)
    await env.send(audience={"all": True}, title="t")
    worker = PushWorker(env.db, {"fcm": make_fcm(concurrency=4)}, config(claim_size=12))
    assert await worker.housekeeping_once()
    fcm_standin.hold()
    batch = asyncio.create_task(worker.run_batch())
    await until(lambda: fcm_standin.in_flight == 4)
    fcm_standin.release()  # the first four are answered ...
    fcm_standin.hold()  # ... and the next four are held in flight

    async def first_answers_recorded() -> bool:
        return await env.count("sent") == 4 and fcm_standin.in_flight == 4

    await until(first_answers_recorded)
    assert not batch.done()  # written while the rest of the slice is still out
    unanswered = [r for r in await env.rows() if r.status == "pending"]
    assert len(unanswered) == 8 and {r.claimed_by for r in unanswered} == {worker.worker_id}
    fcm_standin.release()
    assert await batch == 12
    assert await env.count("sent") == 12 and set(fcm_standin.by_token.values()) == {1}


async def test_heartbeat_keeps_leases_and_a_dead_workers_rows_return_when_the_lease_ends(
    env: Env, fcm_standin: FcmStandin, make_fcm: MakeFcm
) -> None:
    await env.devices(5)
    await env.send(audience={"all": True}, title="t")
    clock = Clock()
    t0 = clock.now
    a = PushWorker(env.db, {"fcm": make_fcm()}, config(), worker_id="worker-a", clock=clock)
    b = PushWorker(env.db, {"fcm": make_fcm()}, config(), worker_id="worker-b", clock=clock)
    assert await a.housekeeping_once()
    fcm_standin.hold()
    held = asyncio.create_task(a.run_batch())
    await until(lambda: fcm_standin.in_flight == 5)
    assert {r.lease_until for r in await env.rows()} == {t0 + timedelta(seconds=8)}
    clock.at(t0, 7.9)
    assert await b.run_batch() == 0  # the lease holds
    assert await a.renew_leases() == 5  # a heartbeat at 7.9 s: leased until 15.9 s
    assert {r.lease_until for r in await env.rows()} == {t0 + timedelta(seconds=15.9)}
    clock.at(t0, 15.8)
    assert await b.run_batch() == 0  # past the first lease, but the heartbeat renewed it
    # Worker a stops beating (as if killed): its rows are claimable the moment the lease ends.
    clock.at(t0, 15.9 + 0.001)
    taken = asyncio.create_task(b.run_batch())
    await until(lambda: fcm_standin.in_flight == 10)
    assert b.claimed == 5
    fcm_standin.release()
    assert await taken == 5 and await held == 5
    rows = await env.rows()
    # One lost attempt each, counted as transient; b's outcomes are the ones written.
    assert {(r.status, r.attempts, r.transient_failures) for r in rows} == {("sent", 2, 1)}
    assert all(n == 2 for n in fcm_standin.by_token.values())  # duplicates: exactly the five in flight


async def test_two_workers_share_a_queue_by_slices(
    env: Env, fcm_standin: FcmStandin, make_fcm: MakeFcm
) -> None:
    await env.devices(20)
    await env.send(audience={"all": True}, title="t")
    a = PushWorker(env.db, {"fcm": make_fcm()}, config(), worker_id="worker-a")
    b = PushWorker(env.db, {"fcm": make_fcm()}, config(), worker_id="worker-b")
    fcm_standin.hold()
    a.start()
    b.start()
    try:
        await until(lambda: fcm_standin.in_flight >= 10)
        # Each holds one slice; with one worker claiming every due row, b would hold none.
        assert (a.claimed, b.claimed) == (5, 5)
        fcm_standin.release()

        async def delivered() -> bool:
            return await env.count("sent") == 20

        await until(delivered)
    finally:
        await a.stop()
        await b.stop()
    assert a.claimed + b.claimed == 20 and a.claimed >= 5 and b.claimed >= 5  # no row claimed twice
    assert set(fcm_standin.by_token.values()) == {1}


async def test_transient_failures_retry_until_the_ttl_and_warn(
    env: Env, fcm_standin: FcmStandin, make_fcm: MakeFcm, caplog: pytest.LogCaptureFixture
) -> None:
    await env.devices(1)
    fcm_standin.inject(503, "UNAVAILABLE", count=4)
    fcm_standin.inject(429, "QUOTA_EXCEEDED", count=4, retry_after="2")
    survives = (await env.send(audience={"all": True}, title="t", ttl=3600))["id"]
    clock = Clock()  # from now on the worker's time moves only by the test
    worker = PushWorker(env.db, {"fcm": make_fcm()}, config(), clock=clock)
    await worker.housekeeping_once()
    caplog.set_level(logging.WARNING, logger="mpaas.push.queue")
    for _ in range(9):  # 8 transient failures (max_attempts is 3), then the answer
        assert await worker.run_batch() == 1
        (row,) = await env.rows(survives)
        clock.now = max(clock.now, row.next_attempt_at)
    assert (row.status, row.attempts, row.transient_failures) == ("sent", 9, 8)
    kept_failing = [r for r in caplog.records if "keeps failing" in r.getMessage()]
    assert [r.getMessage().split(":")[1].split()[0] for r in kept_failing] == ["3", "6"]

    fcm_standin.inject(503, "UNAVAILABLE", rate=1.0)
    doomed = (await env.send(audience={"all": True}, title="t", ttl=120))["id"]
    clock.now = utcnow()
    for _ in range(3):  # the first message's last expansion step, then this one's two
        await worker.housekeeping_once()
    for _ in range(100):
        if not await worker.run_batch():
            break
        (row,) = await env.rows(doomed)
        assert row.status != "pending" or row.next_attempt_at < row.expires_at  # every try within the TTL
        clock.now = max(clock.now, row.next_attempt_at)
    (row,) = await env.rows(doomed)
    assert (row.status, row.reason) == ("failed", "expired")
    assert row.attempts > 3 and row.transient_failures == row.attempts  # never "max_attempts"
    assert any("expired after" in r.getMessage() for r in caplog.records)


async def test_rows_of_a_dead_worker_are_claimed_again_by_the_lease_alone(
    env: Env, make_fcm: MakeFcm
) -> None:
    """Without a heartbeat (the worker died right after claiming), the rows return at lease end."""
    await env.devices(3)
    await env.send(audience={"all": True}, title="t")
    clock = Clock()
    t0 = clock.now
    survivor = PushWorker(env.db, {"fcm": make_fcm()}, config(), clock=clock)
    from mpaas.push.queue.claims import claim

    assert await survivor.housekeeping_once()
    dead = await claim(env.db, "dead-worker", ["fcm"], t0, 5, timedelta(seconds=8))
    assert len(dead) == 3
    clock.at(t0, 8)
    assert await survivor.run_batch() == 0  # lease_until == now: still held
    clock.at(t0, 8.001)
    assert await survivor.run_batch() == 3
    assert {(r.status, r.transient_failures) for r in await env.rows()} == {("sent", 1)}


async def test_a_running_worker_renews_its_leases_until_the_answers_come(
    env: Env, fcm_standin: FcmStandin, make_fcm: MakeFcm
) -> None:
    await env.devices(3)
    await env.send(audience={"all": True}, title="t")
    worker = PushWorker(env.db, {"fcm": make_fcm()}, config(heartbeat=timedelta(seconds=0.05)))
    fcm_standin.hold()
    worker.start()
    try:
        await until(lambda: fcm_standin.in_flight == 3)
        first = {r.lease_until for r in await env.rows()}
        beats = worker.heartbeats

        async def renewed() -> bool:
            return worker.heartbeats > beats and {r.lease_until for r in await env.rows()} != first

        await until(renewed)
        leases = [r.lease_until for r in await env.rows()]
        assert all(lease is not None and lease > max(first) for lease in leases if max(first) is not None)
        fcm_standin.release()

        async def done() -> bool:
            return await env.count("sent") == 3

        await until(done)
        idle = worker.heartbeats
        assert await worker.renew_leases() == 0 and worker.heartbeats == idle  # nothing in flight, no write
    finally:
        await worker.stop()
    assert {(r.claimed_by, r.lease_until) for r in await env.rows()} == {(None, None)}
