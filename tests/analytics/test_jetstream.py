"""The JetStream spool in the server: ack after the broker's ack, Nats-Msg-Id dedupe, 503 without a broker.

(The kill -9 guarantees on JetStream are tested in test_kill.py.)
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Callable
from typing import Any

import nats
import pytest

from mpaas.analytics.errors import RetryLater
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
    return analytics_settings(nats_url=NATS_URL, analytics_nats_stream=stream)


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
