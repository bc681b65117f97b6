"""Shared by the worker tests: a server without its own worker, FCM devices, a movable clock."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlmodel import select

from mpaas.app import create_app
from mpaas.appkeys import DB
from mpaas.identity.audit import Actor
from mpaas.identity.tokens import create_token
from mpaas.push.models import PushDelivery
from mpaas.push.queue.retry import RetryPolicy
from mpaas.push.worker import WorkerConfig
from mpaas.settings import Settings
from mpaas.storage.db import Database, utcnow


class Clock:
    """The workers' injected clock (UTC datetimes), moved by the test."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def at(self, base: datetime, seconds: float) -> None:
        self.now = base + timedelta(seconds=seconds)


async def until(check: Callable[[], Awaitable[bool] | bool], timeout: float = 60.0) -> None:
    """Wait for a condition (a hang guard, never a timing assertion)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        got = check()
        if await got if isinstance(got, Awaitable) else got:
            return
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


class Env:
    def __init__(self, client: Any, ops: dict[str, str], key: str) -> None:
        self.client, self.ops, self.key = client, ops, key
        self.db: Database = client.app[DB]

    async def devices(self, n: int, provider: str = "fcm") -> None:
        for i in range(n):
            body = {"device_id": f"d{i}", "provider": provider, "token": f"tok-{i}"}
            resp = await self.client.post(
                "/client/v1/devices", json=body, headers={"X-Deployment-Key": self.key}
            )
            assert resp.status == 201, await resp.text()

    async def send(self, **body: Any) -> dict[str, Any]:
        resp = await self.client.post("/api/v1/apps/bank/push/messages", json=body, headers=self.ops)
        assert resp.status == 202, await resp.text()
        out: dict[str, Any] = await resp.json()
        return out

    async def rows(self, message_id: int | None = None) -> list[PushDelivery]:
        query = select(PushDelivery)
        if message_id is not None:
            query = query.where(PushDelivery.message_id == message_id)
        async with self.db.session() as s:
            return sorted((await s.exec(query)).all(), key=lambda r: r.id or 0)

    async def count(self, status: str) -> int:
        return sum(1 for r in await self.rows() if r.status == status)


async def new_env(aiohttp_client: Any, settings: Settings) -> Env:
    """A server without its own worker (the tests run the workers), app 'bank', an operator token."""
    client = await aiohttp_client(create_app(settings.with_overrides(push_worker=False)))
    _r, ops = await create_token(client.app[DB], Actor("test"), name="ops", role="push-operator")
    _r, admin = await create_token(client.app[DB], Actor("test"), name="admin", role="admin")
    resp = await client.post(
        "/api/v1/apps",
        json={"name": "bank", "platforms": ["android"]},
        headers={"Authorization": f"Bearer {admin}"},
    )
    key = next(c["deployment_key"] for c in (await resp.json())["channels"] if c["name"] == "production")
    return Env(client, {"Authorization": f"Bearer {ops}"}, key)


@pytest.fixture
async def env(aiohttp_client: Any, settings: Settings) -> Env:
    return await new_env(aiohttp_client, settings)


def config(**fields: Any) -> WorkerConfig:
    base: dict[str, Any] = {
        "claim_size": 5,
        "concurrency": 1,
        "lease": timedelta(seconds=8),
        "heartbeat": timedelta(seconds=2),
        "poll_interval": 0.02,
        "policy": RetryPolicy(base_seconds=1.0, max_seconds=60.0, max_attempts=3),
    }
    return WorkerConfig(**(base | fields))
