"""Releases end to end: admin API, the native update check, reports, counters, halts."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from mpaas.appkeys import DB
from mpaas.packages.releases.key import RELEASES
from mpaas.packages.releases.service import ReleaseService
from mpaas.packages.releases.update_index import UpdateIndex

Release = Callable[..., Awaitable[dict[str, Any]]]


def _files(tag: str) -> dict[str, bytes]:
    return {
        "index.android.bundle": b"// bundle " + tag.encode() + b"\n" + b"x" * 3000,
        "assets/logo.png": b"\x89PNG" + b"L" * 2000,
        "assets/unchanged.txt": b"same in every version" * 50,
    }


async def check(client: Any, key: str, held: str | None, **device: Any) -> dict[str, Any]:
    body = {
        "device_id": device.pop("device_id", "dev-1"),
        "os": "android",
        "app_version": "5.3.0",
        "packages": [{"kind": "bundle", "id": "main", "hash": held}],
    } | device
    resp = await client.post("/client/v1/updates", json=body, headers={"X-Deployment-Key": key})
    assert resp.status == 200, await resp.text()
    data = await resp.json()
    return dict(data["packages"][0])


async def report(
    client: Any, key: str, events: list[dict[str, Any]], device: str = "dev-1"
) -> dict[str, Any]:
    resp = await client.post(
        "/client/v1/reports", json={"device_id": device, "events": events}, headers={"X-Deployment-Key": key}
    )
    assert resp.status == 200, await resp.text()
    return dict(await resp.json())


async def show(client: Any, headers: dict[str, str], release_id: int) -> dict[str, Any]:
    resp = await client.get(f"/api/v1/apps/bank/releases/{release_id}", headers=headers)
    assert resp.status == 200
    return dict(await resp.json())


async def test_update_delta_etag_download(
    client: Any, admin_headers: dict[str, str], bank: dict[str, str], publish: Any, release: Release
) -> None:
    v1 = await publish(_files("1"), "1.0.0")
    v2 = await publish(_files("2"), "2.0.0")
    r1 = await release("1.0.0")
    assert r1["label"] == "v1" and r1["rollout"] == 100 and r1["status"] == "active"
    key = bank["production"]

    fresh = await check(client, key, None)
    assert fresh["action"] == "update" and fresh["release"]["version"] == "1.0.0"
    assert fresh["delta"] is None and fresh["full"]["size"] == v1["size"]
    assert fresh["full"]["target"] == "bundle/main/1.0.0/full.zip"

    await release("2.0.0")
    up = await check(client, key, v1["package_hash"])
    assert up["action"] == "update" and up["release"]["version"] == "2.0.0"
    assert up["delta"]["from_hash"] == v1["package_hash"] and up["delta"]["size"] < up["full"]["size"]
    assert up["delta"]["target"] == "bundle/main/2.0.0/from-1.0.0.patch"
    assert (await check(client, key, v2["package_hash"]))["action"] == "current"

    # The full zip downloads with Content-Length, never content-encoded, with Range.
    url = up["full"]["url"].split("://", 1)[1].split("/", 1)[1]
    resp = await client.get("/" + url, headers={"Accept-Encoding": "gzip"})
    body = await resp.read()
    assert resp.status == 200 and "Content-Encoding" not in resp.headers
    assert int(resp.headers["Content-Length"]) == len(body) == up["full"]["size"]
    resp = await client.get("/" + url, headers={"Range": "bytes=0-9"})
    assert resp.status == 206 and await resp.read() == body[:10]
    # A bare digest is no grant (ADR 0015): refused before the blob is looked up.
    assert (await client.get("/client/v1/blobs/" + "0" * 64)).status == 403

    # ETag: the same question gets 304.
    req = {"device_id": "dev-1", "app_version": "5.3.0", "packages": [{"kind": "bundle", "id": "main"}]}
    first = await client.post("/client/v1/updates", json=req, headers={"X-Deployment-Key": key})
    etag = first.headers["ETag"]
    again = await client.post(
        "/client/v1/updates", json=req, headers={"X-Deployment-Key": key, "If-None-Match": etag}
    )
    assert again.status == 304
    assert (await first.json())["poll_interval"] == 300

    bad = await client.post("/client/v1/updates", json=req, headers={"X-Deployment-Key": "nope"})
    assert bad.status == 401 and (await bad.json())["error"]["code"] == "invalid_deployment_key"

    # The key may travel in the body instead (clients that cannot set headers): same answer.
    in_body = await client.post("/client/v1/updates", json=req | {"deployment_key": key})
    assert in_body.status == 200 and in_body.headers["ETag"] == etag
    assert await in_body.read() == await first.read()
    unknown = await client.post("/client/v1/updates", json=req | {"deployment_key": "nope"})
    assert unknown.status == 401


async def test_skipped_mandatory_release_still_reports_mandatory(
    client: Any, bank: dict[str, str], publish: Any, release: Release
) -> None:
    v1 = await publish(_files("1"), "1.0.0")
    v2 = await publish(_files("2"), "2.0.0")
    await publish(_files("3"), "3.0.0")
    await release("1.0.0")
    await release("2.0.0", mandatory=True)
    await release("3.0.0")
    key = bank["production"]
    from_v1 = await check(client, key, v1["package_hash"])
    assert from_v1["release"]["version"] == "3.0.0" and from_v1["mandatory"] is True
    from_v2 = await check(client, key, v2["package_hash"])
    assert from_v2["release"]["version"] == "3.0.0" and from_v2["mandatory"] is False
    # A device on the embedded version skipped v2 too.
    assert (await check(client, key, None))["mandatory"] is True


async def test_rules_whitelist_rollout_and_binary_range(
    client: Any, admin_headers: dict[str, str], bank: dict[str, str], publish: Any, release: Release
) -> None:
    await publish(_files("1"), "1.0.0")
    r = await release(
        "1.0.0",
        rollout=0,
        rules=["os=ios", "app_version>=5.2"],
        whitelist={"device_ids": ["vip"], "user_ids": ["u-42"]},
        target_binary_range=">=5 <6",
    )
    key = bank["production"]
    assert (await check(client, key, None, os="ios"))["action"] == "none"  # 0 %
    assert (await check(client, key, None, device_id="vip"))["action"] == "update"  # whitelist
    assert (await check(client, key, None, user_id="u-42"))["action"] == "update"
    # The whitelist never overrides the binary range.
    assert (await check(client, key, None, device_id="vip", app_version="6.0"))["action"] == "none"

    resp = await client.post(
        f"/api/v1/apps/bank/releases/{r['id']}/rollout", json={"rollout": 100}, headers=admin_headers
    )
    assert resp.status == 200 and (await resp.json())["rollout"] == 100
    assert (await check(client, key, None, os="ios"))["action"] == "update"
    assert (await check(client, key, None, os="android"))["action"] == "none"  # rule os=ios
    assert (await check(client, key, None, os="ios", app_version="5.1"))["action"] == "none"
    # Below the range's floor the answer says a newer binary is needed.
    assert (await check(client, key, None, os="ios", app_version="4.9"))["action"] == "binary_update"

    # The percentage: about a quarter of 2,000 devices, and raising it keeps them.
    await client.post(
        f"/api/v1/apps/bank/releases/{r['id']}/rollout", json={"rollout": 25}, headers=admin_headers
    )
    index = client.app[RELEASES].index
    channel = await index.channel_for_key(key)
    lineage = (await index.get(channel)).lineages[("bundle", "main")]
    from mpaas.packages.releases.rollout import Device
    from mpaas.packages.semver import Version

    def admitted() -> set[str]:
        v = Version.parse("5.3")
        return {
            d
            for d in (f"d{i}" for i in range(2000))
            if lineage.decide(Device(d, os="ios", app_version=v), None, False, 2e9).action == "update"
        }

    quarter = admitted()
    assert 400 <= len(quarter) <= 600
    await client.post(
        f"/api/v1/apps/bank/releases/{r['id']}/rollout", json={"rollout": 50}, headers=admin_headers
    )
    lineage = (await index.get(channel)).lineages[("bundle", "main")]
    assert quarter < admitted()


async def test_pause_resume_rollback_and_embedded(
    client: Any, admin_headers: dict[str, str], bank: dict[str, str], publish: Any, release: Release
) -> None:
    v1 = await publish(_files("1"), "1.0.0")
    v2 = await publish(_files("2"), "2.0.0")
    await release("1.0.0")
    r2 = await release("2.0.0")
    key = bank["production"]

    resp = await client.post(f"/api/v1/apps/bank/releases/{r2['id']}/pause", headers=admin_headers)
    assert (await resp.json())["status"] == "paused"
    # New devices get v1; a device already on v2 keeps it (no downgrade).
    assert (await check(client, key, v1["package_hash"]))["action"] == "current"
    assert (await check(client, key, v2["package_hash"]))["action"] == "current"
    assert (await check(client, key, None))["release"]["version"] == "1.0.0"
    resp = await client.post(f"/api/v1/apps/bank/releases/{r2['id']}/resume", headers=admin_headers)
    assert (await resp.json())["status"] == "active"
    assert (await check(client, key, v1["package_hash"]))["release"]["version"] == "2.0.0"

    resp = await client.post(
        "/api/v1/apps/bank/channels/production/rollback", json={"id": "main"}, headers=admin_headers
    )
    assert resp.status == 201, await resp.text()
    rb = await resp.json()
    assert rb["version"] == "1.0.0" and rb["rollback_of"] == r2["id"] and rb["label"] == "v3"
    assert (await show(client, admin_headers, r2["id"]))["status"] == "rolled_back"
    back = await check(client, key, v2["package_hash"])
    assert (
        back["action"] == "update" and back["release"]["version"] == "1.0.0" and back["release"]["rollback"]
    )
    assert (await check(client, key, v1["package_hash"]))["action"] == "current"

    resp = await client.post(
        "/api/v1/apps/bank/channels/production/rollback",
        json={"id": "main", "to_embedded": True},
        headers=admin_headers,
    )
    assert resp.status == 201 and (await resp.json())["embedded"] is True
    assert (await check(client, key, v1["package_hash"]))["action"] == "rollback_to_embedded"
    assert (await check(client, key, None))["action"] == "none"

    audit = await (await client.get("/api/v1/audit?app=bank", headers=admin_headers)).json()
    actions = {e["action"] for e in audit["items"]}
    assert {"release.create", "release.pause", "release.resume", "release.rollback"} <= actions


async def test_reports_count_once_and_auto_halt(
    client: Any, admin_headers: dict[str, str], bank: dict[str, str], publish: Any, release: Release
) -> None:
    v1 = await publish(_files("1"), "1.0.0")
    await publish(_files("2"), "2.0.0")
    r1 = await release("1.0.0")
    r2 = await release("2.0.0", halt_failure_rate=0.5, halt_min_reports=4)
    key = bank["production"]

    ev = {"event_id": "e-1", "release_id": r2["id"], "event": "download_succeeded"}
    assert await report(client, key, [ev]) == {"counted": 1, "duplicates": 0}
    assert await report(client, key, [ev]) == {"counted": 0, "duplicates": 1}  # a retry
    ok = {
        "event_id": "e-2",
        "release_id": r2["id"],
        "event": "install_succeeded",
        "previous_release_id": r1["id"],
    }
    await report(client, key, [ok])
    shown = await show(client, admin_headers, r2["id"])
    assert shown["counters"]["downloads"] == 1 and shown["counters"]["installs"] == 1
    assert shown["counters"]["active_devices"] == 1
    assert (await show(client, admin_headers, r1["id"]))["counters"]["active_devices"] == -1

    # Concurrent failure reports: none lost; 3 failures of 4 outcomes halts the rollout.
    fails = [{"event_id": f"f-{i}", "release_id": r2["id"], "event": "install_failed"} for i in range(3)]
    await asyncio.gather(*(report(client, key, [f], device=f"d{i}") for i, f in enumerate(fails)))
    halted = await show(client, admin_headers, r2["id"])
    assert halted["counters"]["failures"] == 3
    assert halted["status"] == "halted" and "auto-halted" in halted["status_reason"]
    assert halted["failure_rate"] == 0.75
    listed = await (
        await client.get("/api/v1/apps/bank/releases?status=halted", headers=admin_headers)
    ).json()
    assert [r["id"] for r in listed["items"]] == [r2["id"]]
    # Halted: new devices get v1 again.
    assert (await check(client, key, None))["release"]["version"] == "1.0.0"
    assert (await check(client, key, v1["package_hash"]))["action"] == "current"

    bad = await client.post(
        "/client/v1/reports",
        json={"events": [{"event_id": "x", "release_id": r2["id"], "event": "exploded"}]},
        headers={"X-Deployment-Key": key},
    )
    assert bad.status == 400


async def test_checks_are_batched_then_flushed(
    client: Any, admin_headers: dict[str, str], bank: dict[str, str], publish: Any, release: Release
) -> None:
    await publish(_files("1"), "1.0.0")
    r1 = await release("1.0.0")
    for i in range(5):
        await check(client, bank["production"], None, device_id=f"d{i}")
    assert (await show(client, admin_headers, r1["id"]))["counters"]["checks"] == 0  # not yet flushed
    rt = client.app[RELEASES]
    await rt.index.flush_checks(rt.service.add_checks)
    assert (await show(client, admin_headers, r1["id"]))["counters"]["checks"] == 5


async def test_promote_and_other_process_sees_change(
    client: Any, admin_headers: dict[str, str], bank: dict[str, str], publish: Any, release: Release
) -> None:
    await publish(_files("1"), "1.0.0")
    staged = await release("1.0.0", channel="staging", rollout=30, rules=["os=android"])
    # A second process: its own index over the same database.
    db = client.app[DB]
    other = UpdateIndex(db)
    await other.poll_once()
    channel = await other.channel_for_key(bank["production"])
    assert channel is not None
    assert ("bundle", "main") not in (await other.get(channel)).lineages

    resp = await client.post(
        f"/api/v1/apps/bank/releases/{staged['id']}/promote",
        json={"channel": "production"},
        headers=admin_headers,
    )
    assert resp.status == 201
    promoted = await resp.json()
    assert promoted["channel"] == "production" and promoted["promoted_from"] == staged["id"]
    assert promoted["rollout"] == 30 and promoted["rules"] == ["os=android"]

    await other.poll_once()  # what the poller does every MPAAS_RELEASE_POLL_SECONDS
    assert ("bundle", "main") in (await other.get(channel)).lineages
    assert isinstance(client.app[RELEASES].service, ReleaseService)


async def test_release_validation_and_roles(
    client: Any, admin_headers: dict[str, str], token_factory: Any, publish: Any
) -> None:
    await publish(_files("1"), "1.0.0")
    url = "/api/v1/apps/bank/channels/production/releases"
    for body, code in [
        ({"package_id": "main", "version": "9.9.9"}, "package_not_found"),
        ({"package_id": "main", "version": "1.0.0", "rollout": 150}, "validation_error"),
        ({"package_id": "main", "version": "1.0.0", "rules": ["colour=red"]}, "invalid_rule"),
        ({"package_id": "main", "version": "1.0.0", "target_binary_range": ">=banana"}, "invalid_version"),
    ]:
        resp = await client.post(url, json=body, headers=admin_headers)
        assert (await resp.json())["error"]["code"] == code, body
    analyst = {"Authorization": f"Bearer {await token_factory('analyst')}"}
    resp = await client.post(url, json={"package_id": "main", "version": "1.0.0"}, headers=analyst)
    assert resp.status == 403
    assert (await client.get("/api/v1/apps/bank/releases", headers=analyst)).status == 200
