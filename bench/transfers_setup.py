"""Set-up and in-process parts of bench/transfers.py: scratch databases, 10,000 funded
e-account holders with sessions, pgbench, the risk engine measured alone, and the
`mpaas server` process (started, its CPU read from /proc, stopped)."""

from __future__ import annotations

import base64
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

FUNDS = 5_000 * 100  # fen per account: far more than the run moves, under every limit


@dataclass
class Seeded:
    kid: str
    secret: bytes
    users: list[str]  # public ids
    devices: list[str]
    tokens: list[str]


def with_db(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, "", ""))


async def recreate(admin_url: str, name: str) -> str:
    import asyncpg

    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_db(admin_url, name)


async def drop(admin_url: str, name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def pgbench_path() -> str | None:
    found = shutil.which("pgbench")
    if found:
        return found
    fallback = Path("/usr/lib/postgresql/15/bin/pgbench")
    return str(fallback) if fallback.exists() else None


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def run_pgbench(
    binary: str, url: str, clients: int, threads: int, seconds: int, work: Path
) -> dict[str, float]:
    """pgbench's built-in tpcb-like: tps, and p50/p99 from its per-transaction log (ms)."""
    subprocess.run([binary, "-i", "-q", url], check=True, capture_output=True)
    logs = work / "pgbench"
    logs.mkdir(exist_ok=True)
    out = subprocess.run(
        [
            binary,
            "-c",
            str(clients),
            "-j",
            str(threads),
            "-T",
            str(seconds),
            "-l",
            f"--log-prefix={logs}/tx",
            url,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    tps = float(re.search(r"tps = ([0-9.]+)", out).group(1))  # type: ignore[union-attr]
    latencies = [
        int(line.split()[2]) / 1000.0
        for f in logs.iterdir()
        for line in f.read_text().splitlines()
        if line.strip()
    ]
    return {"tps": tps, "p50": percentile(latencies, 0.5), "p99": percentile(latencies, 0.99)}


async def seed(env: dict[str, str], accounts: int, senders: int) -> Seeded:
    """Migrate; app ``bench`` with an app key; ``accounts`` e-account holders with their ledger
    accounts, each with a session on a device of its own; the first ``senders`` get ``FUNDS``
    topped up in one ledger batch (:meth:`Ledger.create_batch`; the others only receive)."""
    from sqlalchemy import insert
    from sqlmodel import select

    from mpaas.banking.ledger.models import LedgerAccount
    from mpaas.banking.ledger.service import Ledger, Move
    from mpaas.banking.models import BankSession, BankUser
    from mpaas.banking.transfers.accounts import CURRENCY, user_code
    from mpaas.banking.transfers.limits import load_limits
    from mpaas.gateway.keys import KeyStore, MasterKey
    from mpaas.identity.audit import Actor
    from mpaas.identity.tenancy import create_app
    from mpaas.identity.tokens import hash_token
    from mpaas.settings import Settings
    from mpaas.storage.db import Database, utcnow
    from mpaas.storage.migrate import upgrade_async

    settings = Settings.from_env(env)
    await upgrade_async(settings)
    db = Database(settings)
    keys = KeyStore(db, MasterKey.load_or_create(settings.keys_dir), 5.0)
    app, _channels = await create_app(db, Actor("bench"), "bench", ["android"])
    row, secret = await keys.create_app_key(Actor("bench"), "bench")
    now = utcnow()
    users = [f"u_{secrets.token_hex(8)}" for _ in range(accounts)]
    devices = [f"bench-device-{i:05d}" for i in range(accounts)]
    tokens = ["ms_" + secrets.token_urlsafe(32) for _ in range(accounts)]
    async with db.write() as s:
        conn = await s.connection()
        await conn.execute(
            insert(BankUser),
            [
                {
                    "public_id": u,
                    "app_id": app.id,
                    "phone": f"+86138{i:08d}",
                    "tier": "e_account",
                    "created_at": now,
                    "updated_at": now,
                }
                for i, u in enumerate(users)
            ],
        )
    async with db.session() as s:
        rows = {u.public_id: u for u in (await s.exec(select(BankUser))).all()}
    async with db.write() as s:
        conn = await s.connection()
        await conn.execute(
            insert(BankSession),
            [
                {
                    "token_hash": hash_token(t),
                    "app_id": app.id,
                    "device_id": d,
                    "user_pk": rows[u].id,
                    "created_at": now,
                    "expires_at": now.replace(year=now.year + 1),
                }
                for u, d, t in zip(users, devices, tokens, strict=True)
            ],
        )
    ledger = Ledger()
    limits = load_limits(None, settings.banking_timezone)
    klass = settings.banking_e_account_class
    async with db.write() as s:
        await ledger.ensure_bank_accounts(s, CURRENCY)
        conn = await s.connection()
        await conn.execute(
            insert(LedgerAccount),
            [
                {
                    "code": user_code(rows[u]),
                    "kind": "user",
                    "currency": CURRENCY,
                    "user_pk": rows[u].id,
                    "account_class": klass,
                    "no_negative": True,
                    "balance_cap": limits.of(klass).balance_cap,
                    "debits_pending": 0,
                    "debits_posted": 0,
                    "credits_pending": 0,
                    "credits_posted": 0,
                    "created_at": now,
                }
                for u in users
            ],
        )
    async with db.session() as s:
        settlement = await ledger.bank_account(s, "settlement", CURRENCY)
        ids = {a.code: a.id for a in (await s.exec(select(LedgerAccount))).all()}
    moves = [  # top-ups from the settlement account: one batch through the ledger, all or none
        Move(
            "fund_" + uuid.uuid4().hex, settlement.id, ids[user_code(rows[u])], FUNDS, CURRENCY, kind="top_up"
        )
        for u in users[:senders]
    ]
    async with db.write() as s:
        await ledger.create_batch(s, moves, now)
    await db.close()
    return Seeded(row.kid, base64.b64decode(secret), users, devices, tokens)


async def engine_alone(env: dict[str, str], users: list[str], n: int) -> dict[str, float]:
    """decide() in-process, one at a time, on the seeded database (the SQL counter store):
    p50/p99 in ms; then the CEL part alone: µs per decision and per rule."""
    from mpaas.banking.risk.decision import RiskContext
    from mpaas.banking.risk.engine import CelRiskEngine
    from mpaas.banking.risk.wiring import make_risk_engine
    from mpaas.settings import Settings
    from mpaas.storage.db import Database

    settings = Settings.from_env(env | {"MPAAS_RISK_ENGINE": "cel"})
    db = Database(settings)
    engine = make_risk_engine(settings, db)
    assert isinstance(engine, CelRiskEngine)

    def context(i: int) -> RiskContext:
        return RiskContext(
            {
                "id": f"t_bench_{i}",
                "amount": 1000 + i % 5000,
                "currency": "CNY",
                "counterparty": users[-1 - i % 100],
                "to_account": 2,
                "from_account": 1,
                "external": False,
            },
            {"id": users[i % len(users)], "tier": "e_account"},
            {
                "id": f"bench-device-{i % len(users):05d}",
                "model": "Pixel 8",
                "rooted": False,
                "first_seen_days": 100,
            },
            {"ip": "203.0.113.7", "carrier": "CMCC"},
            {"lat": 31.23, "lon": 121.47},
        )

    await engine.decide("transfer", context(0))
    latencies = []
    cpu_started = time.process_time()
    for i in range(n):
        started = time.perf_counter()
        await engine.decide("transfer", context(i))
        latencies.append((time.perf_counter() - started) * 1000)
    cpu_ms = (time.process_time() - cpu_started) * 1000 / n
    compiled = await engine._ruleset("transfer")  # the active version, as decide() uses it
    assert compiled is not None
    inputs = dict((await engine.decide("transfer", context(1))).values)  # what the rules read, as stored
    rounds = 2000
    started = time.perf_counter()
    for _ in range(rounds):
        compiled.evaluate(inputs)
    cel_us = (time.perf_counter() - started) / rounds * 1e6
    await engine.close()
    await db.close()
    return {
        "p50": statistics.median(latencies),
        "p99": percentile(latencies, 0.99),
        "cpu_ms": cpu_ms,
        "cel_us": cel_us,
        "rules": len(compiled.programs),
    }


# -- the server process ---------------------------------------------------------------


def start_server(env: dict[str, str], port: int, workers: int = 1) -> subprocess.Popen[bytes]:
    # stderr goes to a file, whose end explains a server that exits at start-up (a pipe
    # nobody read once stalled the server; since ADR 0021 it would only drop log lines)
    log = open(Path(env["MPAAS_DATA_DIR"]).parent / f"server-{port}.stderr", "w+b")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "mpaas.cli.main", "server", "--port", str(port), "--workers", str(workers)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"mpaas server exited: {log.read().decode(errors='replace')[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return proc
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError("mpaas server did not start") from None
            time.sleep(0.2)


def empty_redis(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()
