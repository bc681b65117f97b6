"""The update-check benchmarks' shared setup: seeded data, server processes, CPU pinning.

Used by ``bench/update_check.py`` (wrk) and ``bench/update_check_instructions.py``
(callgrind): 1,000 releases over 50 bundle lineages in a fresh data directory, and
``mpaas server`` started and stopped on a free loopback port.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from processes import wait_http

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
PACKAGES, RELEASES = 50, 1000


def rss_kib(pid: int) -> int:
    total = 0
    for p in [pid, *child_pids(pid)]:
        try:
            text = Path(f"/proc/{p}/status").read_text()
        except FileNotFoundError:
            continue
        m = re.search(r"VmRSS:\s+(\d+)", text)
        total += int(m.group(1)) if m else 0
    return total


def child_pids(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


#: One core for the server processes, the other for wrk, when the machine has two or more.
PINNED = (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None
SERVER_CPU, CLIENT_CPU = "1", "0"


def pinned(cmd: list[str], cpu: str) -> list[str]:
    return ["taskset", "-c", cpu, *cmd] if PINNED else cmd


def write_block(block: str, table: str) -> None:
    """Replace what stands between ``<!-- {block} begin -->`` and its end in docs/benchmarks.md."""
    begin, end = f"<!-- {block} begin -->", f"<!-- {block} end -->"
    text = DOC.read_text()
    start, stop_at = text.index(begin) + len(begin), text.index(end)
    DOC.write_text(text[:start] + "\n" + table + "\n" + text[stop_at:])


async def seed(settings: object) -> tuple[str, list[tuple[str, str]]]:
    """1,000 releases over 50 bundle lineages (synthetic package rows; no blobs needed)."""
    import hashlib

    from mpaas.identity.audit import Actor
    from mpaas.identity.tenancy import create_app, get_channel
    from mpaas.packages.models import Package
    from mpaas.packages.releases.service import ReleaseService
    from mpaas.packages.releases.views import ReleaseSpec
    from mpaas.packages.service import PackageService
    from mpaas.storage.db import Database
    from mpaas.storage.migrate import upgrade_async

    await upgrade_async(settings)  # type: ignore[arg-type]
    db = Database(settings)  # type: ignore[arg-type]
    actor = Actor("bench")
    app, _channels = await create_app(db, actor, "bench", ["android"])
    packages = PackageService(db, None, None, Path(tempfile.gettempdir()))
    releases = ReleaseService(db, packages)
    held: list[tuple[str, str]] = []
    per = RELEASES // PACKAGES
    async with db.write() as s:
        for p in range(PACKAGES):
            for v in range(per):
                h = hashlib.sha256(f"{p}/{v}".encode()).hexdigest()
                s.add(
                    Package(
                        app_id=app.id or 0,
                        kind="bundle",
                        package_id=f"pkg{p:02d}",
                        version=f"1.0.{v}",
                        package_hash=h,
                        codepush_hash=h,
                        archive_sha256=h,
                        archive_size=100_000 + v,
                        manifest_sha256=h,
                        file_count=10,
                        total_size=200_000,
                        meta={"target_binary_range": ">=5 <6"},
                        created_by="bench",
                    )
                )
                if v == per // 2 and p < 10:
                    held.append((f"pkg{p:02d}", h))
    for v in range(per):
        for p in range(PACKAGES):
            await releases.create(
                app, actor, "production", ReleaseSpec(f"pkg{p:02d}", f"1.0.{v}", rollout_percent=50 + v)
            )
    key = (await get_channel(db, "bench", "production")).channel.deployment_key
    await db.close()
    return key, held


def seeded(work: Path, **extra: str) -> tuple[dict[str, str], str, list[tuple[str, str]]]:
    """The server environment for a data directory in ``work``, seeded; its key and held packages."""
    from mpaas.settings import Settings

    env = os.environ | {
        "MPAAS_DATA_DIR": str(work / "data"),
        "MPAAS_LOG_LEVEL": "WARNING",
        "MPAAS_PUBLIC_URL": "http://127.0.0.1",
        **extra,
    }
    key, held = asyncio.run(seed(Settings.from_env({k: v for k, v in env.items() if k.startswith("MPAAS_")})))
    return env, key, held


def start_mpaas(
    env: dict[str, str], port: int, workers: int = 1, *, pin: bool = True
) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "mpaas.cli.main", "server", "--port", str(port), "--workers", str(workers)]
    if pin:
        cmd = pinned(cmd, SERVER_CPU)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_http(f"http://127.0.0.1:{port}/healthz")
    return proc
