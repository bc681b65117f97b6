"""The loader half of bench/ingest.py: spool unique events, load them into a fresh DuckDB.

Two loaders on the same kind of spool, in the same run: mpaas's loader (normalisation
in DuckDB SQL over Arrow, Python only for the few events that need it) and, as the
baseline, the Python reference normaliser that the loader used before (every event
parsed and normalised in Python), both committing through the same ``DuckDbStore``.
Wall-clock rates and CPU time per event are both reported: on a shared machine the
CPU time is the steadier number.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class LoadResult:
    events: int
    seconds: float
    cpu_seconds: float
    db_bytes: int

    @property
    def rate(self) -> float:
        return self.events / self.seconds

    @property
    def cpu_us(self) -> float:
        return self.cpu_seconds / self.events * 1e6


async def spool_events(
    directory: Path, events: int, batch: Callable[[int], dict[str, Any]], per: int
) -> None:
    """``events`` unique events in batches of ``per``, as ``/v1/batch`` records in a file spool."""
    import orjson

    from mpaas.analytics.spool.files import FileSpool
    from mpaas.analytics.spool.record import SEGMENT, RecordHeader, encode

    spool = FileSpool(directory, segment_bytes=256 << 20)
    await spool.start()
    now_ms = int(time.time() * 1000)
    pending = []
    for n, start in enumerate(range(0, events, per)):
        raw = orjson.dumps(batch(start))
        pending.append(
            spool.append(encode(RecordHeader(SEGMENT, "batch", "bench", None, now_ms, f"b{n}"), raw))
        )
        if len(pending) >= 500:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)
    await spool.close()


def _size(db_path: Path) -> int:
    wal = db_path.with_name(db_path.name + ".wal")
    return db_path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


async def load_sql(spool_dir: Path, db_path: Path, events: int) -> LoadResult:
    """mpaas's loader, draining the spool into a fresh DuckDB file."""
    from mpaas.analytics.loader.loader import Loader
    from mpaas.analytics.spool.reader import FileSpoolSource
    from mpaas.analytics.store.duckdb import DuckDbStore

    store = DuckDbStore(db_path)
    loader = Loader(store, FileSpoolSource(spool_dir))  # the default read budget
    cpu, started = time.process_time(), time.perf_counter()
    await loader.drain()
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    assert loader.stats.inserted == events, loader.stats
    store.checkpoint()
    store.close()
    return LoadResult(events, seconds, cpu, _size(db_path))


def load_python_reference(spool_dir: Path, db_path: Path, events: int) -> LoadResult:
    """The baseline: the Python normaliser for every event, the same store and spool reads."""
    from mpaas.analytics.catalog.checker import CatalogSnapshot
    from mpaas.analytics.loader.loader import DEFAULT_BUDGET
    from mpaas.analytics.loader.normalise import Normaliser
    from mpaas.analytics.spool.reader import FileSpoolSource
    from mpaas.analytics.store.base import LoadBatch
    from mpaas.analytics.store.duckdb import DuckDbStore

    store, source = DuckDbStore(db_path), FileSpoolSource(spool_dir)
    positions: dict[str, int] = {}
    inserted = 0
    cpu, started = time.process_time(), time.perf_counter()
    while True:
        batch = source.read_sync(positions, DEFAULT_BUDGET)
        if not batch.records:
            break
        normaliser = Normaliser(CatalogSnapshot())
        for ordinal, (record_id, body) in enumerate(batch.records):
            normaliser.add(record_id, body, ordinal)
        result = store.load(LoadBatch(normaliser.events.table(), normaliser.invalid.table(), batch.positions))
        inserted += result.inserted
        positions.update(batch.positions)
        if not batch.full:
            break
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    assert inserted == events, inserted
    store.checkpoint()
    store.close()
    return LoadResult(events, seconds, cpu, _size(db_path))


async def load_bench(
    work: Path, events: int, reference_events: int, batch: Callable[[int], dict[str, Any]], per: int
) -> tuple[LoadResult, LoadResult | None]:
    """(mpaas's loader on ``events``, the Python reference on ``reference_events``, None for 0)."""
    reference = None
    if reference_events:
        await spool_events(work / "ref-spool", reference_events, batch, per)
        reference = await asyncio.to_thread(
            load_python_reference, work / "ref-spool", work / "ref.duckdb", reference_events
        )
    await spool_events(work / "load-spool", events, batch, per)
    return await load_sql(work / "load-spool", work / "load.duckdb", events), reference
