"""The goal of issue 13's "Push under crashes": ``kill -9`` of ``mpaas push worker`` mid-batch.

Against the FCM stand-in, frozen mid-batch with ``hold()``: nothing is lost, only the
requests in flight at the kill are sent twice, and the dead worker's rows are claimable
again at most one lease after the kill (the lease arithmetic below; with the default
settings that is 8 s, plus at most one 1 s poll before another worker claims them).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlmodel import select

from mpaas.app import create_app
from mpaas.appkeys import DB
from mpaas.identity.audit import Actor
from mpaas.identity.tokens import create_token
from mpaas.push.models import PushDelivery, PushDevice
from mpaas.push.standins.fcm import FcmStandin
from mpaas.settings import Settings
from mpaas.storage.db import utcnow

MPAAS = [sys.executable, "-m", "mpaas.cli.main"]
DEVICES, CLAIM, FCM_THREADS = 60, 20, 16
LEASE = 3


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 60.0) -> None:
    """Wait for a condition (a hang guard, never a timing assertion)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


def test_the_defaults_bring_a_dead_workers_rows_back_within_10_s() -> None:
    """The documented claim: lease (the longest a dead worker's row stays held) + one poll <= 10 s."""
    defaults = Settings.from_env({}, {"data_dir": Path("/nonexistent")})
    assert defaults.push_heartbeat_seconds < defaults.push_lease_seconds
    assert defaults.push_lease_seconds + defaults.push_poll_interval <= 10


async def test_kill_9_mid_batch_loses_nothing_and_repeats_only_what_was_in_flight(
    aiohttp_client: Any, settings: Settings, fcm_standin: FcmStandin, tmp_path: Path
) -> None:
    client = await aiohttp_client(create_app(settings.with_overrides(push_worker=False)))
    db = client.app[DB]
    _r, ops = await create_token(db, Actor("test"), name="ops", role="push-operator")
    _r, admin = await create_token(db, Actor("test"), name="admin", role="admin")
    resp = await client.post(
        "/api/v1/apps",
        json={"name": "bank", "platforms": ["android"]},
        headers={"Authorization": f"Bearer {admin}"},
    )
    key = next(c["deployment_key"] for c in (await resp.json())["channels"] if c["name"] == "production")
    for i in range(DEVICES):
        body = {"device_id": f"d{i}", "provider": "fcm", "token": f"tok-{i}"}
        assert (
            await client.post("/client/v1/devices", json=body, headers={"X-Deployment-Key": key})
        ).status == 201
    resp = await client.post(
        "/api/v1/apps/bank/push/messages",
        json={"audience": {"all": True}, "title": "t"},
        headers={"Authorization": f"Bearer {ops}"},
    )
    assert resp.status == 202
    assert fcm_standin.base_url is not None
    account = fcm_standin.write_service_account(tmp_path / "sa.json", base_url=fcm_standin.base_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MPAAS_")} | {
        "MPAAS_DATA_DIR": str(settings.data_dir),
        "MPAAS_DATABASE_URL": settings.database_url,
        "MPAAS_AUTO_MIGRATE": "false",
        "MPAAS_LOG_JSON": "false",
        "MPAAS_FCM_SERVICE_ACCOUNT": str(account),
        "MPAAS_FCM_ENDPOINT": fcm_standin.base_url,
        "MPAAS_PUSH_CLAIM_SIZE": str(CLAIM),
        "MPAAS_PUSH_CONCURRENCY": "1",
        # Shorter than the defaults only to keep the test quick; the arithmetic is the same.
        "MPAAS_PUSH_LEASE_SECONDS": str(LEASE),
        "MPAAS_PUSH_HEARTBEAT_SECONDS": "1",
        "MPAAS_PUSH_POLL_INTERVAL": "0.05",
    }

    async def rows() -> list[PushDelivery]:
        async with db.session() as s:
            return list((await s.exec(select(PushDelivery))).all())

    fcm_standin.hold()
    first = await asyncio.create_subprocess_exec(
        *MPAAS, "push", "worker", env=env, stderr=asyncio.subprocess.DEVNULL
    )
    try:

        async def first_requests_held() -> bool:
            return fcm_standin.in_flight == FCM_THREADS

        await until(first_requests_held)
        fcm_standin.release()  # 16 answers; the other 4 of the slice go out and are held
        fcm_standin.hold()

        async def answers_recorded() -> bool:
            sent = sum(r.status == "sent" for r in await rows())
            return sent == FCM_THREADS and fcm_standin.in_flight == CLAIM - FCM_THREADS

        await until(answers_recorded)
    finally:
        first.kill()  # SIGKILL: no outcome, no goodbye; four requests truly in flight
        await first.wait()
    killed_at = utcnow()
    answered = Counter(fcm_standin.by_token)
    held = [r for r in await rows() if r.claimed_by is not None]
    assert len(held) == CLAIM - FCM_THREADS  # the answered ones were written before the kill
    # Lease arithmetic: the last heartbeat came before the kill, so each row is free by kill + lease.
    assert all(
        r.lease_until is not None and r.lease_until <= killed_at + timedelta(seconds=LEASE) for r in held
    )
    async with db.session() as s:
        tokens = {d.id: d.token for d in (await s.exec(select(PushDevice))).all()}
    in_flight = {tokens[r.device_pk] for r in held}
    assert not in_flight & set(answered)
    fcm_standin.release()  # the held requests meet a dead connection

    second = await asyncio.create_subprocess_exec(
        *MPAAS, "push", "worker", env=env, stderr=asyncio.subprocess.DEVNULL
    )
    try:

        async def finished() -> bool:
            got = await rows()
            return len(got) == DEVICES and all(r.status != "pending" for r in got)

        await until(finished)
    finally:
        second.terminate()
        await second.wait()
    final = await rows()
    assert {r.status for r in final} == {"sent"}  # nothing lost
    counts = fcm_standin.by_token
    assert set(counts) == {f"tok-{i}" for i in range(DEVICES)}
    repeated = {t for t, n in counts.items() if n > 1}
    # At most what was in flight is sent twice (this stand-in drops a request whose client died,
    # so here none is; a real FCM may have accepted it).
    assert repeated <= in_flight and all(counts[t] <= 2 for t in counts)
    again = [r for r in final if r.attempts == 2]
    assert {tokens[r.device_pk] for r in again} == in_flight and all(r.transient_failures == 1 for r in again)
