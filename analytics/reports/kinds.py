"""The report kinds the API, the CLI and saved reports offer: name, parameters, function.

Each :class:`Kind` has the JSON Schema of its parameters (for the OpenAPI document and
the POST body), a parser that turns raw parameters (JSON or query strings, see
:mod:`.inputs`) into the report function's keyword arguments, and the function itself.
:func:`prepare` checks everything before the store is touched, so bad input is a 400
and never reaches SQL.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from mpaas.analytics.reports import activity, funnels, queries
from mpaas.analytics.reports.engine import ReportEngine
from mpaas.analytics.reports.errors import InvalidReportParameter
from mpaas.analytics.reports.inputs import (
    BREAKDOWN,
    COMMON,
    EVENT_RE,
    EVENT_SCHEMA,
    FILTER_SCHEMA,
    bad,
    choice,
    filters,
    integer,
    names,
    report_query,
    text,
)
from mpaas.analytics.reports.params import FunnelStep, ReportQuery

Raw = Mapping[str, Any]
PACKAGE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
PUSH_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
Parser = Callable[[Raw], dict[str, Any]]


@dataclass(frozen=True)
class Kind:
    name: str
    summary: str
    function: Callable[..., Any]
    parse: Parser = lambda raw: {}
    params: Mapping[str, Any] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    breakdown: bool = False

    def schema(self) -> dict[str, Any]:
        """JSON Schema of the parameters (POST body; also the GET query string's names)."""
        props = COMMON | (BREAKDOWN if self.breakdown else {}) | dict(self.params)
        return {
            "type": "object",
            "required": ["app", *self.required],
            "additionalProperties": False,
            "properties": props,
            "not": ONE_RANGE_ONLY,
        }

    def names(self) -> frozenset[str]:
        return frozenset(self.schema()["properties"])


#: ``last_days`` and ``from``/``to`` are two ways to give the range: not both.
ONE_RANGE_ONLY: dict[str, Any] = {
    "required": ["last_days"],
    "anyOf": [{"required": ["from"]}, {"required": ["to"]}],
    "description": "give either last_days or from/to, not both",
}


@dataclass(frozen=True)
class Prepared:
    """A checked report call: run it with an engine (in a worker thread: it blocks)."""

    kind: Kind
    query: ReportQuery
    kwargs: dict[str, Any]

    def run(self, engine: ReportEngine) -> Any:
        return self.kind.function(engine, self.query, **self.kwargs)

    def describe(self) -> dict[str, Any]:
        """The resolved query, as the answer repeats it."""
        q = self.query
        return {
            "kind": self.kind.name,
            "app": q.app,
            "from": q.range.start.isoformat(),
            "to": q.range.end.isoformat(),
            "tz": q.tz,
            "breakdown": q.breakdown,
            "filters": [{"field": f.field, "op": f.op, "value": f.value} for f in q.filters],
        }


# ---- per-kind parameters -----------------------------------------------------------------


def _events(raw: Raw) -> dict[str, Any]:
    return {"events": names(raw, "events"), "interval": choice(raw, "interval", ("hour", "day")) or "day"}


def _retention(raw: Raw) -> dict[str, Any]:
    out: dict[str, Any] = {
        "periods": integer(raw, "periods", 1, activity.MAX_PERIODS) or 8,
        "mode": choice(raw, "mode", ("classic", "on_or_after")) or "classic",
    }
    for name in ("cohort_event", "return_event"):
        out[name] = text(raw, name, EVENT_RE)
    return out


def _step(item: Any, index: int) -> FunnelStep:
    if isinstance(item, str):
        if not EVENT_RE.fullmatch(item):
            raise bad("steps", f"step {index + 1}: {item[:60]!r} is not an event name")
        return FunnelStep(item)
    if not isinstance(item, dict) or set(item) - {"event", "filters"}:
        raise bad("steps", f"step {index + 1}: an event name or an object with event and filters")
    event = item.get("event")
    if not isinstance(event, str) or not EVENT_RE.fullmatch(event):
        raise bad("steps", f"step {index + 1}: event must be an event name")
    return FunnelStep(event, filters(item, "filters"))


def _funnel(raw: Raw) -> dict[str, Any]:
    value = raw.get("steps")
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",")]
    if not isinstance(value, list) or not 2 <= len(value) <= funnels.MAX_STEPS:
        raise bad("steps", f"2 to {funnels.MAX_STEPS} steps (a list, or names separated by commas)")
    days = integer(raw, "window_days", 1, 366)
    seconds = integer(raw, "window_seconds", 1, 366 * 86400)
    if days is not None and seconds is not None:
        raise bad("window_days", "give window_days or window_seconds, not both")
    window = timedelta(days=days) if days else timedelta(seconds=seconds) if seconds else timedelta(days=14)
    return {"steps": [_step(item, i) for i, item in enumerate(value)], "window": window}


def _paths(raw: Raw) -> dict[str, Any]:
    event = text(raw, "event", EVENT_RE)
    if event is None:
        raise bad("event", "required: the event whose next events to count")
    return {"event": event, "limit": integer(raw, "limit", 1, 100) or 10}


def _adoption(raw: Raw) -> dict[str, Any]:
    package_id = text(raw, "package_id", PACKAGE_RE)
    if package_id is None:
        raise bad("package_id", "required: the offline package, bundle or hotfix id")
    return {"package_id": package_id}


def _push(raw: Raw) -> dict[str, Any]:
    return {"push_id": text(raw, "push_id", PUSH_RE)}


STEP_SCHEMA = {
    "oneOf": [
        EVENT_SCHEMA,
        {
            "type": "object",
            "required": ["event"],
            "additionalProperties": False,
            "properties": {
                "event": EVENT_SCHEMA,
                "filters": {"type": "array", "maxItems": 20, "items": FILTER_SCHEMA},
            },
        },
    ]
}

KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind(
            "events",
            "Events over time: count and unique users per hour or day, by event (and breakdown)",
            queries.events_over_time,
            _events,
            {
                "events": {
                    "type": "array",
                    "maxItems": 20,
                    "items": EVENT_SCHEMA,
                    "description": "default: all",
                },
                "interval": {"enum": ["hour", "day"], "default": "day"},
            },
            breakdown=True,
        ),
        Kind("active-users", "DAU, WAU, MAU and stickiness (DAU/MAU) per local day", queries.active_users),
        Kind("new-returning", "New and returning users per local day", queries.new_vs_returning),
        Kind("stickiness", "Users by the number of days they were active in the range", queries.stickiness),
        Kind(
            "retention",
            "Day-N retention by first-event cohort (classic, or on or after day N)",
            queries.retention,
            _retention,
            {
                "periods": {"type": "integer", "minimum": 1, "maximum": activity.MAX_PERIODS, "default": 8},
                "mode": {"enum": ["classic", "on_or_after"], "default": "classic"},
                "cohort_event": EVENT_SCHEMA,
                "return_event": EVENT_SCHEMA,
            },
        ),
        Kind(
            "funnel",
            "Funnel: ordered steps within a conversion window from the first step",
            queries.funnel,
            _funnel,
            {
                "steps": {
                    "type": "array",
                    "minItems": 2,
                    "maxItems": funnels.MAX_STEPS,
                    "items": STEP_SCHEMA,
                },
                "window_days": {"type": "integer", "minimum": 1, "maximum": 366, "default": 14},
                "window_seconds": {"type": "integer", "minimum": 1, "maximum": 366 * 86400},
            },
            required=("steps",),
            breakdown=True,
        ),
        Kind(
            "paths",
            "Paths: the most common next events after an event (within a session)",
            queries.paths,
            _paths,
            {
                "event": EVENT_SCHEMA,
                "limit": {"type": "integer", "minimum": 1, "maximum": 100, "default": 10},
            },
            required=("event",),
        ),
        Kind(
            "adoption",
            "Update adoption: share of active devices on each version of a package, per local day",
            queries.update_adoption,
            _adoption,
            {"package_id": {"type": "string", "pattern": f"^{PACKAGE_RE.pattern}$"}},
            required=("package_id",),
        ),
        Kind(
            "push",
            "Push: sent, delivered, failed, arrived, opened per message and provider; arrival rate",
            queries.push_arrival,
            _push,
            {"push_id": {"type": "string", "pattern": f"^{PUSH_RE.pattern}$"}},
        ),
        Kind(
            "startup",
            "App start-up time p50/p90/p99, cold and warm, by app version and device model",
            queries.startup,
        ),
        Kind("stability", "Crash-free users and sessions, and ANR rate, by app version", queries.stability),
        Kind("h5", "H5 page load and white-screen percentiles per offline package version", queries.h5_pages),
        Kind("network", "Network error rate per endpoint (host and path template)", queries.network_errors),
    )
}


def kind_of(name: str) -> Kind:
    found = KINDS.get(name)
    if found is None:
        raise InvalidReportParameter(f"unknown report kind {name[:40]!r}: one of {', '.join(KINDS)}")
    return found


def prepare(kind: Kind, raw: Raw, now: datetime) -> Prepared:
    """Check every parameter; unknown names are refused (a typo must not be ignored)."""
    unknown = sorted(set(raw) - kind.names())
    if unknown:
        raise bad(unknown[0], f"not a parameter of {kind.name} reports")
    return Prepared(kind, report_query(raw, now, breakdown=kind.breakdown), kind.parse(raw))


def validate_saved(kind: str, params: Raw) -> None:
    """What a saved report must pass: a known kind, and parameters that would run."""
    if "app" in params:
        raise bad("app", "a saved report belongs to one app; leave app out of its params")
    prepare(kind_of(kind), {**params, "app": "x"}, datetime.now(UTC))
