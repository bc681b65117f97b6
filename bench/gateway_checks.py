"""The server side of ``bench/gateway_instructions.py``: run under callgrind, it serves

* on ``PORT_MINIMAL`` the minimal aiohttp + uvloop handler (reads the body, answers the
  gateway's bytes), and ``POST /check``, which runs one gateway check ``n`` times in a
  loop against the mpaas app's own gateway objects (so a check's instructions can be
  counted alone);
* on ``PORT_GATEWAY`` the mpaas app with the trivial operation ``bench.ping`` v1.

    python bench/gateway_checks.py PORT_MINIMAL PORT_GATEWAY    # MPAAS_* from the environment

It prints ``ready`` once both listen. The gateway app is started with the server's own
start-up (``mpaas.cli.operator.settle_gc``), as ``mpaas server`` runs it.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

import uvloop
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from pydantic import BaseModel, ConfigDict

from mpaas.app import create_app
from mpaas.banking.service import BANKING
from mpaas.cli.operator import settle_gc
from mpaas.gateway.admission import Rate
from mpaas.gateway.operation import Call, OperationSpec
from mpaas.gateway.pipeline import Gateway
from mpaas.gateway.signing import parse_request
from mpaas.gateway.wiring import GATEWAY
from mpaas.logs import setup_logging
from mpaas.settings import Settings

ANSWER = b'{"result_code":1000,"result":{"pong":true}}'


class Empty(BaseModel):
    model_config = ConfigDict(extra="forbid")


async def ping(call: Call, params: Empty) -> dict[str, Any]:
    return {"pong": True}


async def add_ping(app: web.Application) -> None:
    spec = OperationSpec("bench.ping", 1, Empty, ping, session_required=False, rate=Rate(10**9, 1.0))
    app[BANKING].registry.add(spec, "bench")


async def run_check(gw: Gateway, name: str, n: int, headers: dict[str, str]) -> None:
    """``name`` ``n`` times, each on the same signed request (fresh nonces where they matter)."""
    body = b"{}"
    proxy = CIMultiDictProxy(CIMultiDict(headers))
    req = parse_request("POST", "/gateway", proxy, body)
    now = req.timestamp_ms / 1000.0
    expires = now + gw.config.window + 1.0
    spec = gw.lookup(req.operation, req.version)
    buckets = gw.buckets(req, spec, None)
    tag = os.urandom(6).hex()
    if name == "headers":
        for _ in range(n):
            parse_request("POST", "/gateway", proxy, body)
    elif name == "signature":
        for _ in range(n):
            await gw.verify(req)
    elif name == "clock":
        for _ in range(n):
            gw.check_clock(req)
    elif name == "nonce":
        for i in range(n):
            await gw.admission.admit(f"nonce:{{bench}}:{tag}:{i}", expires, (), now)
    elif name == "buckets":
        for _ in range(n):
            await gw.admission.admit("", expires, buckets, now)
    elif name == "admission":
        for i in range(n):
            await gw.admission.admit(f"nonce:{{bench}}:{tag}:{i}", expires, buckets, now)
    elif name == "session":
        assert gw.sessions is not None
        for _ in range(n):
            await gw.sessions.resolve(req.app, req.device, req.session, None)
    elif name == "dispatch":
        assert spec is not None
        for _ in range(n):
            await gw.dispatch(req, spec, body, None, None)
    elif name != "empty":
        raise ValueError(name)


async def main(minimal_port: int, gateway_port: int) -> None:
    setup_logging("WARNING", as_json=True)
    app = create_app(Settings.from_env())
    app.on_startup.append(add_ping)
    app.on_startup.append(settle_gc)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", gateway_port).start()

    async def minimal(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=ANSWER, content_type="application/json")

    async def check(request: web.Request) -> web.Response:
        spec = json.loads(await request.read())
        await run_check(app[GATEWAY], spec["check"], int(spec["n"]), spec["headers"])
        return web.Response(text="done")

    bare = web.Application()
    bare.router.add_post("/gateway", minimal)
    bare.router.add_post("/check", check)
    bare_runner = web.AppRunner(bare, access_log=None)
    await bare_runner.setup()
    await web.TCPSite(bare_runner, "127.0.0.1", minimal_port).start()
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]), int(sys.argv[2])))
