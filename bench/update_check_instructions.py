"""Update-check cost in CPU instructions per request, next to a minimal aiohttp handler.

    sudo apt-get install valgrind       # this script installs nothing
    python bench/update_check_instructions.py [--requests 500] [--cache-sim] [--write-doc]

Wall-clock rates on a shared machine move by ±25 % from run to run. Instructions
counted by callgrind do not: the same binary and inputs give the same count whatever
else the machine does. One Python process (run under ``valgrind --tool=callgrind``)
serves, on two ports, the minimal aiohttp + uvloop handler of ``bench/update_check.py``
(a plain route returning the native answer's bytes) and the mpaas application with the
same data as that benchmark (1,000 releases over 50 packages). A client outside valgrind
sends the same POST to each, a random device id per request; counters are zeroed
before and dumped after each batch. Background work (release and push polling) is
slowed to once a minute or less so it does not land in a batch.

Instructions are not time: they leave out cache misses and the kernel's share (socket
reads and writes, the same for both). The ratio is what the code asks of the CPU.

``--cache-sim`` also simulates the caches, with a last level of only 256 KiB: a stand-in
for a last-level cache that noisy neighbours keep evicting. Its misses per request
approximate the code and data a request has to bring back from memory on a busy host,
which instructions do not show (``bench/update_check.py --noisy`` measures the effect).
"""

from __future__ import annotations

import argparse
import glob
import http.client
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from update_check_setup import seeded, write_block

SERVE = """
import asyncio, sys
import uvloop
from aiohttp import web
from mpaas.app import create_app
from mpaas.settings import Settings
body = [b""]
async def handle(request):
    await request.read()
    return web.Response(body=body[0], content_type="application/json")
async def set_body(request):
    body[0] = await request.read()
    return web.Response()
async def main():
    env = {k: v for k, v in __import__("os").environ.items() if k.startswith("MPAAS_")}
    mpaas = web.AppRunner(create_app(Settings.from_env(env)), access_log=None)
    await mpaas.setup()
    await web.TCPSite(mpaas, "127.0.0.1", int(sys.argv[1])).start()
    minimal = web.Application()
    minimal.router.add_post("/client/v1/updates", handle)
    minimal.router.add_put("/body", set_body)
    bare = web.AppRunner(minimal, access_log=None)
    await bare.setup()
    await web.TCPSite(bare, "127.0.0.1", int(sys.argv[2])).start()
    print("ready", flush=True)
    await asyncio.Event().wait()
uvloop.run(main())
"""


#: callgrind's cache simulation with a 256 KiB, 8-way last level (64-byte lines).
CACHE_SIM = ["--cache-sim=yes", "--LL=262144,8,64"]


def post(port: int, body: bytes, key: str, n: int) -> None:
    conns = [http.client.HTTPConnection("127.0.0.1", port) for _ in range(4)]
    for i in range(n):
        device = f"{random.getrandbits(31):08x}-{random.getrandbits(31):08x}".encode()
        conn = conns[i % 4]
        conn.request(
            "POST",
            "/client/v1/updates",
            body=body.replace(b"PROBE", device),
            headers={"Content-Type": "application/json", "X-Deployment-Key": key},
        )
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}")
    for conn in conns:
        conn.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=500, help="requests per batch")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument(
        "--cache-sim", action="store_true", help="also count last-level misses with a 256 KiB last level"
    )
    ap.add_argument("--write-doc", action="store_true", help="replace the block in docs/benchmarks.md")
    args = ap.parse_args()
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("skipped: valgrind not installed (sudo apt-get install valgrind)")
        return 0
    work = Path(tempfile.mkdtemp(prefix="mpaas-bench-ir-"))
    env, key, held = seeded(
        work,
        MPAAS_RELEASE_POLL_SECONDS="300",
        MPAAS_COUNTER_FLUSH_SECONDS="3600",
        MPAAS_PUSH_POLL_INTERVAL="60",
    )
    installed = ",".join(f'{{"kind":"bundle","id":"{pid}","hash":"{h}"}}' for pid, h in held)
    body = (
        '{"app_version":"5.3.0","os":"android","packages":[' + installed + '],"device_id":"PROBE"}'
    ).encode()
    (work / "serve.py").write_text(SERVE)
    mport, aport = 18000 + random.randrange(1000), 19000 + random.randrange(1000)
    out = str(work / "cg.out")
    server = subprocess.Popen(
        ["valgrind", "--tool=callgrind", *CACHE_SIM * args.cache_sim, f"--callgrind-out-file={out}.%p",
         sys.executable, str(work / "serve.py"), str(mport), str(aport)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        if server.stdout.readline().strip() != b"ready":
            raise RuntimeError("server did not start")
        conn = http.client.HTTPConnection("127.0.0.1", mport)
        conn.request("POST", "/client/v1/updates", body=body, headers={"X-Deployment-Key": key})
        answer = conn.getresponse().read()
        conn.close()
        conn = http.client.HTTPConnection("127.0.0.1", aport)
        conn.request("PUT", "/body", body=answer)  # the minimal handler serves these bytes
        conn.getresponse().read()
        conn.close()
        counts: dict[str, list[float]] = {}
        misses: dict[str, list[float]] = {}

        def measure(name: str, port: int) -> None:
            post(port, body, key, 100)  # warm-up: plans, memo, caches
            subprocess.run(["callgrind_control", "-z", str(server.pid)], capture_output=True, check=True)
            post(port, body, key, args.requests)
            subprocess.run(["callgrind_control", "-d", str(server.pid)], capture_output=True, check=True)
            time.sleep(0.5)
            newest = max(glob.glob(f"{out}.{server.pid}.*"), key=os.path.getmtime)
            text = Path(newest).read_text()
            events = re.search(r"^events:\s+(.*)$", text, re.M)
            found = re.search(r"^(?:summary|totals):\s+(.*)$", text, re.M)
            assert events is not None and found is not None
            per = dict(
                zip(
                    events.group(1).split(),
                    (int(v) / args.requests for v in found.group(1).split()),
                    strict=True,
                )
            )
            counts.setdefault(name, []).append(per["Ir"])
            if args.cache_sim:
                misses.setdefault(name, []).append(per["ILmr"] + per["DLmr"] + per["DLmw"])

        for _ in range(args.rounds):
            measure("aiohttp+uvloop minimal", aport)
            measure("mpaas native check", mport)
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)
    base = min(counts["aiohttp+uvloop minimal"])
    lines = [
        f"callgrind, {args.requests} requests a batch, best of {args.rounds}; answer {len(answer)} bytes",
        "",
        "| server | instructions per request | × aiohttp |",
        "|---|---:|---:|",
    ]
    for name, values in counts.items():
        lines.append(f"| {name} | {min(values):,.0f} | {base / min(values):.2f} |")
    if misses:
        fewest = min(misses["aiohttp+uvloop minimal"])
        lines += ["", "| server | last-level misses per request (256 KiB) | × aiohttp |", "|---|---:|---:|"]
        for name, values in misses.items():
            lines.append(f"| {name} | {min(values):,.0f} | {fewest / min(values):.2f} |")
    table = "\n".join(lines)
    print(table)
    if args.write_doc:
        write_block("update-check instructions", table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
