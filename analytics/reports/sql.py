"""The SQL every report starts from: identity-merged persons and filtered events.

``links`` maps an id to the user it became: an anonymous id to the user of its earliest
``identify`` (ties by message id), a previous id to the user of its earliest ``alias``.
``ev`` is the app's events in a time window, one row each, with:

- ``person``: ``coalesce(links[user_id], user_id, links[anonymous_id], anonymous_id)``, as
  one join on ``coalesce(user_id, anonymous_id)``, as a 64-bit hash of that text
  (:meth:`Dialect.key_hash`): reports only compare persons, and integer keys make the
  windows, joins and DISTINCTs cheaper (10-15 % of a DAU query on DuckDB). Two persons
  share a hash with odds of about n²/2⁶⁵ (10⁻⁸ for a million persons);
- ``ts``: epoch milliseconds (UTC), ``mid``: the message id (ties are ordered by it);
- ``dnum``: the local day in the query's zone, as days since 1970-01-01 (``hnum``: hours);
  the zone's offsets are an integer expression (:func:`offset_sql`), cheaper than a
  time-zone conversion per row;
- ``dev``: the device, ``coalesce(device_id, anonymous_id)`` (hashed too);
- ``name``: the event name (``coalesce(event, type)``), and the filterable columns.

A report asks ``ev`` for the columns it reads: fewer columns, faster scans.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from mpaas.analytics.reports.dialect import Dialect
from mpaas.analytics.reports.engine import ReportEngine
from mpaas.analytics.reports.errors import InvalidReportParameter
from mpaas.analytics.reports.params import COLUMNS, PropertyFilter, ReportQuery

EPOCH = date(1970, 1, 1)
#: Columns of ``ev`` besides the computed ones; filters and breakdowns refer to them.
EV_COLUMNS = (
    "event",
    "type",
    "source",
    "channel",
    "app_version",
    "platform",
    "os",
    "os_version",
    "device_model",
)


@lru_cache(maxsize=64)
def _transitions(tz: str) -> tuple[tuple[int, int], ...]:
    """(UTC ms from which, offset ms) for every change of the zone's offset, 1970-2100 (weekly
    samples, each change then found to the millisecond)."""
    zone = ZoneInfo(tz)
    moment = datetime(1970, 1, 1, tzinfo=UTC)
    step = timedelta(days=7)  # offsets change at most a few times a year
    found = [(0, _offset_ms(zone, moment))]
    while moment.year < 2100:
        nxt = moment + step
        if _offset_ms(zone, nxt) != found[-1][1]:
            low, high = int(moment.timestamp()) * 1000, int(nxt.timestamp()) * 1000
            while high - low > 1:  # the first millisecond of the new offset
                mid = (low + high) // 2
                if _offset_ms(zone, datetime.fromtimestamp(mid / 1000, UTC)) == found[-1][1]:
                    low = mid
                else:
                    high = mid
            found.append((high, _offset_ms(zone, datetime.fromtimestamp(high / 1000, UTC))))
        moment = nxt
    return tuple(found)


def _offset_ms(zone: ZoneInfo, moment: datetime) -> int:
    offset = moment.astimezone(zone).utcoffset()
    return int(offset.total_seconds() * 1000) if offset else 0


def offset_sql(tz: str, *, since: datetime | None, until: datetime | None, ms: str) -> str:
    """The zone's UTC offset in ms at ``ms`` (an epoch-ms expression), for events in the window:
    a constant when the offset does not change within it, else a CASE over the changes."""
    changes = _transitions(tz)
    lo = int(since.timestamp() * 1000) if since else 0
    hi = int(until.timestamp() * 1000) if until else 1 << 62
    inside = [c for c in changes if lo < c[0] < hi]
    before = [c for c in changes if c[0] <= lo][-1]
    if not inside:
        return str(before[1])
    branches = " ".join(f"WHEN {ms} >= {at} THEN {off}" for at, off in reversed(inside))
    return f"CASE {branches} ELSE {before[1]} END"


def day_of(number: int) -> date:
    return EPOCH + timedelta(days=int(number))


def field_sql(d: Dialect, name: str, prefix: str = "", json: str = "props") -> str:
    """A filter/breakdown field as an SQL expression over ``ev`` rows (``json``: the name of
    the properties column, ``properties`` in ``events``)."""
    if name in COLUMNS:
        return f"{prefix}{name}"
    return d.json_text(f"{prefix}{json}", name.removeprefix("properties."))


def filter_sql(d: Dialect, f: PropertyFilter, prefix: str = "", json: str = "props") -> str:
    col = field_sql(d, f.field, prefix, json)
    if f.op == "is_set":
        return f"{col} IS NOT NULL"
    if f.op == "is_not_set":
        return f"{col} IS NULL"
    if f.op in ("in", "not_in"):
        values = f.value if isinstance(f.value, tuple) else (str(f.value),)
        if not values:
            raise InvalidReportParameter(f"filter on {f.field}: an empty list")
        listed = ", ".join(d.text(str(v)) for v in values)
        return f"{col} {'NOT IN' if f.op == 'not_in' else 'IN'} ({listed})"
    if f.value is None or isinstance(f.value, tuple):
        raise InvalidReportParameter(f"filter on {f.field}: {f.op} needs one value")
    if f.op in ("gt", "lt"):
        if not isinstance(f.value, (int, float)) or not f.field.startswith("properties."):
            raise InvalidReportParameter(f"filter on {f.field}: {f.op} compares a property with a number")
        num = d.json_number(f"{prefix}{json}", f.field[11:])
        return f"{num} {'>' if f.op == 'gt' else '<'} {float(f.value)!r}"
    value = d.text(str(f.value))
    if f.op == "contains":
        return f"coalesce({d.contains(col, value)}, false)"
    if f.op == "neq":
        return f"({col} IS NULL OR {col} <> {value})"
    return f"{col} = {value}"


def all_of(d: Dialect, filters: Iterable[PropertyFilter], prefix: str = "", json: str = "props") -> str:
    parts = [filter_sql(d, f, prefix, json) for f in filters]
    return " AND ".join(f"({p})" for p in parts) if parts else "1 = 1"


class Base:
    """Builds the ``links`` and ``ev`` common table expressions of one report query."""

    def __init__(self, engine: ReportEngine, query: ReportQuery) -> None:
        self.engine = engine
        self.d = engine.dialect
        self.q = query
        self.app = self.d.text(query.app)
        self.tz = query.tz
        #: the zone of the store's current rollups (ADR 0014); None: raw events only
        self.rollup = engine.rollup_zone()

    def days_rollup(self) -> bool:
        """Whether an activity report may read ``rollup_person_days`` instead of ``ev``: the
        rollups are of the query's zone, the range starts and ends at local midnights (a
        rollup row is a whole day) and there are no filters (the rollups keep no columns)."""
        if self.rollup != self.tz or self.q.filters:
            return False
        zone = ZoneInfo(self.tz)
        return all(
            t.astimezone(zone).time() == datetime.min.time() for t in (self.q.range.start, self.q.range.end)
        )

    def links(self) -> str:
        """``lkey``: the linked id's :meth:`~Dialect.key_hash`; ``lperson``: its user's (from
        the store's persons map when its rollups are current: the same rows, kept at load)."""
        d = self.d
        if self.rollup is not None:
            return f"links AS (SELECT lkey, lperson FROM rollup_persons WHERE app = {self.app})"
        ts = d.epoch_ms("timestamp")
        return f"""links AS (
  SELECT lkey, {d.key_hash("nullif(luser, '')")} AS lperson FROM (
    SELECT lkey, luser, row_number() OVER (PARTITION BY lkey ORDER BY lts, lmid) AS lrank FROM (
      SELECT {d.key_hash("anonymous_id")} AS lkey, user_id AS luser, {ts} AS lts, message_id AS lmid
      FROM identity_links
      WHERE app = {self.app} AND kind = 'identify' AND anonymous_id IS NOT NULL AND user_id IS NOT NULL
      UNION ALL
      SELECT {d.key_hash("previous_id")} AS lkey, user_id AS luser, {ts} AS lts, message_id AS lmid
      FROM identity_links
      WHERE app = {self.app} AND kind = 'alias' AND previous_id IS NOT NULL AND user_id IS NOT NULL
    ) AS raw_links
  ) AS ranked_links WHERE lrank = 1
)"""

    def ev(
        self,
        columns: Sequence[str] = ("person", "ts", "dnum", "name"),
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        history: bool = False,
        open_end: bool = False,
        names: Sequence[str] | None = None,
        activity: bool = True,
        name: str = "ev",
        filters: bool = True,
    ) -> str:
        """Events of the app in ``[since, until)`` (the query's range by default; ``history``:
        everything before ``until``; ``open_end``: everything from ``since``), only those the
        app sent when ``activity``; with only the ``columns`` the report reads."""
        d = self.d
        start = self.q.range.start if since is None else since
        end = self.q.range.end if until is None else until
        where = [f"e.app = {self.app}"]
        if not open_end:
            where.append(f"e.timestamp < {d.instant(end)}")
        if not history:
            where.append(f"e.timestamp >= {d.instant(start)}")
        if activity:
            where.append("e.source <> 'server'")
        if names is not None:
            listed = ", ".join(d.text(n) for n in names) or "''"
            where.append(f"coalesce(e.event, e.type) IN ({listed})")
        if filters and self.q.filters:
            where.append(all_of(d, self.q.filters, "e.", "properties"))
        ms = d.epoch_ms("e.timestamp")
        offset = offset_sql(self.tz, since=None if history else start, until=None if open_end else end, ms=ms)
        local = f"({ms} + {offset})"
        # the store writes this hash with each event when it keeps rollups (ADR 0014)
        own = "e.own" if self.rollup is not None else d.key_hash("coalesce(e.user_id, e.anonymous_id)")
        breakdown = field_sql(d, self.q.breakdown, "e.", "properties") if self.q.breakdown else "NULL"
        known = {
            "person": f"coalesce(l.lperson, {own})",
            "ts": ms,
            "mid": "e.message_id",
            "dnum": d.floor_div(local, 86_400_000),
            "hnum": d.floor_div(local, 3_600_000),
            "dev": d.key_hash("coalesce(e.device_id, e.anonymous_id)"),
            "name": "coalesce(e.event, e.type)",
            "props": "e.properties",
            "pkgs": "e.packages",
            "bd": d.to_text(breakdown),
            **{c: f"e.{c}" for c in EV_COLUMNS},
        }
        selected = ", ".join(f"{known[c]} AS {c}" for c in columns)
        join = f"LEFT JOIN links AS l ON l.lkey = {own}" if "person" in columns else ""
        return f"""{name} AS (
  SELECT {selected}
  FROM events AS e {join}
  WHERE {" AND ".join(where)}
)"""

    def local_days(self) -> tuple[int, int]:
        """First and last local day numbers the range touches."""
        span, tz = self.q.range, ZoneInfo(self.tz)
        first = span.start.astimezone(tz).date()
        last = (span.end - timedelta(milliseconds=1)).astimezone(tz).date()
        return (first - EPOCH).days, (last - EPOCH).days

    def run(self, ctes: Sequence[str], select: str) -> list[tuple[Any, ...]]:
        return self.engine.rows("WITH " + ",\n".join(ctes) + "\n" + select)
