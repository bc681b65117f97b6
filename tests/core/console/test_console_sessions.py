"""Console sign-in, sessions, lock-out and expiry, through the session API."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from console_support import PASSWORD, advance, sign_in

from mpaas.appkeys import DB
from mpaas.identity.audit import list_entries


async def actions(client: Any) -> list[str]:
    entries, _total = await list_entries(client.app[DB], limit=100)
    return [e.action for e in reversed(entries)]


async def test_sign_in_then_out(client: Any, make_account: Callable[..., Any]) -> None:
    await make_account("alice", "release-manager")
    resp = await sign_in(client, "Alice", **{"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.5"})
    assert resp.status == 200
    body = await resp.json()
    assert body["user"] == "alice" and body["role"] == "release-manager" and body["locale"] == "zh-CN"
    cookie = resp.headers["Set-Cookie"]
    assert cookie.startswith("mpaas_console=")
    flags = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite", "path"} <= flags and "secure" not in flags  # plain HTTP
    assert "SameSite=Strict" in cookie and "Path=/" in cookie
    assert resp.headers["Cache-Control"] == "no-store"

    resp = await client.get("/console/api/session")
    assert resp.status == 200 and await resp.json() == body
    whoami = await client.get("/api/v1/whoami")  # the admin API takes the cookie
    assert whoami.status == 200 and (await whoami.json())["role"] == "release-manager"

    resp = await client.patch(
        "/console/api/session", json={"locale": "en"}, headers={"X-CSRF-Token": body["csrf_token"]}
    )
    assert resp.status == 200 and (await resp.json())["locale"] == "en"

    refused = await client.delete("/console/api/session")
    assert refused.status == 403 and (await refused.json())["error"]["code"] == "csrf_failed"
    resp = await client.delete("/console/api/session", headers={"X-CSRF-Token": body["csrf_token"]})
    assert resp.status == 204
    assert "mpaas_console=" in resp.headers["Set-Cookie"] and "Max-Age=0" in resp.headers["Set-Cookie"]
    assert (await client.get("/console/api/session")).status == 401
    assert (await client.get("/api/v1/whoami")).status == 401
    assert await actions(client) == ["console_account.create", "console.sign_in", "console.sign_out"]


async def test_wrong_password_then_lock_out_with_doubling_delay(
    client: Any, make_account: Callable[..., Any]
) -> None:
    await make_account("bob")
    advance(client, timedelta(0))
    for _ in range(4):
        resp = await sign_in(client, "bob", "wrong password!")
        assert resp.status == 401 and (await resp.json())["error"]["code"] == "sign_in_failed"
    unknown = await sign_in(client, "nobody", "wrong password!")
    assert unknown.status == 401 and (await unknown.json())["error"]["code"] == "sign_in_failed"

    fifth = await sign_in(client, "bob", "wrong password!")
    assert fifth.status == 429 and fifth.headers["Retry-After"] == "30"
    locked = await sign_in(client, "bob")  # even the right password waits
    assert locked.status == 429 and 1 <= int(locked.headers["Retry-After"]) <= 30

    advance(client, timedelta(seconds=31))
    sixth = await sign_in(client, "bob", "wrong password!")
    assert sixth.status == 429 and sixth.headers["Retry-After"] == "60"
    advance(client, timedelta(seconds=61))
    assert (await sign_in(client, "bob")).status == 200
    assert (await sign_in(client, "bob", "wrong password!")).status == 401  # the count was reset
    logged = await actions(client)
    assert logged.count("console.sign_in_failed") == 8 and "console.sign_in_refused" in logged


async def test_idle_and_absolute_timeouts(client: Any, make_account: Callable[..., Any]) -> None:
    await make_account("carol", "analyst")
    advance(client, timedelta(0))
    assert (await sign_in(client, "carol")).status == 200
    advance(client, timedelta(minutes=29))
    assert (await client.get("/console/api/session")).status == 200  # activity moves the idle end
    advance(client, timedelta(minutes=29))
    assert (await client.get("/console/api/session")).status == 200
    advance(client, timedelta(minutes=30, seconds=1))
    idle = await client.get("/console/api/session")
    assert idle.status == 401 and (await idle.json())["error"]["code"] == "session_expired"

    assert (await sign_in(client, "carol")).status == 200
    for _ in range(35):  # active every 20 minutes: 11 h 40 min
        advance(client, timedelta(minutes=20))
        assert (await client.get("/console/api/session")).status == 200
    advance(client, timedelta(minutes=20))  # 12 h after sign-in
    absolute = await client.get("/console/api/session")
    assert absolute.status == 401 and (await absolute.json())["error"]["code"] == "session_expired"


async def test_secure_flag_behind_a_trusted_proxy(make_client: Callable[..., Any]) -> None:
    from mpaas.console.accounts import create_account
    from mpaas.console.wiring import CONSOLE
    from mpaas.identity.audit import Actor

    client = await make_client(trust_proxy=True)
    console = client.app[CONSOLE]
    await create_account(
        client.app[DB], console.passwords, Actor("t"), username="dan", role="admin", password=PASSWORD
    )
    behind_tls = await sign_in(client, "dan", **{"X-Forwarded-Proto": "https"})
    assert behind_tls.status == 200 and "; Secure" in behind_tls.headers["Set-Cookie"]
    plain = await sign_in(client, "dan", **{"X-Forwarded-Proto": "http"})
    assert plain.status == 200 and "; Secure" not in plain.headers["Set-Cookie"]


async def test_disabled_account_and_bad_bodies(client: Any, make_account: Callable[..., Any]) -> None:
    from mpaas.console.accounts import disable_account
    from mpaas.identity.audit import Actor

    await make_account("erin")
    untrusted = await sign_in(client, "erin", **{"X-Forwarded-Proto": "https"})  # no MPAAS_TRUST_PROXY
    assert untrusted.status == 200 and "; Secure" not in untrusted.headers["Set-Cookie"]
    await disable_account(client.app[DB], Actor("test"), "erin")
    assert (await client.get("/console/api/session")).status == 401  # its session ended
    assert (await sign_in(client, "erin")).status == 401
    form = await client.post("/console/api/session", data={"username": "erin", "password": "x"})
    assert form.status == 415
    bad = await client.post("/console/api/session", json={"username": 3})
    assert bad.status == 400
