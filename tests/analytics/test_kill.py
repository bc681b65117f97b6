"""kill -9, repeatedly, of the server during ingest and of the loader during loads.

A client records every messageId the server acknowledged; batches whose answer was
lost are resent with the same ids, as the SDKs do. Kills are decided by events (after
so many acknowledged batches, after so many committed load cycles), never by sleeps.
At the end every acknowledged id is in the store exactly once.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import secrets
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from click.testing import CliRunner

from mpaas.analytics.runtime import make_loader, store_path
from mpaas.analytics.store.duckdb import DuckDbStore
from mpaas.cli.main import cli
from mpaas.identity.audit import Actor
from mpaas.identity.tokens import create_token
from mpaas.storage.db import Database
from tests_support import MPAAS, Server, cli_env

BATCHES, PER_BATCH = 90, 20
NATS_URL = os.environ.get("MPAAS_TEST_NATS_URL", "")


@pytest.fixture(params=["sqlite"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def spool_env(env: dict[str, str], spool: str, stream: str) -> dict[str, str]:
    env = env | {
        "MPAAS_ANALYTICS_LOADER": "false",
        "MPAAS_PUSH_WORKER": "false",
        "MPAAS_RELEASE_BACKGROUND": "false",
        "MPAAS_LOG_LEVEL": "WARNING",
        "MPAAS_ANALYTICS_LOAD_INTERVAL": "0.05",
    }
    if spool == "jetstream":
        env |= {"MPAAS_NATS_URL": NATS_URL, "MPAAS_ANALYTICS_NATS_STREAM": stream}
    return env


async def setup_app(url: str, token: str) -> str:
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=headers) as s:
        async with s.post(f"{url}/api/v1/apps", json={"name": "bank", "platforms": ["android"]}) as r:
            assert r.status == 201, await r.text()
        async with s.post(f"{url}/api/v1/apps/bank/analytics/write-keys", json={}) as r:
            assert r.status == 201, await r.text()
            return str((await r.json())["write_key"])


async def ingest_through_kills(server: Server, write_key: str, kill_after: tuple[int, ...]) -> set[str]:
    acked: set[str] = set()
    done = {"batches": 0}
    progress = asyncio.Event()
    up = asyncio.Event()
    up.set()
    numbers = itertools.count()

    async def sender(session: aiohttp.ClientSession) -> None:
        while (n := next(numbers)) < BATCHES:
            ids = [f"k{n}-{j}" for j in range(PER_BATCH)]
            body = {
                "batch": [
                    {"type": "track", "event": f"E{j % 4}", "userId": f"u{n % 7}", "messageId": i}
                    for j, i in enumerate(ids)
                ],
                "writeKey": write_key,
            }
            while True:
                await up.wait()
                try:
                    async with session.post(f"{server.url}/v1/batch", json=body) as resp:
                        if resp.status == 200:
                            acked.update(ids)
                            done["batches"] += 1
                            progress.set()
                            break
                        assert resp.status in (429, 503), await resp.text()
                except (aiohttp.ClientError, ConnectionError):
                    pass  # the answer was lost: resend the same batch, as an SDK does

    async def killer() -> None:
        for threshold in kill_after:
            while done["batches"] < threshold:
                progress.clear()
                await progress.wait()
            up.clear()
            server.kill9()
            await asyncio.to_thread(server.start)
            up.set()

    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(killer(), *(sender(session) for _ in range(6)))
    assert done["batches"] == BATCHES
    return acked


async def loader_with_kills(env: dict[str, str], kills: int) -> None:
    """Loaders with a small budget, each kill -9'ed right after a committed cycle."""
    for _ in range(kills):
        proc = await asyncio.create_subprocess_exec(
            *MPAAS, "analytics", "load", "--budget", "8192", env=env, stderr=asyncio.subprocess.PIPE
        )
        assert proc.stderr is not None
        while not (line := await proc.stderr.readline()).startswith(b"cycle:"):
            assert line, "the loader stopped before it was killed"
        proc.kill()
        await proc.wait()


@pytest.mark.parametrize(
    ("spool", "server_kills_after", "loader_kills"),
    # Every process start costs seconds (the whole app is imported): kills are bounded.
    [("files", (25, 55), 2), ("jetstream", (40,), 1)],
)
async def test_kill_9_loses_no_acknowledged_event_and_loads_none_twice(
    tmp_path: Path, settings: Any, spool: str, server_kills_after: tuple[int, ...], loader_kills: int
) -> None:
    if spool == "jetstream" and not NATS_URL:
        pytest.skip("MPAAS_TEST_NATS_URL is not set (.ci/run starts NATS with JetStream and sets it)")
    stream = f"MPAAS_TEST_{os.getpid()}_{secrets.token_hex(4)}"
    env = spool_env(cli_env(settings.data_dir, settings.database_url, tmp_path), spool, stream)
    db = Database(settings)
    _row, token = await create_token(db, Actor("test"), name="admin", role="admin")
    await db.close()
    server = Server(env)
    await asyncio.to_thread(server.start)
    try:
        write_key = await setup_app(server.url, token)
        # The loader runs beside the server, as `mpaas analytics load` does in production.
        acked, _ = await asyncio.gather(
            ingest_through_kills(server, write_key, server_kills_after), loader_with_kills(env, loader_kills)
        )
    finally:
        server.stop()
    try:
        # The last load runs here, on the settings the server and the loaders used.
        run = settings.with_overrides(
            nats_url=env.get("MPAAS_NATS_URL"),
            analytics_nats_stream=env.get("MPAAS_ANALYTICS_NATS_STREAM", ""),
        )
        store = DuckDbStore(store_path(run))
        db = Database(run)
        try:
            loader = make_loader(run, db, store)
            await loader.drain()
            await loader.source.close()
            rows = dict(store.fetch("SELECT message_id, count(*) FROM events WHERE app = 'bank' GROUP BY 1"))
        finally:
            store.close()
            await db.close()
    finally:
        if spool == "jetstream":
            await delete_stream(stream)
    counts = CliRunner().invoke(cli, ["analytics", "counts", "--app", "bank", "--json"], env=env)
    assert counts.exit_code == 0, counts.output
    assert sum(json.loads(counts.stdout).values()) == len(rows)
    assert len(acked) == BATCHES * PER_BATCH
    assert acked <= set(rows), f"{len(acked - set(rows))} acknowledged events were lost"
    assert {k: n for k, n in rows.items() if n != 1} == {}, "events loaded twice"


async def delete_stream(stream: str) -> None:
    import nats

    nc = await nats.connect(NATS_URL)
    try:
        await nc.jetstream().delete_stream(stream)
    finally:
        await nc.close()
