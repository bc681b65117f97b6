"""The public client API of the update protocols: report batches answered per event (none
half-stored), both deployment-key header names, HEAD on downloads, and deep JSON as 400."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from release_fixtures import bundle_files

Release = Callable[..., Awaitable[dict[str, Any]]]
HEADER_NAMES = ("X-Deployment-Key", "X-Mpaas-Deployment-Key")
DEEP = [b"[" * n + b"]" * n for n in (1000, 5000)] + [b'{"a":' * n + b"1" + b"}" * n for n in (1000, 2000)]


def ev(event_id: str, release_id: Any, event: str = "download_succeeded") -> dict[str, Any]:
    return {"event_id": event_id, "release_id": release_id, "event": event}


async def counters(client: Any, headers: dict[str, str], release_id: int) -> dict[str, int]:
    resp = await client.get(f"/api/v1/apps/bank/releases/{release_id}", headers=headers)
    assert resp.status == 200
    return dict((await resp.json())["counters"])


async def post_report(client: Any, key: str, events: list[dict[str, Any]]) -> Any:
    body = {"device_id": "dev-1", "events": events}
    return await client.post("/client/v1/reports", json=body, headers={"X-Deployment-Key": key})


async def test_report_batch_with_unknown_release_keeps_every_good_event(
    client: Any, admin_headers: dict[str, str], bank: dict[str, str], publish: Any, release: Release
) -> None:
    await publish(bundle_files("1.0.0"), "1.0.0")
    r1 = await release("1.0.0")
    key, rid = bank["production"], r1["id"]
    batch = [ev("e-1", rid), ev("e-bad", 2**31 - 1), ev("e-2", rid)]
    resp = await post_report(client, key, batch)
    assert resp.status == 200, await resp.text()
    out = await resp.json()
    assert (out["counted"], out["duplicates"]) == (2, 0)
    assert [(r["event_id"], r["code"]) for r in out["rejected"]] == [("e-bad", "release_not_found")]
    assert (await counters(client, admin_headers, rid))["downloads"] == 2
    # A retry of the same batch counts nothing twice and still names the bad event.
    out = await (await post_report(client, key, batch)).json()
    assert (out["counted"], out["duplicates"], len(out["rejected"])) == (0, 2, 1)
    # A batch of good events answers as before: no 'rejected' key.
    out = await (await post_report(client, key, [ev("e-3", rid)])).json()
    assert out == {"counted": 1, "duplicates": 0}
    assert (await counters(client, admin_headers, rid))["downloads"] == 3


BAD_EVENTS: list[Any] = [
    "not an object",
    ev("e-x", "12"),
    ev("e-x", 2**31),  # past the 32-bit id column: a 400, never an overflow in the driver
    ev("e-x", 2**63),
    ev("e-x", 1, event="exploded"),
    ev("", 1),
    ev("e-x", 1) | {"previous_release_id": 2**64},
    ev("e-x", 1) | {"detail": {"pad": "p" * 5000}},
]


async def test_malformed_batch_is_400_and_stores_nothing(
    client: Any, admin_headers: dict[str, str], bank: dict[str, str], publish: Any, release: Release
) -> None:
    await publish(bundle_files("1.0.0"), "1.0.0")
    r1 = await release("1.0.0")
    key, rid = bank["production"], r1["id"]
    for bad in BAD_EVENTS:
        resp = await post_report(client, key, [ev("e-1", rid), ev("e-2", rid), bad])
        assert resp.status == 400, (bad, await resp.text())
        assert (await resp.json())["error"]["code"] == "invalid_report"
    assert not any((await counters(client, admin_headers, rid)).values())
    # The good events were not stored: sent again alone, they count (not duplicates).
    out = await (await post_report(client, key, [ev("e-1", rid), ev("e-2", rid)])).json()
    assert out == {"counted": 2, "duplicates": 0}


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_both_key_header_names_on_update_check_and_reports(
    client: Any, bank: dict[str, str], publish: Any, release: Release
) -> None:
    await publish(bundle_files("1.0.0"), "1.0.0")
    r1 = await release("1.0.0")
    key = bank["production"]
    check = {"device_id": "d", "app_version": "1.0.0", "packages": [{"kind": "bundle", "id": "main"}]}
    for name in HEADER_NAMES:
        resp = await client.post("/client/v1/updates", json=check, headers={name: key})
        assert resp.status == 200, (name, await resp.text())
        assert (await resp.json())["packages"][0]["action"] == "update"
        body = {"device_id": "d", "events": [ev(f"e-{name}", r1["id"])]}
        resp = await client.post("/client/v1/reports", json=body, headers={name: key})
        assert resp.status == 200, (name, await resp.text())
        assert (await resp.json())["counted"] == 1
        # A wrong key under either name is refused, not ignored.
        resp = await client.post("/client/v1/updates", json=check, headers={name: "nope"})
        assert resp.status == 401


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_head_on_download_answers_the_get_headers(
    client: Any, bank: dict[str, str], publish: Any, release: Release
) -> None:
    await publish(bundle_files("1.0.0"), "1.0.0")
    await release("1.0.0")
    check = {"device_id": "d", "app_version": "1.0.0", "packages": [{"kind": "bundle", "id": "main"}]}
    resp = await client.post(
        "/client/v1/updates", json=check, headers={"X-Deployment-Key": bank["production"]}
    )
    full = (await resp.json())["packages"][0]["full"]
    path = "/" + full["url"].split("://", 1)[1].split("/", 1)[1]  # the signed URL, path and query
    get = await client.get(path, headers={"Accept-Encoding": "identity"})
    assert get.status == 200 and len(await get.read()) == full["size"]
    head = await client.head(path, headers={"Accept-Encoding": "identity"})
    assert head.status == 200
    assert await head.read() == b""
    for name in ("Content-Length", "ETag", "Accept-Ranges", "Content-Type", "Cache-Control"):
        assert head.headers.get(name) == get.headers.get(name), name
    assert head.headers["Content-Length"] == str(full["size"])
    ranged = await client.head(path, headers={"Range": "bytes=0-9"})
    assert ranged.status == 206 and ranged.headers["Content-Length"] == "10"
    # HEAD checks the URL's signature as GET does: unsigned, even a missing blob is 403.
    missing = await client.head("/client/v1/blobs/" + "0" * 64)
    assert missing.status == 403


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_deeply_nested_json_is_400_on_public_routes(client: Any, bank: dict[str, str]) -> None:
    key = bank["production"]
    paths = [
        "/client/v1/updates",
        "/client/v1/reports",
        "/v0.1/public/codepush/report_status/deploy",
        "/v0.1/public/codepush/report_status/download",
        "/reportStatus/deploy",
        "/reportStatus/download",
    ]
    for path in paths:
        for body in DEEP:
            for headers in ({"X-Deployment-Key": key}, {}):
                resp = await client.post(
                    path, data=body, headers=headers | {"Content-Type": "application/json"}
                )
                # A clean 4xx JSON error (400, or 401 when no key could be found), never a 500.
                assert resp.status in (400, 401), (path, resp.status, await resp.text())
                assert (await resp.json())["error"]["code"]
