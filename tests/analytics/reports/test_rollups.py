"""The rollups (ADR 0014) answer exactly as the raw events do, on both engines.

``StoreEngine(store, dialect, rollups=False)`` makes every report read the raw events,
the reference path; the default reads the store's rollups where a report can. Each test
loads its events through the store's own ``load`` (batch by batch, as the loader does),
into its own app, so one store per engine serves the whole module.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mpaas.analytics.loader.rows import EVENT_SCHEMA, INVALID_SCHEMA, Rows
from mpaas.analytics.reports.dialect import CLICKHOUSE, DUCKDB
from mpaas.analytics.reports.engine import StoreEngine
from mpaas.analytics.reports.params import FunnelStep, ReportQuery, TimeRange
from mpaas.analytics.reports.queries import active_users, funnel, new_vs_returning, retention, stickiness
from mpaas.analytics.store.base import LoadBatch
from mpaas.analytics.store.clickhouse import ChdbConnection, ClickHouseStore
from mpaas.analytics.store.duckdb import DuckDbStore

#: 2026-03-01 00:00 in Asia/Shanghai (the stores' default rollup zone)
DAY0 = datetime(2026, 2, 28, 16, 0, tzinfo=UTC)
_apps = itertools.count()
#: (minutes after DAY0, type, user id, anonymous id, previous id, event, source)
Event = tuple[int, str, str | None, str | None, str | None, str, str]


@pytest.fixture(scope="module", params=["duckdb", "clickhouse"])
def store(request: pytest.FixtureRequest) -> Iterator[Any]:
    s: Any = DuckDbStore(":memory:") if request.param == "duckdb" else ClickHouseStore(ChdbConnection())
    yield s
    s.close()


def _engines(store: Any) -> tuple[StoreEngine, StoreEngine]:
    dialect = DUCKDB if isinstance(store, DuckDbStore) else CLICKHOUSE
    return StoreEngine(store, dialect), StoreEngine(store, dialect, rollups=False)


def _load(store: Any, app: str, events: Sequence[Event], first_seq: int = 0) -> None:
    rows = Rows(EVENT_SCHEMA)
    received = datetime(2026, 4, 1, tzinfo=UTC)
    for seq, (minutes, kind, user, anon, prev, name, source) in enumerate(events, start=first_seq):
        when = DAY0 + timedelta(minutes=minutes)
        rows.rows.append(
            (seq, app, source, None, kind, name if kind == "track" else None, f"m{seq:05d}", user, anon,
             prev, None, when.isoformat(), None, received, f"1.{minutes % 3}", "ios", "ios", None, "x", None, None,
             None, "{}", "{}", [])
        )  # fmt: skip
    store.load(LoadBatch(events=rows.table(), invalid=Rows(INVALID_SCHEMA).table()))


def _answers(engine: StoreEngine, app: str) -> dict[str, Any]:
    week = ReportQuery(app, TimeRange.days(date(2026, 3, 2), date(2026, 3, 9)))
    steps = [FunnelStep("s1"), FunnelStep("s2"), FunnelStep("s3")]
    return {
        "dau": active_users(engine, week),
        "retention": retention(engine, week, periods=4),
        "on_or_after": retention(engine, week, periods=4, mode="on_or_after"),
        "new": new_vs_returning(engine, week),
        "sticky": stickiness(engine, week),
        "funnel": funnel(engine, week, steps, window=timedelta(days=2)),
        "by_version": funnel(
            engine, dataclasses.replace(week, breakdown="app_version"), steps, window=timedelta(days=2)
        ),
        # a step repeated: one event may be step 1 of a chain and step 3 of another
        "repeat": funnel(engine, week, [*steps[:2], steps[0]], window=timedelta(hours=30)),
    }


def _same(store: Any, app: str) -> dict[str, Any]:
    rolled, raw = _engines(store)
    assert rolled.rollup_zone() == "Asia/Shanghai"  # the rollup path is on
    answers = _answers(rolled, app)
    assert answers == _answers(raw, app)
    return answers


def _wau(answers: dict[str, Any]) -> list[int]:
    return [d.wau for d in answers["dau"].days]


def test_a_late_identify_moves_a_devices_past_days_to_its_user(store: Any) -> None:
    app = f"late{next(_apps)}"
    day = 24 * 60
    # device d9 anonymous on 03-02 and 03-03; user u9 (on device d8) on 03-04
    _load(store, app, [(day + 60, "track", None, "d9", None, "s1", "native"),
                       (2 * day + 60, "track", None, "d9", None, "s2", "native"),
                       (3 * day + 30, "track", "u9", "d8", None, "s3", "native")])  # fmt: skip
    before = _same(store, app)
    assert _wau(before)[2] == 2  # d9 and u9: two persons
    assert before["funnel"].groups[0].steps[2].count == 0
    # a later batch: d9 identifies as u9 on 03-05; its earlier days become u9's
    _load(store, app, [(4 * day, "identify", "u9", "d9", None, "", "native")], first_seq=10)
    after = _same(store, app)
    assert _wau(after)[2] == 1
    assert [c.size for c in after["retention"].cohorts][:3] == [1, 0, 0]  # u9 first seen 03-02
    assert after["funnel"].groups[0].steps[2].count == 1  # s1 03-02, s2 03-03, s3 03-04
    # an identify loaded later but stamped earlier wins: d9 was u7's first
    _load(store, app, [(30, "identify", "u7", "d9", None, "", "native")], first_seq=20)
    earliest = _same(store, app)
    assert _wau(earliest)[2] == 2  # d9's days are u7's; u9's own day and identify stay u9's


def test_an_alias_merges_a_previous_id(store: Any) -> None:
    app = f"alias{next(_apps)}"
    day = 24 * 60
    _load(store, app, [(day + 60, "track", "old1", None, None, "s1", "native"),
                       (3 * day, "track", "new1", None, None, "s2", "native")])  # fmt: skip
    assert _same(store, app)["sticky"].persons_by_days_active[0] == 2
    _load(store, app, [(3 * day + 5, "alias", "new1", None, "old1", "", "native")], first_seq=10)
    assert _same(store, app)["sticky"].persons_by_days_active[:2] == (0, 1)  # one person, two days


def test_another_time_zone_or_a_filter_reads_the_raw_events(store: Any) -> None:
    app = f"tz{next(_apps)}"
    # 03-02 23:30 in Shanghai is 03-02 15:30 UTC and 03-02 10:30 in New York
    _load(store, app, [(2 * 24 * 60 - 30, "track", "u1", None, None, "s1", "native")])
    rolled, raw = _engines(store)
    for tz in ("UTC", "America/New_York"):
        query = ReportQuery(app, TimeRange.days(date(2026, 3, 1), date(2026, 3, 3), tz), tz=tz)
        assert active_users(rolled, query) == active_users(raw, query)
        assert [d.dau for d in active_users(rolled, query).days] == [0, 1, 0]
    # a range that does not end at a local midnight: the raw path, cut at the instant
    cut = ReportQuery(app, TimeRange(DAY0, DAY0 + timedelta(days=1, hours=23)))
    assert [d.dau for d in active_users(rolled, cut).days] == [0, 0]


def _at(minutes: int, name: str) -> Event:
    return (minutes, "track", "u1", None, None, name, "native")


_IDS = st.sampled_from([None, "u1", "u2", "u3"])
_ANON = st.sampled_from([None, "d1", "d2", "d3", "d4"])
_EVENT = st.tuples(
    # minutes after DAY0: mostly on a coarse grid, so that times tie
    st.one_of(st.integers(0, 47).map(lambda n: n * 360 + 30), st.integers(0, 12 * 24 * 60)),
    st.sampled_from(["track", "track", "track", "identify", "alias"]),
    _IDS,
    _ANON,
    st.sampled_from([None, "u1", "d2", "d3"]),
    st.sampled_from(["s1", "s2", "s3", "x"]),
    st.sampled_from(["native", "native", "native", "server"]),
)


def test_rollups_answer_as_the_raw_events(store: Any) -> None:
    """Random small event sets (ties, identify and alias in any order, server events, events
    without ids), loaded in one to three batches: after each, every report the rollups serve
    answers as the raw path (and on DuckDB the funnel's ASOF joins as its reference window
    passes). Fewer examples on chdb, whose every statement costs milliseconds."""

    @settings(max_examples=15 if isinstance(store, DuckDbStore) else 3, deadline=None)
    @given(batches=st.lists(st.lists(_EVENT, min_size=1, max_size=12), min_size=1, max_size=3))
    # times that tie, and step 2 reached twice (its gap is measured at the first time)
    @example(batches=[[_at(1500, "s1"), _at(1500, "s2"), _at(1600, "s2"), _at(1600, "s1"), _at(1800, "s2")]])
    def check(batches: list[list[Event]]) -> None:
        app = f"h{next(_apps)}"
        seq = 0
        for batch in batches:
            _load(store, app, batch, first_seq=seq)
            seq += len(batch)
            _same(store, app)

    check()


def test_a_new_engine_version_rehashes_every_stored_person_key(tmp_path: Any) -> None:
    """Regression: ``events.own`` is DuckDB's ``hash()`` of the person, which may change
    between DuckDB versions. Reopened by a new version, the store rebuilt the rollups (new
    hashes for the identity links) but kept every stored ``own``, so a device's anonymous
    events no longer met the user it identified as on the rollup path."""
    import duckdb

    path = tmp_path / "events.duckdb"
    store = DuckDbStore(path)
    app = "upgrade"
    day = 24 * 60
    _load(store, app, [(day + 60, "track", None, "d9", None, "s1", "native"),
                       (2 * day + 60, "track", "u9", "d9", None, "s2", "native"),
                       (2 * day + 61, "identify", "u9", "d9", None, "", "native")])  # fmt: skip
    assert _wau(_same(store, app))[2] == 1
    store.close()
    con = duckdb.connect(str(path))  # as an older engine would have left the file:
    con.execute("UPDATE events SET own = own + 1")  # other hashes
    con.execute("UPDATE rollup_state SET value = '0.0.1' WHERE name = 'engine'")
    con.close()
    reopened = DuckDbStore(path)
    try:
        assert _wau(_same(reopened, app))[2] == 1
    finally:
        reopened.close()
