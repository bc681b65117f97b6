"""`mpaas push …`: send/stats/list against a server (in-process CLI), and `push worker` killed with SIGKILL."""

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
from tests_support import cli_in_thread

MPAAS = [sys.executable, "-m", "mpaas.cli.main"]
DEVICES = 120


def token(i: int) -> str:
    return f"{i:064x}"


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
        "MPAAS_PUSH_HEARTBEAT_SECONDS": "0.5",
        "MPAAS_PUSH_POLL_INTERVAL": "0.05",
    }


async def setup_app(
    aiohttp_client: Any, settings: Settings, devices: int, *, worker: bool = False
) -> tuple[Any, str]:
    """A server (with its own push worker or not), app 'bank' with ``devices`` APNs devices.

    Returns (client, ops token).
    """
    client = await aiohttp_client(create_app(settings.with_overrides(push_worker=worker)))
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
    resp = await client.post(
        "/api/v1/apps/bank/push/messages",
        json={"audience": {"all": True}, "title": "t"},
        headers={"Authorization": f"Bearer {ops}"},
    )
    mid = (await resp.json())["id"]

    first = await asyncio.create_subprocess_exec(
        *MPAAS, "push", "worker", env=worker_env, stderr=asyncio.subprocess.DEVNULL
    )

    def answered_some_then_hold() -> bool:
        """After 30 answers the stand-in holds every answer: the rest of the batch stays in flight."""
        if len(apns_standin.requests) >= 30:
            apns_standin.hold()
            return True
        return False

    await asyncio.wait_for(apns_standin.wait_for(answered_some_then_hold), 60)
    await asyncio.wait_for(apns_standin.wait_for(lambda: len(apns_standin.held) > 0), 60)
    first.kill()  # SIGKILL while requests are truly in flight; leases stay on its rows
    await first.wait()
    held_ids = {apns_id for _conn, _stream, apns_id, _answer in apns_standin.held}
    in_flight = {r.token for r in apns_standin.requests if r.apns_id in held_ids}
    before = Counter(apns_standin.by_token)
    assert sum(before.values()) < DEVICES
    apns_standin.release()  # the held answers go to a dead connection
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
    assert in_flight <= repeated  # never answered: the second worker had to send them again


async def test_cli_send_stats_list(
    aiohttp_client: Any, settings: Settings, apns_standin: ApnsStandin, apns_credentials: Any, tmp_path: Path
) -> None:
    """send/stats/list through the CLI; the app's own worker delivers (the subprocess worker is tested above)."""
    key_file = tmp_path / "AuthKey.p8"
    key_file.write_text(apns_credentials.key_pem)
    with_apns = settings.with_overrides(
        apns_key_file=str(key_file),
        apns_key_id=apns_credentials.key_id,
        apns_team_id=apns_credentials.team_id,
        apns_topic=apns_credentials.topic,
        apns_endpoint=f"http://127.0.0.1:{apns_standin.port}",
        push_poll_interval=0.05,
    )
    client, ops = await setup_app(aiohttp_client, with_apns, 6, worker=True)
    env = {
        "MPAAS_SERVER": str(client.make_url("")).rstrip("/"),
        "MPAAS_TOKEN": ops,
        "MPAAS_CONFIG_HOME": str(tmp_path / "cfg"),
    }

    async def mpaas(*args: str) -> str:
        return str((await cli_in_thread(list(args), env)).stdout)

    out = json.loads(
        await mpaas(
            "push", "send", "--app", "bank", "--user", "u1", "--title", "Hi", "--body", "There",
            "--ttl", "1h", "--json",
        )
    )  # fmt: skip
    assert out["audience"] == {"users": ["u1"]} and out["ttl"] == 3600
    later = json.loads(
        await mpaas("push", "send", "--app", "bank", "--all", "--title", "Later", "--at", "+2h", "--json")
    )
    assert later["status"] == "scheduled"

    async def sent() -> bool:
        async with client.app[DB].session() as s:
            rows = (await s.exec(select(PushDelivery).where(PushDelivery.message_id == out["id"]))).all()
        return len(rows) == 2 and all(r.status == "sent" for r in rows)

    await wait_for(sent)
    stats = json.loads(await mpaas("push", "stats", str(out["id"]), "--json"))["stats"]
    assert (stats["targeted"], stats["sent"], stats["failed"], stats["pending"]) == (2, 2, 0, 0)
    text = await mpaas("push", "stats", str(out["id"]))
    assert "targeted: 2" in text and "apns" in text
    listed = await mpaas("push", "list", "--app", "bank")
    assert str(out["id"]) in listed and str(later["id"]) in listed
    assert sorted(apns_standin.by_token.values()) == [1, 1]
