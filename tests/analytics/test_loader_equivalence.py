"""The loader's fast paths give the rows of the reference rules.

- Normalisation over many records (several Arrow batches, so DuckDB splits the work between
  threads), with records that are not JSON anywhere among them (the batch is parsed again
  under ``try``): the same rows as the Python normaliser.
- The store's dedupe (the first row of each ``(app, message_id)`` by ``seq``, whatever the
  row order; nothing stored already; nothing of a forgotten user): the same events and
  identity links as a model of the rule in Python, over one or several batches.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpaas.analytics.catalog.checker import CatalogSnapshot
from mpaas.analytics.loader.columnar import CHUNK_RECORDS, ColumnarNormaliser
from mpaas.analytics.loader.normalise import Normaliser
from mpaas.analytics.loader.rows import EVENT_SCHEMA, INVALID_SCHEMA, Rows
from mpaas.analytics.spool.record import SEGMENT, RecordHeader, encode
from mpaas.analytics.store.base import Forget, LoadBatch
from mpaas.analytics.store.duckdb import DuckDbStore

COLUMNAR = ColumnarNormaliser()
CONTEXT = {"app": {"version": "5.3.0"}, "os": {"name": "Android", "version": "14"}, "locale": "zh-CN"}


def _record(raw: bytes, rid: str) -> bytes:
    return encode(RecordHeader(SEGMENT, "batch", "bank", None, 1_800_000_000_000, rid), raw)


def _body(n: int, events: int) -> bytes:
    batch = [
        {
            "type": "track" if i % 3 else "identify",
            "event": f"e{i}",
            "userId": f"u{n % 7}",
            "anonymousId": f"a{n}",
            "messageId": f"m{n}-{i}" if i % 4 else f"shared-{n % 5}",
            "timestamp": "2026-12-03T10:00:00.000+00:00",
            "properties": {"amount": n * 10 + i, "screen": "transfer"},
            "traits": {"tier": "gold"},
            "context": CONTEXT,
        }
        for i in range(events)
    ]
    return orjson.dumps({"batch": batch, "sentAt": "2026-12-03T10:00:05.000Z"})


def _rows(table: pa.Table) -> list[dict[str, Any]]:
    out = table.to_pylist()
    for row in out:
        for key in ("properties", "context", "packages"):
            if row.get(key) is not None:
                row[key] = json.loads(row[key])
    return sorted(out, key=lambda r: (r.get("seq") or 0, repr(r)))


@settings(deadline=None, max_examples=6, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(CHUNK_RECORDS + 1, 3 * CHUNK_RECORDS),
    st.lists(st.integers(0, 3 * CHUNK_RECORDS), max_size=3),
    st.integers(1, 3),
)
def test_many_records_with_broken_ones_anywhere_give_the_reference_rows(
    count: int, broken: list[int], per: int
) -> None:
    batch = []
    for n in range(count):
        raw = b'{"batch": [' if n in broken else _body(n, per)
        batch.append((f"r{n}", _record(raw, f"r{n}")))
    reference = Normaliser(CatalogSnapshot())
    for ordinal, (record_id, body) in enumerate(batch):
        reference.add(record_id, body, ordinal)
    events, invalid = COLUMNAR.normalise(CatalogSnapshot(), batch)
    assert _rows(events) == _rows(reference.events.table())
    assert _rows(invalid) == _rows(reference.invalid.table())
    assert events.num_rows == sum(per for n in range(count) if n not in broken)


RECEIVED = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
#: (app, message_id, user_id, type, tag): the tag tells rows with the same key apart.
Event = tuple[str, str, str, str, int]
events_st = st.lists(
    st.tuples(
        st.sampled_from(["a", "b"]),
        st.sampled_from(["m1", "m2", "m3", "m4"]),
        st.sampled_from(["u1", "u2", "gone"]),
        st.sampled_from(["track", "identify", "alias"]),
    ),
    max_size=12,
)


def _batch(events: list[Event], seqs: list[int]) -> LoadBatch:
    rows = Rows(EVENT_SCHEMA)
    for seq, (app, mid, user, kind, tag) in zip(seqs, events, strict=True):
        rows.rows.append(
            (seq, app, "segment", None, kind, "e" if kind == "track" else None, mid, user, f"anon-{tag}",
             "prev" if kind == "alias" else None, None, "2026-12-03T09:59:00Z", None, RECEIVED, None, None,
             None, None, None, None, None, None, orjson.dumps({"tag": tag}).decode(), "{}", [])
        )  # fmt: skip
    return LoadBatch(rows.table(), INVALID_SCHEMA.empty_table())


@settings(deadline=None, max_examples=25, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(events_st, min_size=1, max_size=3), st.booleans(), st.randoms(use_true_random=False))
def test_the_store_keeps_the_first_row_of_each_message_by_seq(
    batches: list[list[tuple[str, str, str, str]]], forget: bool, rnd: random.Random
) -> None:
    store = DuckDbStore(":memory:")
    if forget:  # before any load: nothing linked, only the user's own events are refused
        store.forget(Forget(1, None, "gone", RECEIVED + timedelta(days=1)))
    stored: dict[tuple[str, str], int] = {}  # the model: (app, message_id) -> tag kept
    links: dict[tuple[str, str], int] = {}
    tag = 0
    for raw in batches:
        events = []
        for app, mid, user, kind in raw:
            events.append((app, mid, user, kind, tag))
            tag += 1
        seqs = rnd.sample(range(1000), len(events))  # seq order is not row order
        first: dict[tuple[str, str], tuple[int, Event]] = {}
        for seq, event in zip(seqs, events, strict=True):
            key = (event[0], event[1])
            if key in stored or (forget and event[2] == "gone"):
                continue
            if key not in first or seq < first[key][0]:
                first[key] = (seq, event)
        for key, (_seq, event) in first.items():
            stored[key] = event[4]
            if event[3] in ("identify", "alias"):
                links[key] = event[4]
        result = store.load(_batch(events, seqs))
        assert result.inserted == len(first)
    got = store.fetch("SELECT app, message_id, properties->>'tag' FROM events")
    assert {(a, m): int(t) for a, m, t in got} == stored and len(got) == len(stored)
    got = store.fetch("SELECT app, message_id, traits->>'tag' FROM identity_links")
    assert {(a, m): int(t) for a, m, t in got} == links and len(got) == len(links)
    store.close()
