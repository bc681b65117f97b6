"""Public client routes keep to their size: each refuses a body past its limit with 413
before reading it (Content-Length) or as soon as a chunked body passes it; nothing is
stored, and a flood of oversized bodies does not keep a small update check from working."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from release_fixtures import bundle_files

from mpaas.packages.protocols import codepush_api, expo_api, native_api

Release = Callable[..., Awaitable[dict[str, Any]]]
BIG = b"x" * (5 * 1024 * 1024)


async def chunked(total: int, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    """A body without Content-Length: aiohttp sends it chunked."""
    sent = 0
    while sent < total:
        yield b" " * min(size, total - sent)
        sent += size


async def counters(client: Any, headers: dict[str, str], release_id: int) -> dict[str, int]:
    resp = await client.get(f"/api/v1/apps/bank/releases/{release_id}", headers=headers)
    assert resp.status == 200
    return dict((await resp.json())["counters"])


async def too_large(resp: Any) -> None:
    assert resp.status == 413, await resp.text()
    assert (await resp.json())["error"]["code"] == "payload_too_large"


def _check_body(key: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"device_id": "dev-1", "os": "android", "app_version": "1.0.0"}
    body["packages"] = [{"kind": "bundle", "id": "main", "hash": None}]
    return body | ({"deployment_key": key} if key else {})


DECLARED = [
    ("POST", "/client/v1/updates", native_api.CHECK_LIMIT),
    ("POST", "/client/v1/reports", native_api.REPORTS_LIMIT),
    ("POST", "/v0.1/public/codepush/report_status/deploy", codepush_api.REPORT_LIMIT),
    ("POST", "/v0.1/public/codepush/report_status/download", codepush_api.REPORT_LIMIT),
    ("POST", "/reportStatus/deploy", codepush_api.REPORT_LIMIT),
    ("POST", "/reportStatus/download", codepush_api.REPORT_LIMIT),
    ("GET", "/v0.1/public/codepush/update_check", codepush_api.NO_BODY_LIMIT),
    ("GET", "/updateCheck", codepush_api.NO_BODY_LIMIT),
    ("GET", "/expo/bank/production/manifest", expo_api.NO_BODY_LIMIT),
    ("GET", "/expo/bank/manifest", expo_api.NO_BODY_LIMIT),
    ("GET", "/client/v1/blobs/" + "0" * 64, native_api.NO_BODY_LIMIT),
]


@pytest.mark.parametrize("backend", ["sqlite"])  # no database involved
async def test_declared_oversized_body_is_413(client: Any, bank: dict[str, str]) -> None:
    headers = {"X-Deployment-Key": bank["production"], "Content-Type": "application/json"}
    for method, path, limit in DECLARED:
        resp = await client.request(method, path, data=b" " * (limit + 1), headers=headers)
        await too_large(resp)


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_chunked_body_is_cut_at_the_limit(client: Any, bank: dict[str, str]) -> None:
    headers = {"X-Deployment-Key": bank["production"]}
    for method, path, limit in DECLARED:
        if method != "POST":
            continue
        await too_large(await client.post(path, data=chunked(limit + 1), headers=headers))
        # Exactly at the limit, chunked, the body is read and answered on its merits.
        body = _check_body() if path == "/client/v1/updates" else {"events": []}
        raw = json.dumps(body).encode()
        padded = raw + b" " * (limit - len(raw))

        async def one_piece(data: bytes = padded) -> AsyncIterator[bytes]:
            yield data

        resp = await client.post(path, data=one_piece(), headers=headers)
        assert resp.status != 413 and resp.status < 500, (path, await resp.text())


async def test_oversized_reports_store_nothing(
    client: Any, admin_headers: dict[str, str], bank: dict[str, str], publish: Any, release: Release
) -> None:
    await publish(bundle_files("1.0.0"), "1.0.0")
    r1 = await release("1.0.0")
    key = bank["production"]
    event = {"event_id": "e-0", "release_id": r1["id"], "event": "download_succeeded"}
    events = [event | {"event_id": f"e-{i}", "detail": {"pad": "p" * 4000}} for i in range(100)]
    events.append(event | {"event_id": "e-last", "detail": {"pad": "p" * 4000}})
    body = json.dumps({"device_id": "d", "events": events * 2}).encode()
    assert len(body) > native_api.REPORTS_LIMIT
    headers = {"X-Deployment-Key": key, "Content-Type": "application/json"}
    await too_large(await client.post("/client/v1/reports", data=body, headers=headers))

    async def stream() -> AsyncIterator[bytes]:
        for i in range(0, len(body), 8192):
            yield body[i : i + 8192]

    await too_large(await client.post("/client/v1/reports", data=stream(), headers=headers))
    assert not any((await counters(client, admin_headers, r1["id"])).values())


async def test_flood_of_oversized_bodies_leaves_small_checks_working(
    client: Any, admin_headers: dict[str, str], bank: dict[str, str], publish: Any, release: Release
) -> None:
    """20 concurrent 5 MB bodies (declared and chunked) to the public routes are all refused,
    while update checks made among them are answered: decided by results, not timing."""
    await publish(bundle_files("1.0.0"), "1.0.0")
    await release("1.0.0")
    key = bank["production"]
    headers = {"X-Deployment-Key": key, "Content-Type": "application/json"}

    async def flood(i: int) -> int:
        path = ("/client/v1/updates", "/client/v1/reports")[i % 2]
        data: Any = BIG if i % 4 < 2 else chunked(len(BIG))
        async with client.post(path, data=data, headers=headers) as resp:
            return int(resp.status)

    async def small_check() -> dict[str, Any]:
        resp = await client.post("/client/v1/updates", json=_check_body(), headers=headers)
        assert resp.status == 200, await resp.text()
        return dict(await resp.json())

    results = await asyncio.gather(*(flood(i) for i in range(20)), *(small_check() for _ in range(3)))
    assert results[:20] == [413] * 20
    for answer in results[20:]:
        assert isinstance(answer, dict) and answer["packages"][0]["action"] == "update"
