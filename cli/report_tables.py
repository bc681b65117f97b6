"""Report answers (the API's JSON) as flat rows, for tables and CSV.

One function per report kind turns ``result`` into rows and names the columns. Rates
stay fractions in CSV (a spreadsheet formats them); tables show them as percentages.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

Row = dict[str, Any]
Flat = tuple[list[Row], list[str]]
RATES = frozenset(
    {
        "stickiness",
        "share",
        "conversion",
        "arrival_rate",
        "open_rate",
        "crash_free_users",
        "crash_free_sessions",
        "anr_rate",
        "error_rate",
    }
)


def _events(r: Mapping[str, Any]) -> Flat:
    rows = [
        {
            "bucket": p["bucket"],
            "event": s["event"],
            "breakdown": s["breakdown"],
            "events": p["events"],
            "users": p["users"],
        }
        for s in r["series"]
        for p in s["points"]
    ]
    return rows, ["bucket", "event", "breakdown", "events", "users"]


def _active(r: Mapping[str, Any]) -> Flat:
    return list(r["days"]), ["day", "dau", "wau", "mau", "stickiness"]


def _new_returning(r: Mapping[str, Any]) -> Flat:
    return list(r["days"]), ["day", "new", "returning"]


def _stickiness(r: Mapping[str, Any]) -> Flat:
    rows = [{"days_active": k + 1, "persons": n} for k, n in enumerate(r["persons_by_days_active"])]
    return rows, ["days_active", "persons"]


def _retention(r: Mapping[str, Any]) -> Flat:
    """A row per cohort day, a column per day n (d0 is the cohort day itself)."""
    columns = ["cohort", "size", *(f"d{n}" for n in range(int(r["periods"])))]
    rows = []
    for c in r["cohorts"]:
        row: Row = {"cohort": c["day"], "size": c["size"]}
        row |= {f"d{n}": value for n, value in enumerate(c["retained"])}
        rows.append(row)
    return rows, columns


def _funnel(r: Mapping[str, Any]) -> Flat:
    rows = []
    for g in r["groups"]:
        first = g["steps"][0]["count"] if g["steps"] else 0
        for n, s in enumerate(g["steps"], start=1):
            rows.append(
                {
                    "breakdown": g["breakdown"],
                    "step": n,
                    "event": s["event"],
                    "count": s["count"],
                    "dropped": s["dropped"],
                    "conversion": s["count"] / first if first else 0.0,
                    "median_seconds": s["median_seconds"],
                }
            )
    columns = ["step", "event", "count", "dropped", "conversion", "median_seconds"]
    return rows, (
        ["breakdown", *columns] if any(g["breakdown"] is not None for g in r["groups"]) else columns
    )


def _paths(r: Mapping[str, Any]) -> Flat:
    return list(r["steps"]), ["next_event", "count", "users"]


def _adoption(r: Mapping[str, Any]) -> Flat:
    rows = [
        {
            "day": d["day"],
            "active_devices": d["active_devices"],
            "version": v["version"],
            "devices": v["devices"],
            "share": v["share"],
        }
        for d in r["days"]
        for v in d["versions"]
    ]
    return rows, ["day", "active_devices", "version", "devices", "share"]


def _push(r: Mapping[str, Any]) -> Flat:
    columns = [
        "push_id",
        "provider",
        "sent",
        "delivered",
        "failed",
        "arrived",
        "opened",
        "arrival_rate",
        "open_rate",
    ]
    return list(r["rows"]) + list(r.get("by_push", [])), columns


def _pct_columns(prefix: str, p: Mapping[str, Any]) -> Row:
    return {f"{prefix}_p50": p["p50"], f"{prefix}_p90": p["p90"], f"{prefix}_p99": p["p99"]}


def _startup(r: Mapping[str, Any]) -> Flat:
    rows = [
        {
            "app_version": s["app_version"],
            "device_model": s["device_model"],
            "start_type": s["start_type"],
            "count": s["duration_ms"]["count"],
            **_pct_columns("ms", s["duration_ms"]),
        }
        for s in r["rows"]
    ]
    return rows, ["app_version", "device_model", "start_type", "count", "ms_p50", "ms_p90", "ms_p99"]


def _stability(r: Mapping[str, Any]) -> Flat:
    total = dict(r["total"]) | {"app_version": "(all)"}
    columns = [
        "app_version",
        "users",
        "crash_users",
        "crash_free_users",
        "sessions",
        "crash_sessions",
        "crash_free_sessions",
        "anr_users",
        "anr_rate",
    ]
    return [*r["rows"], total], columns


def _h5(r: Mapping[str, Any]) -> Flat:
    rows = [
        {
            "package_id": h["package_id"],
            "package_version": h["package_version"],
            "loads": h["load_ms"]["count"],
            **_pct_columns("load", h["load_ms"]),
            **_pct_columns("white", h["white_screen_ms"]),
        }
        for h in r["rows"]
    ]
    columns = [
        "package_id",
        "package_version",
        "loads",
        "load_p50",
        "load_p90",
        "load_p99",
        "white_p50",
        "white_p90",
        "white_p99",
    ]
    return rows, columns


def _network(r: Mapping[str, Any]) -> Flat:
    return list(r["rows"]), ["host", "path_template", "errors", "users", "active_users", "error_rate"]


FLATTEN: dict[str, Callable[[Mapping[str, Any]], Flat]] = {
    "events": _events,
    "active-users": _active,
    "new-returning": _new_returning,
    "stickiness": _stickiness,
    "retention": _retention,
    "funnel": _funnel,
    "paths": _paths,
    "adoption": _adoption,
    "push": _push,
    "startup": _startup,
    "stability": _stability,
    "h5": _h5,
    "network": _network,
}


def flatten(kind: str, result: Mapping[str, Any]) -> Flat:
    """Rows and columns of a report's result; an unknown kind prints its top-level values."""
    fn = FLATTEN.get(kind)
    if fn is None:
        return [dict(result)], list(result)
    return fn(result)


def for_table(rows: list[Row]) -> list[Row]:
    """Rates as percentages and floats rounded, for people."""

    def cell(key: str, value: Any) -> Any:
        if isinstance(value, float):
            return f"{value * 100:.1f}%" if key in RATES else f"{value:.1f}"
        return value

    return [{k: cell(k, v) for k, v in row.items()} for row in rows]
