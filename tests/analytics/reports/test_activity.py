"""Events over time, DAU/WAU/MAU, new vs returning, stickiness and retention, on both engines.

Data set and persons: conftest.py. Activity days (Asia/Shanghai) within 03-01..03-07:
P1 03-01, 03-02, 03-04, 03-06 (its push open); P2 03-01, 03-03, 03-06 (its push receipt);
P3 03-02 (its 16:30 UTC event is 00:30 local); P4 03-01 (an event exactly at the range's
start), 03-05 (its event exactly at the end, 03-08 00:00, is outside). Server events
(update.reported, push.*) are no activity.
"""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from mpaas.analytics.reports.engine import StoreEngine
from mpaas.analytics.reports.errors import InvalidReportParameter
from mpaas.analytics.reports.params import PropertyFilter, ReportQuery, TimeRange
from mpaas.analytics.reports.queries import (
    active_users,
    events_over_time,
    new_vs_returning,
    retention,
    stickiness,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")


def local(stamp: str) -> datetime:
    """'03-01 10:00' in Asia/Shanghai, 2026."""
    return datetime.strptime(f"2026-{stamp}", "%Y-%m-%d %H:%M").replace(tzinfo=SHANGHAI)


WEEK = ReportQuery("bank", TimeRange.days(date(2026, 3, 1), date(2026, 3, 7)))


def test_dau_wau_mau_merge_identities(engine: StoreEngine) -> None:
    days = active_users(engine, WEEK).days
    assert [d.day.day for d in days] == [1, 2, 3, 4, 5, 6, 7]
    # DAU: 03-01 P1 P2 P4 | 03-02 P1 P3 | 03-03 P2 | 03-04 P1 | 03-05 P4 | 03-06 P1 P2 | 03-07 none
    assert [d.dau for d in days] == [3, 2, 1, 1, 1, 2, 0]
    # WAU: 03-01 {P1,P2,P4}; from 03-02 all four. Without the merge a1 and u1 would be two
    # people and WAU on 03-02 would be 5 (a1, u1, u2, u4, a3).
    assert [d.wau for d in days] == [3, 4, 4, 4, 4, 4, 4]
    assert [d.mau for d in days] == [3, 4, 4, 4, 4, 4, 4]
    assert days[1].stickiness == 2 / 4


def test_wau_drops_a_person_seven_days_later(engine: StoreEngine) -> None:
    later = ReportQuery("bank", TimeRange.days(date(2026, 3, 8), date(2026, 3, 12)))
    days = active_users(engine, later).days
    # 03-08: P4 (00:00 exactly); P3 last on 03-02 (its 03-16 event is later), so WAU on
    # 03-08 = days 03-02..03-08 = P1, P2, P3, P4 = 4; on 03-09 (03-03..03-09) P3 is gone: 3;
    # 03-11 (03-05..03-11): P1, P2 (03-06), P4 = 3; 03-12 (03-06..): P1, P2, P4 (03-08) = 3.
    assert [d.dau for d in days] == [1, 0, 0, 0, 0]
    assert [d.wau for d in days] == [4, 3, 3, 3, 3]
    assert [d.mau for d in days] == [4, 4, 4, 4, 4]


def test_new_vs_returning(engine: StoreEngine) -> None:
    days = new_vs_returning(engine, WEEK).days
    # new: first event ever on that day (P1 P2 P4 on 03-01, P3 on 03-02)
    assert [(d.new, d.returning) for d in days] == [(3, 0), (1, 1), (0, 1), (0, 1), (0, 1), (0, 2), (0, 0)]


def test_stickiness_counts_days_active(engine: StoreEngine) -> None:
    result = stickiness(engine, WEEK)
    # P3 on 1 day, P4 on 2, P2 on 3, P1 on 4
    assert result.days_in_range == 7
    assert result.persons_by_days_active == (1, 1, 1, 1, 0, 0, 0)


def test_identity_merge_makes_one_person_of_a_device_and_its_user(engine: StoreEngine) -> None:
    two_days = ReportQuery("bank", TimeRange.days(date(2026, 3, 1), date(2026, 3, 2)))
    # a1 on 03-01 (anonymous) and u1 on 03-02 are P1: active on 2 days; P2, P4 on 03-01
    # and P3 on 03-02 on one. Unmerged it would be (5, 0): a1, u1, u2, a3, u4 on one day each.
    assert stickiness(engine, two_days).persons_by_days_active == (3, 1)


def test_retention_classic(engine: StoreEngine) -> None:
    result = retention(engine, WEEK, periods=5)
    cohorts = {c.day.day: c for c in result.cohorts}
    # cohort 03-01 = P1 P2 P4; D1 03-02 P1, D2 03-03 P2, D3 03-04 P1, D4 03-05 P4
    assert (cohorts[1].size, cohorts[1].retained) == (3, (3, 1, 1, 1, 1))
    assert (cohorts[2].size, cohorts[2].retained) == (1, (1, 0, 0, 0, 0))
    # a cell is measured only when its day is within the range (03-05 + 3 > 03-07)
    assert cohorts[5].retained == (0, 0, 0, None, None)
    assert cohorts[7].retained == (0, None, None, None, None)
    assert cohorts[1].shares()[1] == 1 / 3


def test_retention_on_or_after_with_a_return_event(engine: StoreEngine) -> None:
    result = retention(engine, WEEK, periods=5, mode="on_or_after", return_event="app_open")
    first = result.cohorts[0]
    # last app_open: P1 03-04 (day 3), P2 03-03 (day 2), P4 03-01 (day 0)
    # day n counts those whose last app_open is on day n or later: 3, 2, 2, 1, 0
    assert (first.day, first.size, first.retained) == (date(2026, 3, 1), 3, (3, 2, 2, 1, 0))


def test_retention_with_a_cohort_event(engine: StoreEngine) -> None:
    result = retention(engine, WEEK, periods=3, cohort_event="transfer_start")
    cohorts = {c.day.day: (c.size, c.retained) for c in result.cohorts}
    # first transfer_start: P1 P2 on 03-01, P3 on 03-02, P4 on 03-05
    # 03-01: D0 both, D1 P1 (03-02), D2 P2 (03-03); 03-05: P4, D1 03-06 no, D2 03-07 no
    assert cohorts[1] == (2, (2, 1, 1))
    assert cohorts[2] == (1, (1, 0, 0))
    assert cohorts[5] == (1, (1, 0, 0))


def test_events_over_time_window_boundary(engine: StoreEngine) -> None:
    # from 03-01 00:00 (P4's app_open, exactly at the start: counted) to 03-05 09:10 (P4's
    # transfer_confirm, exactly at the end: not counted)
    span = TimeRange(local("03-01 00:00"), local("03-05 09:10"))
    result = events_over_time(engine, ReportQuery("bank", span), ["transfer_start", "transfer_confirm"])
    series = {s.event: [(p.events, p.users) for p in s.points] for s in result.series}
    assert [p.bucket for p in result.series[0].points][-1] == datetime(2026, 3, 5)
    # confirm: 03-01 P2 twice (m09, m10) | 03-02 P1 | 03-05 09:10 excluded
    assert series["transfer_confirm"] == [(2, 1), (1, 1), (0, 0), (0, 0), (0, 0)]
    # start: 03-01 P1, P2 | 03-02 P3 | 03-05 09:00 P4
    assert series["transfer_start"] == [(2, 2), (1, 1), (0, 0), (0, 0), (1, 1)]
    opens = events_over_time(engine, ReportQuery("bank", span), ["app_open"]).series[0].points
    assert (opens[0].events, opens[0].users) == (2, 2)  # m01 (P1) and m15 at the start (P4)


def test_day_boundaries_follow_the_time_zone(engine: StoreEngine) -> None:
    shanghai = events_over_time(engine, WEEK, ["app_open"]).series[0].points
    # m12 at 16:30 UTC on 03-01 is 00:30 on 03-02 in Shanghai
    assert [p.events for p in shanghai[:2]] == [2, 1]  # 03-01: m01, m15 | 03-02: m12
    utc = ReportQuery("bank", TimeRange.days(date(2026, 3, 1), date(2026, 3, 7), "UTC"), tz="UTC")
    points = events_over_time(engine, utc, ["app_open"]).series[0].points
    # in UTC m15 (02-28 16:00) is before the range; 03-01: m01 (02:00) and m12 (16:30)
    assert [p.events for p in points[:2]] == [2, 0]


def test_day_boundaries_follow_daylight_saving_time(engine: StoreEngine) -> None:
    span = TimeRange.days(date(2026, 3, 7), date(2026, 3, 9), "America/New_York")
    query = ReportQuery("dst", span, tz="America/New_York")
    points = events_over_time(engine, query, ["app_open"]).series[0].points
    # 03-08 04:30 UTC = 03-07 23:30 EST; 03-09 04:30 UTC = 03-09 00:30 EDT (UTC-4 after 03-08)
    assert [(p.bucket.day, p.events) for p in points] == [(7, 1), (8, 0), (9, 1)]


def test_hourly_buckets_and_breakdown(engine: StoreEngine) -> None:
    span = TimeRange(local("03-01 10:00"), local("03-01 13:00"))
    query = ReportQuery("bank", span, breakdown="platform")
    result = events_over_time(engine, query, ["transfer_start"], interval="hour")
    series = {s.breakdown: [p.events for p in s.points] for s in result.series}
    # 10:01 P1 (ios), 12:01 P2 (android); buckets 10:00, 11:00, 12:00
    assert series == {"android": [0, 0, 1], "ios": [1, 0, 0]}
    assert result.series[0].points[2].bucket == datetime(2026, 3, 1, 12)


def test_filters_narrow_the_events(engine: StoreEngine) -> None:
    query = ReportQuery("bank", WEEK.range, filters=(PropertyFilter("platform", "eq", "android"),))
    # android: P2 (03-01, 03-03, 03-06), P4 (03-01, 03-05)
    assert [d.dau for d in active_users(engine, query).days] == [2, 0, 1, 0, 1, 1, 0]
    big = (PropertyFilter("properties.amount", "gt", 150),)
    result = events_over_time(engine, ReportQuery("bank", WEEK.range, filters=big), ["transfer_start"])
    assert sum(p.events for p in result.series[0].points) == 2  # 5000 (P2), 200 (P4)


def test_bad_parameters_are_refused(engine: StoreEngine) -> None:
    with pytest.raises(InvalidReportParameter):
        ReportQuery("bank", WEEK.range, tz="Mars/Olympus")
    with pytest.raises(InvalidReportParameter):
        ReportQuery("bank", WEEK.range, breakdown="properties.a'b")
    with pytest.raises(InvalidReportParameter):
        TimeRange(local("03-02 00:00"), local("03-01 00:00"))
    with pytest.raises(InvalidReportParameter):
        retention(engine, WEEK, periods=0)
