"""The activity reports over ``rollup_person_days`` (ADR 0014): one row per (person, local
day) with the person's first day (``fday``) and next active day (``nxt``), kept by the
store at load time. :mod:`.activity` uses these when :meth:`Base.days_rollup` allows it;
each returns the same rows as the raw query it stands for (tests/analytics/reports/
test_rollups.py compares them).
"""

from __future__ import annotations

from collections import defaultdict

from mpaas.analytics.reports.params import RetentionMode
from mpaas.analytics.reports.sql import Base

#: ``(day, +1 | -1)`` edges of the 1-, 7- and 30-day spans, summed by day
Edges = dict[int, tuple[int, int, int]]


def active_edges(base: Base, first: int, last: int) -> Edges:
    """The edges :func:`.activity.active_users` sums: every person-day opens a span of w days
    that ends early at the person's next active day. Part 1 groups by the day (starts, the
    1-day ends, and the w-day ends of spans not cut short); part 2 groups the spans cut short
    by the day they end (the next active day)."""
    rows = base.engine.rows(
        f"""WITH s AS (SELECT dnum, nxt FROM rollup_person_days
  WHERE app = {base.app} AND dnum BETWEEN {first - 29} AND {last})
SELECT 1 AS part, dnum AS day, count(*) AS n,
  sum(CASE WHEN nxt IS NULL OR nxt >= dnum + 7 THEN 1 ELSE 0 END) AS w7,
  sum(CASE WHEN nxt IS NULL OR nxt >= dnum + 30 THEN 1 ELSE 0 END) AS w30
FROM s GROUP BY dnum
UNION ALL
SELECT 2 AS part, nxt AS day, 0 AS n, sum(CASE WHEN nxt < dnum + 7 THEN 1 ELSE 0 END) AS w7, count(*) AS w30
FROM s WHERE nxt < dnum + 30 GROUP BY nxt"""
    )
    edges: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])
    for part, day, n, w7, w30 in rows:
        day, n, w7, w30 = int(day), int(n), int(w7), int(w30)
        if part == 1:
            for k, delta in ((0, n), (1, n), (2, n)):
                edges[day][k] += delta
            edges[day + 1][0] -= n
            edges[day + 7][1] -= w7
            edges[day + 30][2] -= w30
        else:
            edges[day][1] -= w7
            edges[day][2] -= w30
    return {d: (e[0], e[1], e[2]) for d, e in edges.items()}


def new_returning(base: Base, first: int, last: int) -> dict[int, tuple[int, int]]:
    rows = base.engine.rows(
        "SELECT dnum, sum(CASE WHEN fday = dnum THEN 1 ELSE 0 END), "
        "sum(CASE WHEN fday < dnum THEN 1 ELSE 0 END) FROM rollup_person_days "
        f"WHERE app = {base.app} AND dnum BETWEEN {first} AND {last} GROUP BY dnum"
    )
    return {int(r[0]): (int(r[1]), int(r[2])) for r in rows}


def days_active(base: Base, first: int, last: int) -> dict[int, int]:
    rows = base.engine.rows(
        "SELECT k, count(*) FROM (SELECT person, count(*) AS k FROM rollup_person_days "
        f"WHERE app = {base.app} AND dnum BETWEEN {first} AND {last} GROUP BY person) AS pd GROUP BY k"
    )
    return {int(k): int(n) for k, n in rows}


def retention_cells(
    base: Base, first: int, last: int, periods: int, mode: RetentionMode
) -> list[tuple[int, int, int, int]]:
    """``(part, cohort day, n, persons)`` as :func:`.activity.retention` reads them: part 1
    the cohort sizes, part 2 the classic cells or the on-or-after reaches."""
    where = f"app = {base.app} AND fday BETWEEN {first} AND {last}"
    if mode == "classic":
        cells = (
            "SELECT 2 AS part, fday AS c, dnum - fday AS n, count(*) AS k FROM rollup_person_days "
            f"WHERE {where} AND dnum <= {last} AND dnum - fday < {periods} GROUP BY fday, dnum - fday"
        )
    else:
        cells = (
            "SELECT 2 AS part, c, reach AS n, count(*) AS k FROM ("
            "SELECT fday AS c, max(dnum) - fday AS reach "
            f"FROM rollup_person_days WHERE {where} AND dnum <= {last} GROUP BY person, fday) AS r "
            "GROUP BY c, reach"
        )
    sizes = (
        "SELECT 1 AS part, fday AS c, CAST(0 AS BIGINT) AS n, count(*) AS k FROM rollup_person_days "
        f"WHERE {where} AND dnum = fday GROUP BY fday"
    )
    return [(int(p), int(c), int(n), int(k)) for p, c, n, k in base.engine.rows(f"{sizes} UNION ALL {cells}")]
