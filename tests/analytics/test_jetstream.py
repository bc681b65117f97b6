"""The JetStream spool in the server: ack after the broker's ack, Nats-Msg-Id dedupe, 503 without a broker.

(The kill -9 guarantees on JetStream are tested in test_kill.py.)
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
from collections.abc import AsyncIterator, Callable
from typing import Any

import nats
import pytest

from mpaas.analytics.errors import RetryLater
from mpaas.analytics.ingest.listener import INGEST_SERVER
from mpaas.analytics.spool.jetstream import JetStreamSpool
from mpaas.settings import Settings
from tests_support import free_port

NATS_URL = os.environ.get("MPAAS_TEST_NATS_URL", "")
pytestmark = pytest.mark.skipif(not NATS_URL, reason="MPAAS_TEST_NATS_URL is not set (.ci/run sets it)")


@pytest.fixture(params=["sqlite"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def stream() -> AsyncIterator[str]:
    name = f"MPAAS_TEST_{secrets.token_hex(4)}"
    yield name
    nc = await nats.connect(NATS_URL)
    try:
        await nc.jetstream().delete_stream(name)
    except nats.js.errors.NotFoundError:
        pass
    finally:
        await nc.close()


@pytest.fixture
def settings(analytics_settings: Callable[..., Settings], stream: str) -> Settings:
    return analytics_settings(nats_url=NATS_URL, analytics_nats_stream=stream, ingest_port=0)


async def stream_messages(name: str) -> int:
    nc = await nats.connect(NATS_URL)
    try:
        return int((await nc.jetstream().stream_info(name)).state.messages)
    finally:
        await nc.close()


async def test_a_retried_batch_is_stored_once_and_loaded_once(
    client: Any, keys: dict[str, str], basic: Any, load: Any, stream: str
) -> None:
    batch = {
        "batch": [{"type": "track", "event": "e", "userId": "u", "messageId": f"j{i}"} for i in range(5)]
    }
    for sent_at in ("2026-01-01T00:00:00Z", "2026-01-01T00:00:09Z"):  # an SDK retry: same ids, new sentAt
        resp = await client.post("/v1/batch", json=batch | {"sentAt": sent_at}, headers=basic(keys["write"]))
        assert resp.status == 200, await resp.text()
    assert await stream_messages(stream) == 1  # Nats-Msg-Id from the message ids
    other = {"batch": [{"type": "track", "event": "f", "userId": "u", "messageId": "j0"}]}
    assert (await client.post("/v1/batch", json=other, headers=basic(keys["write"]))).status == 200
    store = await load()
    assert store.counts("bank") == {"e": 5}  # j0 again, in another batch: the loader's dedupe
    assert await stream_messages(stream) == 0  # loaded, then purged


async def test_without_a_broker_appends_are_refused_for_a_retry() -> None:
    """The server starts without NATS and answers 503 + Retry-After (the route mapping of
    RetryLater is tested in test_ingest.py) until the broker answers."""
    spool = JetStreamSpool(f"nats://127.0.0.1:{free_port()}", "MPAAS_NOWHERE", connect_timeout=0.5)
    await spool.start()
    try:
        with pytest.raises(RetryLater) as caught:
            await spool.append(b"x", "id")
        assert caught.value.status == 503 and caught.value.retry_after >= 1
    finally:
        await spool.close()


async def test_a_read_that_says_nothing_more_remains_has_read_the_whole_stream(stream: str) -> None:
    """Regression: a read stopped when the client's buffer was momentarily empty and said
    nothing more remained, so ``drain()`` (``mpaas analytics load --once``, and the kill
    test's last load) could end with acknowledged batches still in the stream. A read now
    stops at the end only when the broker says no message is pending after the last."""
    from mpaas.analytics.spool.jetstream import JetStreamSource

    spool = JetStreamSpool(NATS_URL, stream)
    await spool.start()
    try:
        for i in range(120):  # 7 MB: delivered in several bursts
            await spool.append(bytes([65 + i % 26]) * 60_000, f"batch-{i}")
    finally:
        await spool.close()
    source = JetStreamSource(NATS_URL, stream)
    try:
        seen: list[str] = []
        batch = await source.read({}, budget=1 << 30)
        seen += [name for name, _ in batch.records]
        while batch.full:  # what drain() does
            batch = await source.read({}, budget=1 << 30)
            seen += [name for name, _ in batch.records]
    finally:
        await source.close()
    assert len(seen) == len(set(seen)) == 120


async def test_a_batch_that_was_not_committed_is_read_again(stream: str) -> None:
    """Regression: the subscription moved on whether or not the loader committed what it had
    read, so after a failed load the next cycle read past those messages, and committing a
    later batch purged them: acknowledged events lost. A read that does not start where the
    last one ended now subscribes again from the committed position."""
    from mpaas.analytics.spool.jetstream import JetStreamSource, position_key

    spool = JetStreamSpool(NATS_URL, stream)
    await spool.start()
    try:
        for i in range(3):
            await spool.append(b'{"batch":[]}', f"retry-{i}")
    finally:
        await spool.close()
    source = JetStreamSource(NATS_URL, stream)
    try:
        first = await source.read({}, budget=1 << 20)
        again = await source.read({}, budget=1 << 20)  # the load of ``first`` failed: nothing committed
        assert [r for r, _ in again.records] == [r for r, _ in first.records] == ["js:1", "js:2", "js:3"]
        await spool.start()
        try:
            await spool.append(b'{"batch":[]}', "retry-3")
        finally:
            await spool.close()
        after = await source.read({position_key(stream): 3}, budget=1 << 20)  # ``again`` committed
        assert [r for r, _ in after.records] == ["js:4"]
    finally:
        await source.close()


def batch(n: int) -> bytes:
    events = [{"type": "track", "event": "Tapped", "userId": "u", "messageId": f"j-{i}"} for i in range(n)]
    return json.dumps({"batch": events}).encode()


def request(body: bytes, key: str) -> bytes:
    basic = base64.b64encode(f"{key}:".encode()).decode()
    head = f"POST /v1/batch HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {basic}\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


async def test_the_ingest_listener_keeps_the_broker_dedupe_id(
    client: Any, keys: dict[str, str], stream: str
) -> None:
    """The listener on a JetStream spool (no ``submit``): every request takes the path with
    awaits, and a batch an SDK retries is stored once."""
    server = client.app[INGEST_SERVER]
    assert server.submit is None
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    for _ in range(2):  # an SDK retry: the same message ids
        writer.write(request(batch(5), keys["write"]))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 200 ")
        assert await reader.readexactly(16) == b'{"success":true}'
    writer.close()
    nc = await nats.connect(NATS_URL)
    try:
        assert (await nc.jetstream().stream_info(stream)).state.messages == 1
    finally:
        await nc.close()
