"""UX reports from the built-in ``ux.*`` events: start-up, stability, H5 pages, network errors.

Percentiles are linear-interpolated (R-7) over the events' millisecond values. A session
is a person's run of events with no gap longer than 30 minutes; it belongs to the app
version of its first event.
"""

from __future__ import annotations

from typing import Any

from mpaas.analytics.reports.engine import ReportEngine
from mpaas.analytics.reports.params import (
    SESSION_GAP,
    H5Row,
    NetworkRow,
    Percentiles,
    ReportQuery,
    StabilityResult,
    StabilityRow,
    StartupRow,
)
from mpaas.analytics.reports.sql import Base

QUANTILES = (0.5, 0.9, 0.99)
#: Stands for "no app version" inside the query (aggregates skip NULLs).
NO_VALUE = "\x1f(none)"


def _pct(engine: ReportEngine, expr: str) -> str:
    return ", ".join([f"count({expr})", *(engine.dialect.quantile(expr, q) for q in QUANTILES)])


def _percentiles(values: tuple[Any, ...]) -> Percentiles:
    count, *qs = values
    return Percentiles(int(count), *(None if q is None else float(q) for q in qs))


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def startup(engine: ReportEngine, query: ReportQuery) -> tuple[StartupRow, ...]:
    """``ux.app_start`` durations by app version, device model and start type."""
    base = Base(engine, query)
    d = engine.dialect
    kind, ms = d.json_text("props", "start_type"), d.json_number("props", "duration_ms")
    rows = base.run(
        [base.links(), base.ev(("app_version", "device_model", "props"), names=["ux.app_start"])],
        f"SELECT app_version, device_model, {kind} AS kind, {_pct(engine, ms)} FROM ev "
        f"WHERE {kind} IN ('cold', 'warm') GROUP BY app_version, device_model, kind",
    )
    found = [StartupRow(_text(r[0]), _text(r[1]), str(r[2]), _percentiles(r[3:])) for r in rows]
    return tuple(sorted(found, key=lambda r: (r.app_version or "", r.device_model or "", r.start_type)))


def h5_pages(engine: ReportEngine, query: ReportQuery) -> tuple[H5Row, ...]:
    """``ux.h5_perf`` load and white-screen times by offline package id and version."""
    base = Base(engine, query)
    d = engine.dialect
    pid, ver = d.json_text("props", "offline_package_id"), d.json_text("props", "offline_package_version")
    load, white = d.json_number("props", "load_ms"), d.json_number("props", "white_screen_ms")
    rows = base.run(
        [base.links(), base.ev(("props",), names=["ux.h5_perf"])],
        f"SELECT {pid} AS pid, {ver} AS ver, {_pct(engine, load)}, {_pct(engine, white)} "
        "FROM ev GROUP BY pid, ver",
    )
    found = [H5Row(_text(r[0]), _text(r[1]), _percentiles(r[2:6]), _percentiles(r[6:10])) for r in rows]
    return tuple(sorted(found, key=lambda r: (r.package_id or "", r.package_version or "")))


def network_errors(engine: ReportEngine, query: ReportQuery) -> tuple[NetworkRow, ...]:
    """``ux.network_error`` per endpoint (host, path template), against all active persons."""
    base = Base(engine, query)
    d = engine.dialect
    host, path = d.json_text("props", "host"), d.json_text("props", "path_template")
    ctes = [base.links(), base.ev(("person", "name", "props"))]
    active = int(base.run(ctes, "SELECT count(DISTINCT person) FROM ev")[0][0])
    rows = base.run(
        ctes,
        f"SELECT {host} AS host, {path} AS path, count(*), count(DISTINCT person) FROM ev "
        "WHERE name = 'ux.network_error' GROUP BY host, path",
    )
    found = [NetworkRow(_text(h), _text(p), int(n), int(u), active) for h, p, n, u in rows]
    return tuple(sorted(found, key=lambda r: (-r.errors, r.host or "", r.path_template or "")))


def stability(engine: ReportEngine, query: ReportQuery) -> StabilityResult:
    """Crash-free persons and sessions, and the ANR rate, per app version and in total."""
    base = Base(engine, query)
    d = engine.dialect
    over = "PARTITION BY person ORDER BY ts, mid"
    gap = int(SESSION_GAP.total_seconds() * 1000)
    first_version = d.arg_min(f"coalesce(av, {d.text(NO_VALUE)})", f"{d.to_text('ts')} || mid")
    ctes = [
        base.links(),
        base.ev(("person", "app_version", "name", "ts", "mid")),
        f"sq AS (SELECT person, app_version AS av, name, ts, mid, {d.lead('ts', over, lag=True)} AS pts "
        "FROM ev WHERE person IS NOT NULL)",
        "sn AS (SELECT person, av, name, ts, mid, "
        f"sum(CASE WHEN pts IS NULL OR ts - pts > {gap} THEN 1 ELSE 0 END) "
        f"OVER ({over} ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS sid FROM sq)",
        f"ses AS (SELECT person, sid, {first_version} AS sav, "
        "max(CASE WHEN name = 'ux.crash' THEN 1 ELSE 0 END) AS crashed "
        "FROM sn GROUP BY person, sid)",
    ]
    people = (
        "count(DISTINCT person), count(DISTINCT CASE WHEN name = 'ux.crash' THEN person END), "
        "count(DISTINCT CASE WHEN name = 'ux.anr' THEN person END)"
    )
    sessions = "count(*), sum(crashed), 0"
    found = base.run(
        ctes,
        f"SELECT 1 AS part, av, {people} FROM sq GROUP BY av "
        f"UNION ALL SELECT 2 AS part, sav, {sessions} FROM ses GROUP BY sav "
        f"UNION ALL SELECT 3 AS part, {d.null_text()}, {people} FROM sq "
        f"UNION ALL SELECT 4 AS part, {d.null_text()}, {sessions} FROM ses",
    )
    parts: dict[int, dict[str | None, tuple[Any, ...]]] = {1: {}, 2: {}, 3: {}, 4: {}}
    for part, key, *values in found:
        parts[int(part)][None if key in (None, NO_VALUE) else str(key)] = tuple(values)
    by_version, ses_version = parts[1], parts[2]
    total_people, total_ses = parts[3].get(None, (0, 0, 0)), parts[4].get(None, (0, 0, 0))

    def row(version: str | None, p: tuple[Any, ...], s: tuple[Any, ...]) -> StabilityRow:
        return StabilityRow(version, int(p[0]), int(p[1]), int(s[0] or 0), int(s[1] or 0), int(p[2]))

    rows = tuple(
        row(v, by_version[v], ses_version.get(v, (0, 0)))
        for v in sorted(by_version, key=lambda v: (v is None, v or ""))
    )
    return StabilityResult(rows, row(None, total_people, total_ses))
