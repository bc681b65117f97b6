"""Rollups the reports read instead of every event (ADR 0014), kept by the store that loads.

Three tables, the same on DuckDB and ClickHouse, keys as :meth:`Dialect.key_hash`:

- ``rollup_persons (app, lkey, lperson, lts, lmid)``: each id an ``identify`` (its anonymous
  id) or an ``alias`` (its previous id) linked, with the user of its earliest link (ties by
  message id): exactly the ``links`` of :mod:`mpaas.analytics.reports.sql`;
- ``rollup_own_days (app, own, dnum)``: each distinct (own id, local day) with an event the
  app sent (not the server), ``own = coalesce(user_id, anonymous_id)``, the day in the
  store's rollup time zone;
- ``rollup_person_days (app, person, dnum, fday, nxt)``: each distinct (person, local day),
  ``person = coalesce(links[own], own)`` as the reports resolve it, with the person's first
  active day and next active day (NULL for the last).

A load batch updates them incrementally (:meth:`RollupWriter.batch`): the batch's links
replace a key's person only when earlier than the one known; the batch's own-days are
added; then every *affected* person (those of the batch's own ids, and the old and new
persons of every relinked id, so a late ``identify`` moves a device's past days to its
user) has its person-days recomputed from the own-days. :meth:`RollupWriter.rebuild`
recomputes everything from ``events`` and ``identity_links`` (after a forget, a change
of zone or engine version, or an interrupted ClickHouse load).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mpaas.analytics.reports.dialect import Dialect
from mpaas.analytics.reports.sql import offset_sql

#: Bumped when the rollups' shape or meaning changes: a store rebuilds them on open.
FORMAT = "1"
_LAST = 1 << 62  # sorts after any epoch-ms


def dnum_sql(d: Dialect, tz: str, column: str = "timestamp") -> str:
    """The local day number (days since 1970-01-01) of a timestamp column in ``tz``."""
    ms = d.epoch_ms(column)
    return d.floor_div(f"({ms} + {offset_sql(tz, since=None, until=None, ms=ms)})", 86_400_000)


def ranked_links(d: Dialect, source: str, kind: str) -> str:
    """The earliest link of each (app, id) in ``source`` (identity rows; ``kind``: the column
    holding identify/alias), as ``app, lkey, lperson, lts, lmid``."""
    ts = d.epoch_ms("timestamp")
    return f"""SELECT app, lkey, lperson, lts, lmid FROM (
  SELECT app, lkey, lperson, lts, lmid,
    row_number() OVER (PARTITION BY app, lkey ORDER BY lts, lmid) AS lrank FROM (
    SELECT app, {d.key_hash("anonymous_id")} AS lkey, {d.key_hash("nullif(user_id, '')")} AS lperson,
      {ts} AS lts, message_id AS lmid FROM {source}
    WHERE {kind} = 'identify' AND anonymous_id IS NOT NULL AND user_id IS NOT NULL
    UNION ALL
    SELECT app, {d.key_hash("previous_id")} AS lkey, {d.key_hash("nullif(user_id, '')")} AS lperson,
      {ts} AS lts, message_id AS lmid FROM {source}
    WHERE {kind} = 'alias' AND previous_id IS NOT NULL AND user_id IS NOT NULL
  ) AS raw_links
) AS ranked_links WHERE lrank = 1"""


def own_days(d: Dialect, tz: str, source: str) -> str:
    own = "coalesce(user_id, anonymous_id)"
    return (
        f"SELECT DISTINCT app, {d.key_hash(own)} AS own, {dnum_sql(d, tz)} AS dnum FROM {source} "
        f"WHERE source <> 'server' AND {own} IS NOT NULL"
    )


def person_days(d: Dialect, where_own: str, where_person: str) -> str:
    """Person-days with first and next day, from the own-days whose (app, own) match
    ``where_own``, kept for persons matching ``where_person`` (conditions on ``app``,
    ``own`` / ``person``)."""
    nxt = d.lead("dnum", "PARTITION BY app, person ORDER BY dnum")
    fday = "min(dnum) OVER (PARTITION BY app, person)"
    return f"""SELECT app, person, dnum, {fday} AS fday, {nxt} AS nxt FROM (
  SELECT DISTINCT o.app AS app, coalesce(p.lperson, o.own) AS person, o.dnum AS dnum
  FROM (SELECT app, own, dnum FROM rollup_own_days WHERE {where_own}) AS o
  LEFT JOIN rollup_persons AS p ON p.app = o.app AND p.lkey = o.own
) AS pd WHERE {where_person}"""


class RollupWriter:
    """Runs the rollup statements through a store's connection (inside its transaction on
    DuckDB). ``execute`` runs a statement, ``query`` returns rows."""

    def __init__(
        self,
        d: Dialect,
        tz: str,
        execute: Callable[[str], None],
        query: Callable[[str], list[tuple[Any, ...]]],
    ) -> None:
        self.d, self.tz, self.execute, self.query = d, tz, execute, query
        self.clickhouse = d.name == "clickhouse"

    def _settings(self) -> str:
        # ClickHouse fills a missing LEFT JOIN side with defaults (0, '') unless told
        return " SETTINGS join_use_nulls = 1" if self.clickhouse else ""

    def _temp(self, name: str, select: str) -> None:
        if self.clickhouse:
            self.execute(f"DROP TABLE IF EXISTS {name}")
            self.execute(f"CREATE TABLE {name} ENGINE = Memory AS {select}{self._settings()}")
        else:
            self.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {select}")

    def _drop(self, *names: str) -> None:
        for name in names:
            self.execute(f"DROP TABLE IF EXISTS {name}")

    def batch(self, source: str) -> None:
        """Fold a batch of new events (``source``: a table or subquery with the events
        columns, ``type`` telling identify/alias) into the rollups."""
        d = self.d
        self._temp("_rb_links", ranked_links(d, source, "type"))
        self._temp(
            "_rb_changed",
            "SELECT c.app AS app, c.lkey AS lkey, c.lperson AS lperson, c.lts AS lts, c.lmid AS lmid, "
            "coalesce(p.lperson, c.lkey) AS old FROM _rb_links AS c "
            "LEFT JOIN rollup_persons AS p ON p.app = c.app AND p.lkey = c.lkey "
            f"WHERE p.lkey IS NULL OR coalesce(c.lts, {_LAST}) < coalesce(p.lts, {_LAST}) "
            f"OR (coalesce(c.lts, {_LAST}) = coalesce(p.lts, {_LAST}) AND c.lmid < p.lmid)",
        )
        if self.query("SELECT count(*) FROM _rb_changed")[0][0]:
            self.execute(
                "DELETE FROM rollup_persons WHERE (app, lkey) IN (SELECT app, lkey FROM _rb_changed)"
            )
            self.execute("INSERT INTO rollup_persons SELECT app, lkey, lperson, lts, lmid FROM _rb_changed")
        self._temp("_rb_own", own_days(d, self.tz, source))
        lo, hi = self.query("SELECT min(dnum), max(dnum) FROM _rb_own")[0]
        if lo is not None:
            if self.clickhouse:  # a ReplacingMergeTree on (app, own, dnum): repeats merge away
                self.execute("INSERT INTO rollup_own_days SELECT app, own, dnum FROM _rb_own")
            else:
                self.execute(
                    "INSERT INTO rollup_own_days SELECT app, own, dnum FROM _rb_own AS b WHERE NOT EXISTS ("
                    f"SELECT 1 FROM rollup_own_days AS r WHERE r.dnum BETWEEN {int(lo)} AND {int(hi)} "
                    "AND r.app = b.app AND r.own = b.own AND r.dnum = b.dnum)"
                )
        self._temp(
            "_rb_aff",
            "SELECT DISTINCT app, person FROM ("
            "SELECT o.app AS app, coalesce(p.lperson, o.own) AS person FROM _rb_own AS o "
            "LEFT JOIN rollup_persons AS p ON p.app = o.app AND p.lkey = o.own "
            "UNION ALL SELECT app, old AS person FROM _rb_changed "
            "UNION ALL SELECT app, coalesce(lperson, lkey) AS person FROM _rb_changed) AS a "
            "WHERE person IS NOT NULL",
        )
        # the own ids that may belong to an affected person: the person's own id, and the
        # ids linked to it
        self._temp(
            "_rb_owns",
            "SELECT DISTINCT app, own FROM (SELECT app, person AS own FROM _rb_aff UNION ALL "
            "SELECT app, lkey AS own FROM rollup_persons "
            "WHERE (app, lperson) IN (SELECT app, person FROM _rb_aff)) AS c",
        )
        self._temp(
            "_rb_rows",
            person_days(
                d,
                "(app, own) IN (SELECT app, own FROM _rb_owns)",
                "(app, person) IN (SELECT app, person FROM _rb_aff)",
            ),
        )
        self.execute(
            "DELETE FROM rollup_person_days WHERE (app, person) IN (SELECT app, person FROM _rb_aff)"
        )
        self.execute("INSERT INTO rollup_person_days SELECT app, person, dnum, fday, nxt FROM _rb_rows")
        self._drop("_rb_links", "_rb_changed", "_rb_own", "_rb_aff", "_rb_owns", "_rb_rows")

    def rebuild(self) -> None:
        """Recompute every rollup from ``events`` and ``identity_links``."""
        d = self.d
        for table in ("rollup_persons", "rollup_own_days", "rollup_person_days"):
            self.execute(f"{'TRUNCATE TABLE' if self.clickhouse else 'DELETE FROM'} {table}")
        self.execute(f"INSERT INTO rollup_persons {ranked_links(d, 'identity_links', 'kind')}")
        self.execute(f"INSERT INTO rollup_own_days {own_days(d, self.tz, 'events')}")
        self.execute(f"INSERT INTO rollup_person_days {person_days(d, '1 = 1', '1 = 1')}{self._settings()}")
