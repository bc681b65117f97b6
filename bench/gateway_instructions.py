"""Gateway cost in CPU instructions: per call next to the minimal handler, and per check.

    sudo apt-get install valgrind redis-server    # this script installs nothing
    python bench/gateway_instructions.py [--requests 400] [--rounds 2] [--write-doc]

Wall-clock rates on this shared machine move with the neighbours' load; instructions
counted by callgrind do not. One Python process under ``valgrind --tool=callgrind``
(``bench/gateway_checks.py``) serves the minimal aiohttp + uvloop handler and the mpaas
app with the trivial operation ``bench.ping``; a client outside valgrind sends them
signed requests one at a time on a kept-alive connection, each with a fresh nonce
(signed ahead of time), and counters are zeroed before and dumped after each batch.

The second table is each check alone: the server runs it ``n`` times in one loop on the
gateway's own objects (``POST /check``), minus an empty loop's count. Redis checks are
one call at a time, so each pays a whole round trip's client work (under load, calls
that share a loop turn share one write and one read). Instructions leave out the
kernel's share (socket reads and writes) and cache misses: they are what the code asks
of the CPU, not time.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gateway import prepare
from processes import free_port
from update_check_setup import write_block

from mpaas.banking.client import GatewayClient

HERE = Path(__file__).resolve().parent
CHECKS = (
    ("headers", "header checks + body hash"),
    ("signature", "signature: key lookup (cached) + HMAC-SHA256"),
    ("signature-ecdsa", "signature: key lookup (cached) + ECDSA P-256"),
    ("clock", "clock window"),
    ("nonce", "nonce alone (Redis SET NX in the script), 1 in flight"),
    ("buckets", "3 token buckets alone (Redis script), 1 in flight"),
    ("admission", "nonce + 3 buckets, one round trip, 1 in flight"),
    ("session", "session lookup (visitor session, SQL)"),
    ("dispatch", "dispatch: lookup, input check, handler, answer body"),
)


def post(port: int, path: str, bodies: list[tuple[bytes, dict[str, str]]]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    for body, headers in bodies:
        conn.request("POST", path, body=body, headers=headers)
        resp = conn.getresponse()
        answer = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}: {answer[:200]!r}")
    conn.close()


class Counter:
    """Zero, run, dump: the callgrind instruction count of what ``run`` made the server do."""

    def __init__(self, pid: int, out: str) -> None:
        self.pid, self.out = pid, out
        #: the path of the last dump (for callgrind_annotate)
        self.last = ""

    def count(self, run: Callable[[], None]) -> float:
        subprocess.run(["callgrind_control", "-z", str(self.pid)], capture_output=True, check=True)
        run()
        subprocess.run(["callgrind_control", "-d", str(self.pid)], capture_output=True, check=True)
        time.sleep(0.5)
        newest = self.last = max(glob.glob(f"{self.out}.{self.pid}.*"), key=os.path.getmtime)
        text = Path(newest).read_text()
        found = re.search(r"^(?:summary|totals):\s+(\d+)", text, re.M)
        assert found is not None
        return float(found.group(1))


def signed(
    client: GatewayClient, n: int, operation: str = "bench.ping"
) -> list[tuple[bytes, dict[str, str]]]:
    return [(b"{}", client.headers(operation, 1, b"{}")) for _ in range(n)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=400, help="requests per batch")
    ap.add_argument("--loops", type=int, default=400, help="iterations of each check alone")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--write-doc", action="store_true", help="replace the block in docs/benchmarks.md")
    args = ap.parse_args()
    if shutil.which("callgrind_control") is None or shutil.which("redis-server") is None:
        print("skipped: valgrind or redis-server is not installed")
        return 0
    work = Path(tempfile.mkdtemp(prefix="mpaas-bench-gw-ir-"))
    redis_port = free_port()
    redis = subprocess.Popen(
        ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", ""],
        stdout=subprocess.DEVNULL,
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MPAAS_")} | {
        "MPAAS_DATA_DIR": str(work / "data"),
        "MPAAS_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "MPAAS_LOG_LEVEL": "WARNING",
        "MPAAS_PUSH_WORKER": "false",
        # Background work, slowed so it does not land in a batch (a batch takes minutes under
        # valgrind; in service these run every few seconds, a negligible share per call).
        "MPAAS_RELEASE_POLL_SECONDS": "300",
        "MPAAS_PUSH_POLL_INTERVAL": "60",
        "MPAAS_COUNTER_FLUSH_SECONDS": "3600",
        "MPAAS_BANKING_POLL_SECONDS": "300",
        "MPAAS_BANKING_SWEEP_SECONDS": "3600",
        "MPAAS_ANALYTICS_LOAD_INTERVAL": "3600",
        "MPAAS_GATEWAY_CACHE_SECONDS": "300",
        "MPAAS_GATEWAY_APP_RATE": "100000000/s",
        "MPAAS_GATEWAY_DEVICE_RATE": "100000000/s",
        "MPAAS_GATEWAY_USER_RATE": "100000000/s",
    }
    time.sleep(0.3)
    prepared = asyncio.run(prepare(env, 1))
    mport, gport = free_port(), free_port()
    out = str(work / "cg.out")
    server_log = Path(os.environ.get("BENCH_SERVER_LOG", os.devnull)).open("wb")  # noqa: SIM115
    server = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}.%p",
         sys.executable, str(HERE / "gateway_checks.py"), str(mport), str(gport)],
        env=env, stdout=subprocess.PIPE, stderr=server_log,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        if server.stdout.readline().strip() != b"ready":
            raise RuntimeError("server did not start")
        # Start-up runs uninstrumented (several times faster under valgrind); count from here.
        subprocess.run(["callgrind_control", "-i", "on", str(server.pid)], capture_output=True, check=True)
        counter = Counter(server.pid, out)
        hmac = GatewayClient(None, "bench", device="bench-hmac-0001", app_kid=prepared["kid"],
                             app_secret=prepared["secret"])  # fmt: skip
        device, key, kid = prepared["devices"][0]
        ecdsa = GatewayClient(None, "bench", device=device, device_key=key, device_kid=kid)
        visitor = GatewayClient(None, "bench", device="bench-visit-0001", app_kid=prepared["kid"],
                                app_secret=prepared["secret"])  # fmt: skip
        conn = http.client.HTTPConnection("127.0.0.1", gport, timeout=600)
        conn.request("POST", "/gateway", body=b"{}", headers=visitor.headers("mpaas.session.start", 1, b"{}"))
        visitor.session = json.loads(conn.getresponse().read())["result"]["session"]
        conn.close()
        rows: dict[str, list[float]] = {}
        checks: dict[str, list[float]] = {}
        n = args.requests
        calls = (
            ("aiohttp+uvloop minimal", mport, hmac),
            ("gateway, HMAC", gport, hmac),
            ("gateway, ECDSA P-256", gport, ecdsa),
            ("gateway, HMAC + visitor session", gport, visitor),
        )
        for _ in range(args.rounds):
            for name, port, client in calls:
                post(port, "/gateway", signed(client, 20))  # warm-up: caches, connections
                size = n // 5 if client is visitor else n  # a session lookup is slow under valgrind
                batch = signed(client, size)
                rows.setdefault(name, []).append(
                    counter.count(lambda p=port, b=batch: post(p, "/gateway", b)) / size
                )

            def loop(check: str, client: GatewayClient, loops: int) -> float:
                spec = {"check": check, "n": loops, "headers": client.headers("bench.ping", 1, b"{}")}
                return counter.count(lambda: post(mport, "/check", [(json.dumps(spec).encode(), {})]))

            for check, _label in CHECKS:
                client = ecdsa if check == "signature-ecdsa" else visitor
                name = check.removesuffix("-ecdsa")
                loops = args.loops // 10 if check in ("session", "signature-ecdsa") else args.loops
                loop(name, client, 5)  # warm-up
                empty = loop("empty", client, loops)
                checks.setdefault(check, []).append((loop(name, client, loops) - empty) / loops)
    finally:
        server.terminate()
        server.wait()
        redis.terminate()
        redis.wait()
        server_log.close()
        shutil.rmtree(work, ignore_errors=True)
    base = min(rows["aiohttp+uvloop minimal"])
    lines = [
        f"callgrind, {n} signed requests a batch, one at a time, best of {args.rounds}; Redis on loopback.",
        "",
        "| server | instructions per request | × minimal (by instructions) |",
        "|---|---:|---:|",
    ]
    lines += [f"| {name} | {min(v):,.0f} | {base / min(v):.2f} |" for name, v in rows.items()]
    lines += ["", f"Each check alone ({args.loops} in a loop, minus an empty loop):", ""]
    lines += ["| check | instructions per call |", "|---|---:|"]
    lines += [f"| {label} | {min(checks[c]):,.0f} |" for c, label in CHECKS]
    table = "\n".join(lines)
    print(table)
    if args.write_doc:
        write_block("gateway instructions", table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
