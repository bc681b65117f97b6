"""Event ingest and load: mpaas's Segment ``/v1/batch`` next to a no-op handler; the loader into DuckDB.

    sudo apt-get install wrk            # this script installs nothing
    python bench/ingest.py [--duration 10] [--connections 64] [--rounds 3] [--events 1000000] [--write-doc]
                           [--ingest-only] [--recycle-spool]
    python bench/ingest.py --loader-only [--events 1000000] [--reference-events 0]

One run, on loopback, wrk with ``--connections`` connections, posting the same Segment
batch of 50 events (as analytics-python sends it, 23 KB) with Basic auth:

* a no-op aiohttp + uvloop handler that reads the body and discards it;
* ``mpaas server`` (one process, SQLite, the loader off) with durability on: each
  request is answered after the fsync (group commit) of its raw batch in the spool;
* a no-op on the ingest listener's own layer (asyncio.Protocol + httptools, ``LEAN_NOOP``)
  that parses the request, keeps its body and answers the same 200;
* the same ``mpaas server`` process on its ingest listener (``MPAAS_INGEST_PORT``),
  durability on.

It prints events/s acknowledged, p50 and p99 per request, and each rate as a ratio to
the aiohttp no-op handler's (the issue's baseline; goal: at least 0.7) and to the
httptools no-op's (the same layer as the listener), with the server process's CPU per
request (user + system, from /proc). With the loader off the spool grows by gigabytes a
run, and on a VM the kernel's copies into never-used page-cache pages cost several times
those into recycled ones (40-50 against 5-9 µs of system time per 26 KB record, measured
on the issue's VM); ``--recycle-spool`` deletes the sealed segments after each run, as
the loader would, and says so above the table. Servers are pinned to one core and wrk to
the other. Then the loader (bench/ingest_load.py): ``--events`` unique events spooled in
the same batches are loaded into a fresh DuckDB file (events/s and CPU per event; goal:
500,000 events/s), with the file's size per million events after a checkpoint, and
side by side the Python normaliser the loader used before, as the baseline. ``--write-doc`` replaces the results
block in docs/benchmarks.md. Without wrk it says so and exits 0; ``--loader-only`` runs the
loader part alone, which needs no wrk (its rate and CPU per event are the numbers for issue 14).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest_load import LoadResult, load_bench
from ingest_servers import LEAN, LEAN_SERVER, NOOP, cpu_ticks, delete_sealed, wait_port
from processes import free_port, stop, wait_http
from update_check_setup import CLIENT_CPU, PINNED, SERVER_CPU, pinned, write_block

NOOP_SERVER = """
import sys
import uvloop
from aiohttp import web
async def handle(request):
    await request.read()
    return web.Response(body=b'{"success":true}', content_type="application/json")
app = web.Application(client_max_size=1 << 20)
app.router.add_post("/v1/batch", handle)
app.router.add_get("/healthz", handle)
uvloop.install()
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""

WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = io.open("<BODY>", "rb"):read("*a")
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "<AUTH>"
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %f %f\\n", summary.requests, summary.duration,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout, latency:percentile(50), latency:percentile(99)))
end
"""
PER_BATCH = 50


def segment_batch(start: int, sent_at: str = "2026-12-03T10:00:05.000Z") -> dict[str, object]:
    """A batch as segment-analytics-python sends it (context, library, integrations, ids)."""
    return {
        "batch": [
            {
                "type": "track",
                "event": f"Screen Action {i % 20}",
                "userId": f"user-{i % 5000}",
                "anonymousId": None,
                "messageId": f"bench-{i:012d}",
                "timestamp": "2026-12-03T10:00:00.000+00:00",
                "properties": {"amount": i % 997, "currency": "CNY", "screen": "transfer", "step": i % 7},
                "context": {
                    "library": {"name": "analytics-python", "version": "2.4.0"},
                    "app": {"version": "5.3.0", "build": "530"},
                    "os": {"name": "Android", "version": "14"},
                    "device": {"model": "Pixel 8", "type": "android", "id": f"dev-{i % 5000}"},
                    "locale": "zh-CN",
                },
                "integrations": {},
            }
            for i in range(start, start + PER_BATCH)
        ],
        "sentAt": sent_at,
    }


@dataclass
class Result:
    name: str
    events_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    #: The server process's CPU per request during the run (µs): user, system.
    user_us: float = 0.0
    sys_us: float = 0.0


def run_wrk(name: str, url: str, script: Path, args: argparse.Namespace, pid: int) -> Result:
    import os

    cmd = ["wrk", "-t1", f"-c{args.connections}", f"-d{args.duration}s", "-s", str(script), url]
    before = cpu_ticks(pid)
    out = subprocess.run(pinned(cmd, CLIENT_CPU), capture_output=True, text=True, check=True).stdout
    after = cpu_ticks(pid)
    m = re.search(r"^RESULT (\d+) (\d+) (\d+) ([\d.]+) ([\d.]+)$", out, re.M)
    if m is None:
        raise RuntimeError(f"wrk printed no result:\n{out}")
    requests, micros, errors = int(m.group(1)), int(m.group(2)), int(m.group(3))
    tick_us = 1e6 / os.sysconf("SC_CLK_TCK")
    return Result(
        name,
        requests * PER_BATCH / (micros / 1e6),
        float(m.group(4)) / 1000,
        float(m.group(5)) / 1000,
        errors,
        (after[0] - before[0]) * tick_us / max(requests, 1),
        (after[1] - before[1]) * tick_us / max(requests, 1),
    )


def median(results: list[Result]) -> Result:
    return sorted(results, key=lambda r: r.events_per_s)[len(results) // 2]


def page_cache() -> str:
    """The memory the spool's writes compete for: a full page cache costs the kernel more per
    page written (docs/benchmarks.md, "Analytics ingest and load")."""
    try:
        info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
        gib = {k: int(info[k].split()[0]) / 2**20 for k in ("MemTotal", "MemFree", "Cached")}
    except (OSError, KeyError, ValueError):
        return ""
    return (
        f"Memory at the start: {gib['MemTotal']:.1f} GiB, {gib['MemFree']:.1f} GiB free, "
        f"{gib['Cached']:.1f} GiB of page cache."
    )


def start_mpaas(work: Path) -> tuple[subprocess.Popen[bytes], str, dict[str, str]]:
    """A data directory with app ``bench`` and a write key, and ``mpaas server`` on it."""
    import os

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MPAAS_")} | {
        "MPAAS_DATA_DIR": str(work / "data"),
        "MPAAS_PORT": str(port),
        "MPAAS_LOG_LEVEL": "WARNING",
        "MPAAS_ANALYTICS_LOADER": "false",
        "MPAAS_PUSH_WORKER": "false",
        "MPAAS_CONFIG_HOME": str(work / "cfg"),
        "MPAAS_INGEST_PORT": str(free_port()),
    }
    mpaas = [sys.executable, "-m", "mpaas.cli.main"]
    token = subprocess.run(
        [*mpaas, "init"], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    proc = subprocess.Popen(pinned([*mpaas, "server"], SERVER_CPU), env=env, stdout=subprocess.DEVNULL)
    wait_http(f"http://127.0.0.1:{port}/healthz")
    import urllib.request

    def call(path: str, body: dict[str, object]) -> dict[str, object]:
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}{path}",
            data=json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req) as resp:
            return dict(json.loads(resp.read()))

    call("/api/v1/apps", {"name": "bench", "platforms": ["android"]})
    key = str(call("/api/v1/apps/bench/analytics/write-keys", {})["write_key"])
    return proc, key, env


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3, help="runs per server; each row is the median")
    ap.add_argument("--events", type=int, default=1_000_000, help="events for the loader benchmark")
    ap.add_argument(
        "--reference-events", type=int, default=200_000, help="events for the Python-normaliser baseline"
    )
    ap.add_argument("--write-doc", action="store_true")
    ap.add_argument("--ingest-only", action="store_true", help="skip the loader benchmark")
    ap.add_argument(
        "--recycle-spool",
        action="store_true",
        help="delete the spool's sealed segments after each run, as the (disabled) loader would",
    )
    ap.add_argument(
        "--loader-only",
        "--skip-http",
        action="store_true",
        help="run only the loader benchmark (no wrk, no servers); with --reference-events 0, no baseline",
    )
    args = ap.parse_args()
    if args.write_doc and args.ingest_only:
        ap.error("--write-doc needs the whole run (drop --ingest-only)")
    if args.loader_only:
        if args.write_doc:
            ap.error("--write-doc needs the whole run (drop --loader-only)")
        return loader_only(args)
    if shutil.which("wrk") is None:
        print("skipped: wrk is not installed (sudo apt-get install wrk)")
        return 0
    memory = page_cache()  # the spool's system time depends on it (docs/benchmarks.md)
    work = Path(tempfile.mkdtemp(prefix="mpaas-bench-ingest-"))
    body = work / "batch.json"
    body.write_bytes(json.dumps(segment_batch(0)).encode())
    procs: list[subprocess.Popen[bytes]] = []
    runs: dict[str, list[Result]] = {}
    try:
        server, key, _env = start_mpaas(work)
        procs.append(server)
        auth = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
        script = work / "batch.lua"
        script.write_text(WRK_SCRIPT.replace("<BODY>", str(body)).replace("<AUTH>", auth))
        nport = free_port()
        (work / "noop.py").write_text(NOOP_SERVER)
        noop = subprocess.Popen(pinned([sys.executable, str(work / "noop.py"), str(nport)], SERVER_CPU))
        procs.append(noop)
        wait_http(f"http://127.0.0.1:{nport}/healthz")
        lport = free_port()
        (work / "lean.py").write_text(LEAN_SERVER)
        lean_proc = subprocess.Popen(pinned([sys.executable, str(work / "lean.py"), str(lport)], SERVER_CPU))
        procs.append(lean_proc)
        wait_port(lport)
        targets = [
            (NOOP, f"http://127.0.0.1:{nport}/v1/batch", noop.pid),
            (
                "mpaas /v1/batch, fsync before 200",
                f"http://127.0.0.1:{_env['MPAAS_PORT']}/v1/batch",
                server.pid,
            ),
            (LEAN, f"http://127.0.0.1:{lport}/v1/batch", lean_proc.pid),
            (
                "mpaas ingest listener /v1/batch, fsync before 200",
                f"http://127.0.0.1:{_env['MPAAS_INGEST_PORT']}/v1/batch",
                server.pid,
            ),
        ]
        recycled = 0
        for _ in range(args.rounds):
            for name, url, pid in targets:
                runs.setdefault(name, []).append(run_wrk(name, url, script, args, pid))
                if args.recycle_spool:
                    recycled += delete_sealed(work / "data" / "analytics" / "spool")
    finally:
        for proc in procs:
            stop(proc)
    if args.ingest_only:
        loaded, reference = None, None
    else:
        loaded, reference = asyncio.run(
            load_bench(work, args.events, args.reference_events, segment_batch, PER_BATCH)
        )
    spool_bytes = sum(p.stat().st_size for p in (work / "data" / "analytics" / "spool").glob("*.seg"))
    shutil.rmtree(work, ignore_errors=True)

    rows = [median(r) for r in runs.values()]
    base = rows[0].events_per_s
    lean = next(r.events_per_s for r in rows if r.name == LEAN)
    recycling = (
        [
            f"The spool's sealed segments were deleted after each run ({recycled / 1e9:.1f} GB), as the "
            "loader would have done (--recycle-spool).",
            "",
        ]
        if args.recycle_spool
        else []
    )
    lines = [
        *recycling,
        f"{args.connections} connections, {args.duration} s per run, median of {args.rounds} rounds; "
        f"batches of {PER_BATCH} events ({body_size(segment_batch(0))} bytes); "
        f"{'server and wrk pinned to one core each' if PINNED else 'unpinned'}. {memory}",
        "",
        "| server | events/s | ratio to the aiohttp no-op | ratio to the httptools no-op "
        "| server CPU µs/request (user + sys) | p50 ms | p99 ms | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.name} | {r.events_per_s:,.0f} | {r.events_per_s / base:.2f}x | {r.events_per_s / lean:.2f}x "
            f"| {r.user_us + r.sys_us:.0f} ({r.user_us:.0f} + {r.sys_us:.0f}) "
            f"| {r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.errors} |"
        )
    if loaded is not None:
        lines += ["", *loader_lines(loaded, reference, spool_bytes)]
    table = "\n".join(lines)
    print(table)
    if args.write_doc:
        write_block("ingest results", table)
    return 0


def loader_lines(loaded: LoadResult, reference: LoadResult | None, spool_bytes: int | None) -> list[str]:
    spooled = (
        ""
        if spool_bytes is None
        else (f" (the spool held {spool_bytes / 1e6:.1f} MB of raw batches after the ingest runs)")
    )
    lines = [
        f"Loader: {loaded.events:,} events from the spool into DuckDB in {loaded.seconds:.2f} s: "
        f"**{loaded.rate:,.0f} events/s** ({loaded.cpu_us:.1f} µs of CPU per event); "
        f"{loaded.db_bytes / (loaded.events / 1e6) / 1e6:.1f} MB on disk per million events{spooled}.",
    ]
    if reference is not None:
        lines += [
            "",
            f"Same run, baseline: the Python normaliser (the loader before normalisation moved into SQL) on "
            f"{reference.events:,} events: {reference.rate:,.0f} events/s ({reference.cpu_us:.1f} µs of CPU "
            f"per event); SQL normalisation is **{loaded.rate / reference.rate:.2f}x** its rate "
            f"({reference.cpu_us / loaded.cpu_us:.2f}x less CPU per event).",
        ]
    return lines


def loader_only(args: argparse.Namespace) -> int:
    """The loader benchmark alone: no servers, nothing to install."""
    work = Path(tempfile.mkdtemp(prefix="mpaas-bench-load-"))
    try:
        loaded, reference = asyncio.run(
            load_bench(work, args.events, args.reference_events, segment_batch, PER_BATCH)
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\n".join(loader_lines(loaded, reference, None)))
    return 0


def body_size(batch: dict[str, object]) -> int:
    return len(json.dumps(batch).encode())


if __name__ == "__main__":
    raise SystemExit(main())
