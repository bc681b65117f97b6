"""ADR 0011 for the standalone worker and the sweeps: the same server-side events as the server's worker.

``mpaas push worker`` runs its outcomes through :func:`mpaas.push.worker.standalone_analytics`;
a delivery that expires in the queue is reported as ``push.failed`` with reason ``expired``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from mpaas.analytics.emit import server_events
from mpaas.analytics.runtime import ANALYTICS
from mpaas.push.worker import PushWorker, standalone_analytics
from mpaas.settings import Settings
from mpaas.storage.db import Database

from .conftest import MakeFcm
from .worker_env import config, new_env


@pytest.fixture(params=["sqlite"])
def backend(request: pytest.FixtureRequest) -> str:
    """The event store is DuckDB either way; the queue's SQL is covered by the other worker tests."""
    return str(request.param)


async def test_standalone_worker_and_expiry_emit_the_servers_events(
    aiohttp_client: Any, make_settings: Callable[..., Settings], make_fcm: MakeFcm
) -> None:
    settings = make_settings(analytics_load_interval=3600.0)
    env = await new_env(aiohttp_client, settings)
    await env.devices(1)
    sent = (await env.send(audience={"all": True}, title="t"))["id"]
    expiring = (await env.send(audience={"all": True}, title="t", ttl=0))["id"]
    db = Database(settings)  # the worker process's own connection, as `mpaas push worker` has
    try:
        worker = PushWorker(db, {"fcm": make_fcm()}, config())
        async with standalone_analytics(db):
            for _ in range(4):  # expand both messages; the TTL-0 delivery expires in the queue
                await worker.housekeeping_once()
            assert await worker.run_batch() == 1
            events = server_events(db)
            assert events is not None
            await events.idle()
            assert (events.emitted, events.dropped) == (3, 0)
        assert server_events(db) is None
    finally:
        await db.close()
    runtime = env.client.app[ANALYTICS]
    await runtime.loader_ready.wait()
    assert runtime.loader is not None and runtime.store is not None
    await runtime.loader.drain()
    rows = runtime.store.fetch(
        "SELECT event, properties->>'push_id', properties->>'reason', source FROM events "
        "WHERE app = 'bank' AND event LIKE 'push.%' ORDER BY event"
    )
    assert rows == [
        ("push.delivered", str(sent), None, "server"),
        ("push.failed", str(expiring), "expired", "server"),
        ("push.sent", str(sent), None, "server"),
    ]
