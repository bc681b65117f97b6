"""Helpers of bench/push.py: stand-in processes, CPU accounting, the raw-library baselines, the table.

Imported by the script (``sys.path`` holds bench/ when it runs); not a test module.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

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


# -- databases and the report ---------------------------------------------------------


def with_db(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, "", ""))


async def pg_execute(url: str, statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def make_settings(database_url: str, data_dir: Path) -> Any:
    from mpaas.settings import Settings
    from mpaas.storage.migrate import upgrade_async

    settings = Settings.from_env({}, {"data_dir": data_dir, "database_url": database_url, "log_json": False})
    await upgrade_async(settings)
    return settings


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
