"""/api/openapi.json must describe exactly the routes the server has."""

from __future__ import annotations

from typing import Any

from mpaas.web.edge import UNMATCHED
from mpaas.web.openapi import openapi_path


async def test_openapi_matches_router(client: Any) -> None:
    doc = await (await client.get("/api/openapi.json")).json()
    assert doc["openapi"].startswith("3.")
    documented = {(path, method.upper()) for path, ops in doc["paths"].items() for method in ops}
    routed = set()
    for route in client.app.router.routes():
        if route.method == "HEAD" or route.name == UNMATCHED:
            continue
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        routed.add((openapi_path(path), route.method))
    assert documented == routed


async def test_admin_operations_declare_auth_and_roles(client: Any) -> None:
    doc = await (await client.get("/api/openapi.json")).json()
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op["summary"], (path, method)
            if path.startswith("/api/v1/"):
                assert op["security"] == [{"bearer": []}], (path, method)
                assert "admin" in op["x-roles"]


async def test_admin_routes_really_require_tokens(client: Any) -> None:
    """Every documented admin route answers 401 without a token: none forgot its guard."""
    doc = await (await client.get("/api/openapi.json")).json()
    for path, ops in doc["paths"].items():
        if not path.startswith("/api/v1/"):
            continue
        concrete = path.replace("{app}", "bank").replace("{channel}", "staging").replace("{token_id}", "1")
        for method in ops:
            concrete_path = concrete
            while "{" in concrete_path:
                start = concrete_path.index("{")
                concrete_path = concrete_path[:start] + "x" + concrete_path[concrete_path.index("}") + 1 :]
            resp = await client.request(method.upper(), concrete_path)
            assert resp.status == 401, (method, path)
