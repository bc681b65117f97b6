"""Apps, channels, deployment keys, tokens and the audit log over the admin API."""

from __future__ import annotations

from typing import Any


async def test_create_app_gets_default_channels(client: Any, admin_headers: dict[str, str]) -> None:
    resp = await client.post(
        "/api/v1/apps", json={"name": "bank", "platforms": ["ios", "android"]}, headers=admin_headers
    )
    assert resp.status == 201
    body = await resp.json()
    assert body["platforms"] == ["android", "ios"]
    names = {c["name"] for c in body["channels"]}
    assert names == {"staging", "production"}
    keys = {c["deployment_key"] for c in body["channels"]}
    assert len(keys) == 2 and all(len(k) >= 40 for k in keys)

    resp = await client.get("/api/v1/apps/bank/channels", headers=admin_headers)
    listed = {c["deployment_key"] for c in (await resp.json())["items"]}
    assert listed == keys


async def test_duplicate_app_is_409(client: Any, admin_headers: dict[str, str]) -> None:
    body = {"name": "bank", "platforms": ["ios"]}
    assert (await client.post("/api/v1/apps", json=body, headers=admin_headers)).status == 201
    resp = await client.post("/api/v1/apps", json=body, headers=admin_headers)
    assert resp.status == 409
    assert (await resp.json())["error"]["code"] == "app_exists"


async def test_app_validation(client: Any, admin_headers: dict[str, str]) -> None:
    for body in (
        {"name": "Bad Name", "platforms": ["ios"]},
        {"name": "ok", "platforms": ["windows"]},
        {"name": "ok", "platforms": []},
        {"platforms": ["ios"]},
        {"name": 3, "platforms": ["ios"]},
    ):
        resp = await client.post("/api/v1/apps", json=body, headers=admin_headers)
        assert resp.status == 400, body
        assert (await resp.json())["error"]["code"] == "validation_error"


async def test_app_listing_paginates(client: Any, admin_headers: dict[str, str]) -> None:
    for i in range(5):
        await client.post(
            "/api/v1/apps", json={"name": f"app{i}", "platforms": ["ios"]}, headers=admin_headers
        )
    resp = await client.get("/api/v1/apps?limit=2&offset=2", headers=admin_headers)
    body = await resp.json()
    assert [a["name"] for a in body["items"]] == ["app2", "app3"]
    assert body["total"] == 5 and body["next_offset"] == 4
    assert (await client.get("/api/v1/apps?limit=0", headers=admin_headers)).status == 400
    assert (await client.get("/api/v1/apps/nope", headers=admin_headers)).status == 404


async def test_channel_create_and_rotate(client: Any, admin_headers: dict[str, str]) -> None:
    await client.post("/api/v1/apps", json={"name": "bank", "platforms": ["ios"]}, headers=admin_headers)
    resp = await client.post("/api/v1/apps/bank/channels", json={"name": "beta"}, headers=admin_headers)
    assert resp.status == 201
    old = (await resp.json())["deployment_key"]
    resp = await client.post("/api/v1/apps/bank/channels/beta/rotate-key", headers=admin_headers)
    assert (await resp.json())["deployment_key"] != old
    resp = await client.post("/api/v1/apps/bank/channels", json={"name": "beta"}, headers=admin_headers)
    assert resp.status == 409


async def test_roles(client: Any, token_factory: Any) -> None:
    admin = {"Authorization": f"Bearer {await token_factory('admin')}"}
    await client.post("/api/v1/apps", json={"name": "bank", "platforms": ["ios"]}, headers=admin)
    for role, path, expected in (
        ("release-manager", "/api/v1/apps/bank/channels", 200),
        ("analyst", "/api/v1/apps/bank/channels", 403),
        ("push-operator", "/api/v1/apps", 200),
        ("analyst", "/api/v1/tokens", 403),
        ("release-manager", "/api/v1/audit", 403),
    ):
        headers = {"Authorization": f"Bearer {await token_factory(role)}"}
        assert (await client.get(path, headers=headers)).status == expected, (role, path)


async def test_token_lifecycle(client: Any, admin_headers: dict[str, str]) -> None:
    resp = await client.post("/api/v1/tokens", json={"role": "analyst", "name": "bi"}, headers=admin_headers)
    assert resp.status == 201
    created = await resp.json()
    secret = created["token"]
    me = await client.get("/api/v1/whoami", headers={"Authorization": f"Bearer {secret}"})
    assert (await me.json())["role"] == "analyst"

    listed = await (await client.get("/api/v1/tokens", headers=admin_headers)).json()
    assert all("token" not in t and "token_hash" not in t for t in listed["items"])

    resp = await client.delete(f"/api/v1/tokens/{created['id']}", headers=admin_headers)
    assert (await resp.json())["revoked_at"] is not None
    me = await client.get("/api/v1/whoami", headers={"Authorization": f"Bearer {secret}"})
    assert me.status == 401
    bad = await client.post("/api/v1/tokens", json={"role": "root"}, headers=admin_headers)
    assert bad.status == 400


async def test_audit_records_every_write(client: Any, admin_headers: dict[str, str]) -> None:
    await client.post("/api/v1/apps", json={"name": "bank", "platforms": ["ios"]}, headers=admin_headers)
    await client.post("/api/v1/apps/bank/channels", json={"name": "beta"}, headers=admin_headers)
    await client.post("/api/v1/tokens", json={"role": "analyst"}, headers=admin_headers)
    body = await (await client.get("/api/v1/audit", headers=admin_headers)).json()
    actions = [e["action"] for e in body["items"]]
    assert actions[:3] == ["token.create", "channel.create", "app.create"]
    assert all(e["actor"].startswith("token:") and e["at"].endswith("Z") for e in body["items"][:3])
    only_app = await (await client.get("/api/v1/audit?app=bank", headers=admin_headers)).json()
    assert {e["action"] for e in only_app["items"]} == {"app.create", "channel.create"}
