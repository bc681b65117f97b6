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
import sys
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

sys.path.insert(0, str(Path(__file__).resolve().parent))

from push_support import (
    KEY_ID,
    TEAM,
    TOPIC,
    Result,
    Standin,
    apns_token,
    make_settings,
    measure,
    pg_execute,
    print_table,
    raw_aioapns,
    raw_pyfcm,
    with_db,
)

# -- the mpaas pipeline -------------------------------------------------------------------


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
    from mpaas.push.queue.retry import RetryPolicy
    from mpaas.push.queue.tables import DELIVERIES, DEVICES, MESSAGES
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
        await pg_execute(pg_admin, f'CREATE DATABASE "{pg_name}"')
        databases.append(("PostgreSQL", with_db(pg_admin, pg_name)))
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
            await pg_execute(pg_admin, f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')
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
