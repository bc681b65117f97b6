"""Transfers through the whole gateway path, next to pgbench's tpcb-like, in one run.

    python bench/transfers.py [--pg postgresql://postgres@127.0.0.1:5432/test] [--seconds 10]
                              [--clients 8] [--accounts 10000] [--redis URL] [--workers 2] [--write-doc]

1. ``pgbench -i`` then ``pgbench -c 8 -j 2 -T 5`` (the built-in tpcb-like) on a scratch
   database of the local PostgreSQL: its transactions/s, p50 and p99 (from its log);
2. 10,000 e-account holders, each funded and holding a session, in a second scratch
   database; a real ``mpaas server --workers 2`` on it, as a bank deploys it: PostgreSQL for
   decisions and the ledger, Redis for nonces, rate buckets and risk counters (``--redis ''``
   keeps those in SQL too, ``--workers 1`` runs one process);
3. 8 concurrent clients (this process) send ``com.bank.transfer.create`` between random
   holders, each call signed with the app key (HMAC), with a fresh nonce and idempotency key:
   signature, clock window, nonce and rate limits, session and tier, input, limits, the risk
   check (CEL rules, counters, the stored decision), the ledger posting, ``committed()``;
4. the same with ``MPAAS_RISK_ENGINE=off``, so the risk check's share of p50 shows; the two
   servers alternate for ``--rounds`` rounds (3), each round starting with the other one, and
   each server's rounds are pooled (single runs of 10 s moved by a quarter from one to the next);
5. ``decide()`` alone, in-process, on the same database.

Prints transfers/s, p50, p99, the ratio to pgbench's TPS, and the risk check's cost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from processes import cpu_seconds, free_port, idle_cpu_rate, stop
from transfers_setup import (
    Seeded,
    drop,
    empty_redis,
    engine_alone,
    percentile,
    pgbench_path,
    recreate,
    run_pgbench,
    seed,
    start_server,
)
from update_check_setup import write_block

GOAL_RATIO, GOAL_RISK_SHARE = 0.3, 0.10


@dataclass
class Run:
    name: str
    done: int
    seconds: float
    p50: float
    p99: float
    codes: dict[int, int]
    #: server-process CPU ms per completed call over the whole run (warm-up included), less
    #: what the idle server spends on background tasks in the same time
    cpu_ms: float = float("nan")
    #: this (the client's) process's CPU ms per completed call
    client_cpu_ms: float = float("nan")
    #: the measured calls' latencies (ms), pooled when rounds are merged
    latencies: list[float] = field(default_factory=list)
    #: transactions/s of each round, when rounds are merged
    round_tps: list[float] = field(default_factory=list)

    @property
    def tps(self) -> float:
        return self.done / self.seconds


async def drive(
    name: str,
    url: str,
    seeded: Seeded,
    senders: int,
    clients: int,
    seconds: float,
    warmup: float,
    lean: bool = True,
) -> Run:
    """``clients`` workers, one call at a time each, from a random funded sender to a random holder;
    the calls that complete inside the measured window (after the warm-up) count. ``lean``: the
    requests go out on :class:`transfers_client.LeanConnection` (the same bytes, less client CPU)
    instead of aiohttp's client."""
    import aiohttp
    from transfers_client import LeanConnection

    from mpaas.banking.client import GatewayClient

    latencies: list[float] = []
    codes: dict[int, int] = {}
    completed = [0]
    rng = random.Random(7)
    n = len(seeded.users)
    measure_from = time.perf_counter() + warmup
    stop_at = measure_from + seconds

    host, port = url.removeprefix("http://").split(":")

    async def worker(http: aiohttp.ClientSession) -> None:
        connection = LeanConnection(host, int(port))
        while time.perf_counter() < stop_at:
            i, j = rng.randrange(senders), rng.randrange(n - 1)
            j += j >= i
            client = GatewayClient(
                http,
                "bench",
                device=seeded.devices[i],
                base=url,
                app_kid=seeded.kid,
                app_secret=seeded.secret,
                session=seeded.tokens[i],
            )
            params = {
                "idempotency_key": uuid.uuid4().hex,
                "amount": rng.randrange(100, 10_000),
                "to": {"user_id": seeded.users[j]},
                "context": {
                    "first_seen_days": 120,
                    "device_model": "Pixel 8",
                    "rooted": False,
                    "ip": "203.0.113.7",
                    "carrier": "CMCC",
                    "lat": 31.23,
                    "lon": 121.47,
                },
            }
            started = time.perf_counter()
            if lean:
                body = json.dumps(params, separators=(",", ":")).encode()
                result = await connection.post(body, client.headers("com.bank.transfer.create", 1, body))
            else:
                result = await client.call("com.bank.transfer.create", params)
            ended = time.perf_counter()
            completed[0] += 1
            if measure_from <= ended <= stop_at:  # completed inside the measured window
                latencies.append((ended - started) * 1000)
                codes[result.code] = codes.get(result.code, 0) + 1
        await connection.close()

    connector = aiohttp.TCPConnector(limit=clients)
    cpu_started = time.process_time()
    async with aiohttp.ClientSession(connector=connector) as http:
        await asyncio.gather(*(worker(http) for _ in range(clients)))
    client_cpu = time.process_time() - cpu_started
    done = codes.get(1000, 0)
    run = Run(
        name,
        done,
        seconds,
        percentile(latencies, 0.5),
        percentile(latencies, 0.99),
        codes,
        latencies=latencies,
    )
    run.cpu_ms = float(completed[0])  # the caller turns the count into CPU per call
    run.client_cpu_ms = client_cpu * 1000 / completed[0] if completed[0] else float("nan")
    return run


def merge(name: str, rounds: list[Run]) -> Run:
    """One run from several rounds of the same server: calls and time summed, latencies pooled,
    CPU per call weighted by calls."""
    latencies = [ms for r in rounds for ms in r.latencies]
    codes: dict[int, int] = {}
    for r in rounds:
        for code, count in r.codes.items():
            codes[code] = codes.get(code, 0) + count
    done = sum(r.done for r in rounds)
    cpu = sum(r.cpu_ms * r.done for r in rounds) / done if done else float("nan")
    client_cpu = sum(r.client_cpu_ms * r.done for r in rounds) / done if done else float("nan")
    merged = Run(
        name,
        done,
        sum(r.seconds for r in rounds),
        percentile(latencies, 0.5),
        percentile(latencies, 0.99),
        codes,
        cpu_ms=cpu,
        client_cpu_ms=client_cpu,
        latencies=latencies,
    )
    merged.round_tps = [r.tps for r in rounds]
    return merged


def report(
    pg: dict[str, float], runs: dict[str, Run], alone: dict[str, float], args: argparse.Namespace
) -> str:
    cel, off = runs["mpaas, risk on (CEL)"], runs["mpaas, risk off"]
    share = (cel.p50 - off.p50) / cel.p50 if cel.p50 else float("nan")
    cpu_share = (cel.cpu_ms - off.cpu_ms) / cel.cpu_ms if cel.cpu_ms else float("nan")
    lines = [
        f"{args.clients} clients, {args.rounds} rounds of {args.seconds:g} s per server after a {args.warmup:g} s warm-up "
        "(the two servers alternate, each round starting with the other one; latencies pooled), "
        f"{args.accounts:,} accounts "
        f"(a random one of the first {args.senders:,}, funded, sends to a random one of all), "
        f"local PostgreSQL, `mpaas server --workers {args.workers}` "
        + (
            "with Redis (nonces, rate buckets and risk counters); "
            if args.redis
            else "without Redis (nonces, buckets and risk counters in SQL); "
        )
        + f"{args.clients} clients in one asyncio process ("
        + ("HTTP/1.1 on asyncio streams, bench/transfers_client.py" if args.client == "lean" else "aiohttp")
        + ", HMAC signing); "
        f"pgbench: `-c {args.clients} -j 2 -T 5`, scale 1.",
        "",
        "| run | transactions/s | × pgbench | p50 ms | p99 ms | server CPU ms a call | client CPU ms a call "
        "| answers |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
        f"| pgbench tpcb-like | {pg['tps']:,.0f} | 1.00 | {pg['p50']:.2f} | {pg['p99']:.2f} | - | - | - |",
    ]
    for run in runs.values():
        answers = ", ".join(f"{code}: {count}" for code, count in sorted(run.codes.items()))
        lines.append(
            f"| {run.name} | {run.tps:,.0f} | {run.tps / pg['tps']:.2f} | {run.p50:.2f} | {run.p99:.2f} "
            f"| {run.cpu_ms:.1f} | {run.client_cpu_ms:.2f} | {answers} |"
        )
    lines += [
        "",
        f"Risk check share of the transfer's p50: **{share:.1%}** ((on − off) / on; goal < {GOAL_RISK_SHARE:.0%}). "
        f"By the server's CPU per call: **{cpu_share:.1%}**. "
        f"Ratio to pgbench: **{cel.tps / pg['tps']:.2f}×** (goal ≥ {GOAL_RATIO}×). "
        "Transactions/s per round: "
        + "; ".join(
            f"{run.name}: " + ", ".join(f"{t:.0f}" for t in run.round_tps or [run.tps])
            for run in runs.values()
        )
        + ".",
        "",
        f"`decide()` alone, in-process, one at a time, on the same database: p50 {alone['p50']:.2f} ms, "
        f"p99 {alone['p99']:.2f} ms, {alone['cpu_ms']:.2f} ms of this process's CPU a decision "
        f"(counters read, {alone['rules']:.0f} rules, decision stored); "
        f"the CEL part alone {alone['cel_us']:.0f} µs a decision, "
        f"{alone['cel_us'] / alone['rules']:.1f} µs a rule (context conversion included).",
    ]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=3, help="runs of each server, alternating")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--accounts", type=int, default=10_000)
    ap.add_argument("--senders", type=int, default=10_000, help="accounts funded to send (all receive)")
    ap.add_argument("--decisions", type=int, default=500, help="decide() calls measured in-process")
    ap.add_argument(
        "--redis",
        default="redis://127.0.0.1:6379/9",
        help="MPAAS_REDIS_URL for the server (nonces, rate buckets, risk counters), as a bank deploys "
        "it; the bench empties this database (FLUSHDB) before each run; '' keeps them in SQL",
    )
    ap.add_argument("--workers", type=int, default=2, help="server processes (mpaas server --workers)")
    ap.add_argument(
        "--client",
        choices=("lean", "aiohttp"),
        default="lean",
        help="the load generator's HTTP client (bench/transfers_client.py; aiohttp: the earlier runs')",
    )
    ap.add_argument("--write-doc", action="store_true")
    args = ap.parse_args()
    binary = pgbench_path()
    if binary is None:
        print("skipped: pgbench is not installed (apt-get install postgresql-client)")
        return 0
    suffix = secrets.token_hex(3)
    bench_db, mpaas_db = f"bench_pgbench_{suffix}", f"bench_transfers_{suffix}"
    work = Path(tempfile.mkdtemp(prefix="mpaas-bench-transfers-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        pg_url = asyncio.run(recreate(args.pg, bench_db))
        print("pgbench …", flush=True)
        pg = run_pgbench(binary, pg_url, args.clients, 2, 5, work)
        db_url = asyncio.run(recreate(args.pg, mpaas_db)).replace("postgresql://", "postgresql+asyncpg://", 1)
        env = (
            {k: v for k, v in os.environ.items() if not k.startswith("MPAAS_")}
            | {
                "MPAAS_DATA_DIR": str(work / "data"),
                "MPAAS_DATABASE_URL": db_url,
                "MPAAS_LOG_LEVEL": "WARNING",
                "MPAAS_PUSH_WORKER": "false",
                "MPAAS_GATEWAY_APP_RATE": "100000000/s",
                "MPAAS_GATEWAY_DEVICE_RATE": "100000000/s",
                "MPAAS_GATEWAY_USER_RATE": "100000000/s",
            }
            | ({"MPAAS_REDIS_URL": args.redis} if args.redis else {})
        )
        print(f"seeding {args.accounts:,} e-account holders, {args.senders:,} funded …", flush=True)
        started = time.perf_counter()
        seeded = asyncio.run(seed(env, args.accounts, min(args.senders, args.accounts)))
        print(f"  seeded in {time.perf_counter() - started:.0f} s", flush=True)
        servers = [("mpaas, risk on (CEL)", "cel"), ("mpaas, risk off", "off")]
        rounds: dict[str, list[Run]] = {name: [] for name, _ in servers}
        # the servers alternate, so drift (PostgreSQL's autovacuum after the seeding, tables
        # growing with every transfer) falls on both alike
        plan = [pair for r in range(args.rounds) for pair in (servers if r % 2 == 0 else servers[::-1])]
        for name, engine in plan:
            if args.redis:  # each run starts with empty risk counters and nonces
                empty_redis(args.redis)
            port = free_port()
            procs.append(start_server(env | {"MPAAS_RISK_ENGINE": engine}, port, args.workers))
            print(f"{name} …", flush=True)
            url = f"http://127.0.0.1:{port}"
            idle = idle_cpu_rate(procs[-1].pid)
            cpu_before, run_started = cpu_seconds(procs[-1].pid), time.monotonic()
            senders = min(args.senders, args.accounts)
            run = asyncio.run(
                drive(
                    name,
                    url,
                    seeded,
                    senders,
                    args.clients,
                    args.seconds,
                    args.warmup,
                    lean=args.client == "lean",
                )
            )
            calls = run.cpu_ms  # drive() left the number of completed calls here
            used = cpu_seconds(procs[-1].pid) - cpu_before - idle * (time.monotonic() - run_started)
            run.cpu_ms = used * 1000 / calls if calls else float("nan")
            rounds[name].append(run)
            stop(procs.pop())
        runs = {name: merge(name, rounds[name]) for name, _ in servers}
        alone = asyncio.run(engine_alone(env, seeded.users, args.decisions))
    finally:
        for proc in procs:
            stop(proc)
        for name in (bench_db, mpaas_db):
            asyncio.run(drop(args.pg, name))
    table = report(pg, runs, alone, args)
    print(table)
    if args.write_doc:
        write_block("transfers results", table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
