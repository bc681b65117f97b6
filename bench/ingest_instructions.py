"""Ingest cost in CPU instructions per request: mpaas's ``/v1/batch`` next to a no-op handler.

    sudo apt-get install valgrind       # this script installs nothing
    python bench/ingest_instructions.py [--requests 400] [--connections 16] [--rounds 2]

The deterministic companion of ``bench/ingest.py``, whose wall-clock rates move by a
quarter from run to run on a shared machine. One Python process, run under
``valgrind --tool=callgrind``, serves on two ports the no-op aiohttp + uvloop handler of
``bench/ingest.py`` (it reads the body and discards it), a no-op on the ingest
listener's own layer (asyncio.Protocol + httptools, ``LEAN_NOOP`` of ``bench/ingest.py``),
and the mpaas application with its ingest listener on (``MPAAS_INGEST_PORT``) and
durability on (the file spool: each request answered after the fsync that covers it,
group commit). A client outside valgrind posts the same Segment batch of 50 events with
Basic auth over ``--connections`` concurrent connections; counters are zeroed before
and dumped after each batch of requests. Background work (release and push polling,
the loader) is off or slowed so it does not land in a batch.

callgrind counts the user-space instructions of every thread of the process, so the
spool's writer thread is included. It does not count the kernel: socket reads and
writes (the same for both servers) and the writes and fsyncs of the spool (mpaas only)
are left out, and so are cache misses. The ratio is what the Python side asks of the CPU.
With ``--annotate`` the heaviest functions of mpaas's last batch (inclusive) are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gateway_instructions import Counter
from ingest import NOOP_SERVER, PER_BATCH, segment_batch
from ingest_servers import LEAN_NOOP

SERVE = """
import asyncio, os, sys
import uvloop
from aiohttp import web
from mpaas.app import create_app
from mpaas.settings import Settings
async def noop(request):
    await request.read()
    return web.Response(body=b'{"success":true}', content_type="application/json")
LEAN_NOOP
async def main():
    env = {k: v for k, v in os.environ.items() if k.startswith("MPAAS_")}
    mpaas = web.AppRunner(create_app(Settings.from_env(env)), access_log=None)
    await mpaas.setup()
    await web.TCPSite(mpaas, "127.0.0.1", int(sys.argv[1])).start()
    bare = web.Application(client_max_size=1 << 20)
    bare.router.add_post("/v1/batch", noop)
    runner = web.AppRunner(bare, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", int(sys.argv[2])).start()
    await asyncio.get_running_loop().create_server(LeanNoop, "127.0.0.1", int(sys.argv[3]))
    print("ready", flush=True)
    await asyncio.Event().wait()
uvloop.run(main())
"""
SERVE = SERVE.replace("LEAN_NOOP", LEAN_NOOP)
assert "await request.read()" in NOOP_SERVER  # the same no-op handler as bench/ingest.py


async def _connection(port: int, request: bytes, n: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for _ in range(n):
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
            await reader.readexactly(int(length.group(1)) if length else 0)
            if status != 200:
                raise RuntimeError(f"HTTP {status}")
    finally:
        writer.close()


def post(port: int, request: bytes, n: int, connections: int) -> None:
    """``n`` requests over ``connections`` concurrent keep-alive connections."""

    async def run() -> None:
        share = [n // connections + (i < n % connections) for i in range(connections)]
        await asyncio.gather(*(_connection(port, request, k) for k in share if k))

    asyncio.run(run())


def http_request(port: int, body: bytes, auth: str) -> bytes:
    head = (
        f"POST /v1/batch HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Authorization: {auth}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def admin(port: int, token: str, path: str, body: dict[str, object]) -> dict[str, object]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=120) as resp:
        return dict(json.loads(resp.read()))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=400, help="requests per batch")
    ap.add_argument("--connections", type=int, default=16, help="concurrent client connections")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--annotate", action="store_true", help="print mpaas's heaviest functions")
    ap.add_argument("--keep", type=Path, help="copy mpaas's last callgrind dump to this file")
    args = ap.parse_args()
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("skipped: valgrind not installed (sudo apt-get install valgrind)")
        return 0
    work = Path(tempfile.mkdtemp(prefix="mpaas-bench-ingest-ir-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MPAAS_")} | {
        "MPAAS_DATA_DIR": str(work / "data"),
        "MPAAS_CONFIG_HOME": str(work / "cfg"),
        "MPAAS_LOG_LEVEL": "WARNING",
        "MPAAS_ANALYTICS_LOADER": "false",
        "MPAAS_PUSH_WORKER": "false",
        "MPAAS_RELEASE_POLL_SECONDS": "300",
        "MPAAS_COUNTER_FLUSH_SECONDS": "3600",
        "MPAAS_PUSH_POLL_INTERVAL": "60",
    }
    token = subprocess.run(
        [sys.executable, "-m", "mpaas.cli.main", "init"], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    (work / "serve.py").write_text(SERVE)
    mport, nport = 18000 + random.randrange(1000), 19000 + random.randrange(1000)
    lport, iport = 20000 + random.randrange(1000), 21000 + random.randrange(1000)
    env["MPAAS_INGEST_PORT"] = str(iport)
    out = str(work / "cg.out")
    server = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}.%p",
         sys.executable, str(work / "serve.py"), str(mport), str(nport), str(lport)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    counts: dict[str, list[float]] = {}
    last_dump = ""
    try:
        assert server.stdout is not None
        if server.stdout.readline().strip() != b"ready":
            raise RuntimeError("server did not start")
        admin(mport, token, "/api/v1/apps", {"name": "bench", "platforms": ["android"]})
        key = str(admin(mport, token, "/api/v1/apps/bench/analytics/write-keys", {})["write_key"])
        auth = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
        body = json.dumps(segment_batch(0)).encode()

        counter = Counter(server.pid, out)

        def measure(name: str, port: int) -> str:
            request = http_request(port, body, auth)
            post(port, request, 50, args.connections)  # warm-up: key cache, code paths
            total = counter.count(lambda: post(port, request, args.requests, args.connections))
            counts.setdefault(name, []).append(total / args.requests)
            return counter.last

        for _ in range(args.rounds):
            measure("aiohttp+uvloop no-op handler", nport)
            measure("mpaas /v1/batch, fsync before 200", mport)
            measure("httptools no-op (the ingest listener's layer)", lport)
            last_dump = measure("mpaas ingest listener /v1/batch, fsync before 200", iport)
        if args.keep is not None:
            shutil.copyfile(last_dump, args.keep)
        if args.annotate:
            shown = subprocess.run(
                ["callgrind_annotate", "--inclusive=yes", "--threshold=99", last_dump],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            print("\n".join(shown.stdout.splitlines()[:80]))
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)
    base = min(counts["aiohttp+uvloop no-op handler"])
    lines = [
        f"callgrind, {args.requests} requests a batch over {args.connections} connections, best of "
        f"{args.rounds}; Segment batches of {PER_BATCH} events ({len(body):,} bytes); user-space "
        "instructions of all threads (the kernel's socket, write and fsync work is not counted)",
        "",
        "| server | instructions per request | no-op ÷ server |",
        "|---|---:|---:|",
    ]
    for name, values in counts.items():
        lines.append(f"| {name} | {min(values):,.0f} | {base / min(values):.2f} |")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
