"""Operations: an entry-point plug-in, and upstream services added at run time behind a
timeout, retries for idempotent operations only, and a circuit breaker on the clock.

The stand-in upstream is a real HTTP server; each test decides its behaviour per call
(answer, fail with 503, or hang until the gateway's timeout), and counts the calls.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from gateway_support import Env, admin_headers_of, env_settings, start

from mpaas.settings import Settings
from tests_support import free_port

QUOTE_SCHEMA = {
    "type": "object",
    "properties": {
        "amount": {"type": "integer", "minimum": 1},
        "currency": {"type": "string", "enum": ["CNY", "USD"]},
    },
    "required": ["amount"],
}
SIGNED = (
    "X-Mpaas-Operation",
    "X-Mpaas-Version",
    "X-Mpaas-App",
    "X-Mpaas-Device",
    "X-Mpaas-User",
    "X-Mpaas-Tier",
    "X-Mpaas-Call-Id",
    "X-Mpaas-Timestamp",
)


class StandIn:
    """The bank's service: ``plan`` says what each next call does ("ok", "fail", "hang", "reject")."""

    def __init__(self) -> None:
        self.plan: list[str] = []
        self.calls: list[dict[str, str]] = []
        self.secret = b""
        self.never = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.calls.append(dict(request.headers))
        message = "\n".join(
            ["MPAAS-UPSTREAM-1", *(request.headers[h] for h in SIGNED), hashlib.sha256(body).hexdigest()]
        )
        expected = hmac.new(self.secret, message.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, request.headers["X-Mpaas-Signature"]):
            return web.json_response({"error": {"message": "bad signature"}}, status=401)
        step = self.plan.pop(0) if self.plan else "ok"
        if step == "hang":
            await self.never.wait()
        if step == "fail":
            return web.json_response({"error": "database is down: SELECT * FROM ledger"}, status=503)
        if step == "reject":
            return web.json_response(
                {"error": {"message": "amount exceeds the daily quote limit"}}, status=422
            )
        return web.json_response(
            {"quoted": (await request.json())["amount"] * 7, "tier": request.headers["X-Mpaas-Tier"]}
        )


@pytest.fixture(params=["sqlite"])
def backend(request: pytest.FixtureRequest) -> str:
    """Forwarding does not depend on the SQL dialect; the registry's tables run on both
    dialects in test_banking_cli.py."""
    return str(request.param)


@pytest.fixture
async def stand_in() -> AsyncIterator[tuple[StandIn, str]]:
    service = StandIn()
    app = web.Application()
    app.router.add_post("/quote", service.handle)
    server = TestServer(app)
    await server.start_server()
    yield service, str(server.make_url("/quote"))
    service.never.set()
    await server.close()


@pytest.fixture
async def tight_env(aiohttp_client: Any, make_settings: Callable[..., Settings]) -> Env:
    """Two failures open a breaker; 30 s later it lets one trial through."""
    settings = env_settings(make_settings, gateway_breaker_failures=2, gateway_upstream_retries=2)
    return await start(aiohttp_client, settings)


async def add_upstream(
    env: Env, headers: dict[str, str], stand_in: StandIn, url: str, **fields: Any
) -> dict[str, Any]:
    body = {
        "name": "com.bank.fx.quote",
        "version": 1,
        "url": url,
        "input_schema": QUOTE_SCHEMA,
        "min_tier": "visitor",
    }
    resp = await env.http.post("/api/v1/operations", json=body | fields, headers=headers)
    out = await resp.json()
    assert resp.status == 201, out
    stand_in.secret = bytes.fromhex(out["upstream_secret"])
    return dict(out)


async def test_an_operation_from_the_example_package_is_callable(env: Env, example_operations: None) -> None:
    spec = env.banking.registry.get("com.example.fx.quote", 1)
    assert spec is not None and env.banking.registry.origin(spec) == "mpaas-example-operations:example"
    client = env.client()
    quote = await client.call("com.example.fx.quote", {"sell": "USD", "buy": "CNY", "amount": 10_000})
    assert (quote.code, quote.result) == (
        1000,
        {"sell": "USD", "buy": "CNY", "amount": 10_000, "buy_amount": 71_000},
    )
    assert (
        await client.call("com.example.fx.quote", {"sell": "USD", "buy": "XXX", "amount": 1})
    ).code == 4001
    await client.call("mpaas.session.start")
    assert (await client.call("com.example.wealth.subscribe", {"product": "p", "amount": 1})).code == 3001


async def test_an_upstream_operation_added_at_run_time_is_callable(
    env: Env, admin: dict[str, str], stand_in: tuple[StandIn, str]
) -> None:
    service, url = stand_in
    client = env.client()
    assert (await client.call("com.bank.fx.quote", {"amount": 3})).code == 3000
    await add_upstream(env, admin, service, url, session_required=False)
    ok = await client.call("com.bank.fx.quote", {"amount": 3})
    assert (ok.code, ok.result) == (1000, {"quoted": 21, "tier": "visitor"})
    sent = service.calls[-1]
    assert (sent["X-Mpaas-App"], sent["X-Mpaas-Device"], sent["X-Mpaas-User"]) == ("bank", client.device, "")

    for bad in ({"amount": "3"}, {"amount": 0}, {"amount": 3, "extra": True}, {}):
        assert (await client.call("com.bank.fx.quote", bad)).code == 4001, bad
    assert len(service.calls) == 1  # invalid input never reaches the service

    service.plan = ["reject"]
    rejected = await client.call("com.bank.fx.quote", {"amount": 10**6})
    assert (rejected.code, rejected.error["message"]) == (4001, "amount exceeds the daily quote limit")

    path = "/api/v1/operations/com.bank.fx.quote/1"
    assert (await env.http.post(path + "/disable", headers=admin)).status == 200
    assert (await client.call("com.bank.fx.quote", {"amount": 3})).code == 3000
    assert (await env.http.post(path + "/enable", headers=admin)).status == 200
    assert (await client.call("com.bank.fx.quote", {"amount": 3})).ok
    shown = await (await env.http.get(path, headers=admin)).json()
    assert (shown["kind"], shown["url"], shown["breaker"]["state"]) == ("upstream", url, "closed")
    assert "upstream_secret" not in shown


async def test_a_slow_or_down_upstream_answers_7000(
    env: Env, admin: dict[str, str], stand_in: tuple[StandIn, str]
) -> None:
    service, url = stand_in
    await add_upstream(env, admin, service, url, session_required=False, timeout_seconds=0.2)
    service.plan = ["hang"]
    slow = await env.client().call("com.bank.fx.quote", {"amount": 1})
    assert (slow.status, slow.code) == (503, 7000)
    assert "SELECT" not in str(slow.error)
    down_url = f"http://127.0.0.1:{free_port()}/quote"
    await add_upstream(env, admin, service, down_url, version=2, session_required=False)
    down = await env.client().call("com.bank.fx.quote", {"amount": 1}, version=2)
    assert (down.code, down.error["code"]) == (7000, "upstream_unavailable")


async def test_only_idempotent_operations_are_retried(
    env: Env, admin: dict[str, str], stand_in: tuple[StandIn, str]
) -> None:
    service, url = stand_in
    await add_upstream(env, admin, service, url, session_required=False, idempotent=True)
    await add_upstream(env, admin, service, url, version=2, session_required=False)
    service.plan = ["fail", "ok"]  # flapping
    retried = await env.client().call("com.bank.fx.quote", {"amount": 2})
    assert retried.code == 1000 and len(service.calls) == 2
    assert service.calls[0]["X-Mpaas-Call-Id"] == service.calls[1]["X-Mpaas-Call-Id"]  # one call id per call
    service.plan = ["fail", "ok"]
    once = await env.client().call("com.bank.fx.quote", {"amount": 2}, version=2)
    assert once.code == 7000 and len(service.calls) == 3  # not retried: it may have been applied
    assert (await env.client().call("com.bank.fx.quote", {"amount": 2}, version=2)).code == 1000


async def test_the_circuit_breaker_opens_and_recovers_on_the_clock(
    tight_env: Env, stand_in: tuple[StandIn, str]
) -> None:
    env, (service, url) = tight_env, stand_in
    await add_upstream(env, await admin_headers_of(env), service, url, session_required=False)
    clock = env.banking.clock
    clock.fixed = 1_800_000_000.0
    service.plan = ["fail", "fail"]
    assert [(await env.client().call("com.bank.fx.quote", {"amount": 1})).code for _ in range(2)] == [
        7000,
        7000,
    ]
    assert len(service.calls) == 2
    fast = await env.client().call("com.bank.fx.quote", {"amount": 1})
    assert (fast.code, int(fast.headers["Retry-After"])) == (7000, 30)
    assert len(service.calls) == 2  # open: the service was not called
    clock.fixed += 29.9
    assert (await env.client().call("com.bank.fx.quote", {"amount": 1})).code == 7000
    assert len(service.calls) == 2
    clock.fixed += 0.2  # half-open: one trial reaches the service, and it succeeds
    assert (await env.client().call("com.bank.fx.quote", {"amount": 1})).code == 1000
    assert [(await env.client().call("com.bank.fx.quote", {"amount": 1})).code for _ in range(2)] == [
        1000,
        1000,
    ]
    assert len(service.calls) == 5
    service.plan = ["fail", "fail", "fail"]  # a failed trial opens it again at once
    await env.client().call("com.bank.fx.quote", {"amount": 1})
    await env.client().call("com.bank.fx.quote", {"amount": 1})
    clock.fixed += 31
    assert (await env.client().call("com.bank.fx.quote", {"amount": 1})).code == 7000  # the trial fails
    assert (await env.client().call("com.bank.fx.quote", {"amount": 1})).code == 7000
    assert len(service.calls) == 8
