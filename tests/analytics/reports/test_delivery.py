"""Update adoption and push arrival on both engines (data set: conftest.py)."""

from __future__ import annotations

from datetime import date

from mpaas.analytics.reports.engine import StoreEngine
from mpaas.analytics.reports.params import ReportQuery, TimeRange
from mpaas.analytics.reports.queries import push_arrival, update_adoption

WEEK = ReportQuery("bank", TimeRange.days(date(2026, 3, 1), date(2026, 3, 7)))


def test_adoption_per_day(engine: StoreEngine) -> None:
    result = update_adoption(engine, WEEK, "h5.transfer")
    days = {d.day.day: (d.active_devices, [(v.version, v.devices) for v in d.versions]) for d in result.days}
    # 03-01: a1 1.0, a2 1.0, a4 1.1
    assert days[1] == (3, [("1.0", 2), ("1.1", 1)])
    # 03-02: a1 1.0; a3 never reported a version (None). a2's server-side install of 1.1
    # that day is no activity, so a2 is not counted on 03-02
    assert days[2] == (2, [("1.0", 1), (None, 1)])
    # 03-03: a2's app_open carries no packages: its latest observation is the install of 1.1
    assert days[3] == (1, [("1.1", 1)])
    assert days[4] == (1, [("1.1", 1)])  # a1 now runs 1.1
    assert days[6] == (2, [("1.1", 2)])  # a1 (from 03-04) and a2 (from 03-02)
    assert days[7] == (0, [])
    assert result.days[0].versions[0].share == 2 / 3


def test_push_arrival_per_message_and_provider(engine: StoreEngine) -> None:
    rows = {(r.push_id, r.provider): r for r in push_arrival(engine, WEEK).rows}
    # p1/apns: d1 sent, delivered, arrived, opened; d3 sent, delivered
    assert _stages(rows[("p1", "apns")]) == (2, 2, 0, 1, 1)
    # p1/fcm: d2 delivered and arrived (said by the server and by the app: once); d4 failed
    assert _stages(rows[("p1", "fcm")]) == (2, 1, 1, 1, 0)
    # p2/apns: d5 only the app's open: an open implies arrival and delivery
    assert _stages(rows[("p2", "apns")]) == (1, 1, 0, 1, 1)
    assert rows[("p1", "fcm")].arrival_rate == 1 / 2
    result = push_arrival(engine, WEEK)
    by_provider = {r.provider: _stages(r) for r in result.totals("provider")}
    assert by_provider == {"apns": (3, 3, 0, 2, 2), "fcm": (2, 1, 1, 1, 0)}


def test_push_range_is_the_send_time(engine: StoreEngine) -> None:
    before = ReportQuery("bank", TimeRange.days(date(2026, 3, 1), date(2026, 3, 5)))
    assert push_arrival(engine, before).rows == ()
    only = push_arrival(engine, WEEK, push_id="p2").rows
    assert [(r.push_id, r.sent) for r in only] == [("p2", 1)]


def _stages(row: object) -> tuple[int, int, int, int, int]:
    return (row.sent, row.delivered, row.failed, row.arrived, row.opened)  # type: ignore[attr-defined]
