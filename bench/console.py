"""Console pages on the demo data: each page's server time and the JavaScript it loads.

    python bench/console.py [--rounds 5] [--analytics-users 2000] [--write-doc]

One run: ``mpaas demo`` (the README's quick start: SQLite, local blobs, the demo's 2,000
analytics users) in a temporary directory, Debian's chromium driven by Playwright, signed
in as the demo's ``admin``. Each console page is opened ``--rounds`` times; for every
request the page makes to the server, the browser's Resource Timing gives the time from
sending the request to the first byte of the answer (loopback, so that is the server's
time). A page's server time is how long at least one of its API calls waited for the
server (the union of those spans: a page sends some calls in parallel, and a plain sum
would count their overlap twice; the sum is printed beside it). The baseline, measured the same way in the same page and
run, is ``GET /healthz``: the ratio says how many empty round trips a page costs.

Goals (issue 16): each page's server time under 300 ms on the demo data, and at most
400 KB of compressed JavaScript per page (the first, cold load of a fresh browser context).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from processes import free_port
from update_check_setup import write_block

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("MPAAS_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
PAGES = [
    ("overview", ""),
    ("releases", "releases"),
    ("packages", "packages"),
    ("push", "push"),
    ("analytics: reports", "analytics?view=reports"),
    ("analytics: journeys", "analytics?view=journeys"),
    ("analytics: retention", "analytics?view=retention"),
    ("analytics: UX", "analytics?view=ux"),
    ("audit", "audit"),
]
GOAL_MS = 300.0
GOAL_JS_BYTES = 400 * 1024
#: Server-side timings of every resource the page fetched (request sent → first byte).
TIMINGS = """() => performance.getEntriesByType('resource').map((e) => ({
  name: e.name, start: e.requestStart, first: e.responseStart, ttfb: e.responseStart - e.requestStart,
  encoded: e.encodedBodySize, type: e.initiatorType}))"""
HEALTHZ = """async (n) => { const out = [];
  for (let i = 0; i < n; i++) { const t0 = performance.now(); await (await fetch('/healthz', {cache: 'no-store'})).text();
    out.push(performance.now() - t0); } return out; }"""


@dataclass
class PageResult:
    label: str
    server_ms: list[float]
    summed_ms: list[float]
    calls: int
    slowest: str
    slowest_ms: float
    js_bytes: int


def _get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        return bytes(answer.read())


def start_demo(tmp: Path, users: int) -> tuple[subprocess.Popen[bytes], str, str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MPAAS_")} | {
        "MPAAS_DATA_DIR": str(tmp / "data"),
        "MPAAS_PORT": str(port),
        "MPAAS_CONFIG_HOME": str(tmp / "config"),
        "MPAAS_LOG_JSON": "false",
    }
    log = (tmp / "server.log").open("wb")
    mpaas = [sys.executable, "-m", "mpaas.cli.main", "demo", "--analytics-users", str(users)]
    proc = subprocess.Popen(mpaas, env=env, cwd=tmp, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"the demo exited: {(tmp / 'server.log').read_text()[-2000:]}")
        try:
            _get(url + "/healthz", 1.0)
            break
        except OSError:
            time.sleep(0.2)
    password = (tmp / "data" / "demo-console-password").read_text().strip()
    return proc, url, password


def wait_for_analytics(page: Any, url: str) -> None:
    """The demo loads its events in the background: wait until the reports see them."""
    probe = "/api/v1/analytics/reports/active-users?app=superapp&last_days=14"
    while True:
        answer = page.evaluate(
            "async (p) => { const r = await fetch(p); return [r.status, await r.text()]; }", probe
        )
        if answer[0] == 200 and re.search(r'"dau":\s*[1-9]', answer[1]):
            return
        time.sleep(1.0)


def covered(calls: list[dict[str, Any]]) -> float:
    """Milliseconds during which at least one of the page's API calls waited for the server
    (the union of their request-to-first-byte spans: calls a page sends in parallel overlap)."""
    total, end = 0.0, float("-inf")
    for start, first in sorted((c["start"], c["first"]) for c in calls):
        if first > end:
            total += first - max(start, end)
            end = first
    return total


def measure(url: str, password: str, rounds: int) -> tuple[list[PageResult], list[float]]:
    from playwright.sync_api import sync_playwright

    results: list[PageResult] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
        page = context.new_page()
        page.goto(url + "/console/")
        page.get_by_label("User name").fill("admin")
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_selector("nav")
        wait_for_analytics(page, url)
        cookies = context.cookies()
        for label, path in PAGES:
            server: list[float] = []
            summed: list[float] = []
            slowest: dict[str, list[float]] = {}
            calls = 0
            js_bytes = 0
            for round_no in range(rounds + 1):  # round 0: a cold context, for the JavaScript size
                ctx = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
                ctx.add_cookies(cookies)  # type: ignore[arg-type]  # a Cookie is a SetCookieParam
                p = ctx.new_page()
                p.goto(f"{url}/console/{path}")
                p.wait_for_selector("main[data-ready=true]", timeout=120_000)
                p.wait_for_load_state("networkidle")
                entries = p.evaluate(TIMINGS)
                ctx.close()
                api = [e for e in entries if "/api/" in e["name"]]
                if round_no == 0:
                    js_bytes = sum(e["encoded"] for e in entries if e["name"].split("?")[0].endswith(".js"))
                    continue  # the first round also warms the server's caches
                calls = len(api)
                server.append(covered(api))
                summed.append(sum(e["ttfb"] for e in api))
                for e in api:
                    slowest.setdefault(e["name"].replace(url, "").split("?")[0], []).append(e["ttfb"])
            worst = max(slowest.items(), key=lambda kv: statistics.median(kv[1]), default=("-", [0.0]))
            results.append(
                PageResult(label, server, summed, calls, worst[0], statistics.median(worst[1]), js_bytes)
            )
        healthz = page.evaluate(HEALTHZ, 50)
        browser.close()
    return results, healthz


def table(results: list[PageResult], healthz: list[float], rounds: int, users: int) -> str:
    base = statistics.median(healthz)
    lines = [
        f"`mpaas demo` (SQLite, {users:,} demo analytics users), headless chromium, signed in as admin; "
        f"median of {rounds} warm loads per page (one cold load first, for the JavaScript size); "
        f"server time = the time during which at least one of the page's API calls waited for its first byte (calls sent in parallel overlap; their plain sum beside it); baseline `GET /healthz` "
        f"{base:.2f} ms (median of {len(healthz)}).",
        "",
        "| page | API calls | server time ms | × healthz | calls summed ms | slowest call | its ms "
        "| JS gzip KB | goal |",
        "|---|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    for r in results:
        ms = statistics.median(r.server_ms) if r.server_ms else 0.0
        ok = ms < GOAL_MS and r.js_bytes <= GOAL_JS_BYTES
        lines.append(
            f"| {r.label} | {r.calls} | {ms:.1f} | {ms / base:.1f} | {statistics.median(r.summed_ms):.1f} "
            f"| `{r.slowest}` | {r.slowest_ms:.1f} | "
            f"{r.js_bytes / 1024:.0f} | {'✓' if ok else '✗'} |"
        )
    load = os.getloadavg()[0]
    lines += ["", f"Goal: under {GOAL_MS:.0f} ms and at most {GOAL_JS_BYTES // 1024} KB of compressed "
              f"JavaScript per page. Load average at the end of the run: {load:.1f} (2 CPUs)."]  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--analytics-users", type=int, default=2000, help="the demo's default")
    ap.add_argument("--write-doc", action="store_true", help="write the table into docs/benchmarks.md")
    args = ap.parse_args()
    if not Path(CHROMIUM).exists():
        print(f"skipped: no chromium at {CHROMIUM} (apt-get install chromium)")
        return
    tmp = Path(tempfile.mkdtemp(prefix="mpaas-bench-console-"))
    proc = None
    try:
        proc, url, password = start_demo(tmp, args.analytics_users)
        results, healthz = measure(url, password, args.rounds)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)
    text = table(results, healthz, args.rounds, args.analytics_users)
    print(text)
    if args.write_doc:
        write_block("console results", text)


if __name__ == "__main__":
    main()
