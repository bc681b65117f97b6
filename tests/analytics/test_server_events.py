"""Server-side events: a push through the APNs stand-in and a release report end up in the event store.

And when the spool refuses them, the push and the report still succeed: the domain's
own record is the source of truth, the events are counted as dropped.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlmodel import select

from mpaas.analytics.emit import server_events
from mpaas.analytics.runtime import AnalyticsRuntime
from mpaas.analytics.store.duckdb import DuckDbStore
from mpaas.appkeys import DB
from mpaas.push.models import PushDelivery
from mpaas.push.standins.apns import ApnsStandin
from mpaas.settings import Settings

TEAM_ID, KEY_ID, TOPIC = "TEAM123456", "KEY1234567", "com.example.app"
TOKEN = "ab" * 32


@pytest.fixture(params=["sqlite"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def apns_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
async def apns(apns_key: ec.EllipticCurvePrivateKey) -> AsyncIterator[ApnsStandin]:
    standin = ApnsStandin(verify_key=apns_key.public_key(), team_id=TEAM_ID)
    await standin.start(tls=False)
    yield standin
    await standin.stop()


@pytest.fixture(params=[False, True], ids=["spool-ok", "spool-refuses"])
def refuses(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.fixture
def settings(
    analytics_settings: Callable[..., Settings],
    apns: ApnsStandin,
    apns_key: ec.EllipticCurvePrivateKey,
    tmp_path: Path,
    refuses: bool,
) -> Settings:
    key_file = tmp_path / "AuthKey.p8"
    pem = apns_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    key_file.write_bytes(pem)
    return analytics_settings(
        push_worker=True,
        push_poll_interval=0.05,
        apns_key_file=str(key_file),
        apns_key_id=KEY_ID,
        apns_team_id=TEAM_ID,
        apns_topic=TOPIC,
        apns_endpoint=f"http://127.0.0.1:{apns.port}",
        # a spool that says its disk is full: every append is refused with Retry-After
        **({"analytics_spool_min_free_bytes": 1 << 62} if refuses else {}),
    )


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    """Poll ``check`` until true; a hang guard, not a timing assertion."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


def package_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("index.android.bundle", b"// bundle\n" + b"x" * 2000)
    return buf.getvalue()


async def publish_and_release(client: Any, admin: dict[str, str]) -> int:
    data = package_zip()
    body = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    upload = await (await client.post("/api/v1/apps/bank/uploads", json=body, headers=admin)).json()
    url = f"/api/v1/apps/bank/uploads/{upload['upload_id']}/chunks?offset=0"
    assert (await client.put(url, data=data, headers=admin)).status == 200
    spec = {"upload_id": upload["upload_id"], "kind": "bundle", "id": "main", "version": "1.0.0"}
    assert (await client.post("/api/v1/apps/bank/packages", json=spec, headers=admin)).status in (200, 201)
    resp = await client.post(
        "/api/v1/apps/bank/channels/production/releases",
        json={"package_id": "main", "version": "1.0.0"},
        headers=admin,
    )
    assert resp.status == 201, await resp.text()
    return int((await resp.json())["id"])


async def test_push_outcomes_receipts_and_release_reports_become_events(
    client: Any,
    admin_headers: dict[str, str],
    keys: dict[str, str],
    runtime: AnalyticsRuntime,
    load: Callable[[], Awaitable[DuckDbStore]],
    refuses: bool,
) -> None:
    key = keys["production"]
    device = {"device_id": "phone-1", "provider": "apns", "token": TOKEN}
    resp = await client.post("/client/v1/devices", json=device, headers={"X-Mpaas-Deployment-Key": key})
    assert resp.status == 201, await resp.text()
    device_headers = {
        "X-Mpaas-Deployment-Key": key,
        "X-Mpaas-Device-Id": "phone-1",
        "X-Mpaas-Device-Secret": (await resp.json())["device_secret"],
    }
    resp = await client.post(
        "/api/v1/apps/bank/push/messages",
        json={"audience": {"all": True}, "title": "Statement ready"},
        headers=admin_headers,
    )
    assert resp.status == 202, await resp.text()
    push_id = (await resp.json())["id"]

    async def sent() -> bool:
        got = await client.get(f"/api/v1/apps/bank/push/messages/{push_id}", headers=admin_headers)
        return bool((await got.json())["stats"]["sent"] == 1)

    await until(sent)
    async with client.app[DB].session() as s:
        delivery_id = (await s.exec(select(PushDelivery.id))).one()
    receipts = {"receipts": [{"delivery_id": str(delivery_id), "type": "opened"}]}
    resp = await client.post("/client/v1/push/receipts", json=receipts, headers=device_headers)
    assert resp.status == 200, await resp.text()

    release_id = await publish_and_release(client, admin_headers)
    report = {"event_id": "r-1", "release_id": release_id, "event": "install_succeeded"}
    resp = await client.post(
        "/client/v1/reports",
        json={"device_id": "phone-1", "events": [report]},
        headers={"X-Deployment-Key": key},
    )
    assert resp.status == 200 and (await resp.json())["counted"] == 1  # counted whatever the spool says

    events = server_events(client.app[DB])
    assert events is not None
    await events.idle()
    store = await load()
    rows = store.fetch(
        "SELECT event, message_id, anonymous_id, properties->>'delivery_id', properties->>'push_id', "
        "properties->>'provider', source FROM events WHERE app = 'bank' AND event LIKE 'push.%' ORDER BY event"
    )
    if refuses:
        assert rows == [] and events.dropped == 5 and events.emitted == 0
        return
    d, p = str(delivery_id), str(push_id)
    assert rows == [
        (f"push.{stage}", f"push:{d}:{stage}", "phone-1", d, p, "apns", "server")
        for stage in ("arrived", "delivered", "opened", "sent")
    ]
    (update,) = store.fetch(
        "SELECT message_id, anonymous_id, properties FROM events WHERE event = 'update.reported'"
    )
    assert update[:2] == (f"release:{release_id}:r-1", "phone-1")
    assert update[2] == (
        f'{{"release_id":{release_id},"package_id":"main","kind":"bundle",'
        '"status":"installed","version":"1.0.0","channel":"production"}'
    )
    assert (events.emitted, events.dropped) == (5, 0)
