"""Bad input to the release engineer's new admin routes: a clear 4xx that changes nothing."""

from __future__ import annotations

from typing import Any


async def error_code(resp: Any, status: int) -> str:
    assert resp.status == status, await resp.text()
    return str((await resp.json())["error"]["code"])


async def test_patch_rollback_and_tenant_changes_refuse_bad_input(
    client: Any, admin_headers: dict[str, str], publish: Any, release: Any
) -> None:
    h = admin_headers
    await publish({"a.js": b"1" * 200}, "1.0.0")
    await publish({"a.js": b"2" * 200}, "1.1.0")
    first = await release("1.0.0", channel="staging")
    second = await release("1.1.0", channel="staging")
    url = f"/api/v1/apps/bank/releases/{second['id']}"
    bad_patches: list[dict[str, object]] = [
        {},
        {"rollout": 101},
        {"rollout": True},
        {"mandatory": "yes"},
        {"x": 1},
    ]
    for body in bad_patches:
        assert await error_code(await client.patch(url, json=body, headers=h), 400) == "validation_error", (
            body
        )
    same = await (await client.get(url, headers=h)).json()
    assert (same["rollout"], same["mandatory"], same["description"]) == (
        second["rollout"],
        second["mandatory"],
        second["description"],
    )

    rollback = "/api/v1/apps/bank/channels/staging/rollback"
    too_big = {"id": "main", "to_release": 2**63}
    assert await error_code(await client.post(rollback, json=too_big, headers=h), 400) == "validation_error"
    both = {"id": "main", "to_release": first["id"], "to_embedded": True}
    assert await error_code(await client.post(rollback, json=both, headers=h), 400) == "validation_error"
    later = {"id": "main", "to_release": second["id"]}  # not earlier than the newest
    assert await error_code(await client.post(rollback, json=later, headers=h), 404) == "release_not_found"
    # a lineage released as two kinds needs --kind, like every other command
    await publish({"b.js": b"3" * 200}, "1.0.0", kind="offline", entry="b.js")
    await release("1.0.0", channel="staging", kind="offline")
    ambiguous = await client.post(rollback, json={"id": "main"}, headers=h)
    assert await error_code(ambiguous, 409) == "release_state"
    assert "several kinds (bundle, offline)" in (await ambiguous.json())["error"]["message"]
    listed = await (await client.get("/api/v1/apps/bank/releases?channel=staging", headers=h)).json()
    assert [r["status"] for r in listed["items"]] == ["active", "active", "active"]

    bad_apps: list[dict[str, object]] = [
        {},
        {"name": "Bad Name"},
        {"require_signing": "yes"},
        {"name": "ok", "x": 1},
    ]
    for body in bad_apps:
        resp = await client.patch("/api/v1/apps/bank", json=body, headers=h)
        assert await error_code(resp, 400) == "validation_error", body
    assert await error_code(await client.delete("/api/v1/apps/nope", headers=h), 404) == "app_not_found"
    channel = "/api/v1/apps/bank/channels/staging"
    assert await error_code(await client.patch(channel, json={"name": "production"}, headers=h), 409) == (
        "channel_exists"
    )
    bad_tokens: list[dict[str, object]] = [
        {"role": "analyst", "apps": []},
        {"role": "analyst", "apps": ["A B"]},
    ]
    for body in bad_tokens:
        resp = await client.post("/api/v1/tokens", json=body, headers=h)
        assert await error_code(resp, 400) == "validation_error", body
    unknown = {"role": "analyst", "apps": ["nope"]}
    assert (
        await error_code(await client.post("/api/v1/tokens", json=unknown, headers=h), 404) == "app_not_found"
    )
    delete = "/api/v1/apps/bank/packages/bundle/main/9.9.9"
    assert await error_code(await client.delete(delete, headers=h), 404) == "package_not_found"
