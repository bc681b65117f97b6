"""Push throughput and CPU cost: raw client libraries vs mpaas's full pipeline, against the stand-ins.

    python bench/push.py                     # 20,000 APNs, 5,000 FCM, SQLite and PostgreSQL
    python bench/push.py --count 2000 --fcm-count 500 --no-postgres   # quick smoke

The stand-ins run as separate processes (``python -m mpaas.push.standins``), so their
CPU is measured apart from ours (``/proc/<pid>/stat``). Each case reports messages per
second, CPU seconds per message in this process and in the stand-in, and mpaas's
CPU per message relative to the raw library (goal: at most 1.25x).

- raw aioapns: ``APNs.send_notification`` over one pool at 100, 300 and 1000 in flight;
  the baseline is the level with the least CPU per message;
- raw pyfcm: ``FCMNotification.notify`` in a thread pool (its retry loops never fire here);
- mpaas: message → expansion into delivery rows → worker claims → provider → outcome
  rows, on SQLite (in-process, so SQLite's CPU counts as ours) and PostgreSQL (the
  server's CPU is not counted; it is reported by neither side);
- the pipeline again with 1 % of answers 429 (Retry-After: 1), to see the rate hold.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

TEAM, KEY_ID, TOPIC = "TEAM123456", "KEY1234567", "com.example.bench"
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Result:
    case: str
    count: int
    seconds: float
    cpu_ours: float
    cpu_standin: float
    note: str = ""

    @property
    def rate(self) -> float:
        return self.count / self.seconds

    @property
    def us_ours(self) -> float:
        return 1e6 * self.cpu_ours / self.count

    @property
    def us_standin(self) -> float:
        return 1e6 * self.cpu_standin / self.count


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class Standin:
    """A stand-in in its own process; ``port`` parsed from its banner."""

    def __init__(self, kind: str, *extra: str, workdir: Path) -> None:
        self.kind = kind
        args = [sys.executable, "-m", "mpaas.push.standins", kind, "--no-record", *extra]
        if kind == "fcm":
            self.account = workdir / f"sa-{secrets.token_hex(3)}.json"
            args += ["--service-account-out", str(self.account)]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert self.proc.stdout is not None
        banner = self.proc.stdout.readline()
        match = re.search(r"://127\.0\.0\.1:(\d+)", banner)
        if match is None:
            raise RuntimeError(f"stand-in did not start: {banner!r}")
        self.port = int(match.group(1))
        self.base_url = f"http://127.0.0.1:{self.port}"

    def cpu(self) -> float:
        return proc_cpu(self.proc.pid)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


async def measure(
    case: str, count: int, standin: Standin, run: Callable[[], Awaitable[Any]], note: str = ""
) -> Result:
    s0, c0, t0 = standin.cpu(), time.process_time(), time.perf_counter()
    await run()
    seconds = time.perf_counter() - t0
    return Result(case, count, seconds, time.process_time() - c0, standin.cpu() - s0, note)


def apns_token(i: int) -> str:
    return f"{i:064x}"


# -- raw libraries ------------------------------------------------------------------------


async def raw_aioapns(
    key_pem: str, standin: Standin, count: int, concurrency: int, *, like_mpaas: bool = False
) -> Result:
    """``like_mpaas`` sets what mpaas sends on every notification: expiration, priority,
    collapse id, push type, and the two payload keys; otherwise aioapns' minimum."""
    from aioapns import APNs, NotificationRequest, PushType
    from aioapns.connection import APNsProductionClientProtocol

    class StandinProtocol(APNsProductionClientProtocol):
        APNS_SERVER = "127.0.0.1"
        APNS_PORT = standin.port

    async def quiet(_request: Any, _result: Any) -> None:
        return None

    client = APNs(key=key_pem, key_id=KEY_ID, team_id=TEAM, topic=TOPIC, max_connections=4, err_func=quiet)
    client.pool.protocol_class = StandinProtocol
    client.pool.ssl_context = None
    slots = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with slots:
            message: dict[str, Any] = {
                "aps": {"alert": {"title": "Hello", "body": "Your statement is ready"}}
            }
            options: dict[str, Any] = {}
            if like_mpaas:
                message |= {"mpaas_delivery": str(i), "mpaas_message": "1"}
                options = {
                    "time_to_live": 3600,
                    "priority": 10,
                    "collapse_key": "mpaas-1",
                    "push_type": PushType.ALERT,
                }
            request = NotificationRequest(device_token=apns_token(i), message=message, **options)
            result = await client.send_notification(request)
            assert result.is_successful, result.description

    async def run() -> None:
        await asyncio.gather(*(one(i) for i in range(count)))

    try:
        label = "raw aioapns, same headers" if like_mpaas else "raw aioapns"
        return await measure(f"{label} (concurrency {concurrency})", count, standin, run)
    finally:
        client.pool.close()
        await asyncio.sleep(0)


def raw_pyfcm(standin: Standin, count: int, threads: int) -> Result:
    import threading

    from pyfcm import FCMNotification

    local = threading.local()

    def client() -> FCMNotification:
        fcm = getattr(local, "fcm", None)
        if fcm is None:
            fcm = FCMNotification(service_account_file=str(standin.account))
            fcm.FCM_END_POINT_BASE = f"{standin.base_url}/v1/projects"
            local.fcm = fcm
        return fcm

    def one(i: int) -> None:
        client().notify(fcm_token=f"tok-{i}", notification_title="Hello", notification_body="Statement ready")

    s0, c0, t0 = standin.cpu(), time.process_time(), time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(count)))
    seconds = time.perf_counter() - t0
    return Result(
        f"raw pyfcm ({threads} threads)", count, seconds, time.process_time() - c0, standin.cpu() - s0
    )


# -- the mpaas pipeline -------------------------------------------------------------------


def _with_db(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, "", ""))


async def _pg(url: str, statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def pipeline(
    case: str,
    settings: Any,
    standin: Standin,
    provider: Any,
    channel: str,
    count: int,
    note: str = "",
) -> Result:
    """Devices are bulk-inserted untimed; timed: create message → every delivery recorded."""
    from sqlalchemy import func, insert, select

    from mpaas.identity.audit import Actor
    from mpaas.identity.models import App
    from mpaas.push import messages
    from mpaas.push.devices import hash_secret
    from mpaas.push.queue import DELIVERIES, DEVICES, MESSAGES, RetryPolicy
    from mpaas.push.worker import PushWorker, WorkerConfig
    from mpaas.storage.db import Database, utcnow

    db = Database(settings)
    async with db.write() as s:
        app = App(name=f"bench-{secrets.token_hex(3)}", platforms=["ios", "android"])
        s.add(app)
        await s.flush()
    now = utcnow()
    rows = [
        {
            "app_id": app.id,
            "device_id": f"d{i}",
            "provider": channel,
            "token": apns_token(i) if channel == "apns" else f"tok-{i}",
            "secret_hash": hash_secret(str(i)),
            "enabled": True,
            "token_registered_at": now,
            "created_at": now,
            "updated_at": now,
        }
        for i in range(count)
    ]
    async with db.write() as s:
        for start in range(0, count, 5000):
            await s.execute(insert(DEVICES), rows[start : start + 5000])
    config = WorkerConfig(
        batch_size=1000,
        concurrency=2,
        lease=timedelta(seconds=120),
        poll_interval=0.05,
        policy=RetryPolicy(base_seconds=0.05, max_seconds=2.0, max_attempts=10),
    )
    worker = PushWorker(db, {channel: provider}, config)

    async def run() -> None:
        spec = messages.parse_message_spec(
            {"audience": {"all": True}, "title": "Hello", "body": "Your statement is ready", "ttl": 3600}
        )
        message = await messages.create_message(db, Actor("bench"), app, spec)
        worker.start()
        worker.wake()
        # Cheap completion checks (an indexed probe, one row), so polling costs little CPU.
        while True:
            await asyncio.sleep(0.2)
            async with db.session() as s:
                status = (
                    await s.execute(select(MESSAGES.c.status).where(MESSAGES.c.id == message.id))
                ).scalar()
                waiting = (
                    await s.execute(
                        select(DELIVERIES.c.id)
                        .where(DELIVERIES.c.status == "pending", DELIVERIES.c.message_id == message.id)
                        .limit(1)
                    )
                ).first()
            if status == "queued" and waiting is None:
                break
        await worker.stop()

    try:
        result = await measure(case, count, standin, run, note)
        async with db.session() as s:
            by_status = dict(
                (
                    await s.execute(
                        select(DELIVERIES.c.status, func.count())
                        .join(DEVICES, DEVICES.c.id == DELIVERIES.c.device_pk)
                        .where(DEVICES.c.app_id == app.id)
                        .group_by(DELIVERIES.c.status)
                    )
                ).all()
            )
        if by_status != {"sent": count}:
            raise RuntimeError(f"{case}: not everything was sent: {by_status}")
        return result
    finally:
        await provider.close()
        await db.close()


async def make_settings(database_url: str, data_dir: Path) -> Any:
    from mpaas.settings import Settings
    from mpaas.storage.migrate import upgrade_async

    settings = Settings.from_env({}, {"data_dir": data_dir, "database_url": database_url, "log_json": False})
    await upgrade_async(settings)
    return settings


def apns_provider(key_pem: str, standin: Standin) -> Any:
    from mpaas.push.providers.apns import ApnsEndpoint, ApnsProvider

    return ApnsProvider(
        key=key_pem,
        key_id=KEY_ID,
        team_id=TEAM,
        topic=TOPIC,
        endpoint=ApnsEndpoint("127.0.0.1", standin.port, tls=False),
        max_connections=4,
        # Per batch; each connection sends what its HTTP/2 windows and stream limit allow.
        concurrency=1000,
    )


def fcm_provider(standin: Standin) -> Any:
    from mpaas.push.providers.fcm import FcmProvider

    return FcmProvider(
        service_account_file=standin.account, endpoint_base=f"{standin.base_url}/v1/projects", concurrency=16
    )


def print_table(results: list[Result], baselines: dict[str, Result]) -> None:
    print("| case | msgs | msgs/s | CPU µs/msg (ours) | CPU µs/msg (stand-in) | ours vs raw |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in results:
        base = baselines.get(r.case.split(":", 1)[0])
        ratio = (
            f"{r.us_ours / base.us_ours:.2f}x" if base is not None and not r.case.startswith("raw") else ""
        )
        name = r.case + (f" ({r.note})" if r.note else "")
        print(f"| {name} | {r.count} | {r.rate:,.0f} | {r.us_ours:,.0f} | {r.us_standin:,.0f} | {ratio} |")


async def main_async(args: argparse.Namespace) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    work = Path(tempfile.mkdtemp(prefix="mpaas-bench-push-"))
    databases: list[tuple[str, str]] = [("SQLite", f"sqlite:///{work / 'sqlite' / 'mpaas.db'}")]
    pg_admin = args.database_url
    pg_name = f"mpaas_bench_{os.getpid()}"
    if pg_admin:
        await _pg(pg_admin, f'CREATE DATABASE "{pg_name}"')
        databases.append(("PostgreSQL", _with_db(pg_admin, pg_name)))
    results: list[Result] = []
    baselines: dict[str, Result] = {}
    try:
        apns = Standin("apns", workdir=work)
        try:
            # The baseline is raw aioapns at its cheapest concurrency in CPU per message (the
            # goal's measure), each level run in full, so the ratio is against its best.
            await raw_aioapns(key_pem, apns, min(args.count, 2000), 300)  # warm-up, not reported
            trials = [
                await raw_aioapns(key_pem, apns, args.count, concurrency, like_mpaas=True)
                for concurrency in (100, 300, 1000)
            ]
            raw = min(trials, key=lambda r: r.us_ours)
            trials[trials.index(raw)] = raw = dataclasses.replace(raw, note="baseline")
            concurrency = int(re.findall(r"\d+", raw.case)[0])
            results.append(await raw_aioapns(key_pem, apns, args.count, concurrency))
            results.extend(trials)
            baselines["mpaas APNs"] = raw
            for label, url in databases:
                settings = await make_settings(url, work / label)
                results.append(
                    await pipeline(
                        f"mpaas APNs: {label}",
                        settings,
                        apns,
                        apns_provider(key_pem, apns),
                        "apns",
                        args.count,
                    )
                )
        finally:
            apns.stop()
        apns429 = Standin(
            "apns", "--error-rate", "0.01", "--error-status", "429", "--retry-after", "1", workdir=work
        )
        try:
            label, url = databases[-1]
            results.append(
                await pipeline(
                    f"mpaas APNs: {label}",
                    await make_settings(url, work / label),
                    apns429,
                    apns_provider(key_pem, apns429),
                    "apns",
                    args.count,
                    note="1 % 429, Retry-After 1",
                )
            )
        finally:
            apns429.stop()

        fcm = Standin("fcm", workdir=work)
        try:
            raw_fcm = raw_pyfcm(fcm, args.fcm_count, 16)
            results.append(raw_fcm)
            baselines["mpaas FCM"] = raw_fcm
            for label, url in databases:
                results.append(
                    await pipeline(
                        f"mpaas FCM: {label}",
                        await make_settings(url, work / label),
                        fcm,
                        fcm_provider(fcm),
                        "fcm",
                        args.fcm_count,
                    )
                )
        finally:
            fcm.stop()
        fcm429 = Standin(
            "fcm", "--error-rate", "0.01", "--error-status", "429", "--retry-after", "1", workdir=work
        )
        try:
            label, url = databases[-1]
            results.append(
                await pipeline(
                    f"mpaas FCM: {label}",
                    await make_settings(url, work / label),
                    fcm429,
                    fcm_provider(fcm429),
                    "fcm",
                    args.fcm_count,
                    note="1 % 429, Retry-After 1",
                )
            )
        finally:
            fcm429.stop()
    finally:
        if pg_admin:
            await _pg(pg_admin, f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')
    print_table(results, baselines)


def main() -> None:
    # aioapns logs every failed attempt at ERROR; the results table is the report.
    logging.getLogger("aioapns").setLevel(logging.CRITICAL)
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=20_000, help="APNs notifications per case")
    parser.add_argument("--fcm-count", type=int, default=5_000, help="FCM notifications per case")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("MPAAS_BENCH_DATABASE_URL") or os.environ.get("MPAAS_TEST_DATABASE_URL"),
        help="PostgreSQL server URL (a scratch database is created and dropped)",
    )
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    if args.no_postgres:
        args.database_url = None
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
