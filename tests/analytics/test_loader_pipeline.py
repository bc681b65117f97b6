"""The loader's split of the work: the next batch is read and normalised while the store
loads the current one; the store inserts from chunks on every core; the SQL path looks at
each distinct context once. None of it may change a row, lose one or load one twice."""

from __future__ import annotations

import json
import time
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import orjson
import pytest

from mpaas.analytics.catalog.checker import CatalogSnapshot
from mpaas.analytics.loader.columnar import ColumnarNormaliser
from mpaas.analytics.loader.loader import Loader
from mpaas.analytics.loader.normalise import Normaliser
from mpaas.analytics.loader.rows import EVENT_SCHEMA, INVALID_SCHEMA, Rows
from mpaas.analytics.spool.base import SpoolBatch
from mpaas.analytics.spool.files import FileSpool
from mpaas.analytics.spool.reader import FileSpoolSource
from mpaas.analytics.spool.record import SEGMENT, RecordHeader, encode
from mpaas.analytics.store.base import LoadBatch, LoadResult
from mpaas.analytics.store.duckdb import CHUNK_ROWS, DuckDbStore

from .test_loader_equivalence import _rows

CARD = "4111 1111 1111 1111"


def _record(batch: list[dict[str, Any]], rid: str) -> bytes:
    received = time.time_ns() // 1_000_000
    body = orjson.dumps({"batch": batch, "sentAt": "2026-12-03T10:00:05.000Z"})
    return encode(RecordHeader(SEGMENT, "batch", "bank", None, received, rid), body)


def _event(mid: str, **fields: Any) -> dict[str, Any]:
    return {"type": "track", "event": "Tap", "userId": "u1", "messageId": mid, **fields}


def test_contexts_shared_by_events_give_the_reference_rows() -> None:
    plain = {"app": {"version": "1.0"}, "os": {"name": "iOS", "version": "17"}, "device": {"id": "d1"}}
    carded = {"app": {"version": "1.0"}, "note": CARD, "device": {"type": "ios", "model": "X"}}
    batch = [
        _event("a", context=plain, properties={"n": 1}),
        _event("b", context=plain, properties={"phone": "13812345678"}),  # slow for its properties
        _event("c", context=plain),
        _event("d", context=carded),  # the context has a card number: both go to Python
        _event("e", context=carded, properties={"n": 2}),
        _event("f", context={"library": {"name": "lib", "version": "2"}, "packages": [{"id": "h5"}]}),
        _event("g"),  # no context at all
    ]
    records = [("r1", _record(batch, "r1")), ("r2", _record(batch[::-1], "r2"))]
    events, invalid = ColumnarNormaliser().normalise(CatalogSnapshot(), records)
    reference = Normaliser(CatalogSnapshot())
    for ordinal, (record_id, body) in enumerate(records):
        reference.add(record_id, body, ordinal)
    assert _rows(events) == _rows(reference.events.table())
    assert invalid.num_rows == 0
    masked = [r for r in _rows(events) if r["message_id"] in ("d", "e")]
    assert len(masked) == 4 and all(CARD not in json.dumps(r["context"]) for r in masked)
    assert all("masked:card" in r["flags"] for r in masked)


def _wide_batch(rows: list[tuple[int, str, int]]) -> LoadBatch:
    """Events (seq, message id, tag) as the normaliser gives them."""
    out = Rows(EVENT_SCHEMA)
    received = time.time_ns() // 1_000_000
    for seq, mid, tag in rows:
        out.rows.append(
            (seq, "bank", "segment", None, "track", "e", mid, "u", None, None, None,
             "2026-12-03T10:00:00Z", None, received, None, None, None, None, None, None, None, None,
             orjson.dumps({"tag": tag}).decode(), "{}", ["undeclared"])
        )  # fmt: skip
    return LoadBatch(out.table(), INVALID_SCHEMA.empty_table(), {"seg": 1})


def test_a_batch_of_many_chunks_keeps_the_first_row_by_seq() -> None:
    store = DuckDbStore(":memory:")
    n = 3 * CHUNK_ROWS + 7
    # row order is not seq order: each duplicate's first (by seq) sits in a later chunk
    rows = [(n - i, f"m{i % (n // 3)}", i) for i in range(n)]
    result = store.load(_wide_batch(rows))
    unique = n // 3
    assert (result.received, result.inserted) == (n, unique)
    kept = dict(store.fetch("SELECT message_id, properties->>'tag' FROM events"))
    # the smallest seq of m{k} is that of the last row with i % unique == k
    expected = {f"m{k}": str(max(i for i in range(k, n, unique))) for k in range(unique)}
    assert kept == expected
    assert store.fetch("SELECT current_setting('preserve_insertion_order')") == [(True,)]
    assert store.positions() == {"seg": 1}


def test_a_failed_load_leaves_the_insertion_order_setting_as_it_was() -> None:
    store = DuckDbStore(":memory:")
    bad = _wide_batch([(1, "m", 1)])
    bad = LoadBatch(bad.events.drop_columns(["flags"]), bad.invalid, bad.positions)  # not the schema
    with pytest.raises(Exception):  # noqa: B017 - whatever DuckDB says about the missing column
        store.load(bad)
    assert store.fetch("SELECT current_setting('preserve_insertion_order')") == [(True,)]
    assert store.positions() == {}
    assert store.load(_wide_batch([(1, "m", 1)])).inserted == 1


async def _spool(directory: Path, records: int, per: int) -> int:
    spool = FileSpool(directory)
    await spool.start()
    size = 0
    for n in range(records):
        body = _record([_event(f"r{n}-{i}", properties={"i": i}) for i in range(per)], f"r{n}")
        size = max(size, len(body))
        await spool.append(body)
    await spool.close()
    return size


class FlakyStore:
    """A DuckDB store whose load fails on the calls numbered in ``fail`` (from 1)."""

    def __init__(self, path: Path, fail: set[int]) -> None:
        self.inner = DuckDbStore(path)
        self.fail = fail
        self.calls = 0

    def positions(self) -> dict[str, int]:
        return self.inner.positions()

    def load(self, batch: LoadBatch) -> LoadResult:
        self.calls += 1
        if self.calls in self.fail:
            raise RuntimeError("disk full")
        return self.inner.load(batch)


class GatedStore(DuckDbStore):
    """Load number k waits (a while) for read number k + 1 to begin, so that overlap shows."""

    def __init__(self, path: Path, source: CountingSource) -> None:
        super().__init__(path)
        self.source = source
        self.done = 0

    def load(self, batch: LoadBatch) -> LoadResult:
        deadline = time.monotonic() + 1.0  # the last batch has nothing to read ahead
        while len(self.source.reads) <= self.done + 1 and time.monotonic() < deadline:
            time.sleep(0.002)
        result = super().load(batch)
        self.done += 1
        return result


class CountingSource(FileSpoolSource):
    """Records the positions of every read and fails the reads numbered in ``fail``."""

    def __init__(self, directory: Path, fail: Collection[int] = ()) -> None:
        super().__init__(directory)
        self.reads: list[dict[str, int]] = []
        self.fail = fail
        self.store: GatedStore | None = None
        self.ahead = 0  # reads begun before the store had committed the batch read before

    async def read(self, positions: Mapping[str, int], budget: int) -> SpoolBatch:
        self.reads.append(dict(positions))
        if self.store is not None and self.store.done < len(self.reads) - 1:
            self.ahead += 1
        if len(self.reads) in self.fail:
            raise OSError("spool unreadable")
        return await super().read(positions, budget)


async def test_reads_ahead_and_loads_every_record_once(tmp_path: Path) -> None:
    size = await _spool(tmp_path / "spool", 12, 5)
    source = CountingSource(tmp_path / "spool")
    store = source.store = GatedStore(tmp_path / "e.duckdb", source)
    loader = Loader(store, source, budget=3 * size)
    await loader.drain()
    assert source.ahead == len(source.reads) - 1  # all but the first, while the store loaded
    assert loader.stats.records == 12 and loader.stats.inserted == 60
    assert store.fetch("SELECT count(*), count(DISTINCT message_id) FROM events") == [(60, 60)]
    assert loader.stats.cycles >= 4  # three records a read at most
    assert store.positions() == loader._positions
    assert not list((tmp_path / "spool").glob("*.seg"))  # finished segments removed after the commit
    await loader.close()


async def test_a_failed_load_drops_the_batch_read_ahead(tmp_path: Path) -> None:
    size = await _spool(tmp_path / "spool", 12, 5)
    store = FlakyStore(tmp_path / "e.duckdb", fail={2})
    source = CountingSource(tmp_path / "spool")
    loader = Loader(store, source, budget=3 * size)  # type: ignore[arg-type]
    assert await loader.run_once()
    committed = store.positions()
    with pytest.raises(RuntimeError, match="disk full"):
        await loader.run_once()  # the second batch fails; the third, read ahead, is dropped
    assert loader._ahead is None
    assert store.positions() == committed
    reads = len(source.reads)
    await loader.drain()
    assert source.reads[reads] == committed  # read again from what the store committed
    assert store.inner.fetch("SELECT count(*), count(DISTINCT message_id) FROM events") == [(60, 60)]


async def test_a_failed_read_ahead_fails_one_cycle_then_the_loader_reads_again(tmp_path: Path) -> None:
    size = await _spool(tmp_path / "spool", 9, 5)
    store = DuckDbStore(tmp_path / "e.duckdb")
    source = CountingSource(tmp_path / "spool", fail={2})  # the first read ahead
    loader = Loader(store, source, budget=3 * size)
    assert await loader.run_once()
    with pytest.raises(OSError, match="unreadable"):
        await loader.run_once()
    await loader.drain()
    assert store.fetch("SELECT count(*), count(DISTINCT message_id) FROM events") == [(45, 45)]
    assert loader.stats.records == 9


async def test_closing_drops_the_batch_read_ahead_and_a_new_loader_reads_it_again(tmp_path: Path) -> None:
    size = await _spool(tmp_path / "spool", 6, 5)
    store = DuckDbStore(tmp_path / "e.duckdb")
    loader = Loader(store, FileSpoolSource(tmp_path / "spool"), budget=3 * size)
    assert await loader.run_once()
    assert loader._ahead is not None
    await loader.close()
    assert loader._ahead is None
    again = Loader(store, FileSpoolSource(tmp_path / "spool"), budget=3 * size)
    await again.drain()
    assert store.fetch("SELECT count(*), count(DISTINCT message_id) FROM events") == [(30, 30)]
    assert loader.stats.records + again.stats.records == 6


def test_rows_of_a_batch_stay_as_they_were_after_the_next_batch_reuses_the_raw_buffer() -> None:
    columnar = ColumnarNormaliser()
    first = [
        (f"a{n}", _record([_event(f"a{n}-{i}", properties={"k": "x" * 40}) for i in range(3)], "a"))
        for n in range(4)
    ]
    events, _ = columnar.normalise(CatalogSnapshot(), first)
    before = _rows(events)
    second = [
        (f"b{n}", _record([_event(f"b{n}-{i}", properties={"k": "y" * 40}) for i in range(3)], "b"))
        for n in range(4)
    ]
    columnar.normalise(CatalogSnapshot(), second)  # the same buffer, other bytes
    columnar.normalise(CatalogSnapshot(), second[:1])  # a smaller batch, at the same place
    assert _rows(events) == before
    assert {r["properties"]["k"] for r in before} == {"x" * 40}
