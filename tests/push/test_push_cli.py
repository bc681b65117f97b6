"""`mpaas push …` as subprocesses: send/stats/list against a server, and `push worker` killed with SIGKILL."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from mpaas.app import create_app
from mpaas.appkeys import DB
from mpaas.identity.audit import Actor
from mpaas.identity.tokens import create_token
from mpaas.push.models import PushDelivery
from mpaas.push.standins.apns import ApnsStandin
from mpaas.settings import Settings

MPAAS = [sys.executable, "-m", "mpaas.cli.main"]
DEVICES = 120


def token(i: int) -> str:
    return f"{i:064x}"


async def run_cli(args: list[str], env: dict[str, str]) -> str:
    proc = await asyncio.create_subprocess_exec(
        *MPAAS, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def wait_for(check: Callable[[], Awaitable[bool]], timeout: float = 60.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.05)


@pytest.fixture
def worker_env(
    settings: Settings, apns_standin: ApnsStandin, apns_credentials: Any, tmp_path: Path
) -> dict[str, str]:
    key_file = tmp_path / "AuthKey.p8"
    key_file.write_text(apns_credentials.key_pem)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MPAAS_")}
    return env | {
        "MPAAS_DATA_DIR": str(settings.data_dir),
        "MPAAS_DATABASE_URL": settings.database_url,
        "MPAAS_AUTO_MIGRATE": "false",
        "MPAAS_LOG_JSON": "false",
        "MPAAS_CONFIG_HOME": str(tmp_path / "cfg"),
        "MPAAS_APNS_KEY_FILE": str(key_file),
        "MPAAS_APNS_KEY_ID": apns_credentials.key_id,
        "MPAAS_APNS_TEAM_ID": apns_credentials.team_id,
        "MPAAS_APNS_TOPIC": apns_credentials.topic,
        "MPAAS_APNS_ENDPOINT": f"http://127.0.0.1:{apns_standin.port}",
        "MPAAS_PUSH_BATCH_SIZE": "20",
        "MPAAS_PUSH_LEASE_SECONDS": "2",
        "MPAAS_PUSH_POLL_INTERVAL": "0.05",
    }


async def setup_app(aiohttp_client: Any, settings: Settings, devices: int) -> tuple[Any, str]:
    """A server without its own worker, app 'bank' with ``devices`` APNs devices; returns (client, ops token)."""
    client = await aiohttp_client(create_app(settings.with_overrides(push_worker=False)))
    _r, ops = await create_token(client.app[DB], Actor("test"), name="ops", role="push-operator")
    _r, admin = await create_token(client.app[DB], Actor("test"), name="admin", role="admin")
    resp = await client.post(
        "/api/v1/apps",
        json={"name": "bank", "platforms": ["ios"]},
        headers={"Authorization": f"Bearer {admin}"},
    )
    key = next(c["deployment_key"] for c in (await resp.json())["channels"] if c["name"] == "production")
    for i in range(devices):
        resp = await client.post(
            "/client/v1/devices",
            json={"device_id": f"d{i}", "provider": "apns", "token": token(i), "user_id": f"u{i % 3}"},
            headers={"X-Mpaas-Deployment-Key": key},
        )
        assert resp.status == 201
    return client, ops


async def test_worker_killed_mid_batch_loses_nothing(
    aiohttp_client: Any, settings: Settings, worker_env: dict[str, str], apns_standin: ApnsStandin
) -> None:
    client, ops = await setup_app(aiohttp_client, settings, DEVICES)
    apns_standin.response_delay = 0.2  # keep batches in flight long enough to be killed mid-way
    resp = await client.post(
        "/api/v1/apps/bank/push/messages",
        json={"audience": {"all": True}, "title": "t"},
        headers={"Authorization": f"Bearer {ops}"},
    )
    mid = (await resp.json())["id"]

    first = await asyncio.create_subprocess_exec(
        *MPAAS, "push", "worker", env=worker_env, stderr=asyncio.subprocess.DEVNULL
    )

    async def some_sent() -> bool:
        return len(apns_standin.requests) >= 30

    await wait_for(some_sent)
    first.kill()  # SIGKILL: no graceful stop, leases stay on its rows
    await first.wait()
    before = Counter(apns_standin.by_token)
    assert sum(before.values()) < DEVICES

    apns_standin.response_delay = 0.0
    second = await asyncio.create_subprocess_exec(
        *MPAAS, "push", "worker", env=worker_env, stderr=asyncio.subprocess.DEVNULL
    )

    async def finished() -> bool:
        async with client.app[DB].session() as s:
            rows = (await s.exec(select(PushDelivery).where(PushDelivery.message_id == mid))).all()
        return len(rows) == DEVICES and all(r.status != "pending" for r in rows)

    try:
        await wait_for(finished)
    finally:
        second.terminate()
        await second.wait()
    async with client.app[DB].session() as s:
        rows = (await s.exec(select(PushDelivery).where(PushDelivery.message_id == mid))).all()
    assert {r.status for r in rows} == {"sent"}  # none lost, none left pending
    assert all(1 <= r.attempts <= 2 for r in rows)  # no endless retry
    counts = apns_standin.by_token
    assert set(counts) == {token(i) for i in range(DEVICES)}
    repeated = {t for t, n in counts.items() if n > 1}
    # Only deliveries in flight at the kill are sent again, and only once (at-least-once).
    assert repeated <= set(before) and all(counts[t] == 2 for t in repeated)


async def test_cli_send_stats_list(
    aiohttp_client: Any, settings: Settings, worker_env: dict[str, str], apns_standin: ApnsStandin
) -> None:
    client, ops = await setup_app(aiohttp_client, settings, 6)
    env = worker_env | {"MPAAS_SERVER": str(client.make_url("")).rstrip("/"), "MPAAS_TOKEN": ops}
    out = json.loads(
        await run_cli(
            [
                "push",
                "send",
                "--app",
                "bank",
                "--user",
                "u1",
                "--title",
                "Hi",
                "--body",
                "There",
                "--ttl",
                "1h",
                "--json",
            ],
            env,
        )
    )
    assert out["audience"] == {"users": ["u1"]} and out["ttl"] == 3600
    later = json.loads(
        await run_cli(
            ["push", "send", "--app", "bank", "--all", "--title", "Later", "--at", "+2h", "--json"], env
        )
    )
    assert later["status"] == "scheduled"
    worker = await asyncio.create_subprocess_exec(
        *MPAAS, "push", "worker", env=worker_env, stderr=asyncio.subprocess.DEVNULL
    )
    try:

        async def sent() -> bool:
            stats = json.loads(await run_cli(["push", "stats", str(out["id"]), "--json"], env))["stats"]
            return bool(stats["sent"] == 2)

        await wait_for(sent)
    finally:
        worker.terminate()
        await worker.wait()
    stats = json.loads(await run_cli(["push", "stats", str(out["id"]), "--json"], env))["stats"]
    assert (stats["targeted"], stats["sent"], stats["failed"], stats["pending"]) == (2, 2, 0, 0)
    text = await run_cli(["push", "stats", str(out["id"])], env)
    assert "targeted: 2" in text and "apns" in text
    listed = await run_cli(["push", "list", "--app", "bank"], env)
    assert str(out["id"]) in listed and str(later["id"]) in listed
    assert sorted(apns_standin.by_token.values()) == [1, 1]
