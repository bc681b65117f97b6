"""Reports on who was active when: events over time, DAU/WAU/MAU, new vs returning,
stickiness and retention. Definitions: docs/analytics.md, "Reports: definitions"."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from mpaas.analytics.reports import daily
from mpaas.analytics.reports.engine import ReportEngine
from mpaas.analytics.reports.errors import InvalidReportParameter
from mpaas.analytics.reports.params import (
    ActiveUsersDay,
    ActiveUsersResult,
    Interval,
    NewReturningDay,
    NewReturningResult,
    ReportQuery,
    RetentionCohort,
    RetentionMode,
    RetentionResult,
    StickinessResult,
    TrendPoint,
    TrendResult,
    TrendSeries,
)
from mpaas.analytics.reports.sql import Base, day_of

MAX_BUCKETS = 24 * 400
MAX_PERIODS = 400


def _hour_buckets(query: ReportQuery) -> list[datetime]:
    zone = ZoneInfo(query.tz)
    moment = query.range.start.astimezone(zone).replace(minute=0, second=0, microsecond=0)
    seen: dict[datetime, None] = {}
    while moment < query.range.end:
        seen[moment.astimezone(zone).replace(tzinfo=None)] = None
        moment += timedelta(hours=1)
        if len(seen) > MAX_BUCKETS:
            raise InvalidReportParameter("too many hourly buckets: narrow the range")
    return list(seen)


def events_over_time(
    engine: ReportEngine, query: ReportQuery, events: Sequence[str] = (), interval: Interval = "day"
) -> TrendResult:
    """Events and distinct persons per bucket, per event name and breakdown value. Without
    ``events``, every event the app sent (not the server's) is counted under its own name."""
    base = Base(engine, query)
    bucket = "dnum" if interval == "day" else "hnum"
    columns = ("name", "bd", bucket, "person")
    ev = base.ev(columns, names=list(events), activity=False) if events else base.ev(columns)
    rows = base.run(
        [base.links(), ev],
        f"SELECT name, bd, {bucket}, count(*), count(DISTINCT person) FROM ev GROUP BY name, bd, {bucket}",
    )
    key: dict[datetime, object]
    if interval == "day":
        first, last = base.local_days()
        buckets = [datetime.combine(day_of(n), datetime.min.time()) for n in range(first, last + 1)]
        key = {b: (b.date() - day_of(0)).days for b in buckets}
    else:
        buckets = _hour_buckets(query)
        key = {b: int((b - datetime(1970, 1, 1)).total_seconds()) // 3600 for b in buckets}
    counts: dict[tuple[str, str | None], dict[object, tuple[int, int]]] = defaultdict(dict)
    for name, bd, b, n, users in rows:
        counts[(str(name), None if bd is None else str(bd))][int(b)] = (
            int(n),
            int(users),
        )
    series = []
    for (name, bd), by_bucket in sorted(counts.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        points = tuple(TrendPoint(b, *by_bucket.get(key[b], (0, 0))) for b in buckets)
        series.append(TrendSeries(name, bd, points))
    return TrendResult(interval, tuple(series))


def active_users(engine: ReportEngine, query: ReportQuery) -> ActiveUsersResult:
    """DAU, WAU (7 days ending that day) and MAU (30 days) for each local day of the range.

    Each active person-day opens a segment that lasts ``w`` days or until the person's next
    active day; per day the number of open segments is the count, summed from +1/-1 edges."""
    base = Base(engine, query)
    first, last = base.local_days()
    rolled = base.days_rollup()
    edges = daily.active_edges(base, first, last) if rolled else _raw_active_edges(base, first)
    open_ = [0, 0, 0]
    days = []
    for n in range(min([first, *edges]), last + 1):
        for i, delta in enumerate(edges.get(n, (0, 0, 0))):
            open_[i] += delta
        if n >= first:
            days.append(ActiveUsersDay(day_of(n), *open_))
    return ActiveUsersResult(tuple(days))


def _raw_active_edges(base: Base, first: int) -> daily.Edges:
    engine, query = base.engine, base.q
    ev = base.ev(("person", "dnum"), since=query.range.start - timedelta(days=31))
    rows = base.run(
        [
            base.links(),
            ev,
            f"seg AS ({engine.dialect.next_days('ev', f'person IS NOT NULL AND dnum >= {first - 29}')})",
            # one pass over seg, four edges per row (start, and the ends of the 1/7/30-day spans)
            """edges AS (
  SELECT CASE k WHEN 0 THEN dnum WHEN 1 THEN dnum + 1 WHEN 2 THEN least(dnum + 7, coalesce(nxt, dnum + 7))
              ELSE least(dnum + 30, coalesce(nxt, dnum + 30)) END AS eday,
    CASE k WHEN 0 THEN 1 WHEN 1 THEN -1 ELSE 0 END AS d1,
    CASE k WHEN 0 THEN 1 WHEN 2 THEN -1 ELSE 0 END AS d7,
    CASE k WHEN 0 THEN 1 WHEN 3 THEN -1 ELSE 0 END AS d30
  FROM seg CROSS JOIN (
    SELECT 0 AS k UNION ALL SELECT 1 AS k UNION ALL SELECT 2 AS k UNION ALL SELECT 3 AS k
  ) AS kinds
)""",
        ],
        "SELECT eday, sum(d1), sum(d7), sum(d30) FROM edges GROUP BY eday ORDER BY eday",
    )
    return {int(r[0]): (int(r[1]), int(r[2]), int(r[3])) for r in rows}


def new_vs_returning(engine: ReportEngine, query: ReportQuery) -> NewReturningResult:
    """Per local day: persons whose first event ever is that day, and the others active."""
    base = Base(engine, query)
    first, last = base.local_days()
    if base.days_rollup():
        found = daily.new_returning(base, first, last)
        return NewReturningResult(
            tuple(NewReturningDay(day_of(n), *found.get(n, (0, 0))) for n in range(first, last + 1))
        )
    start_ms = int(query.range.start.timestamp() * 1000)
    rows = base.run(
        [
            base.links(),
            base.ev(("person", "dnum", "ts"), history=True),
            "f AS (SELECT person, min(dnum) AS fday FROM ev WHERE person IS NOT NULL GROUP BY person)",
            f"a AS (SELECT DISTINCT person, dnum FROM ev WHERE person IS NOT NULL AND ts >= {start_ms})",
        ],
        "SELECT a.dnum, sum(CASE WHEN f.fday = a.dnum THEN 1 ELSE 0 END), "
        "sum(CASE WHEN f.fday < a.dnum THEN 1 ELSE 0 END) "
        "FROM a JOIN f ON f.person = a.person GROUP BY a.dnum",
    )
    found = {int(r[0]): (int(r[1]), int(r[2])) for r in rows}
    return NewReturningResult(
        tuple(NewReturningDay(day_of(n), *found.get(n, (0, 0))) for n in range(first, last + 1))
    )


def stickiness(engine: ReportEngine, query: ReportQuery) -> StickinessResult:
    """How many persons were active on exactly k local days of the range, k = 1..days."""
    base = Base(engine, query)
    first, last = base.local_days()
    span = last - first + 1
    if base.days_rollup():
        counted = daily.days_active(base, first, last)
        return StickinessResult(span, tuple(counted.get(k, 0) for k in range(1, span + 1)))
    rows = base.run(
        [
            base.links(),
            base.ev(("person", "dnum")),
            "pd AS (SELECT person, count(DISTINCT dnum) AS k FROM ev "
            "WHERE person IS NOT NULL GROUP BY person)",
        ],
        "SELECT k, count(*) FROM pd GROUP BY k",
    )
    found = {int(k): int(n) for k, n in rows}
    return StickinessResult(span, tuple(found.get(k, 0) for k in range(1, span + 1)))


def retention(
    engine: ReportEngine,
    query: ReportQuery,
    *,
    periods: int = 8,
    mode: RetentionMode = "classic",
    cohort_event: str | None = None,
    return_event: str | None = None,
) -> RetentionResult:
    """Cohorts by the local day of a person's first event ever (or first ``cohort_event``),
    for the range's days; day n counts cohort persons with a return event on day n
    (classic) or on day n or later (on_or_after), up to the range's end."""
    if not 1 <= periods <= MAX_PERIODS:
        raise InvalidReportParameter(f"periods: 1 to {MAX_PERIODS}")
    base = Base(engine, query)
    first, last = base.local_days()
    d = engine.dialect
    cohort_cond = f"name = {d.text(cohort_event)}" if cohort_event else "1 = 1"
    return_cond = f"name = {d.text(return_event)}" if return_event else "1 = 1"
    ctes = [
        base.links(),
        base.ev(("person", "dnum", "name"), history=True),
        f"f AS (SELECT person, min(dnum) AS c FROM ev WHERE person IS NOT NULL AND {cohort_cond} "
        "GROUP BY person)",
        f"r AS (SELECT DISTINCT person, dnum FROM ev WHERE person IS NOT NULL AND dnum >= {first} "
        f"AND {return_cond})",
        f"cf AS (SELECT person, c FROM f WHERE c BETWEEN {first} AND {last})",
    ]
    if mode == "classic":
        select = (
            "SELECT cf.c, r.dnum - cf.c AS n, count(*) FROM cf JOIN r ON r.person = cf.person "
            f"WHERE r.dnum >= cf.c AND r.dnum - cf.c < {periods} GROUP BY cf.c, r.dnum - cf.c"
        )
    else:
        select = (
            "SELECT c, reach, count(*) FROM (SELECT cf.person AS p, cf.c AS c, max(r.dnum) - cf.c AS reach "
            "FROM cf JOIN r ON r.person = cf.person WHERE r.dnum >= cf.c "
            "GROUP BY cf.person, cf.c) AS reaches "
            "GROUP BY c, reach"
        )
    # one query: the cohort sizes (part 1) beside the cells (part 2); DuckDB computes the
    # shared CTEs once for both (it halves the time), ClickHouse inlines them as before
    sizes_select = "SELECT 1 AS part, c, CAST(0 AS BIGINT) AS n, count(*) AS k FROM cf GROUP BY c"
    sizes: dict[int, int] = {}
    cells: dict[tuple[int, int], int] = defaultdict(int)
    if base.days_rollup() and cohort_event is None and return_event is None:
        found = daily.retention_cells(base, first, last, periods, mode)
    else:
        found = base.run(ctes, f"{sizes_select} UNION ALL SELECT 2 AS part, * FROM ({select}) AS p2")
    for part, c, n, count in found:
        if part == 1:
            sizes[int(c)] = int(count)
            continue
        if mode == "classic":
            cells[(int(c), int(n))] += int(count)
        else:  # reached day `reach`, so retained on every day 0..reach
            for k in range(min(int(n), periods - 1) + 1):
                cells[(int(c), k)] += int(count)
    cohorts = []
    for c in range(first, last + 1):
        retained = tuple(cells.get((c, n), 0) if c + n <= last else None for n in range(periods))
        cohorts.append(RetentionCohort(day_of(c), sizes.get(c, 0), retained))
    return RetentionResult(mode, periods, tuple(cohorts))
