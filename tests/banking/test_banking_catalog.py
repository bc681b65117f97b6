"""The catalogue: versions edited as YAML or JSON, a view per tier, platform and app version,
answered with an ETag, on the client endpoint and as a gateway operation."""

from __future__ import annotations

from typing import Any

from gateway_support import Env, open_account, publish_package, register

CATALOG = b"""
mini_programs:
  - {id: wealth-center, kind: offline, title: Wealth, min_tier: full}
  - {id: welcome, kind: offline, title: Open an account, tiers: [visitor, registered]}
  - {id: cards, kind: offline, title: Cards, platforms: [android], app_versions: ">=2.0"}
products:
  - {id: savings, title: Savings, min_tier: registered}
  - {id: wealth-fund, title: Wealth fund, min_tier: full}
"""
YAML = {"Content-Type": "application/yaml"}


async def setup_catalog(env: Env, admin: dict[str, str]) -> str:
    for package in ("wealth-center", "welcome", "cards"):
        await publish_package(env, admin, "offline", package, "1.0.0")
    resp = await env.http.put("/api/v1/apps/bank/catalog", data=CATALOG, headers=admin | YAML)
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["version"] == 1
    channels = await (await env.http.get("/api/v1/apps/bank/channels", headers=admin)).json()
    return str(channels["items"][0]["deployment_key"])


def ids(view: dict[str, Any], part: str) -> list[str]:
    return [item["id"] for item in view[part]]


async def test_the_catalogue_differs_by_tier(env: Env, admin: dict[str, str]) -> None:
    key = await setup_catalog(env, admin)
    resp = await env.http.get(
        "/client/v1/catalog",
        params={"platform": "android", "app_version": "2.1"},
        headers={"X-Deployment-Key": key},
    )
    visitor = await resp.json()
    assert (resp.status, visitor["tier"], visitor["catalog_version"]) == (200, "visitor", 1)
    assert (ids(visitor, "mini_programs"), ids(visitor, "products")) == (["welcome", "cards"], [])
    visitor_ops = {op["name"] for op in visitor["operations"]}
    assert "mpaas.session.start" in visitor_ops and "mpaas.user.profile" not in visitor_ops

    client = env.client()
    await register(env, client)
    registered = (await client.call("mpaas.catalog.get", {"platform": "ios", "app_version": "2.1"})).result
    assert (ids(registered, "mini_programs"), ids(registered, "products")) == (["welcome"], ["savings"])
    assert "mpaas.user.profile" in {op["name"] for op in registered["operations"]}
    assert "mpaas.tier.upgrade" not in {op["name"] for op in registered["operations"]}
    old_app = (await client.call("mpaas.catalog.get", {"platform": "android", "app_version": "1.9"})).result
    assert ids(old_app, "mini_programs") == ["welcome"]

    assert (await open_account(client)).ok
    user_id = (await client.call("mpaas.user.profile")).result["user_id"]
    await env.http.post(f"/api/v1/apps/bank/bank-users/{user_id}/branch-verification", json={}, headers=admin)
    assert (await client.call("mpaas.tier.upgrade", {"target": "full"})).ok
    full = (await client.call("mpaas.products.list", {"platform": "ios"})).result
    assert full == {
        "tier": "full",
        "products": [
            {"id": "savings", "title": "Savings", "description": ""},
            {"id": "wealth-fund", "title": "Wealth fund", "description": ""},
        ],
    }
    view = (await client.call("mpaas.catalog.get", {"platform": "ios"})).result
    assert ids(view, "mini_programs") == ["wealth-center"]


async def test_the_catalogue_carries_an_etag_and_versions(env: Env, admin: dict[str, str]) -> None:
    key = await setup_catalog(env, admin)
    headers = {"X-Deployment-Key": key}
    first = await env.http.get("/client/v1/catalog", headers=headers)
    etag = first.headers["ETag"]
    again = await env.http.get("/client/v1/catalog", headers=headers | {"If-None-Match": f'W/"x", {etag}'})
    assert (again.status, again.headers["ETag"]) == (304, etag)

    doc = {"mini_programs": [], "products": [{"id": "savings", "title": "Savings"}]}
    resp = await env.http.put("/api/v1/apps/bank/catalog", json=doc, headers=admin)
    assert (resp.status, (await resp.json())["version"]) == (201, 2)
    changed = await env.http.get("/client/v1/catalog", headers=headers | {"If-None-Match": etag})
    assert changed.status == 200 and changed.headers["ETag"] != etag
    versions = await (await env.http.get("/api/v1/apps/bank/catalog/versions", headers=admin)).json()
    assert [v["version"] for v in versions["items"]] == [2, 1]
    gateway_view = (await env.client().call("mpaas.catalog.get")).result
    assert gateway_view["etag"] == changed.headers["ETag"]  # the same view, either way


async def test_a_bad_catalogue_is_refused_with_a_reason(env: Env, admin: dict[str, str]) -> None:
    bad = {
        b"mini_programs: [{id: nowhere, title: X}]": "app 'bank' has no offline package with that id",
        b"products: [{id: a, title: A, min_tier: gold}]": "unknown tier 'gold'",
        b"products: [{id: a, title: A}, {id: a, title: B}]": "ids must be unique",
        b"products: [{id: a, title: A, colour: red}]": "Extra inputs are not permitted",
        b"products: [{id: a, title: A, app_versions: 'not a range'}]": "not a version",
        b"products: [unclosed": "not valid YAML at line 1",
        b"- just a list": "must be an object",
    }
    for body, reason in bad.items():
        resp = await env.http.put("/api/v1/apps/bank/catalog", data=body, headers=admin | YAML)
        error = (await resp.json())["error"]
        assert (resp.status, error["code"]) == (400, "invalid_catalog"), body
        assert reason in error["message"], (body, error)
    no_key = await env.http.get("/client/v1/catalog")
    assert no_key.status == 401
    assert (await env.http.get("/api/v1/apps/bank/catalog/versions", headers=admin)).status == 200
