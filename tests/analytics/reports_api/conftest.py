"""A small event store behind the real app: the demo generator's events and a hand-made few.

The app's reports clock is fixed (``NOW``), and every test range is absolute or relative
to it, so no test depends on the wall clock.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from click.testing import CliRunner

from mpaas.analytics.demo.generator import DemoSpec, generate
from mpaas.analytics.demo.writer import Device, EventWriter
from mpaas.analytics.reports.api import CLOCK
from mpaas.analytics.runtime import ANALYTICS
from mpaas.analytics.store.base import LoadBatch
from mpaas.app import create_app
from mpaas.cli.main import cli
from mpaas.settings import Settings

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
#: The demo: 80 users over 14 Asia/Shanghai days ending with NOW's day.
DEMO = DemoSpec(end=NOW, app="bank", users=80, days=14, seed=3)
#: Hand-made app ``tiny``: days in Asia/Shanghai (UTC+8) around 2026-11-20.
T0 = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)  # 10:00 local


@functools.cache
def demo_batch() -> LoadBatch:
    return generate(DEMO).batch()


def tiny_events() -> EventWriter:
    """Three people. a: signup then pay 1 h later; b: signup, pay 2 days later; c: signup only.
    b's device logs in as user u-b after its signup (identity merge)."""
    out = EventWriter("tiny")
    a, b, c = (Device(i, "ios", "iOS", "18.1", "iPhone15,2", "5.2.0", "1.0.0") for i in (1, 2, 3))
    out.track(a, "signup", T0)
    out.track(a, "pay", T0 + timedelta(hours=1), {"amount_fen": 500})
    out.track(b, "signup", T0)
    out.identify(b, "u-b", T0 + timedelta(minutes=5), {"tier": "registered"})
    out.track(b, "pay", T0 + timedelta(days=2), {"amount_fen": 900})
    out.track(c, "signup", T0 + timedelta(days=1))
    return out


@pytest.fixture(params=["sqlite"])
def backend(request: pytest.FixtureRequest) -> str:
    """SQLite only: the reports read the event store, not the SQL database. The saved-report
    round trip, which is SQL, asks for PostgreSQL too (``indirect`` parametrisation)."""
    if request.param == "postgres" and not os.environ.get("MPAAS_TEST_DATABASE_URL"):
        pytest.skip("MPAAS_TEST_DATABASE_URL is not set")
    return str(request.param)


@pytest.fixture
async def client(aiohttp_client: Any, settings: Settings) -> TestClient:  # type: ignore[type-arg]
    """The real app with the reports clock at NOW, its store holding the demo and ``tiny``."""
    app = create_app(settings)
    app[CLOCK] = lambda: NOW
    test_client = await aiohttp_client(app)
    runtime = app[ANALYTICS]
    await runtime.loader_ready.wait()
    assert runtime.store is not None
    store = runtime.store
    await asyncio.to_thread(store.load, demo_batch())
    await asyncio.to_thread(store.load, tiny_events().batch())
    return test_client


@pytest.fixture
def headers(token_factory: Callable[[str], Awaitable[str]]) -> Callable[[str], Awaitable[dict[str, str]]]:
    async def make(role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {await token_factory(role)}"}

    return make


@pytest.fixture
async def analyst(headers: Callable[[str], Awaitable[dict[str, str]]]) -> dict[str, str]:
    return await headers("analyst")


@pytest.fixture
async def apps(client: Any, admin_headers: dict[str, str]) -> None:
    """Apps ``bank`` and ``tiny`` in the database (saved reports belong to an app)."""
    for name in ("bank", "tiny"):
        resp = await client.post(
            "/api/v1/apps", json={"name": name, "platforms": ["ios"]}, headers=admin_headers
        )
        assert resp.status == 201, await resp.text()


@pytest.fixture
def run_cli(client: Any) -> Callable[..., Awaitable[Any]]:
    """The real CLI (click, in a thread with its own event loop) against the test server:
    ``await run_cli(token, *args)`` gives the parsed JSON with --json, else stdout;
    ``ok=False`` gives the click Result of a command expected to fail."""

    async def run(token: str, *args: str, ok: bool = True) -> Any:
        env = {"MPAAS_SERVER": str(client.make_url("")).rstrip("/"), "MPAAS_TOKEN": token}
        result = await asyncio.to_thread(CliRunner().invoke, cli, list(args), env=env, catch_exceptions=False)
        if not ok:
            return result
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout) if "--json" in args else result.stdout

    return run
