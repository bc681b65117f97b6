"""The admin API with the console's cookie: roles on the server, CSRF on unsafe methods,
bearer tokens unchanged; and the page shell and assets."""

from __future__ import annotations

import gzip
import re
from collections.abc import Callable
from typing import Any

from console_support import sign_in

PAUSE = "/api/v1/apps/bank/releases/1/pause"


async def test_roles_and_csrf_with_the_cookie(
    client: Any, make_account: Callable[..., Any], admin_headers: dict[str, str]
) -> None:
    await make_account("ana", "analyst")
    await make_account("root", "admin")
    csrf = (await (await sign_in(client, "ana")).json())["csrf_token"]
    read = await client.get("/api/v1/apps/bank/releases")  # analysts may read releases: no CSRF for GET
    assert read.status == 404 and (await read.json())["error"]["code"] == "app_not_found"
    denied = await client.post(PAUSE, headers={"X-CSRF-Token": csrf})
    assert denied.status == 403 and (await denied.json())["error"]["code"] == "forbidden"

    csrf = (await (await sign_in(client, "root")).json())["csrf_token"]
    forged = await client.post("/api/v1/apps", data={"name": "evil", "platforms": "ios"})  # a form post
    assert forged.status == 403 and (await forged.json())["error"]["code"] == "csrf_failed"
    wrong = await client.post(
        "/api/v1/apps", json={"name": "evil", "platforms": ["ios"]}, headers={"X-CSRF-Token": "x" * 43}
    )
    assert wrong.status == 403 and (await wrong.json())["error"]["code"] == "csrf_failed"
    made = await client.post(
        "/api/v1/apps", json={"name": "bank", "platforms": ["ios"]}, headers={"X-CSRF-Token": csrf}
    )
    assert made.status == 201
    apps = await (await client.get("/api/v1/apps", headers=admin_headers)).json()
    assert [a["name"] for a in apps["items"]] == ["bank"]  # the forged post made nothing

    client.session.cookie_jar.clear()
    bearer = await client.post(
        "/api/v1/apps", json={"name": "shop", "platforms": ["ios"]}, headers=admin_headers
    )
    assert bearer.status == 201  # bearer tokens need no CSRF token
    audit = await (await client.get("/api/v1/audit?action=app.create", headers=admin_headers)).json()
    assert {e["actor"] for e in audit["items"]} >= {"console:root"}
    assert (await client.post(PAUSE)).status == 401


async def test_shell_and_assets(client: Any) -> None:
    shell = await client.get("/console/")
    assert shell.status == 200 and shell.content_type == "text/html"
    csp = shell.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "script-src 'self';" in csp
    html = await shell.text()
    page = await client.get("/console/apps/bank/releases")
    assert page.status == 200 and await page.text() == html
    assert (await client.get("/console/nothing.js")).status == 404
    assert (await client.get("/console/assets/..%2Fsessions.py")).status == 404
    redirect = await client.get("/console", allow_redirects=False)
    assert redirect.status == 308 and redirect.headers["Location"] == "/console/"

    referenced = re.findall(r'(?:src|href)="(/console/assets/[^"]+)"', html)
    assert referenced, "the shell loads its assets from /console/assets/"
    for url in referenced:
        plain = await client.get(url, headers={"Accept-Encoding": "identity"})
        assert plain.status == 200 and "Content-Encoding" not in plain.headers
        body = await plain.read()
        resp = await client.get(url, headers={"Accept-Encoding": "gzip"}, auto_decompress=False)
        assert resp.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        if len(body) >= 256 and not url.endswith((".png", ".woff2")):
            assert resp.headers["Content-Encoding"] == "gzip"
            assert gzip.decompress(await resp.read()) == body
        again = await client.get(url, headers={"If-None-Match": resp.headers["ETag"]})
        assert again.status == 304
        # A cache that holds several versions sends a list, and may mark tags weak (RFC 9110).
        listed = await client.get(url, headers={"If-None-Match": f'"other", W/{resp.headers["ETag"]}'})
        assert listed.status == 304
        stale = await client.get(url, headers={"If-None-Match": '"other"'})
        assert stale.status == 200
