"""Update-check throughput: mpaas (native and CodePush) next to nginx and a bare aiohttp handler.

    sudo apt-get install wrk nginx      # this script installs nothing
    python bench/update_check.py [--duration 10] [--connections 64] [--noisy] [--write-doc]

One run, on loopback, with wrk and ``--connections`` connections:

* nginx serving a static body of the same size as mpaas's native answer;
* a minimal aiohttp + uvloop handler returning those bytes from memory (the
  framework's ceiling on this machine);
* mpaas's native ``POST /client/v1/updates`` with 1,000 releases across 50 packages,
  a random device id per request and 10 installed packages;
* mpaas's CodePush ``update_check``;
* the native check again with ``mpaas server --workers 2`` (SO_REUSEPORT).

It prints requests/s, p50 and p99, each rate as a ratio to nginx and to aiohttp, and
the server's memory per 1,000 releases (RSS after building the index minus before).
``--noisy`` runs a neighbour on the servers' core that copies 64 MiB over and over,
evicting the caches as other tenants of a shared host do; the scaling rows are left
out then. ``--write-doc`` replaces the results block (the noisy block with ``--noisy``)
in docs/benchmarks.md. Without wrk or nginx it says so and exits 0.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from processes import free_port, stop, wait_http
from update_check_setup import (
    CLIENT_CPU,
    PACKAGES,
    PINNED,
    RELEASES,
    SERVER_CPU,
    pinned,
    rss_kib,
    seeded,
    start_mpaas,
    write_block,
)

MINIMAL_SERVER = """
import sys
import uvloop
from aiohttp import web
body = open(sys.argv[2], "rb").read()
async def handle(request):
    await request.read()
    return web.Response(body=body, content_type="application/json")
app = web.Application()
# Plain routes, the cheapest aiohttp resolves: the ceiling mpaas is compared with.
app.router.add_post("/client/v1/updates", handle)
app.router.add_get("/", handle)
uvloop.install()
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""

#: A tenant that streams through more memory than the last-level cache holds.
NEIGHBOUR = """
buffer = bytearray(64 << 20)
while True:
    copy = bytes(buffer)
    del copy
"""

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{ root {dir}/www; default_type application/json; error_page 405 =200 $uri; }}
    }}
}}
"""

WRK_NATIVE = """
math.randomseed(os.time())
local head = '<HEAD>'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Deployment-Key"] = "<KEY>"
request = function()
  local id = string.format("%08x-%08x", math.random(0, 0x7fffffff), math.random(0, 0x7fffffff))
  return wrk.format(nil, "/client/v1/updates", nil, head .. id .. '"}')
end
"""


@dataclass
class Result:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float


def parse_wrk(name: str, text: str) -> Result:
    def ms(label: str) -> float:
        m = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        if not m:
            return float("nan")
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    return Result(name, float(rps.group(1)) if rps else 0.0, ms("50"), ms("99"))


def run_wrk(
    name: str, url: str, args: argparse.Namespace, script: Path | None = None, *, pin: bool = True
) -> Result:
    cmd = ["wrk", "-t1" if pin else "-t2", f"-c{args.connections}", f"-d{args.duration}s", "--latency"]
    if script is not None:
        cmd += ["-s", str(script)]
    cmd = pinned([*cmd, url], CLIENT_CPU) if pin else [*cmd, url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return parse_wrk(name, out)


def median(results: list[Result]) -> Result:
    """The run with the median rate (its own p50 and p99): the machine is shared and noisy."""
    return sorted(results, key=lambda r: r.rps)[len(results) // 2]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3, help="runs per server; each row is the median")
    ap.add_argument("--noisy", action="store_true", help="a cache-evicting neighbour on the servers' core")
    ap.add_argument("--write-doc", action="store_true")
    args = ap.parse_args()
    missing = [t for t in ("wrk", "nginx") if shutil.which(t) is None]
    if missing:
        print(f"skipped: {' and '.join(missing)} not installed (sudo apt-get install wrk nginx)")
        return 0

    work = Path(tempfile.mkdtemp(prefix="mpaas-bench-"))
    env, key, held = seeded(work)
    installed = ",".join(f'{{"kind":"bundle","id":"{pid}","hash":"{h}"}}' for pid, h in held)
    native_lua = work / "native.lua"
    head = '{"app_version":"5.3.0","os":"android","packages":[' + installed + '],"device_id":"'
    native_lua.write_text(WRK_NATIVE.replace("<HEAD>", head).replace("<KEY>", key))
    procs: list[subprocess.Popen[bytes]] = []
    runs: dict[str, list[Result]] = {}
    try:
        port = free_port()
        server = start_mpaas(env, port)
        procs.append(server)
        before = rss_kib(server.pid)
        body = {
            "app_version": "5.3.0",
            "os": "android",
            "device_id": "probe",
            "packages": json.loads(f"[{installed}]"),
        }
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/client/v1/updates",
            data=json.dumps(body).encode(),
            headers={"X-Deployment-Key": key, "Content-Type": "application/json"},
        )
        answer = urllib.request.urlopen(req).read()
        memory = (rss_kib(server.pid) - before) / (RELEASES / 1000)
        www = work / "www"
        (www / "client" / "v1").mkdir(parents=True)
        work.chmod(0o755)  # nginx workers run as an unprivileged user when started as root
        (www / "answer.json").write_bytes(answer)
        (www / "client" / "v1" / "updates").write_bytes(answer)

        nport = free_port()
        (work / "nginx.conf").write_text(NGINX_CONF.format(dir=work, port=nport))
        procs.append(
            subprocess.Popen(pinned(["nginx", "-c", str(work / "nginx.conf"), "-p", str(work)], SERVER_CPU))
        )
        wait_http(f"http://127.0.0.1:{nport}/answer.json")
        aport = free_port()
        (work / "minimal.py").write_text(MINIMAL_SERVER)
        minimal_cmd = [sys.executable, str(work / "minimal.py"), str(aport), str(www / "answer.json")]
        procs.append(subprocess.Popen(pinned(minimal_cmd, SERVER_CPU)))
        wait_http(f"http://127.0.0.1:{aport}/")

        # The same POST (native.lua: random device ids) drives nginx, the minimal handler and
        # mpaas, one after the other, round after round; each row is its median round.
        cp = f"/v0.1/public/codepush/update_check?deployment_key={key}&app_version=5.3.0&client_unique_id=bench"
        targets = [
            ("nginx static", f"http://127.0.0.1:{nport}/", native_lua),
            ("aiohttp+uvloop minimal", f"http://127.0.0.1:{aport}/", native_lua),
            ("mpaas native check", f"http://127.0.0.1:{port}/", native_lua),
            ("mpaas CodePush check", f"http://127.0.0.1:{port}{cp}", None),
        ]
        side_by_side = {name for name, _, _ in targets}
        if args.noisy:
            procs.append(subprocess.Popen(pinned([sys.executable, "-c", NEIGHBOUR], SERVER_CPU)))
        for _ in range(args.rounds):
            for name, url, script in targets:
                runs.setdefault(name, []).append(run_wrk(name, url, args, script))
        for proc in procs:
            stop(proc)
        procs.clear()

        if not args.noisy:  # scaling: one process against two behind one port, unpinned
            one, two = free_port(), free_port()
            procs.append(start_mpaas(env, one, workers=1, pin=False))
            procs.append(start_mpaas(env, two, workers=2, pin=False))
            for _ in range(args.rounds):
                for name, p in (
                    ("mpaas native, 1 process (unpinned)", one),
                    ("mpaas native, --workers 2", two),
                ):
                    runs.setdefault(name, []).append(
                        run_wrk(name, f"http://127.0.0.1:{p}/", args, native_lua, pin=False)
                    )
    finally:
        for proc in procs:
            stop(proc)
    report(args, runs, side_by_side, len(answer), memory)
    shutil.rmtree(work, ignore_errors=True)
    return 0


def report(
    args: argparse.Namespace, runs: dict[str, list[Result]], side_by_side: set[str], size: int, memory: float
) -> None:
    """Print the table (and write it into docs/benchmarks.md with ``--write-doc``)."""
    rows = [median(v) for v in runs.values()]
    nginx, minimal = rows[0], rows[1]

    def paired(name: str, base: str) -> float:
        """Median over rounds of the rate against ``base`` in the same round (drift cancels)."""
        base_runs = runs[base]
        if name not in side_by_side:
            return median(runs[name]).rps / median(base_runs).rps
        ratios = sorted(r.rps / b.rps for r, b in zip(runs[name], base_runs, strict=True))
        return ratios[len(ratios) // 2]

    native = runs["mpaas native check"]
    per_round = sorted(r.rps / b.rps for r, b in zip(native, runs["aiohttp+uvloop minimal"], strict=True))
    where = "wrk on CPU 0, each server on CPU 1" if PINNED else "unpinned"
    if args.noisy:
        where += ", a neighbour copying 64 MiB in a loop beside the server"
    lines = [
        f"wrk, {args.connections} connections, loopback, {where}; median of {args.rounds} rounds of "
        f"{args.duration} s; answer {size} bytes; {RELEASES} releases over {PACKAGES} packages; "
        "10 installed packages and a random device id per check; the same POST drives nginx, the "
        "minimal handler and the native check.",
        "",
        "| server | req/s | p50 ms | p99 ms | × nginx | × aiohttp |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.name} | {r.rps:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | "
            f"{paired(r.name, nginx.name):.2f} | {paired(r.name, minimal.name):.2f} |"
        )
    lines += [
        "",
        "Ratios are medians over rounds of each round's own ratio (the targets of a round run "
        "back to back, so the machine's drift cancels); the scaling rows, measured apart, "
        "use medians of rates.",
        f"Native check × aiohttp, round by round: {', '.join(f'{x:.2f}' for x in per_round)}.",
        f"Server memory for the index: {memory / 1024:.1f} MiB per 1,000 releases (RSS after − before).",
    ]
    if not args.noisy:
        scale = rows[-1].rps / rows[-2].rps
        lines.append(f"`--workers 2` serves {scale:.2f}× one unpinned process (wrk shares the two cores).")
    table = "\n".join(lines)
    print(table)
    if args.write_doc:
        write_block("update-check noisy results" if args.noisy else "update-check results", table)


if __name__ == "__main__":
    sys.exit(main())
