"""The DuckDB event store: one file, one writer process, bulk loads from Arrow.

Tables: ``events`` (one row per event, typed columns plus JSON), ``identity_links``
(from identify, alias and group), ``invalid_events``, ``spool_positions`` (how far the
loader has read each spool segment, committed with the rows) and ``forgotten`` (users
deleted on request, so that their events still in the spool are not loaded later).

Clock correction happens here, in SQL, as Segment does it:
``timestamp = received_at - (sent_at - client timestamp)``; no client timestamp means
``received_at``; no ``sent_at`` means the client timestamp as sent. All times are UTC.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from mpaas.analytics.reports.dialect import DUCKDB
from mpaas.analytics.reports.params import DEFAULT_TZ
from mpaas.analytics.store.base import Forget, LoadBatch, LoadResult
from mpaas.analytics.store.rollups import FORMAT, RollupWriter

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    app VARCHAR NOT NULL, source VARCHAR NOT NULL, channel VARCHAR,
    type VARCHAR NOT NULL, event VARCHAR, message_id VARCHAR NOT NULL,
    user_id VARCHAR, anonymous_id VARCHAR, previous_id VARCHAR, group_id VARCHAR,
    timestamp TIMESTAMPTZ NOT NULL, original_timestamp TIMESTAMPTZ, sent_at TIMESTAMPTZ,
    received_at TIMESTAMPTZ NOT NULL,
    app_version VARCHAR, platform VARCHAR, os VARCHAR, os_version VARCHAR,
    device_model VARCHAR, device_id VARCHAR, library VARCHAR,
    packages JSON, properties JSON, context JSON, flags VARCHAR[], own UBIGINT
);
ALTER TABLE events ADD COLUMN IF NOT EXISTS own UBIGINT;
CREATE TABLE IF NOT EXISTS identity_links (
    app VARCHAR NOT NULL, kind VARCHAR NOT NULL, user_id VARCHAR, anonymous_id VARCHAR,
    previous_id VARCHAR, group_id VARCHAR, traits JSON, timestamp TIMESTAMPTZ,
    received_at TIMESTAMPTZ NOT NULL, message_id VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS invalid_events (
    app VARCHAR, received_at TIMESTAMPTZ, record_id VARCHAR, reason VARCHAR, raw VARCHAR
);
CREATE TABLE IF NOT EXISTS spool_positions (segment VARCHAR PRIMARY KEY, position BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS forgotten (
    request_id BIGINT NOT NULL, app VARCHAR, id_kind VARCHAR NOT NULL, id VARCHAR NOT NULL,
    requested_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS rollup_persons (
    app VARCHAR NOT NULL, lkey UBIGINT NOT NULL, lperson UBIGINT, lts BIGINT, lmid VARCHAR
);
CREATE TABLE IF NOT EXISTS rollup_own_days (app VARCHAR NOT NULL, own UBIGINT NOT NULL, dnum BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS rollup_person_days (
    app VARCHAR NOT NULL, person UBIGINT NOT NULL, dnum BIGINT NOT NULL, fday BIGINT NOT NULL, nxt BIGINT
);
CREATE TABLE IF NOT EXISTS rollup_state (name VARCHAR PRIMARY KEY, value VARCHAR NOT NULL);
"""
#: ``events.own``: the hash of the event's own id that reports join on (ADR 0014), written
#: with the row (hashing the two text columns at query time was most of a funnel's time).
OWN = DUCKDB.key_hash("coalesce(user_id, anonymous_id)")

#: New rows of ``incoming``: first of each (app, message_id) by ``seq`` (unique in a batch;
#: the first is found on the keys alone, since a window over whole rows cost more than the
#: rest of the statement), not stored already within the dedupe window (``dups``), not of a
#: user forgotten after the event was received (``{forgotten}``: the clauses below, or
#: nothing while no user was ever forgotten). Materialised once, narrow, as the temp table
#: ``fresh`` with the corrected timestamps: the rollups read it, the links and the events
#: join it to ``incoming`` by ``seq`` (:data:`JOINED`). Computing it for each of the three
#: was a fifth of the store's time; copying the wide columns into it, another 2 us per event.
FRESH = """
CREATE OR REPLACE TEMP TABLE fresh AS
SELECT seq, app, source, type, user_id, anonymous_id, previous_id, message_id,
    CASE WHEN ts IS NULL THEN received_at WHEN sent IS NULL THEN ts
         ELSE received_at - (sent - ts) END AS timestamp,
    ts AS original_timestamp, sent AS sent_at,
    CASE WHEN ts_raw IS NOT NULL AND ts IS NULL THEN list_append(flags, 'bad_timestamp')
         ELSE flags END AS flags
FROM (
    SELECT seq, app, source, type, user_id, anonymous_id, previous_id, message_id, received_at,
        ts_raw, flags, TRY_CAST(ts_raw AS TIMESTAMPTZ) AS ts, TRY_CAST(sent_raw AS TIMESTAMPTZ) AS sent
    FROM incoming
    WHERE seq IN (
        SELECT min(seq) FROM incoming i
        WHERE NOT EXISTS (SELECT 1 FROM dups d WHERE d.app = i.app AND d.message_id = i.message_id)
          {forgotten}
        GROUP BY app, message_id
    )
)
"""
#: The new rows whole: ``incoming``'s columns with ``fresh``'s timestamps and flags.
JOINED = """(
    SELECT i.* EXCLUDE (seq, ts_raw, sent_raw, flags), f.timestamp, f.original_timestamp, f.sent_at, f.flags
    FROM incoming AS i JOIN fresh AS f ON f.seq = i.seq
)"""
FORGOTTEN = """
      AND NOT EXISTS (SELECT 1 FROM forgotten f WHERE f.id_kind = 'user' AND f.id = i.user_id
                      AND (f.app IS NULL OR f.app = i.app) AND i.received_at <= f.requested_at)
      AND NOT EXISTS (SELECT 1 FROM forgotten f WHERE f.id_kind = 'anonymous' AND f.id = i.anonymous_id
                      AND (f.app IS NULL OR f.app = i.app) AND i.received_at <= f.requested_at)
"""
DUPS = """
CREATE OR REPLACE TEMP TABLE dups AS
SELECT DISTINCT app, message_id FROM events
WHERE received_at >= ? AND message_id IN (SELECT message_id FROM incoming)
"""
EVENT_COLUMNS = (
    "app, source, channel, type, event, message_id, user_id, anonymous_id, previous_id, group_id, "
    "timestamp, original_timestamp, sent_at, received_at, app_version, platform, os, os_version, "
    "device_model, device_id, library, packages, properties, context, flags"
)
LINKS = f"""
INSERT INTO identity_links
SELECT app, type, user_id, anonymous_id, previous_id, group_id, properties, timestamp, received_at, message_id
FROM {JOINED} WHERE type IN ('identify', 'alias', 'group')
"""

#: Rows per Arrow batch of ``incoming``. DuckDB scans an Arrow table one batch per thread,
#: and the normaliser's table comes as one batch of a million rows: chunked, the dedupe,
#: the timestamps and the insert run on every core. The insert runs with
#: ``preserve_insertion_order`` off (only while loading), so that the threads write
#: their own row groups in parallel; nothing reads ``events`` in insertion order (``seq``
#: decides dedupe in :data:`FRESH`, and every report orders or aggregates).
CHUNK_ROWS = 16_384


def _chunked(table: pa.Table) -> pa.Table:
    """The same rows in batches of at most :data:`CHUNK_ROWS` (slices: nothing is copied)."""
    return pa.Table.from_batches(table.to_batches(max_chunksize=CHUNK_ROWS), schema=table.schema)


class DuckDbStore:
    """The event store in one DuckDB file. Not safe for two processes: the loader's
    writer lock (:mod:`mpaas.analytics.loader.lock`) guards the file."""

    def __init__(
        self,
        path: Path | str,
        *,
        dedupe_days: int = 7,
        read_only: bool = False,
        rollup_tz: str = DEFAULT_TZ,
    ) -> None:
        self.path = str(path)
        self.dedupe = timedelta(days=dedupe_days)
        self.rollup_tz = rollup_tz
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._con = duckdb.connect(self.path, read_only=read_only)
        self._lock = threading.Lock()
        # the funnel's ASOF joins (analytics/reports/funnels.py) always sort-merge: a low row
        # estimate must not plan them as nested loops (minutes instead of a second at 10 M)
        self._con.execute(
            "SET TimeZone = 'UTC'; SET enable_progress_bar = false; SET asof_loop_join_threshold = 0"
        )
        self._rollups = RollupWriter(DUCKDB, rollup_tz, self._execute, self._query)
        if not read_only:
            self._con.execute(SCHEMA)
            if self._state() != self._wanted():
                self.rebuild_rollups()

    def _execute(self, sql: str) -> None:
        self._con.execute(sql)

    def _query(self, sql: str) -> list[tuple[Any, ...]]:
        return self._con.execute(sql).fetchall()

    def _wanted(self) -> dict[str, str]:
        return {"tz": self.rollup_tz, "engine": duckdb.__version__, "format": FORMAT}

    def _state(self) -> dict[str, str]:
        try:
            return dict(self._con.execute("SELECT name, value FROM rollup_state").fetchall())
        except duckdb.CatalogException:  # a read-only file written before the rollups
            return {}

    def rollup_zone(self) -> str | None:
        """The time zone of the rollups' days, when they are current (a read-only store
        over a file whose rollups are of another zone or engine version has none)."""
        with self._lock:
            return self.rollup_tz if self._state() == self._wanted() else None

    def rebuild_rollups(self) -> None:
        """Recompute the rollups from every event (after a bulk insert that bypassed :meth:`load`)."""
        with self._lock:
            # another engine version may hash differently: then every stored key is redone
            stale = self._state().get("engine") != duckdb.__version__
            self._con.execute("BEGIN TRANSACTION")
            try:
                self._con.execute(
                    f"UPDATE events SET own = {OWN} "
                    + ("" if stale else "WHERE own IS NULL AND coalesce(user_id, anonymous_id) IS NOT NULL")
                )
                self._rollups.rebuild()
                self._con.executemany(
                    "INSERT OR REPLACE INTO rollup_state VALUES (?, ?)", list(self._wanted().items())
                )
                self._con.execute("COMMIT")
            except BaseException:
                self._con.execute("ROLLBACK")
                raise

    def positions(self) -> dict[str, int]:
        with self._lock:
            return dict(self._con.execute("SELECT segment, position FROM spool_positions").fetchall())

    def load(self, batch: LoadBatch) -> LoadResult:
        con, received = self._con, batch.events.num_rows
        with self._lock:
            con.execute("SET preserve_insertion_order = false")  # see CHUNK_ROWS
            try:
                inserted = self._load(batch)
            finally:
                con.execute("RESET preserve_insertion_order")
        return LoadResult(received, inserted, batch.invalid.num_rows)

    def _load(self, batch: LoadBatch) -> int:
        """The batch in one transaction (the caller holds the lock); the events inserted."""
        con, received = self._con, batch.events.num_rows
        con.execute("BEGIN TRANSACTION")
        try:
            inserted = 0
            if received:
                con.register("incoming", _chunked(batch.events))
                cutoff = con.execute("SELECT min(received_at) FROM incoming").fetchone()
                assert cutoff is not None
                con.execute(DUPS, [cutoff[0] - self.dedupe])
                forgotten = con.execute("SELECT count(*) FROM forgotten").fetchone()
                con.execute(FRESH.replace("{forgotten}", FORGOTTEN if forgotten and forgotten[0] else ""))
                con.execute(LINKS)
                insert = f"INSERT INTO events ({EVENT_COLUMNS}, own) SELECT {EVENT_COLUMNS}, {OWN}"
                row = con.execute(f"{insert} FROM {JOINED}").fetchone()
                inserted = int(row[0]) if row else 0
                self._rollups.batch("fresh")
                con.execute("DROP TABLE fresh")
                con.execute("DROP TABLE dups")
                con.unregister("incoming")
            if batch.invalid.num_rows:
                con.register("invalid_in", batch.invalid)
                con.execute("INSERT INTO invalid_events SELECT * FROM invalid_in")
                con.unregister("invalid_in")
            if batch.positions:
                con.executemany(
                    "INSERT OR REPLACE INTO spool_positions VALUES (?, ?)", list(batch.positions.items())
                )
            if batch.stale:
                con.executemany("DELETE FROM spool_positions WHERE segment = ?", [[s] for s in batch.stale])
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return inserted

    def forget(self, request: Forget) -> tuple[int, int]:
        """Delete the user's events and identity links, and the anonymous ids and earlier
        ids linked to that user (a device shared by several people loses them all)."""
        app_cond, app_args = ("app = ? AND ", [request.app]) if request.app is not None else ("", [])
        con = self._con
        with self._lock:
            con.execute("BEGIN TRANSACTION")
            try:
                linked = [
                    r[0]
                    for r in con.execute(
                        f"SELECT anonymous_id FROM identity_links WHERE {app_cond}user_id = ? "
                        f"AND anonymous_id IS NOT NULL UNION SELECT previous_id FROM identity_links "
                        f"WHERE {app_cond}user_id = ? AND previous_id IS NOT NULL UNION SELECT anonymous_id "
                        f"FROM events WHERE {app_cond}user_id = ? AND anonymous_id IS NOT NULL",
                        [*app_args, request.user_id] * 3,
                    ).fetchall()
                ]
                ids = [request.user_id, *linked]
                marks = ",".join("?" * len(ids))
                events = con.execute(
                    f"DELETE FROM events WHERE {app_cond}(user_id IN ({marks}) OR anonymous_id IN ({marks}))",
                    [*app_args, *ids, *ids],
                ).fetchone()
                links = con.execute(
                    f"DELETE FROM identity_links WHERE {app_cond}(user_id IN ({marks}) "
                    f"OR anonymous_id IN ({marks}) OR previous_id IN ({marks}))",
                    [*app_args, *ids, *ids, *ids],
                ).fetchone()
                rows = [(request.request_id, request.app, "user", request.user_id, request.requested_at)]
                rows += [
                    (request.request_id, request.app, "anonymous", a, request.requested_at) for a in linked
                ]
                rows += [(request.request_id, request.app, "user", a, request.requested_at) for a in linked]
                con.executemany("INSERT INTO forgotten VALUES (?, ?, ?, ?, ?)", rows)
                self._rollups.rebuild()  # rare: simpler than undoing the user's days
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        return (int(events[0]) if events else 0, int(links[0]) if links else 0)

    def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._con.execute(sql, list(params)).fetchall()

    def counts(self, app: str) -> dict[str, int]:
        """Events per name (track) or type (others) of an app."""
        rows = self.fetch(
            "SELECT coalesce(event, type), count(*) FROM events WHERE app = ? GROUP BY 1", [app]
        )
        return {str(name): int(n) for name, n in rows}

    def checkpoint(self) -> None:
        with self._lock:
            self._con.execute("CHECKPOINT")

    def close(self) -> None:
        with self._lock:
            self._con.close()
