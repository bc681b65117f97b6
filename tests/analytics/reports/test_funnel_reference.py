"""Funnels against a plain Python reference of docs/analytics.md's definition, on both engines.

The reference enumerates every chain of step events (strictly increasing times, each step's
event after the previous one's) instead of carrying starts forward, so it shares no shortcut
with the SQL. Every funnel runs through the store's rollups (DuckDB: ASOF joins; ClickHouse
25.x+: one ``arrayFold`` per person) and through the raw events (the window passes): both
must give the reference's answer. Each test loads its events into its own app.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mpaas.analytics.loader.rows import EVENT_SCHEMA, INVALID_SCHEMA, Rows
from mpaas.analytics.reports.dialect import CLICKHOUSE, DUCKDB
from mpaas.analytics.reports.engine import StoreEngine
from mpaas.analytics.reports.params import (
    FunnelGroup,
    FunnelResult,
    FunnelStep,
    FunnelStepResult,
    ReportQuery,
    TimeRange,
)
from mpaas.analytics.reports.queries import funnel
from mpaas.analytics.store.base import LoadBatch
from mpaas.analytics.store.clickhouse import ChdbConnection, ClickHouseStore
from mpaas.analytics.store.duckdb import DuckDbStore

T0 = datetime(2026, 3, 1, tzinfo=UTC)
SPAN = TimeRange(T0, T0 + timedelta(days=30))
HOUR = 3_600_000
_apps = itertools.count()
#: (ms after T0, type, user id, anonymous id, previous id, event name)
Event = tuple[int, str, str | None, str | None, str | None, str]


@pytest.fixture(scope="module", params=["duckdb", "clickhouse"])
def store(request: pytest.FixtureRequest) -> Iterator[Any]:
    s: Any = DuckDbStore(":memory:") if request.param == "duckdb" else ClickHouseStore(ChdbConnection())
    yield s
    s.close()


def _load(store: Any, events: Sequence[Event]) -> str:
    app = f"f{next(_apps)}"
    rows = Rows(EVENT_SCHEMA)
    received = datetime(2026, 4, 1, tzinfo=UTC)
    for seq, (ms, kind, user, anon, prev, name) in enumerate(events):
        when = T0 + timedelta(milliseconds=ms)
        rows.rows.append(
            (seq, app, "native", None, kind, name if kind == "track" else None, f"m{seq:05d}", user, anon,
             prev, None, when.isoformat(), None, received, f"1.{seq % 2}", "ios", "ios", None, "x", None,
             None, None, "{}", "{}", [])
        )  # fmt: skip
    store.load(LoadBatch(events=rows.table(), invalid=Rows(INVALID_SCHEMA).table()))
    return app


def _both(store: Any) -> list[StoreEngine]:
    dialect = DUCKDB if isinstance(store, DuckDbStore) else CLICKHOUSE
    return [StoreEngine(store, dialect), StoreEngine(store, dialect, rollups=False)]


def reference(events: Sequence[Event], names: Sequence[str], window_ms: int, breakdown: bool) -> FunnelResult:
    """docs/analytics.md's funnel, by enumeration (breakdown: the app version, ``1.<seq % 2>``)."""
    links: dict[str, tuple[int, str, str]] = {}  # id -> (ms, message id, user) of its earliest link
    for seq, (ms, kind, user, anon, prev, _) in enumerate(events):
        key = anon if kind == "identify" else prev if kind == "alias" else None
        if (
            key is not None
            and user is not None
            and (key not in links or (ms, f"m{seq:05d}") < links[key][:2])
        ):
            links[key] = (ms, f"m{seq:05d}", user)
    persons: dict[str, list[tuple[int, int, str]]] = {}  # person -> (ms, seq, name)
    for seq, (ms, kind, user, anon, _, name) in enumerate(events):
        own = user if user is not None else anon
        shown = name if kind == "track" else kind
        if own is not None and shown in names:
            persons.setdefault(links[own][2] if own in links else own, []).append((ms, seq, shown))
    n = len(names)
    groups: dict[str | None, list[tuple[int, list[int | None]]]] = {}
    for rows in persons.values():
        ends = [_chain_starts(rows, names, k) for k in range(n)]
        # the times at which an event reached step k: a chain within the window ends there
        reached = [sorted({ms for ms, start in ends[k] if ms - start < window_ms}) for k in range(n)]
        level = max((k + 1 for k in range(n) if reached[k]), default=0)
        if level == 0:
            continue
        gaps: list[int | None] = [None]
        for k in range(1, n):
            if not reached[k]:
                gaps.append(None)
                continue
            first = reached[k][0]
            gaps.append(first - max(t for t in reached[k - 1] if t < first))
        value = None
        if breakdown:
            first_start = min((ms, f"m{seq:05d}") for ms, seq, name in rows if name == names[0])
            value = f"1.{int(first_start[1][1:]) % 2}"
        groups.setdefault(value, []).append((level, gaps))
    out = []
    for value in sorted(groups, key=lambda v: (v is not None, v or "")):
        members = groups[value]
        counts = [sum(1 for level, _ in members if level > k) for k in range(n)]
        steps = []
        for k in range(n):
            found = [gap for level, g in members if level > k for gap in (g[k],) if gap is not None]
            median = None if k == 0 or not found else statistics.median(found) / 1000.0
            steps.append(FunnelStepResult(names[k], counts[k], counts[k - 1] - counts[k] if k else 0, median))
        out.append(FunnelGroup(value, tuple(steps)))
    return FunnelResult(window_ms // 1000, tuple(out))


def _chain_starts(
    rows: Sequence[tuple[int, int, str]], names: Sequence[str], k: int
) -> list[tuple[int, int]]:
    """(end time, start time) of every chain of steps 1..k+1 over ``rows``: events of the
    steps in order, at strictly increasing times (no window)."""
    chains = [(ms, ms) for ms, _, name in rows if name == names[0]]
    for j in range(1, k + 1):
        chains = [
            (ms, start) for ms, _, name in rows if name == names[j] for end, start in chains if end < ms
        ]
    return chains


def _check(
    store: Any, events: Sequence[Event], names: Sequence[str], window_ms: int, breakdown: bool
) -> None:
    app = _load(store, events)
    query = ReportQuery(app, SPAN, breakdown="app_version" if breakdown else None, tz="UTC")
    steps = [FunnelStep(name) for name in names]
    expected = reference(events, names, window_ms, breakdown)
    for engine in _both(store):
        assert funnel(engine, query, steps, window=timedelta(milliseconds=window_ms)) == expected


def _track(ms: int, name: str, user: str | None = "u1", anon: str | None = None) -> Event:
    return (ms, "track", user, anon, None, name)


def test_an_event_exactly_at_the_window_end_is_out(store: Any) -> None:
    events = [
        _track(0, "a", "u1"), _track(HOUR, "b", "u1"),  # start + window exactly: out
        _track(0, "a", "u2"), _track(HOUR - 1, "b", "u2"),  # one millisecond inside
        _track(0, "a", "u3"), _track(HOUR - 1, "b", "u3"), _track(HOUR, "c", "u3"),  # c is out
    ]  # fmt: skip
    _check(store, events, ["a", "b", "c"], HOUR, False)
    app = _load(store, events)
    (group,) = funnel(_both(store)[0], ReportQuery(app, SPAN, tz="UTC"), [FunnelStep(s) for s in "abc"],
                      window=timedelta(hours=1)).groups  # fmt: skip
    assert [(s.count, s.median_seconds) for s in group.steps] == [(3, None), (2, 3599.999), (0, None)]


def test_events_at_the_same_instant_do_not_chain(store: Any) -> None:
    events = [
        _track(1000, "a", "u1"), _track(1000, "b", "u1"),  # same instant: level 1
        _track(1000, "a", "u2"), _track(1000, "b", "u2"), _track(1001, "b", "u2"),  # level 2, 1 ms
        _track(5000, "b", "u3"), _track(5000, "a", "u3"), _track(5000, "c", "u3"),
        _track(6000, "b", "u3"), _track(6000, "c", "u3"),  # b at 6000, c at 6000 does not follow it
    ]  # fmt: skip
    _check(store, events, ["a", "b", "c"], HOUR, False)


def test_repeated_starts_keep_the_latest(store: Any) -> None:
    day = 24 * HOUR
    events = [
        # a 10 days after the first: b at day 15 is reached from the later start only
        _track(0, "a", "u1"), _track(10 * day, "a", "u1"), _track(15 * day, "b", "u1"),
        # b reached twice: the gap is measured at the first (1 day), from the latest earlier a
        _track(0, "a", "u2"), _track(day, "b", "u2"), _track(2 * day, "a", "u2"), _track(3 * day, "b", "u2"),
        # the same name as steps 1 and 3: a -> b -> a
        _track(0, "a", "u3"), _track(HOUR, "b", "u3"), _track(2 * HOUR, "a", "u3"),
    ]  # fmt: skip
    _check(store, events, ["a", "b"], 14 * day, False)
    _check(store, events, ["a", "b", "a"], 14 * day, True)


def test_identity_merge_joins_one_persons_steps(store: Any) -> None:
    events = [
        _track(0, "a", None, "d1"),  # anonymous start
        (HOUR, "identify", "u1", "d1", None, ""),
        _track(2 * HOUR, "b", "u1", "d1"),  # as the user: the same person
        _track(0, "a", "old", None),
        (HOUR, "alias", "new", None, "old", ""),
        _track(2 * HOUR, "b", "new", None),  # alias: the same person
        _track(0, "a", None, "d9"), _track(HOUR, "b", "u9", None),  # never linked: two persons
    ]  # fmt: skip
    _check(store, events, ["a", "b"], 14 * 24 * HOUR, True)


def test_step_rows_before_the_previous_step_are_left_out(store: Any) -> None:
    """DuckDB's ASOF joins of steps 3.. read only the step rows after the person's earliest
    row that reached the previous step: the answers stay the reference's."""
    events = [
        _track(0, "a", "u1"), _track(HOUR, "a", "u1"),  # step 1 only
        _track(0, "b", "u2"), _track(HOUR, "a", "u2"), _track(2 * HOUR, "a", "u2"),  # every a after the b
        # a b before the first a; an a after the last b
        _track(0, "b", "u3"), _track(HOUR, "a", "u3"), _track(3 * HOUR, "b", "u3"), _track(4 * HOUR, "a", "u3"),
        # a c before the first b that reached step 2 (a b before any a), another c after it
        _track(0, "b", "u4"), _track(HOUR, "a", "u4"), _track(2 * HOUR, "c", "u4"), _track(3 * HOUR, "b", "u4"),
        _track(4 * HOUR, "c", "u4"), _track(6 * HOUR, "c", "u4"),
        # a c between two rows that reached step 2: it follows the first
        _track(0, "a", "u5"), _track(HOUR, "b", "u5"), _track(2 * HOUR, "c", "u5"), _track(3 * HOUR, "b", "u5"),
    ]  # fmt: skip
    _check(store, events, ["a", "b", "c"], 14 * 24 * HOUR, False)
    _check(store, events, ["a", "b", "c"], 14 * 24 * HOUR, True)
    app = _load(store, events)
    for engine in _both(store):
        (group,) = funnel(engine, ReportQuery(app, SPAN, tz="UTC"), [FunnelStep(s) for s in "abc"]).groups
        assert [(s.count, s.median_seconds) for s in group.steps] == [(5, None), (3, 7200.0), (2, 3600.0)]


_EVENT = st.tuples(
    # mostly on a coarse grid, so that times tie
    st.one_of(st.integers(0, 30).map(lambda n: n * HOUR), st.integers(0, 30 * HOUR)),
    st.sampled_from(["track", "track", "track", "track", "identify", "alias"]),
    st.sampled_from([None, "u1", "u2", "u3"]),
    st.sampled_from([None, "d1", "d2", "d3"]),
    st.sampled_from([None, "u1", "d2"]),
    st.sampled_from(["a", "b", "c", "x"]),
)


def test_funnels_answer_as_the_reference(store: Any) -> None:
    """Random small event sets, steps (names repeated too), windows and breakdowns. Fewer
    examples on chdb, whose every statement costs milliseconds."""

    @settings(max_examples=30 if isinstance(store, DuckDbStore) else 5, deadline=None)
    @given(
        events=st.lists(_EVENT, min_size=1, max_size=16),
        names=st.lists(st.sampled_from(["a", "b", "c"]), min_size=2, max_size=4),
        window_hours=st.integers(1, 40),
        breakdown=st.booleans(),
    )
    @example(
        events=[_track(HOUR, "a"), _track(HOUR, "b"), _track(2 * HOUR, "b"), _track(2 * HOUR, "a"),
                _track(3 * HOUR, "b")],
        names=["a", "b", "a", "b"], window_hours=2, breakdown=False,
    )  # fmt: skip
    def check(events: list[Event], names: list[str], window_hours: int, breakdown: bool) -> None:
        _check(store, events, names, window_hours * HOUR, breakdown)

    check()
