"""The loader: clock correction, dedupe (across batches, restarts, 7 days), identity links, invalid events."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from mpaas.analytics.catalog.checker import CatalogSnapshot
from mpaas.analytics.loader.loader import Loader
from mpaas.analytics.loader.normalise import Normaliser
from mpaas.analytics.spool.files import FileSpool
from mpaas.analytics.spool.reader import FileSpoolSource
from mpaas.analytics.spool.record import SEGMENT, RecordHeader, encode
from mpaas.analytics.store.base import LoadBatch
from mpaas.analytics.store.duckdb import DuckDbStore


@pytest.fixture(params=["sqlite"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def record(
    raw: dict[str, Any], endpoint: str = "batch", received_ms: int | None = None, rid: str = "r"
) -> bytes:
    received = received_ms if received_ms is not None else time.time_ns() // 1_000_000
    return encode(RecordHeader(SEGMENT, endpoint, "bank", None, received, rid), orjson.dumps(raw))


async def spooled(directory: Path, *bodies: bytes) -> None:
    spool = FileSpool(directory)
    await spool.start()
    for body in bodies:
        await spool.append(body)
    await spool.close()


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


async def test_clocks_are_corrected_as_segment_does(tmp_path: Path) -> None:
    received_ms = 1_800_000_000_000  # fixed receivedAt: 2027-01-15T08:00:00Z
    received = datetime.fromtimestamp(received_ms / 1000, UTC)
    body = {
        "sentAt": "2020-01-01T00:00:10.000Z",  # the phone's clock is years behind
        "batch": [
            {
                "type": "track",
                "event": "a",
                "userId": "u",
                "messageId": "1",
                "timestamp": "2020-01-01T00:00:00.000Z",
            },
            {"type": "track", "event": "b", "userId": "u", "messageId": "2"},
            {"type": "track", "event": "c", "userId": "u", "messageId": "3", "timestamp": "yesterday"},
            {
                "type": "track",
                "event": "d",
                "userId": "u",
                "messageId": "4",
                "timestamp": "2020-01-01T08:00:00+08:00",
            },
        ],
    }
    single = {
        "type": "track",
        "event": "e",
        "userId": "u",
        "messageId": "5",
        "timestamp": "2026-06-01T00:00:00Z",
    }
    await spooled(
        tmp_path / "spool", record(body, received_ms=received_ms), record(single, "track", received_ms)
    )
    store = DuckDbStore(tmp_path / "events.duckdb")
    await Loader(store, FileSpoolSource(tmp_path / "spool")).drain()
    rows = dict(
        (e, (ts, [f for f in flags if f != "undeclared"]))
        for e, ts, flags in store.fetch("SELECT event, timestamp, flags FROM events ORDER BY event")
    )
    assert rows["a"] == (received - timedelta(seconds=10), [])  # receivedAt - (sentAt - timestamp)
    assert rows["b"] == (received, [])  # no timestamp: receivedAt
    assert rows["c"] == (received, ["bad_timestamp"])
    assert rows["d"] == (received - timedelta(seconds=10), [])  # offsets are honoured
    assert rows["e"] == (utc("2026-06-01T00:00:00+00:00"), [])  # no sentAt: as sent


async def test_duplicates_are_dropped_within_and_across_batches_and_restarts(tmp_path: Path) -> None:
    def msg(i: int) -> dict[str, Any]:
        return {"type": "track", "event": "e", "anonymousId": "a", "messageId": f"m{i}"}

    await spooled(
        tmp_path / "spool",
        record({"batch": [msg(1), msg(2), msg(1)]}),  # a duplicate within the batch
        record({"batch": [msg(2), msg(3)]}),  # an SDK retry
    )
    store = DuckDbStore(tmp_path / "events.duckdb")
    first = Loader(store, FileSpoolSource(tmp_path / "spool"))
    await first.drain()
    assert (first.stats.received, first.stats.inserted) == (5, 3)
    await spooled(tmp_path / "spool", record({"batch": [msg(3), msg(4)]}, rid="later"))
    again = Loader(store, FileSpoolSource(tmp_path / "spool"))  # a restarted loader, same store
    await again.drain()
    assert again.stats.inserted == 1
    assert store.fetch("SELECT message_id, count(*) FROM events GROUP BY 1 ORDER BY 1") == [
        ("m1", 1),
        ("m2", 1),
        ("m3", 1),
        ("m4", 1),
    ]


def test_dedupe_reaches_back_at_least_seven_days(tmp_path: Path) -> None:
    store = DuckDbStore(tmp_path / "events.duckdb", dedupe_days=7)
    now_ms = time.time_ns() // 1_000_000
    for received in (now_ms - int(timedelta(days=6, hours=23).total_seconds() * 1000), now_ms):
        n = Normaliser(CatalogSnapshot())
        n.add(
            "x",
            record(
                {"batch": [{"type": "track", "event": "e", "userId": "u", "messageId": "same"}]},
                received_ms=received,
            ),
        )
        store.load(LoadBatch(n.events.table(), n.invalid.table()))
    assert store.fetch("SELECT count(*) FROM events") == [(1,)]


async def test_identity_links_and_invalid_events(tmp_path: Path) -> None:
    body = {
        "batch": [
            {
                "type": "identify",
                "userId": 42,
                "anonymousId": "anon-1",
                "messageId": "i1",
                "traits": {"tier": "gold"},
            },
            {"type": "alias", "userId": "42", "previousId": "old-7", "messageId": "a1"},
            {"type": "group", "userId": "42", "groupId": "g1", "messageId": "g1", "traits": {"name": "corp"}},
            {"type": "track", "userId": "42", "messageId": "t1"},  # no event name
            {"type": "unknown", "userId": "42", "messageId": "u1"},
            "not an object",
        ]
    }
    await spooled(tmp_path / "spool", record(body))
    store = DuckDbStore(tmp_path / "events.duckdb")
    await Loader(store, FileSpoolSource(tmp_path / "spool")).drain()
    links = store.fetch(
        "SELECT kind, user_id, anonymous_id, previous_id, group_id, traits FROM identity_links ORDER BY kind"
    )
    assert links == [
        ("alias", "42", None, "old-7", None, "{}"),
        ("group", "42", None, None, "g1", '{"name":"corp"}'),
        ("identify", "42", "anon-1", None, None, '{"tier":"gold"}'),
    ]
    reasons = sorted(r[0] for r in store.fetch("SELECT reason FROM invalid_events"))
    assert reasons == [
        "a track event needs an event name",
        "event is not an object",
        "unknown event type 'unknown'",
    ]


async def test_a_restarted_loader_reads_on_from_the_committed_positions(tmp_path: Path) -> None:
    spool = FileSpool(tmp_path / "spool")  # stays open: its segment is live, never deleted
    await spool.start()

    def one(i: int) -> bytes:
        return record(
            {"batch": [{"type": "track", "event": "e", "userId": "u", "messageId": f"p{i}"}]}, rid=f"p{i}"
        )

    for i in range(3):
        await spool.append(one(i))
    store = DuckDbStore(tmp_path / "events.duckdb")
    first = Loader(store, FileSpoolSource(tmp_path / "spool"))
    await first.drain()
    assert first.stats.records == 3
    for i in range(3, 5):
        await spool.append(one(i))
    store.close()
    store = DuckDbStore(tmp_path / "events.duckdb")  # as after a crash: positions come from the file
    second = Loader(store, FileSpoolSource(tmp_path / "spool"))
    await second.drain()
    assert (second.stats.records, second.stats.inserted) == (2, 2)  # only what was not yet loaded
    await spool.close()
