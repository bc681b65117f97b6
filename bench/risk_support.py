"""What bench/risk.py shares between its parts: a migrated database (a SQLite file in a temp
directory in RAM, or with ``postgres=True`` a fresh PostgreSQL database on
MPAAS_TEST_DATABASE_URL's server, dropped after), the engine on it (SQL counters, or Redis
when MPAAS_TEST_REDIS_URL is set), a clock the benchmark moves, percentiles, and the 100-rule
rule set of the speed tests."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from mpaas.banking.risk.counters import CounterStore, SqlCounterStore
from mpaas.banking.risk.engine import CelRiskEngine
from mpaas.banking.risk.modelcentre.scorer import ModelCentreScorer
from mpaas.banking.risk.modelcentre.synthetic import START
from mpaas.settings import Settings
from mpaas.storage.db import Database
from mpaas.storage.migrate import upgrade_async

#: RAM-backed when available: the benchmark measures the engine, not the disk of a shared machine.
SCRATCH = "/dev/shm" if Path("/dev/shm").is_dir() else None
REDIS_URL = os.environ.get("MPAAS_TEST_REDIS_URL", "")
PG_URL = os.environ.get("MPAAS_TEST_DATABASE_URL", "")
LOAD_NOTE = "2 cores shared with other jobs: wall-clock numbers are noisy; compare ratios within one run"
VEL12 = [
    f"vel.{e}.{m}_{w}" for e in ("user", "device") for m in ("count", "sum") for w in ("1h", "24h", "30d")
]


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


@dataclass
class Bed:
    db: Database
    engine: CelRiskEngine
    clock: Clock
    counters: str
    folder: Path


@asynccontextmanager
async def bed(*, scorer: bool = True, redis: bool = True, postgres: bool = False) -> AsyncIterator[Bed]:
    """A fresh database and engine (closed and deleted on exit)."""
    with tempfile.TemporaryDirectory(prefix="mpaas-risk-bench-", dir=SCRATCH) as tmp:
        folder = Path(tmp)
        async with _database(folder, postgres) as url:
            settings = Settings.from_env({}, {"data_dir": folder, "database_url": url, "log_json": False})
            await upgrade_async(settings)
            db = Database(settings)
            clock = Clock()
            counters: CounterStore
            if redis and REDIS_URL:
                from mpaas.banking.risk.redis_counters import RedisCounterStore

                counters, kind = RedisCounterStore(REDIS_URL, f"bench-{uuid.uuid4().hex[:8]}:"), "Redis"
            else:
                counters, kind = SqlCounterStore(db), "SQL (PostgreSQL)" if postgres else "SQL (SQLite)"
            engine = CelRiskEngine(
                db,
                counters,
                clock=clock,
                poll_seconds=3600.0,
                scorer=ModelCentreScorer(db, poll_seconds=3600.0) if scorer else None,
            )
            try:
                yield Bed(db, engine, clock, kind, folder)
            finally:
                await engine.close()
                await db.close()


@asynccontextmanager
async def _database(folder: Path, postgres: bool) -> AsyncIterator[str]:
    """A SQLite file in ``folder``, or a new PostgreSQL database (dropped on exit)."""
    if not postgres:
        yield f"sqlite:///{folder / 'mpaas.db'}"
        return
    import asyncpg

    if not PG_URL:
        raise SystemExit("MPAAS_TEST_DATABASE_URL is not set")
    admin = PG_URL.replace("postgresql+asyncpg://", "postgresql://")
    name = f"mpaas_risk_bench_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
        yield urlunsplit(urlsplit(PG_URL)._replace(path="/" + name, query=""))
    finally:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def hundred_rules(model: dict[str, Any] | None) -> dict[str, Any]:
    """The shipped rules plus generated ones up to 100, reading the 12 velocity features."""
    from mpaas.banking.risk.store import default_document

    doc = default_document("transfer")
    assert doc is not None
    data = doc.to_dict()
    rules = list(data["rules"])
    i = 0
    while len(rules) < 100:
        path = VEL12[i % len(VEL12)]
        limit = (i // len(VEL12) + 2) * (5 if "count" in path else 200_000)
        rules.append(
            {
                "name": f"gen_{i:03d}",
                "expr": f"{path} >= {limit} && txn.amount > {1000 * (i % 7)}",
                "weight": 5,
                "message": f"generated rule {i}",
            }
        )
        i += 1
    data["rules"] = rules
    if model is None:
        data.pop("model", None)
    return data
