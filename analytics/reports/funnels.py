"""Funnels and paths: what persons did next.

Funnel: a person reaches step k when they have events of steps 1..k at strictly
increasing times with step k before ``step 1 + window`` (exclusive). The level is the
furthest step reached from any start. One pass per step over each person's step events
in time order carries, per row, the latest start of a chain that reaches the row's step
(a later start only widens what the window allows, so the latest one is the one to keep).
On DuckDB, which computes a CTE read twice once, pass k reads only the rows that reached
step k-1 and step k's own rows (:func:`_per_step_passes`, about 2.5x faster; with the store's rollups
current, an ASOF join per step instead of a window, :func:`_asof_passes`, also on a
ClickHouse that materialises CTEs when asked; on DuckDB, :func:`_narrowed_asof_passes`
joins at steps 3.. only the step rows after the person's first row of the previous step,
keeps one step bit mask per row and stops DuckDB from pushing the passes' filters into
``c0``: together about 25 % less CPU at 10 M events); an older ClickHouse inlines CTEs, so
there each pass carries every step row forward instead.
The time from step k-1 to step k is measured at the person's first event that reaches
step k, from the latest earlier event that reached step k-1. The breakdown value is that
of the person's first step-1 event (ties by message id).

Measured and not adopted (2026-12-04, exact but slower; docs/benchmarks.md, "Analytics reports"): one
ClickHouse ``arrayFold`` per person over its sorted (time, step) pairs (46.7 s at 10 M events
on chdb, probably as many steps as the longest person's array), DuckDB ``list_reduce`` the same
way (9x slower at 1 M), one window pass giving each event its previous step's time and then
hash joins (1.5x slower: DuckDB's framed windows sort and re-aggregate), and narrowing each
step's rows to the persons and times that could still reach it (DuckDB then plans the small
ASOF joins as nested loops: about 45x slower at 10 M). Also (2026-12-05): one read of the
step rows sorted by (person, time), then each step as a ``searchsorted`` over the previous
step's row indices in numpy: the same answers, and the same CPU (1.98 s against 1.87 s at
10 M): sorting the 4.3 M step rows costs what the ASOF joins' sorts cost.
Also (2026-12-05, DuckDB, 10 M events, CPU with one thread, interleaved runs; exact but no
faster): bounding step 2's join too (one aggregate over the 2.5 M step-1 and step-2 rows for
each person's first step 1 and last step 2): the joins' sorts fell from about 1.0 s to 0.4 s
of operator time and the aggregate and look-ups took it back (so did the step-1 bound alone,
from the persons' first step 1, and the last-step-2 bound on ``r0``); restricting each step's rows to
the persons of the previous one (``IN``): within noise; the bounds as joins: nested-loop ASOF
plans; dropping each person's rows after their first complete chain: 4 % of the bench's
rows; one sort and a cumulative ``max`` per step as streaming windows: about 0.1 s of CPU
per aggregate per 4.3 M rows, more than the joins. Floors measured the same way: reading the
4.3 M step rows with their persons is 0.33 s (5.7x the 0.058 s scan) and one sort of them by
(person, time) another 0.54 s (9.3x), so no plan that orders the step rows meets 10x the scan.
Also (2026-12-05, wall on 2 threads, 10 M events, scan 0.030 s): a person column stored on each
event at load time (persons on events, as PostHog does) removes the persons-map join: 0.51 s
instead of 0.64-0.70 (17x); with a one-CASE step mask and step 1 from ``r0``'s own times,
0.48 s (16x). A dense integer person id: no change. Floors with the person column: reading the
step rows 1.9x, and any exact ordering of the 2.5 M step-1 and step-2 rows (a sort, the ASOF join
or a band hash join) 8.7-9.2x, before steps 0 and 3-5 (about 0.2 s more).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from mpaas.analytics.reports.engine import ReportEngine
from mpaas.analytics.reports.errors import InvalidReportParameter
from mpaas.analytics.reports.params import (
    COLUMNS,
    DEFAULT_FUNNEL_WINDOW,
    SESSION_GAP,
    FunnelGroup,
    FunnelResult,
    FunnelStep,
    FunnelStepResult,
    PathsResult,
    PathStep,
    ReportQuery,
)
from mpaas.analytics.reports.sql import Base, all_of

MAX_STEPS = 20
#: Stands for "no breakdown value" inside the query (aggregates skip NULLs).
NO_VALUE = "\x1f(none)"
MAX_WINDOW = timedelta(days=366)


def _columns(steps: Sequence[FunnelStep], breakdown: bool) -> tuple[str, ...]:
    """What the steps read from ``ev``: the basics and the columns their filters name (the
    message id and breakdown value only for a breakdown)."""
    named = {f.field if f.field in COLUMNS else "props" for s in steps for f in s.filters}
    extra = ("mid", "bd") if breakdown else ()
    return ("person", "ts", *extra, "name", *sorted(named - {"name"}))


def _step_cond(engine: ReportEngine, step: FunnelStep, alias: str) -> str:
    """A step's condition over one ``ev`` row aliased ``alias``."""
    d = engine.dialect
    return " AND ".join([f"{alias}.name = {d.text(step.event)}", all_of(d, step.filters, alias + ".")])


def _per_step_passes(engine: ReportEngine, n: int, w: int, over: str) -> list[str]:
    """The passes over only the rows each step needs (for an engine that computes a CTE
    used twice only once): ``r{k}`` holds the rows that reached step k, with the start
    ``s`` of their chain and the gap ``g`` from step k-1, found among step k's rows and
    ``r{k-1}``; ``pl`` is each person's level and gaps."""
    ctes = ["r0 AS (SELECT person, ts, ts AS s, 0 AS g FROM c0 WHERE i0 = 1)"]
    for k in range(1, n):
        ctes.append(
            f"""r{k} AS (SELECT person, ts, ms AS s, ts - mp AS g FROM (
  SELECT person, ts, cand, max(CASE WHEN cand = 0 THEN s END) {over} AS ms,
    max(CASE WHEN cand = 0 THEN ts END) {over} AS mp
  FROM (SELECT person, ts, s, 0 AS cand FROM r{k - 1}
        UNION ALL SELECT person, ts, ts AS s, 1 AS cand FROM c0 WHERE i{k} = 1) AS u{k}
) AS w{k} WHERE cand = 1 AND ts - ms < {w})"""
        )
    return [*ctes, _levels(engine, n)]


def _asof_passes(n: int, w: int, mat: str) -> list[str]:
    """As :func:`_per_step_passes`, with an ASOF join per step: the start carried by rows
    that reached a step never decreases with their time (the first step's is its own time;
    each next step's is the largest among earlier rows, whose starts never decrease), so
    the largest start among a row's strictly earlier rows is that of the latest of them,
    which an ASOF join finds without a window's sort of both sides (about 1.5x less CPU on
    DuckDB). Rows of equal time carry equal starts, so which of them the join picks does
    not matter. The window passes stay as the reference (``rollups=False``). ``mat``:
    ``MATERIALIZED`` where the engine computes a CTE once only when asked (ClickHouse)."""
    person = "assumeNotNull(person)" if mat else "person"  # ClickHouse's ASOF keys: not Nullable
    ctes = [f"r0 AS {mat} (SELECT {person} AS person, ts, ts AS s, 0 AS g FROM c0 WHERE i0 = 1)"]
    for k in range(1, n):
        ctes.append(
            f"r{k} AS {mat} (SELECT c.person AS person, c.ts AS ts, p.s AS s, c.ts - p.ts AS g "
            f"FROM (SELECT {person} AS person, ts FROM c0 WHERE i{k} = 1) AS c "
            f"ASOF JOIN r{k - 1} AS p ON c.person = p.person AND c.ts > p.ts WHERE c.ts - p.s < {w})"
        )
    return ctes


def _narrowed_asof_passes(n: int, w: int) -> list[str]:
    """As :func:`_asof_passes` (DuckDB), the ASOF joins of steps 3.. fed only the step-k rows
    that can match: those after the person's earliest row that reached step k-1 (``b{k}``,
    an aggregate over the few rows of ``r{k-1}``); the rows of ``r{k}`` are the same. The
    bound is a scalar subquery rather than a join: DuckDB estimates a join with an aggregate
    as a few rows and then plans the ASOF joins as nested loops (minutes at 10 M events).
    ``c0`` keeps one step bit mask per row instead of a column per step. ``n0`` reads ``c0``
    without a filter, and ``r0`` refers to it (true whenever ``r0`` has rows): when every
    reader of a CTE filters it, DuckDB pushes the OR of their filters into the CTE, which
    cost about 10 % of the CPU at 10 M events."""
    ctes = [
        "n0 AS (SELECT count(*) AS n FROM c0)",
        "r0 AS (SELECT person, ts, ts AS s FROM c0 WHERE (m & 1) <> 0 AND (SELECT n FROM n0) > 0)",
    ]
    for k in range(1, n):
        after = ""
        if k > 1:
            ctes.append(f"b{k} AS (SELECT person, min(ts) AS lo FROM r{k - 1} GROUP BY person)")
            after = f" AND ts > (SELECT lo FROM b{k} WHERE b{k}.person = c0.person)"
        ctes.append(
            f"r{k} AS (SELECT c.person AS person, c.ts AS ts, p.s AS s, c.ts - p.ts AS g "
            f"FROM (SELECT person, ts FROM c0 WHERE (m & {1 << k}) <> 0{after}) AS c "
            f"ASOF JOIN r{k - 1} AS p ON c.person = p.person AND c.ts > p.ts WHERE c.ts - p.s < {w})"
        )
    return ctes


def _levels(engine: ReportEngine, n: int) -> str:
    """``pl``: each person's level and step gaps, from the rows ``r0..r{n-1}`` that reached each step."""
    d = engine.dialect
    union = " UNION ALL ".join(f"SELECT person, {k} AS k, ts, g FROM r{k}" for k in range(n))
    gaps = ", ".join(
        f"{d.arg_min(f'CASE WHEN k = {k} THEN g END', f'CASE WHEN k = {k} THEN ts END')} AS g{k}"
        for k in range(1, n)
    )
    return f"pl AS (SELECT person, max(k) + 1 AS lvl, {gaps} FROM ({union}) AS rk GROUP BY person)"


def _step_counts(engine: ReportEngine, n: int, by: bool) -> str:
    """Per step and breakdown value: the persons who reached the step (a person in ``r{k}``
    is in ``r{k-1}``: a row reaches step k only after one that reached k-1) and the median of
    their gap at their first row that reached it. No per-person level: one aggregate per
    step instead of one over every reaching row of every step."""
    d = engine.dialect
    parts = []
    for k in range(n):
        if k == 0:
            person = f"SELECT DISTINCT person, {d.null_int()} AS g FROM r0"
        else:
            person = f"SELECT person, {d.arg_min('g', 'ts')} AS g FROM r{k} GROUP BY person"
        if by:
            src = f"(SELECT a.g AS g, fb.b AS b FROM ({person}) AS a JOIN fb ON fb.person = a.person)"
        else:
            src = f"(SELECT g, {d.text(NO_VALUE)} AS b FROM ({person}) AS a)"
        parts.append(
            f"SELECT {k} AS k, b, count(*) AS c, {d.quantile('g', 0.5)} AS m FROM {src} AS s{k} GROUP BY b"
        )
    return " UNION ALL ".join(parts)


def _per_step(found: list[tuple[Any, ...]], n: int) -> list[tuple[Any, ...]]:
    """:func:`_step_counts`'s rows as the per-value rows ``(b, reached..., medians...)``."""
    groups: dict[Any, tuple[list[int], list[Any]]] = {}
    for k, b, c, m in found:
        counts, medians = groups.setdefault(b, ([0] * n, [None] * n))
        counts[int(k)], medians[int(k)] = int(c), m
    return [(b, *counts, *medians[1:]) for b, (counts, medians) in groups.items()]


def funnel(
    engine: ReportEngine,
    query: ReportQuery,
    steps: Sequence[FunnelStep],
    *,
    window: timedelta = DEFAULT_FUNNEL_WINDOW,
) -> FunnelResult:
    if not 2 <= len(steps) <= MAX_STEPS:
        raise InvalidReportParameter(f"a funnel has 2 to {MAX_STEPS} steps")
    if not timedelta(seconds=1) <= window <= MAX_WINDOW:
        raise InvalidReportParameter("the conversion window is 1 second to 366 days")
    base = Base(engine, query)
    d = engine.dialect
    n, w = len(steps), int(window.total_seconds() * 1000)
    # rows strictly earlier than this one (ts in ms: "1 PRECEDING" excludes equal times)
    over = "OVER (PARTITION BY person ORDER BY ts RANGE BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)"
    by = query.breakdown is not None
    # with current rollups, step by ASOF joins, on an engine that computes each CTE once
    # (DuckDB) or can be asked to (ClickHouse with materialized CTEs, 25.x and later)
    asof = base.rollup is not None and (d.materializes_ctes or engine.materialized_ctes())
    mat = "MATERIALIZED" if asof and not d.materializes_ctes else ""
    flags = ", ".join(
        f"CASE WHEN {_step_cond(engine, st, 'x')} THEN 1 ELSE 0 END AS i{k}" for k, st in enumerate(steps)
    )
    ctes = [
        base.links(),
        base.ev(_columns(steps, by), names=sorted({s.event for s in steps}), activity=False),
    ]
    # the window passes carry only what they need: they sort every column they carry
    c0 = (
        f"c0 AS {mat} (SELECT x.person AS person, x.ts AS ts, {flags}, "
        "CASE WHEN i0 = 1 THEN x.ts END AS s0 FROM ev AS x WHERE x.person IS NOT NULL)"
    )
    if asof and d.materializes_ctes:  # DuckDB: a bit per step (at most 20), read by every pass
        mask = " + ".join(
            f"CASE WHEN {_step_cond(engine, st, 'x')} THEN {1 << k} ELSE 0 END" for k, st in enumerate(steps)
        )
        ctes.append(
            f"c0 AS MATERIALIZED (SELECT x.person AS person, x.ts AS ts, {mask} AS m "
            "FROM ev AS x WHERE x.person IS NOT NULL)"
        )
        ctes += _narrowed_asof_passes(n, w)
    elif asof:
        ctes += [c0, *_asof_passes(n, w, mat)]
    elif d.materializes_ctes:
        ctes += [c0, *_per_step_passes(engine, n, w, over)]
    else:
        ctes.append(c0)
        for k in range(1, n):
            # s{k}: the latest start of a chain that reaches step k at this row, within the window;
            # p{k}: the time of the latest row before it that reached step k-1
            reached = f"i{k} = 1 AND ts - max(s{k - 1}) {over} < {w}"
            ctes.append(
                f"c{k} AS (SELECT *, CASE WHEN {reached} THEN max(s{k - 1}) {over} END AS s{k}, "
                f"CASE WHEN {reached} THEN max(CASE WHEN s{k - 1} IS NOT NULL THEN ts END) {over} END "
                f"AS p{k} "
                f"FROM c{k - 1})"
            )
        level = (
            "CASE "
            + " ".join(f"WHEN count(s{k}) > 0 THEN {k + 1}" for k in range(n - 1, 0, -1))
            + " ELSE 1 END"
        )
        gaps = ", ".join(
            f"{d.arg_min(f'ts - p{k}', f'CASE WHEN s{k} IS NOT NULL THEN ts END')} AS g{k}"
            for k in range(1, n)
        )
        ctes.append(
            f"pl AS (SELECT person, {level} AS lvl, {gaps} FROM c{n - 1} "
            "GROUP BY person HAVING count(s0) > 0)"
        )
    if by:  # each person's first step-1 event's breakdown value, joined to its level
        first_key = f"{d.to_text('x.ts')} || x.mid"
        ctes.append(
            f"fb AS (SELECT x.person AS person, "
            f"{d.arg_min(f'coalesce(x.bd, {d.text(NO_VALUE)})', first_key)} AS b FROM ev AS x "
            f"WHERE x.person IS NOT NULL AND {_step_cond(engine, steps[0], 'x')} GROUP BY x.person)"
        )
        source = "pl JOIN fb ON fb.person = pl.person"
    else:
        source = f"(SELECT *, {d.text(NO_VALUE)} AS b FROM pl) AS plb"
    if asof:
        settings = " SETTINGS enable_materialized_cte = 1" if mat else ""
        rows = _per_step(base.run(ctes, _step_counts(engine, n, by) + settings), n)
    else:
        reached = ", ".join(f"sum(CASE WHEN lvl >= {k + 1} THEN 1 ELSE 0 END)" for k in range(n))
        medians = ", ".join(d.quantile(f"g{k}", 0.5) for k in range(1, n))
        rows = base.run(ctes, f"SELECT b, {reached}, {medians} FROM {source} GROUP BY b")
    rows = [(None if r[0] == NO_VALUE else r[0], *r[1:]) for r in rows]
    groups = []
    for row in sorted(rows, key=lambda r: (r[0] is not None, str(r[0] or ""))):
        counts = [int(c) for c in row[1 : 1 + n]]
        med = [None, *row[1 + n :]]
        results = tuple(
            FunnelStepResult(
                steps[k].event,
                counts[k],
                counts[k - 1] - counts[k] if k else 0,
                None if med[k] is None else float(med[k]) / 1000.0,
            )
            for k in range(n)
        )
        groups.append(FunnelGroup(None if row[0] is None else str(row[0]), results))
    return FunnelResult(int(window.total_seconds()), tuple(groups))


def paths(engine: ReportEngine, query: ReportQuery, event: str, *, limit: int = 10) -> PathsResult:
    """The events persons did right after ``event`` in the same session (``$end`` if the
    session ended: no next event, or the next came more than 30 minutes later)."""
    if not 1 <= limit <= 1000:
        raise InvalidReportParameter("limit: 1 to 1000")
    base = Base(engine, query)
    d = engine.dialect
    over = "PARTITION BY person ORDER BY ts, mid"
    gap = int(SESSION_GAP.total_seconds() * 1000)
    rows = base.run(
        [
            base.links(),
            base.ev(("person", "name", "ts", "mid")),
            f"sq AS (SELECT person, name, ts, {d.lead('name', over)} AS nxt, {d.lead('ts', over)} AS nts "
            "FROM ev WHERE person IS NOT NULL)",
        ],
        f"SELECT CASE WHEN nxt IS NULL OR nts - ts > {gap} THEN '$end' ELSE nxt END AS step, count(*), "
        f"count(DISTINCT person) FROM sq WHERE name = {d.text(event)} GROUP BY step",
    )
    found = sorted(((str(s), int(n), int(u)) for s, n, u in rows), key=lambda r: (-r[1], r[0]))
    return PathsResult(event, sum(r[1] for r in found), tuple(PathStep(*r) for r in found[:limit]))
