"""Fixtures for the analytics tests: an app with keys, and the in-process loader."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from mpaas.analytics.runtime import ANALYTICS, AnalyticsRuntime
from mpaas.analytics.store.duckdb import DuckDbStore
from mpaas.appkeys import DB
from mpaas.identity.tenancy import get_channel
from mpaas.settings import Settings
from mpaas.storage.migrate import upgrade
from tests_support import npm_installed


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite database per session, copied for each test (migrating costs ~1 s)."""
    path = tmp_path_factory.mktemp("analytics-template") / "mpaas.db"
    upgrade(Settings.from_env({}, {"database_url": f"sqlite:///{path}", "data_dir": path.parent}))
    return path


@pytest.fixture
def analytics_settings(
    make_settings: Callable[..., Settings], backend: str, sqlite_template: Path, tmp_path: Path
) -> Callable[..., Settings]:
    """Settings for an app whose loader runs one cycle at start-up, then only when a test drains it."""

    def build(**overrides: Any) -> Settings:
        if backend == "sqlite":
            (tmp_path / "data").mkdir(exist_ok=True)
            shutil.copy(sqlite_template, tmp_path / "data" / "mpaas.db")
        base = {
            "analytics_load_interval": 3600.0,
            "release_background": False,
            "push_worker": False,
            "auto_migrate": False,
        }
        return make_settings(**(base | overrides))

    return build


@pytest.fixture
def settings(analytics_settings: Callable[..., Settings]) -> Settings:
    return analytics_settings()


@pytest.fixture
async def keys(client: Any, admin_headers: dict[str, str]) -> dict[str, str]:
    """App ``bank``: its deployment keys and a write key."""
    resp = await client.post(
        "/api/v1/apps", json={"name": "bank", "platforms": ["ios", "android"]}, headers=admin_headers
    )
    assert resp.status == 201, await resp.text()
    resp = await client.post("/api/v1/apps/bank/analytics/write-keys", json={}, headers=admin_headers)
    assert resp.status == 201, await resp.text()
    out = {"write": (await resp.json())["write_key"], "admin_token": admin_headers["Authorization"][7:]}
    for name in ("staging", "production"):
        out[name] = (await get_channel(client.app[DB], "bank", name)).channel.deployment_key
    return out


def basic_auth(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


@pytest.fixture
def basic() -> Callable[[str], dict[str, str]]:
    """HTTP Basic auth with a write key as the user name, as the Segment SDKs send it."""
    return basic_auth


@pytest.fixture
def runtime(client: Any) -> AnalyticsRuntime:
    return client.app[ANALYTICS]


@pytest.fixture
def load(runtime: AnalyticsRuntime) -> Callable[[], Awaitable[DuckDbStore]]:
    """Drain the spool into the store through this process's loader; returns the store."""

    async def run() -> DuckDbStore:
        await runtime.loader_ready.wait()
        assert runtime.loader is not None and runtime.store is not None
        await runtime.loader.drain()
        return runtime.store

    return run


COMPAT = Path(__file__).resolve().parent / "compat"


@pytest.fixture(scope="session")
def segment_node() -> Path:
    """tests/analytics/compat with @segment/analytics-node installed."""
    return npm_installed(COMPAT, "to test with @segment/analytics-node")


@pytest.fixture
def node_sdk(segment_node: Path) -> Callable[[str, str, int], Awaitable[dict[str, Any]]]:
    """Runs compat/send_events.js (@segment/analytics-node, unchanged) against ``host``; its result."""

    async def send(host: str, write_key: str, count: int) -> dict[str, Any]:
        config = json.dumps({"host": host, "writeKey": write_key, "count": count})
        proc = await asyncio.create_subprocess_exec(
            "node",
            str(segment_node / "send_events.js"),
            config,
            cwd=segment_node,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
        assert proc.returncode == 0, (out + err).decode(errors="replace")
        result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
        return result

    return send
