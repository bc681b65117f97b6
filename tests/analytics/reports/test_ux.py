"""UX reports on both engines (data set: conftest.py). Percentiles are R-7 (linear)."""

from __future__ import annotations

from datetime import date

from mpaas.analytics.reports.engine import StoreEngine
from mpaas.analytics.reports.params import ReportQuery, TimeRange
from mpaas.analytics.reports.queries import h5_pages, network_errors, stability, startup

WEEK = ReportQuery("bank", TimeRange.days(date(2026, 3, 1), date(2026, 3, 7)))


def test_startup_percentiles(engine: StoreEngine) -> None:
    rows = {(r.app_version, r.device_model, r.start_type): r.duration_ms for r in startup(engine, WEEK)}
    cold = rows[("2.1", "Pixel8", "cold")]
    # [3000, 4000]: p50 = 3500; p90 = 3000 + 0.9 * 1000; p99 = 3000 + 0.99 * 1000
    assert (cold.count, cold.p50, cold.p90, cold.p99) == (2, 3500.0, 3900.0, 3990.0)
    warm = rows[("2.0", "iPhone15", "warm")]
    assert (warm.count, warm.p50, warm.p99) == (1, 500.0, 500.0)
    assert len(rows) == 3


def test_h5_percentiles_per_package_version(engine: StoreEngine) -> None:
    (row,) = h5_pages(engine, WEEK)
    assert (row.package_id, row.package_version) == ("h5.transfer", "1.0")
    # load [800, 1200]: p90 = 800 + 0.9 * 400 = 1160; white [100, 300]: p99 = 100 + 0.99 * 200
    assert (row.load_ms.p50, row.load_ms.p90) == (1000.0, 1160.0)
    assert (row.white_screen_ms.p50, row.white_screen_ms.p99) == (200.0, 298.0)


def test_stability(engine: StoreEngine) -> None:
    result = stability(engine, WEEK)
    by = {r.app_version: r for r in result.rows}
    # 2.1: P3, P4; P4 crashed (1 of its 2 sessions: 03-01 00:00 and 03-05 09:00-09:31),
    # P3 had an ANR; P3's sessions: 03-02 00:30 and 10:00 (9.5 h apart) -> 4 sessions
    v21 = by["2.1"]
    assert (v21.users, v21.crash_users, v21.sessions, v21.crash_sessions, v21.anr_users) == (2, 1, 4, 1, 1)
    assert (v21.crash_free_users, v21.crash_free_sessions, v21.anr_rate) == (0.5, 0.75, 0.5)
    # 2.0: P1 4 sessions (03-01, 03-02, 03-04, 03-06), P2 3 (03-01, 03-03, 03-06)
    assert (by["2.0"].sessions, by["2.0"].crash_free_users) == (7, 1.0)
    assert (result.total.users, result.total.sessions, result.total.crash_sessions) == (4, 11, 1)


def test_network_error_rate_per_endpoint(engine: StoreEngine) -> None:
    (row,) = network_errors(engine, WEEK)
    assert (row.host, row.path_template, row.errors, row.users) == ("api.bank", "/transfer", 1, 1)
    assert row.error_rate == 1 / 4  # 1 of 4 active persons
