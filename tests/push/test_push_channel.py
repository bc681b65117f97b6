"""The self-built WebSocket channel, receipts and the fallback policy, through the HTTP API."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlmodel import select

from mpaas.app import create_app
from mpaas.appkeys import DB
from mpaas.identity.audit import Actor
from mpaas.identity.tokens import create_token
from mpaas.push.models import PushDelivery
from mpaas.push.service_key import PUSH
from mpaas.push.standins.apns import ApnsStandin
from mpaas.push.worker import PushWorker
from mpaas.settings import Settings
from mpaas.storage.db import utcnow

FAST = {"push_poll_interval": 0.05, "push_backoff_base": 0.01, "push_backoff_max": 0.05}
TOKEN = f"{1:064x}"


@pytest.fixture
def push_settings(
    settings: Settings, apns_standin: ApnsStandin, apns_credentials: Any, tmp_path: Path
) -> Settings:
    key_file = tmp_path / "AuthKey.p8"
    key_file.write_text(apns_credentials.key_pem)
    return settings.with_overrides(
        apns_key_file=str(key_file),
        apns_key_id=apns_credentials.key_id,
        apns_team_id=apns_credentials.team_id,
        apns_topic=apns_credentials.topic,
        apns_endpoint=f"http://127.0.0.1:{apns_standin.port}",
        **FAST,
    )


class Env:
    def __init__(self, client: Any, ops: dict[str, str], key: str) -> None:
        self.client, self.ops, self.key = client, ops, key

    async def register(
        self, device_id: str, provider: str = "ws", token: str | None = None
    ) -> dict[str, str]:
        body: dict[str, Any] = {"device_id": device_id, "provider": provider}
        if token:
            body["token"] = token
        resp = await self.client.post(
            "/client/v1/devices", json=body, headers={"X-Mpaas-Deployment-Key": self.key}
        )
        assert resp.status == 201, await resp.text()
        secret = (await resp.json())["device_secret"]
        return {
            "X-Mpaas-Deployment-Key": self.key,
            "X-Mpaas-Device-Id": device_id,
            "X-Mpaas-Device-Secret": secret,
        }

    async def send(self, **body: Any) -> int:
        resp = await self.client.post("/api/v1/apps/bank/push/messages", json=body, headers=self.ops)
        assert resp.status == 202, await resp.text()
        return int((await resp.json())["id"])

    async def stats(self, message_id: int) -> dict[str, Any]:
        resp = await self.client.get(f"/api/v1/push/messages/{message_id}", headers=self.ops)
        assert resp.status == 200
        out: dict[str, Any] = (await resp.json())["stats"]
        return out

    async def deliveries(self, message_id: int) -> list[PushDelivery]:
        async with self.client.app[DB].session() as s:
            rows = (await s.exec(select(PushDelivery).where(PushDelivery.message_id == message_id))).all()
        return sorted(rows, key=lambda d: d.id or 0)


async def make_env(aiohttp_client: Any, settings: Settings) -> Env:
    """The real app on ``settings`` with app 'bank', a push operator and its deployment key."""
    client = await aiohttp_client(create_app(settings))
    _r, ops = await create_token(client.app[DB], Actor("test"), name="ops", role="push-operator")
    _r, admin = await create_token(client.app[DB], Actor("test"), name="admin", role="admin")
    resp = await client.post(
        "/api/v1/apps",
        json={"name": "bank", "platforms": ["ios"]},
        headers={"Authorization": f"Bearer {admin}"},
    )
    key = next(c["deployment_key"] for c in (await resp.json())["channels"] if c["name"] == "production")
    return Env(client, {"Authorization": f"Bearer {ops}"}, key)


@pytest.fixture
async def env(aiohttp_client: Any, push_settings: Settings) -> Env:
    # The default 30 s heartbeat: a busy machine that answers a ping late must not lose a socket.
    return await make_env(aiohttp_client, push_settings)


def run_worker_later(env: Env, seconds: float) -> PushWorker:
    """Move the app's push worker clock ``seconds`` ahead: deadlines pass without waiting for them."""
    worker = env.client.app[PUSH].worker
    assert worker is not None
    worker.clock = lambda: utcnow() + timedelta(seconds=seconds)
    worker.wake()
    return worker


async def wait_for(check: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.05)


async def next_push(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    while True:
        frame = json.loads((await ws.receive(timeout=30)).data)
        if frame["type"] == "push":
            out: dict[str, Any] = frame
            return out


async def test_ws_requires_device_credentials(env: Env) -> None:
    headers = await env.register("w1")
    wrong = headers | {"X-Mpaas-Device-Secret": "not-the-secret"}
    for bad in (wrong, {k: v for k, v in headers.items() if k != "X-Mpaas-Device-Secret"}):
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await env.client.ws_connect("/client/v1/push/ws", headers=bad)
        assert info.value.status == 401
    # Re-registering a known device id without its secret is refused, so it cannot be taken over.
    resp = await env.client.post(
        "/client/v1/devices",
        json={"device_id": "w1", "provider": "ws"},
        headers={"X-Mpaas-Deployment-Key": env.key},
    )
    assert resp.status == 401 and (await resp.json())["error"]["code"] == "device_auth_failed"


async def test_ws_delivery_ack_reconnect_and_redelivery(env: Env) -> None:
    headers = await env.register("w1")
    ws = await env.client.ws_connect("/client/v1/push/ws", headers=headers)
    first = await env.send(audience={"devices": ["w1"]}, title="one", body="b", data={"k": "v"})
    frame = await next_push(ws)
    assert frame["title"] == "one" and frame["data"] == {"k": "v"} and frame["message_id"] == str(first)
    await ws.close()  # gone without acking

    second = await env.send(audience={"devices": ["w1"]}, title="two")
    ws = await env.client.ws_connect("/client/v1/push/ws", headers=headers)
    got = [await next_push(ws), await next_push(ws)]
    assert [f["title"] for f in got] == ["one", "two"]  # the unacked one is redelivered first
    assert got[0]["id"] == frame["id"]
    await ws.send_json({"type": "ack", "ids": [f["id"] for f in got]})
    acked = json.loads((await ws.receive(timeout=30)).data)
    assert acked == {"type": "acked", "ids": [f["id"] for f in got]}
    await ws.close()

    third = await env.send(audience={"devices": ["w1"]}, title="three")
    ws = await env.client.ws_connect("/client/v1/push/ws", headers=headers)
    assert (await next_push(ws))["title"] == "three"  # acked ones are not sent again
    await ws.close()
    for mid in (first, second):
        st = await env.stats(mid)
        assert (st["sent"], st["arrived"], st["arrival_rate"]) == (1, 1, 1.0)
        assert st["providers"]["ws"]["arrived"] == 1
    assert (await env.stats(third))["arrived"] == 0


async def test_heartbeat_closes_a_dead_connection(aiohttp_client: Any, push_settings: Settings) -> None:
    env = await make_env(aiohttp_client, push_settings.with_overrides(push_ws_heartbeat=0.2))
    headers = await env.register("w1")
    ws = await env.client.ws_connect("/client/v1/push/ws", headers=headers, autoping=False)
    while True:  # never answer the server's pings
        msg = await ws.receive(timeout=30)
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
            break
        assert msg.type == aiohttp.WSMsgType.PING
    await ws.close()

    async def detached() -> bool:
        return not env.client.app[PUSH].hub.connections

    await wait_for(detached)


async def test_fallback_to_apns_when_no_ack_in_time(env: Env, apns_standin: ApnsStandin) -> None:
    headers = await env.register("phone", "apns", TOKEN)
    mid = await env.send(
        audience={"devices": ["phone"]}, title="t", fallback="ws_then_native", ack_timeout=60
    )

    async def armed() -> bool:
        return any(d.ack_deadline is not None for d in await env.deliveries(mid))

    await wait_for(armed)
    run_worker_later(env, 61)  # the ack deadline has passed for the worker, with no ack

    async def fell_back() -> bool:
        st = await env.stats(mid)
        return st["providers"].get("apns", {}).get("sent") == 1

    await wait_for(fell_back)
    st = await env.stats(mid)
    assert st["providers"]["ws"]["failed_by_reason"] == {"superseded": 1}
    assert (st["devices"], st["targeted"], st["sent"], st["failed"], st["pending"]) == (1, 2, 1, 1, 0)
    assert apns_standin.by_token[TOKEN] == 1
    # The app reports arrival (and an open) of the APNs delivery; repeats change nothing.
    apns_row = next(d for d in await env.deliveries(mid) if d.channel == "apns")
    for _ in range(2):
        resp = await env.client.post(
            "/client/v1/push/receipts",
            json={
                "receipts": [
                    {"delivery_id": str(apns_row.id), "type": "opened"},
                    {"delivery_id": "999999", "type": "arrived"},
                ]
            },
            headers=headers,
        )
        assert resp.status == 200
        assert await resp.json() == {"accepted": [str(apns_row.id)], "unknown": ["999999"]}
    st = await env.stats(mid)
    assert (st["arrived"], st["opened"], st["arrival_rate"], st["open_rate"]) == (1, 1, 1.0, 1.0)
    assert st["providers"]["apns"]["arrived"] == 1 and st["providers"]["apns"]["opened"] == 1


async def test_no_fallback_when_the_ws_ack_comes_in_time(env: Env, apns_standin: ApnsStandin) -> None:
    headers = await env.register("phone", "apns", TOKEN)
    ws = await env.client.ws_connect("/client/v1/push/ws", headers=headers)
    mid = await env.send(
        audience={"devices": ["phone"]}, title="t", fallback="ws_then_native", ack_timeout=60
    )
    frame = await next_push(ws)
    await ws.send_json({"type": "ack", "id": frame["id"]})
    await ws.receive(timeout=30)

    async def disarmed() -> bool:
        return all(d.ack_deadline is None for d in await env.deliveries(mid))

    await wait_for(disarmed)
    worker = run_worker_later(env, 3600)  # far past the ack timeout
    await worker.housekeeping_once()  # one whole sweep: an armed deadline would fire here
    rows = await env.deliveries(mid)
    assert [(d.channel, d.status) for d in rows] == [("ws", "sent")]
    assert apns_standin.by_token[TOKEN] == 0
    await ws.close()
