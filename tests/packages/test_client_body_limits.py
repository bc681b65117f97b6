"""Public routes refuse an oversized body before reading it.

Each request below declares a 60 MB body and sends none of it: the 413 can only come
from the declared length, since there is nothing to read. All of them are held open at
once (a flood the server has accepted and not read), and small update checks made while
they hang are still answered. Decided by what arrives, not by timing.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from release_fixtures import bundle_files

Release = Callable[..., Awaitable[dict[str, Any]]]
DECLARED = 60 * 1000 * 1000
#: Every public route that takes (or refuses) a body, as docs/protocol.md lists them.
ROUTES = [
    ("POST", "/client/v1/updates"),
    ("POST", "/client/v1/reports"),
    ("POST", "/client/v1/devices"),
    ("POST", "/client/v1/push/receipts"),
    ("POST", "/client/v1/events"),
    ("POST", "/v0.1/public/codepush/report_status/deploy"),
    ("POST", "/v0.1/public/codepush/report_status/download"),
    ("POST", "/reportStatus/deploy"),
    ("POST", "/reportStatus/download"),
    ("GET", "/v0.1/public/codepush/update_check?deployment_key=k&app_version=1.0.0"),
    ("GET", "/updateCheck?deploymentKey=k&appVersion=1.0.0"),
    ("GET", "/expo/bank/production/manifest"),
    ("GET", "/client/v1/blobs/" + "0" * 64),
    ("DELETE", "/client/v1/devices/dev-1"),
    ("GET", "/client/v1/push/ws"),
]
#: A guard against a hang only: every answer is expected at once, as nothing is awaited.
GUARD = 60


async def head_only(host: str, port: int, method: str, path: str, key: str) -> tuple[Any, Any, int]:
    """Send the request line and headers declaring ``DECLARED`` bytes, and no body; read the answer."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        (
            f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nX-Deployment-Key: {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {DECLARED}\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    status_line = await reader.readline()
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return writer, (status_line, headers, body), int(status_line.split()[1])


async def test_flood_of_declared_oversized_bodies_is_refused_unread(
    client: Any, bank: dict[str, str], publish: Any, release: Release
) -> None:
    await publish(bundle_files("1.0.0"), "1.0.0")
    await release("1.0.0")
    key = bank["production"]
    host, port = client.server.host, client.server.port
    check = {"device_id": "d", "app_version": "1.0.0", "packages": [{"kind": "bundle", "id": "main"}]}

    async def small_check() -> str:
        resp = await client.post("/client/v1/updates", json=check, headers={"X-Deployment-Key": key})
        assert resp.status == 200, await resp.text()
        return str((await resp.json())["packages"][0]["action"])

    flood = [head_only(host, port, m, p, key) for m, p in ROUTES for _ in range(4)]
    results = await asyncio.wait_for(asyncio.gather(*flood, *(small_check() for _ in range(4))), GUARD)
    writers = []
    for (method, path), (writer, (line, headers, body), status) in zip(
        [r for r in ROUTES for _ in range(4)], results[: len(flood)], strict=True
    ):
        writers.append(writer)
        assert status == 413, (method, path, line, body)
        assert headers["content-type"].startswith("application/json"), (path, headers)
        assert json.loads(body)["error"]["code"] in ("payload_too_large", "batch_too_large"), (path, body)
    assert results[len(flood) :] == ["update"] * 4
    # The 60 MB connections are still open, unread; the server keeps answering meanwhile.
    assert await asyncio.wait_for(small_check(), GUARD) == "update"
    for writer in writers:
        writer.close()


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_limits_fit_what_each_route_carries(client: Any, bank: dict[str, str]) -> None:
    """The documented limits are the enforced ones: at the limit a body is read and
    judged (any answer but 413), one byte over it is 413."""
    from mpaas.packages.protocols import codepush_api, native_api
    from mpaas.push import api as push_api

    key = {"X-Deployment-Key": bank["production"], "Content-Type": "application/json"}
    limits = {
        "/client/v1/updates": native_api.CHECK_LIMIT,
        "/client/v1/reports": native_api.REPORTS_LIMIT,
        "/client/v1/devices": push_api.DEVICE_LIMIT,
        "/client/v1/push/receipts": push_api.RECEIPTS_LIMIT,
        "/v0.1/public/codepush/report_status/deploy": codepush_api.REPORT_LIMIT,
    }
    assert max(limits.values()) <= 512 * 1024  # a few KB to a few hundred KB, never 64 MiB
    for path, limit in limits.items():
        fits = b"{}" + b" " * (limit - 2)
        resp = await client.post(path, data=fits, headers=key)
        assert resp.status != 413 and resp.status < 500, (path, resp.status)
        resp = await client.post(path, data=fits + b" ", headers=key)
        assert resp.status == 413, (path, resp.status)
