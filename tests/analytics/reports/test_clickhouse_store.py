"""The ClickHouse event store (through chdb) against the DuckDB store: the same batches give
the same rows; dedupe, clock correction, positions and forget behave alike.

Not covered here: clickhouse-connect against a real server (no server on this machine);
the store speaks to it through the same four calls (command, rows, insert_arrow, close).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpaas.analytics.loader.rows import EVENT_SCHEMA, INVALID_SCHEMA, Rows
from mpaas.analytics.reports.dialect import CLICKHOUSE, DUCKDB
from mpaas.analytics.store.base import Forget, LoadBatch
from mpaas.analytics.store.clickhouse import ChdbConnection, ClickHouseStore
from mpaas.analytics.store.duckdb import DuckDbStore
from mpaas.errors import ConfigError
from mpaas.settings import Settings

RECEIVED = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
_databases = itertools.count()


def event(
    mid: str,
    *,
    user: str | None = "u1",
    anon: str | None = "a1",
    kind: str = "track",
    ts: str | None = "2026-03-01T11:59:00Z",
    sent: str | None = None,
    received: datetime = RECEIVED,
) -> tuple[Any, ...]:
    return (
        0,
        "bank",
        "native",
        None,
        kind,
        "open" if kind == "track" else None,
        mid,
        user,
        anon,
        None,
        None,
        ts,
        sent,
        received,
        "2.0",
        "ios",
        "ios",
        None,
        "iPhone15",
        None,
        None,
        None,
        '{"k": 1}',
        "{}",
        [],
    )


def batch(
    *events: tuple[Any, ...], positions: dict[str, int] | None = None, stale: tuple[str, ...] = ()
) -> LoadBatch:
    rows = Rows(EVENT_SCHEMA)
    rows.rows = [(i, *e[1:]) for i, e in enumerate(events)]
    return LoadBatch(rows.table(), Rows(INVALID_SCHEMA).table(), positions or {}, stale)


@pytest.fixture(params=["duckdb", "clickhouse"])
def store(request: pytest.FixtureRequest) -> Iterator[Any]:
    if request.param == "duckdb":
        made: Any = DuckDbStore(":memory:")
    else:
        made = ClickHouseStore(ChdbConnection(database=f"store_test_{next(_databases)}"))
    yield made
    made.close()


def epoch_ms(store: Any, column: str) -> str:
    return (DUCKDB if isinstance(store, DuckDbStore) else CLICKHOUSE).epoch_ms(column)


def test_dedupe_within_and_across_batches(store: Any) -> None:
    first = store.load(batch(event("m1"), event("m1"), event("m2"), positions={"seg": 3}))
    assert (first.received, first.inserted) == (3, 2)
    again = store.load(batch(event("m2"), event("m3"), positions={"seg": 5}))
    assert (again.received, again.inserted) == (2, 1)
    assert store.fetch("SELECT message_id FROM events ORDER BY message_id") == [("m1",), ("m2",), ("m3",)]
    assert store.positions() == {"seg": 5}
    store.load(batch(positions={"seg2": 1}, stale=("seg",)))
    assert store.positions() == {"seg2": 1}


def test_clock_correction_as_segment_does_it(store: Any) -> None:
    store.load(
        batch(
            # the phone is an hour fast: sent 12:59 for an event at 12:58 received at 12:00 -> 11:59
            event("fast", ts="2026-03-01T12:58:00Z", sent="2026-03-01T12:59:00Z"),
            event("nosent", ts="2026-03-01T08:00:00+08:00"),
            event("nots", ts=None),
            event("bad", ts="yesterday-ish"),
        )
    )
    found = store.fetch(
        f"SELECT message_id, {epoch_ms(store, 'timestamp')}, flags FROM events ORDER BY message_id"
    )
    base = int(RECEIVED.timestamp() * 1000)
    assert [(m, t - base, list(f)) for m, t, f in found] == [
        ("bad", 0, ["bad_timestamp"]),
        ("fast", -60_000, []),
        ("nosent", -12 * 3600_000, []),  # 08:00+08:00 is 00:00 UTC, 12 h before receipt
        ("nots", 0, []),
    ]


def test_identity_links_and_forget(store: Any) -> None:
    store.load(
        batch(
            event("i1", kind="identify", user="u1", anon="a1"),
            event("e1", user=None, anon="a1"),
            event("e2", user="u2", anon="a2"),
        )
    )
    assert store.fetch("SELECT kind, user_id, anonymous_id FROM identity_links") == [("identify", "u1", "a1")]
    requested = RECEIVED + timedelta(minutes=1)
    assert store.forget(Forget(1, "bank", "u1", requested)) == (2, 1)
    assert store.fetch("SELECT message_id FROM events") == [("e2",)]
    # an event of a1 still in the spool (received before the request) is not loaded later
    late = store.load(batch(event("e3", user=None, anon="a1"), event("e4", user="u3", anon="a3")))
    assert late.inserted == 1
    assert store.fetch("SELECT message_id FROM events ORDER BY message_id") == [("e2",), ("e4",)]


@settings(max_examples=12, deadline=None)
@given(text=st.text(st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), max_size=30))
def test_string_literals_round_trip_on_both_engines(text: str) -> None:
    """Values reach SQL as literals: quotes and backslashes must not escape them."""
    duck, chdb = _connections()
    assert duck.fetch(f"SELECT {DUCKDB.text(text)}") == [(text,)]
    assert chdb.rows(f"SELECT {CLICKHOUSE.text(text)}") == [(text,)]


_shared: list[Any] = []


def _connections() -> tuple[DuckDbStore, ChdbConnection]:
    if not _shared:
        _shared.extend([DuckDbStore(":memory:", read_only=False), ChdbConnection(database="literals")])
    return _shared[0], _shared[1]


def test_the_analytics_url_setting() -> None:
    url = "clickhouse://reports:s3cret@ch.bank.internal:8123/events"
    settings = Settings.from_env({"MPAAS_ANALYTICS_URL": url})
    assert settings.analytics_url == url
    assert "s3cret" not in str(settings.display()["analytics_url"])
    assert Settings.from_env({}).analytics_url is None  # DuckDB in the data directory
    with pytest.raises(ConfigError, match="MPAAS_ANALYTICS_URL"):
        Settings.from_env({"MPAAS_ANALYTICS_URL": "mysql://x/y"})
