"""Report parameters as the API, the CLI and saved reports give them: raw JSON or query strings.

A POST body gives typed JSON; a GET query string gives strings (``steps=a,b,c``,
``filter=platform=ios`` repeated). Both go through the same coercions here, which check
every value with ``re.fullmatch`` and ranges and raise :class:`InvalidReportParameter`
(400) with the parameter's name. The JSON Schemas below say the same for the OpenAPI
document; :mod:`.kinds` assembles them per report.

Time ranges: ``from``/``to`` as local days (``2026-11-01``, ``to`` included) or instants
with an offset (``2026-11-01T08:00:00+08:00``, ``to`` excluded), or ``last_days`` (the
local days ending today, up to now). Without either, the last 30 days.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from mpaas.analytics.reports.errors import InvalidReportParameter
from mpaas.analytics.reports.params import (
    COLUMNS,
    DEFAULT_TZ,
    FIELD_RE,
    FilterOp,
    PropertyFilter,
    ReportQuery,
    TimeRange,
    check_tz,
)

Clock = Callable[[], datetime]
DEFAULT_DAYS = 30
MAX_DAYS = 400
MAX_FILTERS = 20
MAX_LIST = 20
DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
INSTANT_RE = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?:Z|[+-]\d{2}:\d{2})")
TZ_RE = re.compile(r"[A-Za-z][A-Za-z0-9_+\-]{0,30}(?:/[A-Za-z0-9_+\-]{1,30}){0,2}")
#: Event names as the catalogue allows them, plus the built-in ``ux.`` names.
EVENT_RE = re.compile(r"[A-Za-z0-9$][A-Za-z0-9 _.:$-]{0,127}")
ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@\-]{0,127}")
#: ``field op value`` in a query string; ops: = != > < ~ (contains), and ``field?`` / ``!field``.
FILTER_RE = re.compile(
    r"(?P<field>[A-Za-z_$][A-Za-z0-9_$.\-]{0,110})(?P<op>!=|=|>|<|~)(?P<value>.{0,200})", re.S
)
FILTER_OPS: dict[str, FilterOp] = {"=": "eq", "!=": "neq", ">": "gt", "<": "lt", "~": "contains"}
OPS: tuple[str, ...] = ("eq", "neq", "in", "not_in", "contains", "is_set", "is_not_set", "gt", "lt")

DAY_OR_INSTANT = {
    "type": "string",
    "pattern": f"^(?:{DATE_RE.pattern}|{INSTANT_RE.pattern})$",
    "description": "a local day YYYY-MM-DD in tz, or an instant with an offset",
}
FIELD_SCHEMA = {
    "type": "string",
    "pattern": f"^(?:{'|'.join(sorted(COLUMNS))}|properties\\.[A-Za-z_$][A-Za-z0-9_$.\\-]{{0,99}})$",
    "description": "an event column or properties.<name>",
}
EVENT_SCHEMA = {"type": "string", "pattern": f"^{EVENT_RE.pattern}$"}
#: ``field op value`` as :func:`_filter` accepts it: a known field, and a number after > or <.
FILTER_TEXT_PATTERN = (
    "^(?:"
    + FIELD_SCHEMA["pattern"][1:-1]
    + ")(?:(?:!=|=|~)[^\\n]{0,200}|[<>]-?[0-9]{1,15}(?:\\.[0-9]{1,6})?)$"
)
FILTER_SCHEMA = {
    "oneOf": [
        {
            "type": "object",
            "required": ["field"],
            "additionalProperties": False,
            "properties": {
                "field": FIELD_SCHEMA,
                "op": {"enum": list(OPS), "default": "eq"},
                "value": {
                    "oneOf": [
                        {"type": "string", "maxLength": 200},
                        {"type": "number"},
                        {"type": "array", "maxItems": 50, "items": {"type": "string", "maxLength": 200}},
                        {"type": "null"},
                    ]
                },
            },
        },
        {
            "type": "string",
            "pattern": FILTER_TEXT_PATTERN,
            "description": "field=value, !=, >, <, ~ (contains); > and < compare numbers",
        },
    ]
}
#: What every report takes.
COMMON: dict[str, Any] = {
    "app": {"type": "string", "pattern": f"^{ID_RE.pattern}$"},
    "from": DAY_OR_INSTANT,
    "to": DAY_OR_INSTANT,
    "last_days": {"type": "integer", "minimum": 1, "maximum": MAX_DAYS, "default": DEFAULT_DAYS},
    "tz": {"type": "string", "pattern": f"^{TZ_RE.pattern}$", "default": DEFAULT_TZ},
    "filter": {"type": "array", "maxItems": MAX_FILTERS, "items": FILTER_SCHEMA},
}
BREAKDOWN: dict[str, Any] = {"breakdown": FIELD_SCHEMA}


def bad(name: str, message: str) -> InvalidReportParameter:
    return InvalidReportParameter(f"{name}: {message}")


def text(raw: Mapping[str, Any], name: str, pattern: re.Pattern[str]) -> str | None:
    value = raw.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise bad(name, f"must match {pattern.pattern}")
    return value


def integer(raw: Mapping[str, Any], name: str, low: int, high: int) -> int | None:
    value = raw.get(name)
    if value is None or value == "":
        return None
    decimal = isinstance(value, str) and re.fullmatch(r"-?\d{1,9}", value)
    if decimal or (isinstance(value, float) and value.is_integer()):  # JSON Schema's integer: 7.0 is one
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise bad(name, f"an integer from {low} to {high}")
    return value


def choice(raw: Mapping[str, Any], name: str, options: tuple[str, ...]) -> str | None:
    value = raw.get(name)
    if value is None or value == "":
        return None
    if value not in options:
        raise bad(name, f"one of {', '.join(options)}")
    return str(value)


def names(raw: Mapping[str, Any], name: str, *, low: int = 0, high: int = MAX_LIST) -> list[str]:
    """A list of event names: a JSON list of strings, or one comma-separated string."""
    value = raw.get(name)
    if value is None or value == "":
        items: list[Any] = []
    elif isinstance(value, str):
        items = [v.strip() for v in value.split(",")]
    elif isinstance(value, list):
        items = value
    else:
        raise bad(name, "a list of event names")
    if not low <= len(items) <= high:
        raise bad(name, f"{low} to {high} event names")
    for item in items:
        if not isinstance(item, str) or not EVENT_RE.fullmatch(item):
            raise bad(name, f"{str(item)[:60]!r} is not an event name")
    return items


def _filter(item: Any) -> PropertyFilter:
    if isinstance(item, str):
        m = FILTER_RE.fullmatch(item)
        if m is None:
            raise bad("filter", f"{item[:60]!r}: use field=value (or != > < ~)")
        field_name(m["field"], "filter")
        op, value = FILTER_OPS[m["op"]], m["value"]
        if op in ("gt", "lt"):
            try:
                return PropertyFilter(m["field"], op, float(value))
            except ValueError:
                raise bad("filter", f"{item[:60]!r}: > and < compare numbers") from None
        return PropertyFilter(m["field"], op, value)
    if not isinstance(item, dict) or not isinstance(item.get("field"), str):
        raise bad("filter", "each filter is field=value or an object with field, op, value")
    if set(item) - {"field", "op", "value"}:
        raise bad("filter", "an object has only field, op and value")
    op = item.get("op", "eq")
    if op not in OPS:
        raise bad("filter", f"op is one of {', '.join(OPS)}")
    value = item.get("value")
    if isinstance(value, list):
        if len(value) > 50 or not all(isinstance(v, str) and len(v) <= 200 for v in value):
            raise bad("filter", "a list value holds at most 50 strings of at most 200 characters")
        value = tuple(value)
    elif isinstance(value, bool) or not (value is None or isinstance(value, str | int | float)):
        raise bad("filter", "value is a string, a number, a list of strings or null")
    elif isinstance(value, str) and len(value) > 200:
        raise bad("filter", "value is at most 200 characters")
    if op in ("gt", "lt") and not isinstance(value, int | float):
        raise bad("filter", "gt and lt compare numbers")
    if op in ("in", "not_in") and not isinstance(value, tuple):
        raise bad("filter", "in and not_in take a list")
    field = field_name(item["field"], "filter")
    if isinstance(value, int | float) and op not in ("gt", "lt"):
        value = str(value)  # equality compares text: 5 matches "5"
    elif isinstance(value, int):
        value = float(value)
    return PropertyFilter(field, op, value)


def filters(raw: Mapping[str, Any], name: str = "filter") -> tuple[PropertyFilter, ...]:
    value = raw.get(name)
    if value is None:
        return ()
    items = value if isinstance(value, list) else [value]
    if len(items) > MAX_FILTERS:
        raise bad(name, f"at most {MAX_FILTERS} filters")
    return tuple(_filter(item) for item in items)


def _bound(value: str, name: str, zone: ZoneInfo, *, end: bool) -> datetime:
    try:
        if DATE_RE.fullmatch(value):
            day = date.fromisoformat(value) + timedelta(days=1 if end else 0)
            return datetime.combine(day, time(), zone)
        if INSTANT_RE.fullmatch(value):
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, OverflowError):
        pass
    raise bad(name, "a day YYYY-MM-DD or an instant like 2026-11-01T08:00:00+08:00")


def time_range(raw: Mapping[str, Any], tz: str, now: datetime) -> TimeRange:
    zone = check_tz(tz)
    start_raw, end_raw = raw.get("from"), raw.get("to")
    days = integer(raw, "last_days", 1, MAX_DAYS)
    if days is not None and (start_raw or end_raw):
        raise bad("last_days", "give either last_days or from/to, not both")
    for name, value in (("from", start_raw), ("to", end_raw)):
        if value is not None and not isinstance(value, str):
            raise bad(name, "a string")
    if start_raw or end_raw:
        end = _bound(end_raw, "to", zone, end=True) if end_raw else now
        start = (
            _bound(start_raw, "from", zone, end=False) if start_raw else end - timedelta(days=DEFAULT_DAYS)
        )
    else:
        today = now.astimezone(zone).date()
        start = datetime.combine(today - timedelta(days=(days or DEFAULT_DAYS) - 1), time(), zone)
        end = now
    if end <= start:
        raise bad("to", "the range ends before it starts")
    if end - start > timedelta(days=MAX_DAYS):
        raise bad("from", f"a range of at most {MAX_DAYS} days")
    return TimeRange(start, end)


def field_name(value: str, param: str) -> str:
    if not FIELD_RE.fullmatch(value) or (value not in COLUMNS and not value.startswith("properties.")):
        raise bad(param, f"{value[:60]!r}: use one of {', '.join(sorted(COLUMNS))} or properties.<name>")
    return value


def report_query(raw: Mapping[str, Any], now: datetime, *, breakdown: bool) -> ReportQuery:
    """The common part of every report: app, range, zone, filters and (if the kind has one) breakdown."""
    app = text(raw, "app", ID_RE)
    if app is None:
        raise bad("app", "required")
    tz = text(raw, "tz", TZ_RE) or DEFAULT_TZ
    split = text(raw, "breakdown", FIELD_RE) if breakdown else None
    if split is not None:
        field_name(split, "breakdown")
    return ReportQuery(app, time_range(raw, tz, now), filters(raw), split, tz)


def query_dict(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """A query string as the parsers take it: ``filter`` may repeat, other names may not."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key == "filter":
            out.setdefault("filter", []).append(value)
        elif key in out:
            raise bad(key, "given twice")
        else:
            out[key] = value
    return out
