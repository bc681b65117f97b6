"""Where the loader's CPU goes, step by step, for one load cycle (issue 14).

    python bench/ingest_load_split.py [--events 250000] [--threads 0] [--profile out.json]

Spools ``--events`` unique events in the Segment batches of bench/ingest.py (one read
budget's worth by default, about 250,000 events), then runs each step of one cycle on its
own and prints the process's CPU time (user and system, all threads) per event and the
page faults per event: the spool read, the records' headers in Python, the SQL
normalisation, the Python split, then the store's statements one by one (duplicates,
fresh rows, links, the insert, the rollups, the commit). ``--threads`` caps DuckDB's
threads (0: DuckDB's default); ``--profile`` writes DuckDB's JSON profile of the SQL
normalisation. CPU time, not wall time: it is the number that holds on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import PER_BATCH, segment_batch
from ingest_load import spool_events


class Meter:
    def __init__(self, events: int) -> None:
        self.events = events
        self.rows: list[tuple[str, float, float, float]] = []
        self._last = resource.getrusage(resource.RUSAGE_SELF)

    def step(self, name: str) -> None:
        now = resource.getrusage(resource.RUSAGE_SELF)
        user, system = now.ru_utime - self._last.ru_utime, now.ru_stime - self._last.ru_stime
        faults = now.ru_minflt - self._last.ru_minflt
        self.rows.append((name, user * 1e6 / self.events, system * 1e6 / self.events, faults / self.events))
        self._last = resource.getrusage(resource.RUSAGE_SELF)

    def table(self) -> str:
        lines = ["| step | user µs/event | system µs/event | page faults/event |", "|---|---:|---:|---:|"]
        for name, user, system, faults in self.rows:
            lines.append(f"| {name} | {user:.2f} | {system:.2f} | {faults:.3f} |")
        user = sum(r[1] for r in self.rows)
        system = sum(r[2] for r in self.rows)
        lines.append(f"| **all** | **{user:.2f}** | **{system:.2f}** | |")
        return "\n".join(lines)


def split(spool: Path, db: Path, events: int, threads: int, profile: str | None) -> str:
    from mpaas.analytics.catalog.checker import CatalogSnapshot
    from mpaas.analytics.loader.columnar import ColumnarNormaliser
    from mpaas.analytics.loader.normalise import Normaliser
    from mpaas.analytics.spool.reader import FileSpoolSource
    from mpaas.analytics.store import duckdb as store_sql
    from mpaas.analytics.store.duckdb import DuckDbStore

    store, columnar, catalog = DuckDbStore(db), ColumnarNormaliser(), CatalogSnapshot()
    con, ncon = store._con, columnar._con
    if threads:
        for c in (con, ncon):
            c.execute(f"SET threads = {int(threads)}")
    meter = Meter(events)
    batch = FileSpoolSource(spool).read_sync({}, 1 << 40)
    meter.step("spool read (unframe)")
    python = Normaliser(catalog)
    raw = columnar._raw_table(python, batch.records)
    meter.step("record headers, raw buffer (Python)")
    ncon.register("raw_in", raw)
    if profile:
        ncon.execute(f"PRAGMA enable_profiling = 'json'; PRAGMA profiling_output = '{profile}'")
    table = columnar._sql(catalog, ncon)
    if profile:
        ncon.execute("PRAGMA disable_profiling")
    meter.step("SQL normalisation (DuckDB)")
    fast, slow, _ = columnar._split(catalog, table)
    ncon.unregister("raw_in")
    assert not slow and fast.num_rows == events, (len(slow), fast.num_rows)
    meter.step("split fast/slow (Python)")
    con.execute("SET preserve_insertion_order = false")
    con.execute("BEGIN TRANSACTION")
    con.register("incoming", store_sql._chunked(fast))
    cutoff = con.execute("SELECT min(received_at) FROM incoming").fetchone()
    assert cutoff is not None
    con.execute(store_sql.DUPS, [cutoff[0] - store.dedupe])
    meter.step("store: stored duplicates (DUPS)")
    con.execute(store_sql.FRESH.replace("{forgotten}", ""))
    meter.step("store: new rows, timestamps (FRESH)")
    con.execute(store_sql.LINKS)
    meter.step("store: identity links")
    insert = f"INSERT INTO events ({store_sql.EVENT_COLUMNS}, own) SELECT {store_sql.EVENT_COLUMNS}, {store_sql.OWN}"
    con.execute(f"{insert} FROM {store_sql.JOINED}")
    meter.step("store: insert events")
    store._rollups.batch("fresh")
    meter.step("store: rollups")
    con.execute("COMMIT")
    meter.step("store: commit")
    store.close()
    return meter.table()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=250_000)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--profile", default=None)
    args = ap.parse_args()
    if args.events <= 0 or args.events % PER_BATCH:
        ap.error(f"--events must be a positive multiple of {PER_BATCH}")
    work = Path(tempfile.mkdtemp(prefix="mpaas-bench-split-"))
    try:
        asyncio.run(spool_events(work / "spool", args.events, segment_batch, PER_BATCH))
        print(split(work / "spool", work / "split.duckdb", args.events, args.threads, args.profile))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
