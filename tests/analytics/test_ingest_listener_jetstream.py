"""The ingest listener on a JetStream spool: no ``submit``, so every request takes the path
with awaits, and a retried batch keeps its broker dedupe id."""

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

from mpaas.analytics.ingest.listener import INGEST_SERVER
from mpaas.settings import Settings

NATS_URL = os.environ.get("MPAAS_TEST_NATS_URL", "")
pytestmark = pytest.mark.skipif(not NATS_URL, reason="MPAAS_TEST_NATS_URL is not set (.ci/run sets it)")


def batch(n: int) -> bytes:
    events = [{"type": "track", "event": "Tapped", "userId": "u", "messageId": f"j-{i}"} for i in range(n)]
    return json.dumps({"batch": events}).encode()


def request(body: bytes, key: str) -> bytes:
    basic = base64.b64encode(f"{key}:".encode()).decode()
    head = f"POST /v1/batch HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {basic}\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


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


async def test_a_retried_batch_is_stored_once(client: Any, keys: dict[str, str], stream: str) -> None:
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
