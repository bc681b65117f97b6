"""Reports on DuckDB and on ClickHouse (chdb): load, size, a full scan, then funnel, retention, DAU.

    python bench/reports.py [--events 10000000] [--rounds 3] [--engines duckdb,chdb] [--write-doc]

One run. DuckDB SQL generates ``--events`` synthetic events (``--events / 10`` users, 90
days, from hashes of the row number: no Python loops) and the identity links of the 70 %
of users who log in, into Parquet files. Each engine then loads the same files into the
store's own tables (``DuckDbStore``, ``ClickHouseStore`` over a chdb session on disk) and
answers, through the report functions the API runs (``mpaas.analytics.reports.queries``):

* the baseline, a plain full scan: ``count(*)`` of the app's events whose name starts
  with ``step`` (a string predicate over every row);
* a 5-step funnel over the 90 days (14-day window);
* retention, 30 daily cohorts (the first 30 days) × 30 days;
* DAU (with WAU and MAU) for each of the 90 days.

Each time is the median of ``--rounds`` runs after one warm-up; each report's ratio is to
its own engine's full scan (goal: at most 10x, and under 2 s). ``--write-doc`` replaces
the results block in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from update_check_setup import write_block

START = datetime(2026, 9, 1, tzinfo=UTC)
#: The reports' zone, and so the stores' rollup zone (ADR 0014): ranges are whole UTC days.
TZ = "UTC"
DAYS = 90
STEPS = [f"step_{n}" for n in range(1, 6)]
#: Share of events per name: screens, start-ups, the five funnel steps, and the rest.
NAMES = (
    (30, "screen_view"), (45, "ux.app_start"), (60, "step_1"), (70, "step_2"), (78, "step_3"),
    (84, "step_4"), (88, "step_5"), (96, "home.viewed"), (100, "ux.h5_perf"),
)  # fmt: skip


def generate(con: Any, out: Path, events: int, users: int) -> None:
    """Events and identity links as Parquet, in SQL (the Parquet files are what both engines load). A user's events cluster after their first
    day (retention decays); 80 % of a known user's events carry the user id, the others only
    the anonymous id (so the identity merge has work to do)."""
    con.execute("SET enable_progress_bar = false")
    pick = " ".join(f"WHEN pick < {cut} THEN '{name}'" for cut, name in NAMES)
    start = START.strftime("%Y-%m-%d %H:%M:%S")
    con.execute(f"""
COPY (
  WITH r AS (
    SELECT i, hash(i, 11) AS h1, hash(i, 12) AS h2, hash(i, 13) AS h3, hash(i, 14) AS h4
    FROM range({events}) t(i)
  ), p AS (
    SELECT i, h2, h3, h4, CAST(floor(pow((h1 % 1000003) / 1000003.0, 2) * {users}) AS BIGINT) AS u FROM r
  ), d AS (
    SELECT *, hash(u, 15) % {DAYS} AS first_day, hash(u, 16) % 10 < 7 AS known, h2 % 100 AS pick FROM p
  )
  SELECT 'bench' AS app, 'native' AS source, 'production' AS channel, 'track' AS type,
    CASE {pick} END AS event, 'm' || i AS message_id,
    CASE WHEN known AND h4 % 10 < 8 THEN 'u' || u END AS user_id, 'a' || u AS anonymous_id,
    NULL::VARCHAR AS previous_id, NULL::VARCHAR AS group_id,
    TIMESTAMPTZ '{start}+00'
      + to_days(CAST(first_day + floor(pow((h3 % 1000003) / 1000003.0, 3) * ({DAYS} - first_day)) AS INTEGER))
      + to_milliseconds(CAST(h4 % 86400000 AS BIGINT)) AS timestamp,
    NULL::TIMESTAMPTZ AS original_timestamp, NULL::TIMESTAMPTZ AS sent_at, timestamp AS received_at,
    '5.' || (h3 % 3) || '.0' AS app_version, CASE WHEN u % 2 = 0 THEN 'ios' ELSE 'android' END AS platform,
    NULL::VARCHAR AS os, NULL::VARCHAR AS os_version, 'model-' || (u % 8) AS device_model,
    'dev-' || u AS device_id, 'bench' AS library, NULL::VARCHAR AS packages,
    '{{"k":' || (h2 % 10) || '}}' AS properties, NULL::VARCHAR AS context, []::VARCHAR[] AS flags
  FROM d
) TO '{out / "events.parquet"}' (FORMAT PARQUET, ROW_GROUP_SIZE 1000000)""")
    con.execute(f"""
COPY (
  SELECT 'bench' AS app, 'identify' AS kind, 'u' || u AS user_id, 'a' || u AS anonymous_id,
    NULL::VARCHAR AS previous_id, NULL::VARCHAR AS group_id, NULL::VARCHAR AS traits,
    TIMESTAMPTZ '{start}+00' AS timestamp, TIMESTAMPTZ '{start}+00' AS received_at, 'id' || u AS message_id
  FROM range({users}) t(u) WHERE hash(u, 16) % 10 < 7
) TO '{out / "links.parquet"}' (FORMAT PARQUET)""")


@dataclass
class Engine:
    name: str
    store: Any
    size: Callable[[], int]
    load_seconds: float = 0.0
    times: dict[str, float] = field(default_factory=dict)
    answers: dict[str, Any] = field(default_factory=dict)


def open_duckdb(work: Path, data: Path) -> Engine:
    from mpaas.analytics.store.duckdb import OWN, DuckDbStore

    path = work / "events.duckdb"
    path.unlink(missing_ok=True)
    store = DuckDbStore(path, rollup_tz=TZ)
    started = time.perf_counter()
    store.fetch(
        f"INSERT INTO events BY NAME SELECT *, {OWN} AS own FROM read_parquet('{data / 'events.parquet'}')"
    )
    store.fetch(f"INSERT INTO identity_links SELECT * FROM read_parquet('{data / 'links.parquet'}')")
    store.rebuild_rollups()  # a bulk insert bypasses load(), which keeps them batch by batch
    store.checkpoint()
    engine = Engine("DuckDB", store, lambda: path.stat().st_size + _wal(path))
    engine.load_seconds = time.perf_counter() - started
    return engine


def _wal(path: Path) -> int:
    wal = path.with_suffix(".duckdb.wal")
    return wal.stat().st_size if wal.exists() else 0


def open_chdb(work: Path, data: Path) -> Engine:
    from mpaas.analytics.store.clickhouse import ChdbConnection, ClickHouseStore

    directory = work / "chdb"
    shutil.rmtree(directory, ignore_errors=True)
    connection = ChdbConnection(str(directory))
    store = ClickHouseStore(connection, rollup_tz=TZ)
    started = time.perf_counter()
    connection.command(f"INSERT INTO events SELECT * FROM file('{data / 'events.parquet'}', Parquet)")
    connection.command(f"INSERT INTO identity_links SELECT * FROM file('{data / 'links.parquet'}', Parquet)")
    connection.command("OPTIMIZE TABLE events FINAL")
    store.rebuild_rollups()
    engine = Engine("ClickHouse (chdb)", store, lambda: _du(directory))
    engine.load_seconds = time.perf_counter() - started
    return engine


def _du(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


def reports(engine: Engine) -> dict[str, Callable[[], Any]]:
    from mpaas.analytics.reports import queries
    from mpaas.analytics.reports.params import FunnelStep, ReportQuery, TimeRange

    run = queries.engine_for(engine.store)
    whole = ReportQuery("bench", TimeRange(START, START + timedelta(days=DAYS)), tz=TZ)
    month = ReportQuery("bench", TimeRange(START, START + timedelta(days=30)), tz=TZ)
    scan = "SELECT count(*) FROM events WHERE app = 'bench' AND event LIKE 'step%'"
    return {
        "full scan": lambda: run.rows(scan),
        "funnel (5 steps)": lambda: queries.funnel(run, whole, [FunnelStep(s) for s in STEPS]),
        "retention (30x30)": lambda: queries.retention(run, month, periods=30),
        "DAU/WAU/MAU (90 days)": lambda: queries.active_users(run, whole),
    }


def measure(engine: Engine, rounds: int, warmup: bool) -> None:
    for name, fn in reports(engine).items():
        samples = []
        for n in range(rounds + warmup):
            started = time.perf_counter()
            answer = fn()
            samples.append(time.perf_counter() - started)
            if n == 0:
                engine.answers[name] = answer  # the engines' answers are compared in main
        engine.times[name] = statistics.median(samples[1:] if warmup else samples)
        print(f"  {engine.name:<18} {name:<22} {engine.times[name]:7.3f} s", flush=True)


def table(
    engines: list[Engine], events: int, users: int, gen_seconds: float | None, rounds: int, warmup: bool
) -> str:
    names = list(engines[0].times)
    lines = [
        f"{events:,} events, {users:,} users, {DAYS} days; generated as Parquet by DuckDB SQL"
        f"{f' in {gen_seconds:.1f} s' if gen_seconds is not None else ' (an earlier run)'}; median of {rounds} run(s){' after a warm-up' if warmup else ', no warm-up'}; "
        "ratio = report / full scan "
        "of the same engine (goal: ≤ 10x and < 2 s).",
        "",
        "| engine | load | on disk | " + " | ".join(names) + " |",
        "|---|---:|---:|" + "---:|" * len(names),
    ]
    for e in engines:
        scan = e.times[names[0]]
        cells = [f"{e.times[names[0]]:.3f} s"]
        for n in names[1:]:
            ok = "" if e.times[n] <= 10 * scan and e.times[n] < 2 else " ✗"
            cells.append(f"{e.times[n]:.3f} s ({e.times[n] / scan:.1f}x){ok}")
        lines.append(
            f"| {e.name} | {e.load_seconds:.1f} s | {e.size() / 1e6:.0f} MB | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--engines", default="duckdb,chdb")
    parser.add_argument("--no-warmup", action="store_true", help="Time the first run too (for long runs).")
    parser.add_argument(
        "--keep", type=Path, help="Work in this directory and keep it (default: a temporary one)."
    )
    parser.add_argument("--write-doc", action="store_true")
    args = parser.parse_args()
    import duckdb

    users = max(1, args.events // 10)
    work = args.keep or Path(tempfile.mkdtemp(prefix="mpaas-bench-reports-"))
    work.mkdir(parents=True, exist_ok=True)
    data = work / "data"
    data.mkdir(exist_ok=True)
    try:
        started = time.perf_counter()
        gen_seconds: float | None = None
        if not (data / "events.parquet").exists():  # --keep reuses the files of an earlier run
            generate(duckdb.connect(), data, args.events, users)
            gen_seconds = time.perf_counter() - started
            print(f"generated {args.events:,} events in {gen_seconds:.1f} s", flush=True)
        openers = {"duckdb": open_duckdb, "chdb": open_chdb}
        engines = []
        for key in args.engines.split(","):
            engine = openers[key](work, data)
            print(
                f"{engine.name}: loaded in {engine.load_seconds:.1f} s, {engine.size() / 1e6:.0f} MB",
                flush=True,
            )
            measure(engine, args.rounds, not args.no_warmup)
            engines.append(engine)
        block = table(engines, args.events, users, gen_seconds, args.rounds, not args.no_warmup)
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        block += f"\n\nLoad average (1, 5, 15 min) at the end of the run: {load}, on 2 vCPUs shared with other work."
        if len(engines) > 1:
            same = [
                n for n in engines[0].answers if all(e.answers[n] == engines[0].answers[n] for e in engines)
            ]
            block += f"\n\nIdentical answers on every engine: {', '.join(same) or 'none'}."
        print(block)
        if args.write_doc:
            write_block("reports results", block)
        for engine in engines:
            engine.store.close()
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
