"""What mpaas delivered: update adoption per day and push arrival per message and provider.

Adoption: a device is ``coalesce(device_id, anonymous_id)`` (the server's events carry the
device id as the anonymous id). An active device (it sent an event that local day) runs
the version of its latest observation at or before the end of that day (ties by message
id): an app event whose ``packages`` lists the package, a ``update.reported`` with status
``installed``, or a ``ux.update_installed`` with ``success``. Never observed: ``None``.

Push: a delivery (``delivery_id``) belongs to the range when its ``push.sent`` does; its
later stages count whenever they were reported, by the server or by the app
(``ux.push_received``/``ux.push_opened``), once each. An open implies arrival, and an
arrival implies the provider delivered it.
"""

from __future__ import annotations

from collections import defaultdict

from mpaas.analytics.reports.engine import ReportEngine
from mpaas.analytics.reports.errors import InvalidReportParameter
from mpaas.analytics.reports.params import (
    NAME_RE,
    AdoptionDay,
    AdoptionResult,
    PushResult,
    PushRow,
    ReportQuery,
    VersionShare,
)
from mpaas.analytics.reports.sql import Base, day_of

STAGES = {
    "push.delivered": 1,
    "push.failed": 2,
    "push.arrived": 3,
    "ux.push_received": 3,
    "push.opened": 4,
    "ux.push_opened": 4,
}


def update_adoption(engine: ReportEngine, query: ReportQuery, package_id: str) -> AdoptionResult:
    if not NAME_RE.fullmatch(package_id):
        raise InvalidReportParameter("package_id: 1 to 200 printable characters")
    base = Base(engine, query)
    d = engine.dialect
    first, last = base.local_days()
    pid = d.text(package_id)
    start_ms = int(query.range.start.timestamp() * 1000)
    version, status = d.json_text("props", "version"), d.json_text("props", "status")
    package, success = d.json_text("props", "package_id"), d.json_text("props", "success")
    ctes = [
        base.links(),
        base.ev(
            ("dev", "dnum", "ts", "mid", "pkgs", "props", "name", "source"), history=True, activity=False
        ),
        # one pass: what each event says about the device's version (NULL: nothing)
        f"""obs AS (
  SELECT dev, dnum, ts, mid,
    CASE WHEN source <> 'server' THEN
           CASE WHEN {d.contains("pkgs", pid)} THEN {d.package_version("pkgs", package_id)} END
         WHEN name = 'update.reported' AND {status} = 'installed' AND {package} = {pid} THEN {version}
         WHEN name = 'ux.update_installed' AND {success} = 'true' AND {package} = {pid} THEN {version}
    END AS ver
  FROM ev WHERE dev IS NOT NULL
)""",
        """lastobs AS (SELECT odev, oday, over FROM (
  SELECT dev AS odev, dnum AS oday, ver AS over,
    row_number() OVER (PARTITION BY dev, dnum ORDER BY ts DESC, mid DESC) AS rk
  FROM obs WHERE ver IS NOT NULL) AS r WHERE rk = 1)""",
        "act AS (SELECT DISTINCT dev AS adev, dnum AS aday FROM ev "
        f"WHERE source <> 'server' AND dev IS NOT NULL AND ts >= {start_ms})",
    ]
    rows = base.run(
        ctes,
        f"""SELECT 1 AS part, aday, {d.null_text()} AS over, count(*) AS n FROM act GROUP BY aday
UNION ALL
SELECT 2 AS part, aday, over, count(*) AS n FROM (
  SELECT a.adev AS adev, a.aday AS aday, o.over AS over,
    row_number() OVER (PARTITION BY a.adev, a.aday ORDER BY o.oday DESC) AS rk
  FROM act AS a JOIN lastobs AS o ON o.odev = a.adev WHERE o.oday <= a.aday) AS j
WHERE rk = 1 GROUP BY aday, over""",
    )
    totals = {int(r[1]): int(r[3]) for r in rows if r[0] == 1}
    rows = [r[1:] for r in rows if r[0] == 2]
    per_day: dict[int, dict[str | None, int]] = defaultdict(dict)
    for n, ver, count in rows:
        per_day[int(n)][str(ver)] = int(count)
    days = []
    for n in range(first, last + 1):
        active = totals.get(n, 0)
        known = per_day.get(n, {})
        unknown = active - sum(known.values())
        if unknown:
            known = {**known, None: unknown}
        shares = tuple(
            VersionShare(v, c, c / active if active else 0.0)
            for v, c in sorted(known.items(), key=lambda kv: (kv[0] is None, kv[0] or ""))
        )
        days.append(AdoptionDay(day_of(n), active, shares))
    return AdoptionResult(package_id, tuple(days))


def push_arrival(engine: ReportEngine, query: ReportQuery, push_id: str | None = None) -> PushResult:
    base = Base(engine, query)
    d = engine.dialect
    names = ", ".join(d.text(n) for n in ["push.sent", *STAGES])
    stage = "CASE name " + " ".join(f"WHEN {d.text(k)} THEN {v}" for k, v in STAGES.items()) + " END"
    did, pid, prov = (d.json_text("props", k) for k in ("delivery_id", "push_id", "provider"))
    end_ms = int(query.range.end.timestamp() * 1000)
    only = f" AND {pid} = {d.text(push_id)}" if push_id is not None else ""
    rows = base.run(
        [
            base.links(),
            base.ev(("name", "ts", "props"), open_end=True, activity=False, filters=False),
            f"evp AS (SELECT name, ts, props FROM ev WHERE name IN ({names}))",
            f"sent AS (SELECT {did} AS sdid, min({pid}) AS spid, min({prov}) AS sprov FROM evp "
            f"WHERE name = 'push.sent' AND ts < {end_ms} AND {did} IS NOT NULL{only} GROUP BY {did})",
            f"st AS (SELECT DISTINCT {did} AS tdid, {stage} AS stage FROM evp WHERE name <> 'push.sent')",
            """per AS (SELECT sdid, spid, sprov,
  max(CASE WHEN stage IN (1, 3, 4) THEN 1 ELSE 0 END) AS dl, max(CASE WHEN stage = 2 THEN 1 ELSE 0 END) AS fl,
  max(CASE WHEN stage IN (3, 4) THEN 1 ELSE 0 END) AS ar, max(CASE WHEN stage = 4 THEN 1 ELSE 0 END) AS op
  FROM sent LEFT JOIN st ON st.tdid = sent.sdid GROUP BY sdid, spid, sprov)""",
        ],
        "SELECT spid, sprov, count(*), sum(dl), sum(fl), sum(ar), sum(op) FROM per GROUP BY spid, sprov",
    )
    result = [PushRow(str(p or ""), str(v or ""), *(int(x) for x in rest)) for p, v, *rest in rows]
    return PushResult(tuple(sorted(result, key=lambda r: (r.push_id, r.provider))))
