"""Gateway throughput: a signed call to a trivial in-process operation next to a bare handler.

    sudo apt-get install wrk redis-server    # this script installs nothing
    python bench/gateway.py [--duration 10] [--connections 64] [--rounds 3] [--write-doc]

One run, on loopback, wrk with one thread on CPU 0 and each server on CPU 1:

* ``minimal``: an aiohttp + uvloop handler that reads the body and answers the same
  bytes the gateway answers (the framework's ceiling on this machine);
* ``gateway hmac``: ``mpaas`` serving ``POST /gateway`` for ``bench.ping`` v1, each request
  signed with the app key (HMAC-SHA256), with a fresh nonce, so every call runs the
  whole pipeline: header checks, signature, clock window, nonce + three token buckets
  (app, device, operation; limits set high so none refuses) in one Redis round trip,
  input validation, the handler and the answer;
* ``gateway ecdsa``: the same, signed with 64 registered device keys (P-256).

wrk cannot sign, so requests are signed up front, each with its own nonce, and replayed
in order (a run that outlasts them sees 4003, flagged as refused). It prints requests/s,
p50, p99, the ratio to ``minimal``, the server's CPU use, and each check's cost alone.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from processes import cpu_seconds, free_port, stop, wait_http
from update_check_setup import write_block

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
PINNED = (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None
ANSWER = b'{"result_code":1000,"result":{"pong":true}}'

MINIMAL = """
import sys, uvloop
from aiohttp import web
body = sys.argv[2].encode()
async def handle(request):
    await request.read()
    return web.Response(body=body, content_type="application/json")
app = web.Application()
app.router.add_post("/gateway", handle)
app.router.add_get("/healthz", handle)
uvloop.install()
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""

#: The app as ``mpaas server`` runs it (``settle_gc`` last in start-up), plus ``bench.ping``.
GATEWAY = f"""
import sys, uvloop
sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})
from aiohttp import web
from gateway_checks import add_ping
from mpaas.app import create_app
from mpaas.cli.operator import settle_gc
from mpaas.logs import setup_logging
from mpaas.settings import Settings

setup_logging("WARNING", as_json=True)
uvloop.install()
app = create_app(Settings.from_env())
app.on_startup.append(add_ping)
app.on_startup.append(settle_gc)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""

#: Replays raw requests, NUL-separated in <FILE>, in order (the last one once they run out).
WRK_SCRIPT = """
local f = io.open("<FILE>", "rb")
local data = f:read("*a")
f:close()
local requests, i = {}, 0
for r in string.gmatch(data, "([^%z]+)") do requests[#requests + 1] = r end
request = function()
  i = i + 1
  return requests[i] or requests[#requests]
end
"""


@dataclass
class Result:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    refused: int
    busy: float = 0.0


def pinned(cmd: list[str], cpu: str) -> list[str]:
    return ["taskset", "-c", cpu, *cmd] if PINNED else cmd


def start(script: str, port: int, env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(pinned([sys.executable, "-c", script, str(port), *args], "1"), env=env)
    wait_http(f"http://127.0.0.1:{port}/healthz")
    return proc


def parse_wrk(name: str, text: str) -> Result:
    def ms(label: str) -> float:
        m = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        if not m:
            return float("nan")
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    refused = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    return Result(
        name, float(rps.group(1)) if rps else 0.0, ms("50"), ms("99"), int(refused.group(1)) if refused else 0
    )


def run_wrk(
    name: str, proc: subprocess.Popen[bytes], port: int, args: argparse.Namespace, script: Path
) -> Result:
    cmd = ["wrk", "-t1", f"-c{args.connections}", f"-d{args.duration}s", "--latency", "-s", str(script)]
    before = cpu_seconds(proc.pid)
    out = subprocess.run(
        pinned([*cmd, f"http://127.0.0.1:{port}/gateway"], "0"), capture_output=True, text=True
    )
    result = parse_wrk(name, out.stdout)
    result.busy = (cpu_seconds(proc.pid) - before) / args.duration
    return result


async def prepare(env: dict[str, str], devices: int) -> dict[str, Any]:
    """Migrate, make app ``bench`` with an app key, and register ``devices`` device keys."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from mpaas.gateway.keys import KeyStore, MasterKey
    from mpaas.identity.audit import Actor
    from mpaas.identity.tenancy import create_app
    from mpaas.settings import Settings
    from mpaas.storage.db import Database
    from mpaas.storage.migrate import upgrade_async

    settings = Settings.from_env(env)
    await upgrade_async(settings)
    db = Database(settings)
    keys = KeyStore(db, MasterKey.load_or_create(settings.keys_dir), 5.0)
    await create_app(db, Actor("bench"), "bench", ["android"])
    row, secret = await keys.create_app_key(Actor("bench"), "bench")
    owned = []
    for n in range(devices):
        key = ec.generate_private_key(ec.SECP256R1())
        der = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        device = f"bench-device-{n:04d}"
        owned.append(
            (device, key, (await keys.register_device(device=device, app="bench", spki_der=der)).kid)
        )
    await db.close()
    return {"kid": row.kid, "secret": base64.b64decode(secret), "devices": owned}


def sign_requests(prepared: dict[str, Any], count: int, ecdsa: bool, path: Path) -> None:
    from mpaas.banking.client import GatewayClient

    body = b"{}"
    lines = []
    for n in range(count):
        if ecdsa:
            device, key, kid = prepared["devices"][n % len(prepared["devices"])]
            client = GatewayClient(None, "bench", device=device, device_key=key, device_kid=kid)
        else:
            device = f"bench-hmac-{n % 64:04d}"
            client = GatewayClient(
                None, "bench", device=device, app_kid=prepared["kid"], app_secret=prepared["secret"]
            )
        fields = "".join(f"{k}: {v}\r\n" for k, v in client.headers("bench.ping", 1, body).items())
        head = f"POST /gateway HTTP/1.1\r\nHost: 127.0.0.1\r\n{fields}Content-Length: {len(body)}\r\n\r\n"
        lines.append(head.encode() + body)
    path.write_bytes(b"\0".join(lines))


def cpu_us(r: Result) -> float:
    """The server's CPU time per request: a ratio of these holds when the server is starved
    of its CPU by neighbours, when requests per second do not."""
    return r.busy / r.rps * 1e6 if r.rps else float("nan")


def report(results: dict[str, Result], args: argparse.Namespace) -> str:
    base = results["minimal"].rps
    where = "wrk on CPU 0, each server on CPU 1" if PINNED else "unpinned"
    lines = [
        f"wrk, 1 thread, {args.connections} connections, {args.duration} s, loopback, {where}; "
        f"median of {args.rounds} rounds; Redis on loopback{' (CPU 0)' if PINNED else ''}.",
        "",
        "| server | requests/s | × minimal | p50 ms | p99 ms | refused | server CPU busy "
        "| server CPU µs per request | × minimal by CPU |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results.values():
        lines.append(
            f"| {r.name} | {r.rps:,.0f} | {r.rps / base:.2f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.refused} "
            f"| {r.busy:.0%} | {cpu_us(r):.0f} | {cpu_us(results['minimal']) / cpu_us(r):.2f} |"
        )
    load = os.getloadavg()
    lines += ["", f"Load average before and after the run: {args.load_before:.1f} / {load[0]:.1f} (2 CPUs)."]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--expect-rps", type=int, default=16000, help="signed requests made per second of a run")
    ap.add_argument("--redis", default="private", help="a Redis URL, or 'private' (its own, on CPU 0)")
    ap.add_argument("--write-doc", action="store_true")
    ap.add_argument("--block", default="gateway", help="the docs/benchmarks.md block to replace")
    args = ap.parse_args()
    args.load_before = os.getloadavg()[0]
    if shutil.which("wrk") is None:
        print("skipped: wrk is not installed (sudo apt-get install wrk)")
        return 0
    work = Path(tempfile.mkdtemp(prefix="mpaas-bench-gateway-"))
    redis_proc = None
    if args.redis == "private":
        redis_port = free_port()
        redis_cmd = ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", ""]
        redis_proc = subprocess.Popen(pinned(redis_cmd, "0"), stdout=subprocess.DEVNULL)
        args.redis = f"redis://127.0.0.1:{redis_port}/0"
        time.sleep(0.5)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MPAAS_")} | {
        "MPAAS_DATA_DIR": str(work / "data"),
        "MPAAS_REDIS_URL": args.redis,
        "MPAAS_REDIS_PREFIX": f"bench-{secrets.token_hex(4)}:",
        "MPAAS_LOG_LEVEL": "WARNING",
        "MPAAS_PUSH_WORKER": "false",
        "MPAAS_GATEWAY_APP_RATE": "100000000/s",
        "MPAAS_GATEWAY_DEVICE_RATE": "100000000/s",
    }
    prepared = asyncio.run(prepare(env, 64))
    count = args.expect_rps * args.duration * 2
    runs: dict[str, list[Result]] = {}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(args.rounds):
            port = free_port()
            procs.append(start(MINIMAL, port, env, ANSWER.decode()))
            sign_requests(prepared, 1, False, work / "one.txt")
            (work / "one.lua").write_text(WRK_SCRIPT.replace("<FILE>", str(work / "one.txt")))
            runs.setdefault("minimal", []).append(run_wrk("minimal", procs[-1], port, args, work / "one.lua"))
            stop(procs.pop())
            for name, ecdsa in (("gateway hmac", False), ("gateway ecdsa", True)):
                sign_requests(prepared, count, ecdsa, work / "signed.txt")
                (work / "signed.lua").write_text(WRK_SCRIPT.replace("<FILE>", str(work / "signed.txt")))
                port = free_port()
                procs.append(start(GATEWAY, port, env))
                runs.setdefault(name, []).append(run_wrk(name, procs[-1], port, args, work / "signed.lua"))
                stop(procs.pop())
        results = {k: sorted(v, key=lambda r: r.rps)[len(v) // 2] for k, v in runs.items()}
    finally:
        for proc in procs:
            stop(proc)
        shutil.rmtree(work, ignore_errors=True)
        if redis_proc is not None:
            stop(redis_proc)
    table = report(results, args)
    print(table)
    if any(r.refused for name, r in results.items() if name != "minimal"):
        print("warning: some signed requests were refused (raise --expect-rps so none is replayed)")
    if args.write_doc:
        write_block(args.block, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
