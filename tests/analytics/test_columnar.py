"""The SQL normalisation gives exactly the rows of the Python reference, on ordinary and odd input."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpaas.analytics.catalog.checker import CatalogSnapshot, compile_definition
from mpaas.analytics.loader.columnar import ColumnarNormaliser
from mpaas.analytics.loader.normalise import Normaliser
from mpaas.analytics.spool.record import NATIVE, SEGMENT, SERVER, RecordHeader, encode

CONTEXT = {
    "library": {"name": "analytics-python", "version": "2.4.0"},
    "app": {"version": "5.3.0"},
    "os": {"name": "Android", "version": "14"},
    "device": {"model": "Pixel 8", "type": "android", "id": "dev-1"},
    "packages": [{"kind": "h5", "id": "home", "version": "1.2.0"}],
}


COLUMNAR = ColumnarNormaliser()  # one DuckDB for the module, as the loader keeps one


def record(raw: Any, source: str = SEGMENT, endpoint: str = "batch", rid: str = "r") -> bytes:
    body = raw if isinstance(raw, bytes) else orjson.dumps(raw)
    return encode(RecordHeader(source, endpoint, "bank", "production", 1_800_000_000_000, rid), body)


def track(**fields: Any) -> dict[str, Any]:
    return {"type": "track", "event": "e", "userId": "u", "messageId": "m", **fields}


BATCHES: list[Any] = [
    {
        "sentAt": "2020-01-01T00:00:10Z",
        "batch": [
            track(),
            track(messageId=5, userId=7, anonymousId=""),
            track(messageId=None, timestamp="2020-01-01T00:00:00Z"),
            track(timestamp=5, sentAt=""),
            track(sentAt=0),
        ],
    },
    {
        "batch": [
            track(context=CONTEXT, properties={"a": 1, "s": 'x\u00e9\n"q'}),
            track(context={"device": "str", "os": {"name": "iOS"}}),
            track(context={"os": {"name": ""}, "library": {"name": "", "version": "1"}}),
            track(context={"library": {"name": "n", "version": 3}}),
        ]
    },
    {  # personal numbers (masked in Python), odd properties
        "batch": [
            track(properties={"phone": "13812345678"}),
            track(properties={"n": 4111111111111111}, context={"ip": "１３８１２３４５６７８"}),
            track(properties="str"),
            track(properties=[1]),
            track(properties=None),
        ]
    },
    {
        "batch": [
            track(type="identify", traits={"tier": "gold"}),
            track(type="identify", context={"traits": {"a": 1}}),
            track(type="identify"),
            track(type="alias", previousId="old"),
            track(type="group", groupId=9),
            track(type="page", name="home"),
            track(type="screen", name=5),
            track(type="page"),
        ]
    },
    {"batch": [track(type="unknown"), track(type=""), "str", 5, None, track(event=""), track(event=7), {}]},
    {
        "batch": [
            track(event="ux.app_start", properties={"kind": "cold", "duration_ms": 5}),
            track(event="declared", properties={"x": 1, "y": 2}),
        ]
    },
    {"batch": [track(context={"a": 1})], "context": {"b": 2}},
    {"batch": [track()], "context": {"b": 2}, "userId": "top", "anonymousId": 5},
    {
        "batch": [
            track(userId=None, anonymousId=None),
            track(userId=True),
            track(userId=1.5),
            track(userId="x" * 300),
        ]
    },
    {"batch": "not a list"},
    [1, 2],
]


def records() -> list[tuple[str, bytes]]:
    bodies = [record(b, rid=f"r{i}") for i, b in enumerate(BATCHES)]
    bodies += [record(b"not json", rid="bad"), record(b"\xff\xfe{}", rid="bad2"), b"not a spool record"]
    single = {
        "event": "single",
        "userId": "u",
        "sentAt": "2020-01-01T00:00:00Z",
        "timestamp": "2020-01-01T00:00:00Z",
    }
    bodies += [
        record({"type": "track", **single}, endpoint="track"),
        record({"userId": "u", "traits": {"a": 1}}, endpoint="identify"),
    ]
    native = {
        "events": [
            {"event": "n1", "message_id": "n1", "properties": {"k": "v"}},
            {"type": "identify", "user_id": 3},
        ],
        "context": {"app": {"version": "1"}},
        "anonymous_id": "an",
        "sent_at": "2020-01-01T00:00:00Z",
    }
    bodies += [
        record(native, NATIVE, "events"),
        record({"events": [{"event": "x", "context": CONTEXT}]}, NATIVE, "events"),
    ]
    server = {
        "events": [{"event": "push.sent", "message_id": "push:1:sent", "properties": {"push_id": "p"}}],
        "context": {},
    }
    bodies += [record(server, SERVER, "emit")]
    return [(f"id{i}", body) for i, body in enumerate(bodies)]


def rows(table: pa.Table) -> list[dict[str, Any]]:
    out = table.to_pylist()
    for row in out:
        for key in ("properties", "context", "packages"):
            if row.get(key) is not None:
                row[key] = json.loads(row[key])  # the same JSON, whichever side wrote it
    return sorted(out, key=lambda r: (r.get("seq") or 0, repr(r)))


def test_sql_and_python_paths_give_the_same_rows() -> None:
    snapshot = CatalogSnapshot(
        {
            ("bank", "declared"): compile_definition(
                "reject", {"type": "object", "properties": {"x": {"type": "integer"}}}, ()
            )
        }
    )
    batch = records()
    reference = Normaliser(snapshot)
    for ordinal, (record_id, body) in enumerate(batch):
        reference.add(record_id, body, ordinal)
    events, invalid = ColumnarNormaliser().normalise(snapshot, batch)
    assert events.schema == reference.events.table().schema
    assert rows(events) == rows(reference.events.table())
    assert rows(invalid) == rows(reference.invalid.table())
    masked = [r for r in rows(events) if any(f.startswith("masked:") for f in r["flags"])]
    assert len(masked) == 2 and "removed:y" in {f for r in rows(events) for f in r["flags"]}


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
    st.sampled_from(["13812345678", "4111 1111 1111 1111", "２０２６", "2026-12-03T10:00:00Z", 'x\\y"z']),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)
contexts = st.fixed_dictionaries(
    {},
    optional={
        "app": st.fixed_dictionaries({}, optional={"version": values}) | values,
        "os": st.fixed_dictionaries({}, optional={"name": values, "version": values}),
        "device": st.fixed_dictionaries({}, optional={"type": values, "model": values, "id": values}),
        "library": st.fixed_dictionaries({}, optional={"name": values, "version": values}),
        "packages": values,
        "traits": values,
    },
)
messages = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["track", "identify", "page", "screen", "group", "alias", "", "other"])
        | scalars,
        "event": st.sampled_from(["e", "declared", "ux.app_start", ""]) | scalars,
        "name": values,
        "messageId": st.sampled_from(["m1", "m2"]) | scalars,
        "userId": scalars,
        "anonymousId": scalars,
        "previousId": scalars,
        "groupId": scalars,
        "timestamp": scalars,
        "sentAt": scalars,
        "properties": values,
        "traits": values,
        "context": contexts | values,
    },
)
batches = st.fixed_dictionaries(
    {"batch": st.lists(messages | scalars, max_size=4)},
    optional={"context": contexts, "userId": scalars, "anonymousId": scalars, "sentAt": scalars},
)


@settings(deadline=None, max_examples=10, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(batches, min_size=1, max_size=4), st.lists(messages, max_size=2))
def test_any_batch_gives_the_same_rows_on_both_paths(bodies: list[Any], singles: list[Any]) -> None:
    snapshot = CatalogSnapshot(
        {("bank", "declared"): compile_definition("reject", {"type": "object", "properties": {"x": {}}}, ())}
    )
    batch = [(f"b{i}", record(b, rid=f"b{i}")) for i, b in enumerate(bodies)]
    batch += [(f"s{i}", record(m, endpoint="track", rid=f"s{i}")) for i, m in enumerate(singles)]
    batch += [
        (f"n{i}", record({"events": b["batch"], **b}, NATIVE, "events", f"n{i}"))
        for i, b in enumerate(bodies)
    ]
    reference = Normaliser(snapshot)
    for ordinal, (record_id, body) in enumerate(batch):
        reference.add(record_id, body, ordinal)
    events, invalid = COLUMNAR.normalise(snapshot, batch)
    assert rows(events) == rows(reference.events.table())
    assert rows(invalid) == rows(reference.invalid.table())
