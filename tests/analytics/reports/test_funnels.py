"""Funnels and paths on both engines (data set: conftest.py).

Transfer funnel, transfer_start -> transfer_confirm -> transfer_done, 03-01..03-20:
- P1: start 03-01 10:01 (anonymous a1), confirm 03-02 09:05 (as u1; merged), done 09:06: level 3;
- P2: start 12:01:00, a confirm at the same instant (not strictly later), one at 12:03: level 2;
- P3: start 03-02 10:00, confirm 03-16 10:00 = start + 14 days exactly, outside the window: level 1;
- P4: start 03-05 09:00, confirm 09:10, done 09:30: level 3.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from mpaas.analytics.reports.engine import StoreEngine
from mpaas.analytics.reports.errors import InvalidReportParameter
from mpaas.analytics.reports.params import FunnelStep, PropertyFilter, ReportQuery, TimeRange
from mpaas.analytics.reports.queries import funnel, paths

SPAN = TimeRange.days(date(2026, 3, 1), date(2026, 3, 20))
STEPS = [FunnelStep("transfer_start"), FunnelStep("transfer_confirm"), FunnelStep("transfer_done")]


def _counts(result_steps: tuple[object, ...]) -> list[tuple[int, int]]:
    return [(s.count, s.dropped) for s in result_steps]  # type: ignore[attr-defined]


def test_funnel_levels_drop_off_and_medians(engine: StoreEngine) -> None:
    (group,) = funnel(engine, ReportQuery("bank", SPAN), STEPS).groups
    # reached step 1: all 4; step 2: P1 P2 P4; step 3: P1 P4
    assert _counts(group.steps) == [(4, 0), (3, 1), (2, 1)]
    # start->confirm: P1 23h04m = 83040 s, P2 120 s, P4 600 s -> median 600
    # confirm->done: P1 60 s, P4 1200 s -> median (60 + 1200) / 2 = 630
    assert [s.median_seconds for s in group.steps] == [None, 600.0, 630.0]
    assert group.conversion == 2 / 4


def test_funnel_window_end_is_exclusive(engine: StoreEngine) -> None:
    (group,) = funnel(engine, ReportQuery("bank", SPAN), STEPS, window=timedelta(days=15)).groups
    # with 15 days P3's confirm (start + 14 d exactly) is inside: step 2 = 4
    assert _counts(group.steps) == [(4, 0), (4, 0), (2, 2)]
    # P3: 14 d = 1209600 s joins 83040, 120, 600 -> median (600 + 83040) / 2 = 41820
    assert group.steps[1].median_seconds == 41820.0


def test_funnel_breakdown_by_the_first_step(engine: StoreEngine) -> None:
    groups = funnel(engine, ReportQuery("bank", SPAN, breakdown="platform"), STEPS).groups
    by = {g.breakdown: _counts(g.steps) for g in groups}
    # android: P2 (2), P4 (3); ios: P1 (3), P3 (1)
    assert by == {"android": [(2, 0), (2, 0), (1, 1)], "ios": [(2, 0), (1, 1), (1, 0)]}
    android = next(g for g in groups if g.breakdown == "android")
    assert android.steps[1].median_seconds == 360.0  # (120 + 600) / 2


def test_funnel_step_filters(engine: StoreEngine) -> None:
    big = FunnelStep("transfer_start", (PropertyFilter("properties.amount", "gt", 150),))
    (group,) = funnel(engine, ReportQuery("bank", SPAN), [big, *STEPS[1:]]).groups
    # amounts: P1 100, P2 5000, P3 100, P4 200 -> starts of P2 and P4: levels 2 and 3
    assert _counts(group.steps) == [(2, 0), (2, 0), (1, 1)]


def test_paths_after_an_event(engine: StoreEngine) -> None:
    result = paths(
        engine, ReportQuery("bank", TimeRange.days(date(2026, 3, 1), date(2026, 3, 7))), "transfer_start"
    )
    # P1: next is identify the next day (> 30 min): $end; P2: m09 at the same instant
    # (ties by message id: m08 < m09); P3: ux.anr a minute later; P4: ux.app_start
    assert result.total == 4
    assert [(s.next_event, s.count) for s in result.steps] == [
        ("$end", 1),
        ("transfer_confirm", 1),
        ("ux.anr", 1),
        ("ux.app_start", 1),
    ]


def test_funnel_parameters_are_checked(engine: StoreEngine) -> None:
    with pytest.raises(InvalidReportParameter):
        funnel(engine, ReportQuery("bank", SPAN), STEPS[:1])
    with pytest.raises(InvalidReportParameter):
        funnel(engine, ReportQuery("bank", SPAN), STEPS, window=timedelta(0))
