"""The push pipeline through the HTTP API, with the real aioapns/pyfcm against the stand-ins.

Devices register over the client API, messages go in through the admin API, the
server's own worker expands, claims, sends and records; assertions read the stand-ins'
request logs, the stats endpoint and the delivery rows.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from mpaas.app import create_app
from mpaas.appkeys import DB
from mpaas.identity.audit import Actor
from mpaas.identity.tokens import create_token
from mpaas.push.models import PushDelivery, PushDevice
from mpaas.push.service_key import PUSH
from mpaas.push.standins.apns import ApnsStandin
from mpaas.push.standins.fcm import FcmStandin
from mpaas.settings import Settings
from mpaas.storage.db import utcnow

FAST = {"push_poll_interval": 0.05, "push_backoff_base": 0.01, "push_backoff_max": 0.05}


def apns_token(i: int) -> str:
    return f"{i:064x}"


async def make_client(aiohttp_client: Any, settings: Settings) -> tuple[Any, dict[str, str], str]:
    """A running app, an admin header, and the production deployment key of app 'bank'."""
    client = await aiohttp_client(create_app(settings))
    _row, secret = await create_token(client.app[DB], Actor("test"), name="ops", role="push-operator")
    _admin_row, admin = await create_token(client.app[DB], Actor("test"), name="admin", role="admin")
    created = await client.post(
        "/api/v1/apps",
        json={"name": "bank", "platforms": ["ios", "android"]},
        headers={"Authorization": f"Bearer {admin}"},
    )
    assert created.status == 201, await created.text()
    key = next(c["deployment_key"] for c in (await created.json())["channels"] if c["name"] == "production")
    return client, {"Authorization": f"Bearer {secret}"}, key


async def register(
    client: Any, key: str, device_id: str, provider: str, token: str | None, **extra: Any
) -> dict[str, Any]:
    body = {"device_id": device_id, "provider": provider, **({"token": token} if token else {}), **extra}
    resp = await client.post("/client/v1/devices", json=body, headers={"X-Mpaas-Deployment-Key": key})
    assert resp.status in (200, 201), await resp.text()
    out: dict[str, Any] = await resp.json()
    return out


async def send(client: Any, headers: dict[str, str], **body: Any) -> int:
    resp = await client.post("/api/v1/apps/bank/push/messages", json=body, headers=headers)
    assert resp.status == 202, await resp.text()
    return int((await resp.json())["id"])


async def stats(client: Any, headers: dict[str, str], message_id: int) -> dict[str, Any]:
    resp = await client.get(f"/api/v1/apps/bank/push/messages/{message_id}", headers=headers)
    assert resp.status == 200, await resp.text()
    out: dict[str, Any] = await resp.json()
    return out


async def wait_for(check: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> None:
    """Poll ``check`` until true; fail after ``timeout`` (a hang guard, not a timing assertion)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.05)


async def settled(client: Any, headers: dict[str, str], message_id: int) -> dict[str, Any]:
    result: dict[str, Any] = {}

    async def done() -> bool:
        result.update(await stats(client, headers, message_id))
        return result["status"] == "queued" and result["stats"]["pending"] == 0

    await wait_for(done)
    return result


async def deliveries(client: Any, message_id: int) -> list[PushDelivery]:
    async with client.app[DB].session() as s:
        rows = await s.exec(select(PushDelivery).where(PushDelivery.message_id == message_id))
        return sorted(rows.all(), key=lambda d: d.id or 0)


def assert_adds_up(st: dict[str, Any]) -> None:
    for bucket in [st, *st["providers"].values()]:
        assert bucket["targeted"] == bucket["sent"] + bucket["failed"] + bucket["pending"]
        assert bucket["failed"] == sum(bucket["failed_by_reason"].values())


@pytest.fixture
def apns_settings(
    make_settings: Callable[..., Settings], apns_standin: ApnsStandin, apns_credentials: Any, tmp_path: Path
) -> Callable[..., Settings]:
    key_file = tmp_path / "AuthKey.p8"
    key_file.write_text(apns_credentials.key_pem)
    make_settings()  # creates (and migrates) the database now, outside the event loop

    def build(**overrides: Any) -> Settings:
        return make_settings(
            apns_key_file=str(key_file),
            apns_key_id=apns_credentials.key_id,
            apns_team_id=apns_credentials.team_id,
            apns_topic=apns_credentials.topic,
            apns_endpoint=f"http://127.0.0.1:{apns_standin.port}",
            **(FAST | overrides),
        )

    return build


async def test_apns_delivery_localised_with_ids_and_stats(
    aiohttp_client: Any, apns_settings: Callable[..., Settings], apns_standin: ApnsStandin
) -> None:
    client, ops, key = await make_client(aiohttp_client, apns_settings())
    await register(client, key, "d1", "apns", apns_token(1), locale="de_CH", tags=["vip"])
    await register(client, key, "d2", "apns", apns_token(2), locale="fr")
    await register(client, key, "d3", "apns", apns_token(3), tags=["vip"])
    mid = await send(
        client,
        ops,
        audience={"all": True},
        title="Hello",
        body="Your statement is ready",
        locales={"de": {"title": "Hallo", "body": "Ihr Auszug ist bereit"}},
        data={"screen": "statements"},
        ttl=600,
    )
    out = await settled(client, ops, mid)
    st = out["stats"]
    assert (st["devices"], st["targeted"], st["sent"], st["failed"]) == (3, 3, 3, 0)
    assert st["providers"]["apns"]["sent"] == 3
    assert_adds_up(st)
    assert sorted(apns_standin.by_token.values()) == [1, 1, 1]
    rows = {r.token: r for r in apns_standin.requests}
    german = json.loads(rows[apns_token(1)].payload)
    assert german["aps"]["alert"] == {"title": "Hallo", "body": "Ihr Auszug ist bereit"}
    french = json.loads(rows[apns_token(2)].payload)
    assert french["aps"]["alert"]["title"] == "Hello"
    assert french["screen"] == "statements" and french["mpaas_message"] == str(mid)
    ids = {d.id for d in await deliveries(client, mid)}
    assert {int(json.loads(r.payload)["mpaas_delivery"]) for r in rows.values()} == ids
    assert rows[apns_token(1)].headers["apns-collapse-id"] == f"mpaas-{mid}"

    by_tag = await send(client, ops, audience={"tags": ["vip"]}, title="VIP")
    assert (await settled(client, ops, by_tag))["stats"]["sent"] == 2


async def test_dead_tokens_disabled_only_when_410_is_newer_than_registration(
    aiohttp_client: Any, apns_settings: Callable[..., Settings], apns_standin: ApnsStandin
) -> None:
    client, ops, key = await make_client(aiohttp_client, apns_settings())
    for i in range(1, 4):
        await register(client, key, f"d{i}", "apns", apns_token(i))
    later_ms = int((utcnow() + timedelta(minutes=5)).timestamp() * 1000)
    apns_standin.dead_tokens[apns_token(1)] = later_ms  # uninstalled after it registered
    apns_standin.dead_tokens[apns_token(2)] = 1_600_000_000_000  # re-registered since: stale verdict
    mid = await send(client, ops, audience={"all": True}, title="t")
    st = (await settled(client, ops, mid))["stats"]
    assert st["failed_by_reason"] == {"invalid_token": 1, "unregistered_stale": 1}
    assert st["sent"] == 1
    assert_adds_up(st)
    async with client.app[DB].session() as s:
        devices = {d.device_id: d for d in (await s.exec(select(PushDevice))).all()}
    assert not devices["d1"].enabled and devices["d1"].disabled_reason == "invalid_token"
    assert devices["d2"].enabled and devices["d3"].enabled

    again = await send(client, ops, audience={"all": True}, title="t2")
    st2 = (await settled(client, ops, again))["stats"]
    assert st2["targeted"] == 2  # the dead token is no longer targeted


async def test_retry_honours_retry_after_and_backoff_is_bounded(
    aiohttp_client: Any, apns_settings: Callable[..., Settings], apns_standin: ApnsStandin
) -> None:
    client, ops, key = await make_client(
        aiohttp_client, apns_settings(push_backoff_base=5.0, push_backoff_max=5.0)
    )
    await register(client, key, "d1", "apns", apns_token(1))
    await register(client, key, "d2", "apns", apns_token(2))
    apns_standin.inject(429, "TooManyRequests", count=1, retry_after="30")
    # Every later send fails too: full jitter may bring the 503 back within milliseconds,
    # and a retry that succeeded before the snapshot below would leave one row pending.
    apns_standin.inject(503, "ServiceUnavailable", count=1000)
    mid = await send(client, ops, audience={"all": True}, title="t")

    async def both_tried() -> bool:
        rows = await deliveries(client, mid)
        return len(rows) == 2 and all(r.attempts >= 1 and r.claimed_by is None for r in rows)

    await wait_for(both_tried)
    worker = client.app[PUSH].worker
    assert worker is not None
    await worker.stop()  # nothing moves between the snapshots below
    observed = utcnow()  # the outcomes were recorded (and their backoff drawn) before this
    rows = await deliveries(client, mid)
    by_reason = {r.reason: r for r in rows}
    assert set(by_reason) == {"retry:TooManyRequests", "retry:ServiceUnavailable"}
    throttled, unavailable = by_reason["retry:TooManyRequests"], by_reason["retry:ServiceUnavailable"]
    for row in rows:
        assert row.status == "pending" and row.last_attempt_at is not None
    assert throttled.last_attempt_at is not None and unavailable.last_attempt_at is not None
    # Retry-After wins over the (smaller) backoff; without it, full jitter within the 5 s cap,
    # counted from when the outcome was recorded (after the send, so not from last_attempt_at).
    assert throttled.next_attempt_at - throttled.last_attempt_at >= timedelta(seconds=30)
    assert unavailable.last_attempt_at <= unavailable.next_attempt_at <= observed + timedelta(seconds=5)
    st = (await stats(client, ops, mid))["stats"]
    assert st["pending"] == 2
    assert_adds_up(st)


async def test_no_endless_retry_attempts_capped_and_ttl_enforced(
    aiohttp_client: Any, apns_settings: Callable[..., Settings], apns_standin: ApnsStandin
) -> None:
    client, ops, key = await make_client(aiohttp_client, apns_settings(push_max_attempts=3))
    await register(client, key, "d1", "apns", apns_token(1))
    # A failure that is not transient (our credentials) is capped; 429/5xx are retried until
    # the TTL instead (tests/push/test_push_worker_leases.py).
    apns_standin.inject(403, "InvalidProviderToken", rate=1.0)
    mid = await send(client, ops, audience={"devices": ["d1"]}, title="t")
    st = (await settled(client, ops, mid))["stats"]
    assert st["failed_by_reason"] == {"max_attempts": 1}
    assert apns_standin.by_token[apns_token(1)] == 3
    (row,) = await deliveries(client, mid)
    assert (row.attempts, row.transient_failures) == (3, 0)

    apns_standin.faults.clear()
    apns_standin.inject(429, "TooManyRequests", rate=1.0, retry_after="120")
    expiring = await send(client, ops, audience={"devices": ["d1"]}, title="t", ttl=60)
    st = (await settled(client, ops, expiring))["stats"]
    assert st["failed_by_reason"] == {"expired": 1}  # the next try would be after the TTL


async def test_fcm_unregistered_disables_and_429_is_retried(
    aiohttp_client: Any, settings: Settings, fcm_standin: FcmStandin, tmp_path: Path
) -> None:
    assert fcm_standin.base_url is not None
    account = fcm_standin.write_service_account(tmp_path / "sa.json", base_url=fcm_standin.base_url)
    settings = settings.with_overrides(
        fcm_service_account=str(account), fcm_endpoint=fcm_standin.base_url, **FAST
    )
    client, ops, key = await make_client(aiohttp_client, settings)
    await register(client, key, "a1", "fcm", "tok-alive")
    await register(client, key, "a2", "fcm", "tok-dead")
    fcm_standin.dead_tokens.add("tok-dead")
    fcm_standin.inject(429, "QUOTA_EXCEEDED", count=1, retry_after="0")
    mid = await send(client, ops, audience={"all": True}, title="t", body="b")
    st = (await settled(client, ops, mid))["stats"]
    assert st["sent"] == 1 and st["failed_by_reason"] == {"invalid_token": 1}
    assert fcm_standin.by_token["tok-alive"] >= 1
    async with client.app[DB].session() as s:
        dead = (await s.exec(select(PushDevice).where(PushDevice.device_id == "a2"))).one()
    assert not dead.enabled


async def test_scheduled_message_waits_and_token_moves(
    aiohttp_client: Any, apns_settings: Callable[..., Settings], apns_standin: ApnsStandin
) -> None:
    client, ops, key = await make_client(aiohttp_client, apns_settings())
    await register(client, key, "old-phone", "apns", apns_token(7), user_id="u1")
    await register(client, key, "new-phone", "apns", apns_token(7), user_id="u2")  # the token moved
    later = (utcnow() + timedelta(hours=1)).isoformat()
    scheduled = await send(client, ops, audience={"users": ["u1", "u2"]}, title="later", send_at=later)
    now_mid = await send(client, ops, audience={"users": ["u1", "u2"]}, title="now")
    st = (await settled(client, ops, now_mid))["stats"]
    assert st["targeted"] == 1 and st["sent"] == 1  # only the device that holds the token now
    assert apns_standin.by_token[apns_token(7)] == 1
    waiting = await stats(client, ops, scheduled)
    assert waiting["status"] == "scheduled" and waiting["stats"]["targeted"] == 0
