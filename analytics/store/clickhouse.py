"""The ClickHouse event store: what a bank moves to when one DuckDB file is outgrown.

Same tables and columns as the DuckDB store (:mod:`.duckdb`), as MergeTree tables; the
loader writes here when ``MPAAS_ANALYTICS_URL=clickhouse://user:password@host:8123/db``.

ClickHouse has no multi-statement transactions, so a batch is written in an order that
makes a replay after a crash harmless: identity links, then events, then the spool
positions. A batch replayed from older positions finds its events already stored (the
dedupe by ``(app, message_id)`` drops them), so no event is loaded twice; an identity
link or an invalid event may be written twice, which the reports tolerate (a link is
looked up by id, the earliest one wins). Positions live in a ReplacingMergeTree keyed by
segment (the newest version wins; position -1 is a deleted segment).

The client is a :class:`ClickHouseConnection`: clickhouse-connect for a real server, or a
chdb session in-process (:class:`ChdbConnection`, used by the tests).
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
import time
from collections.abc import Sequence
from datetime import UTC, timedelta
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from mpaas.analytics.reports.dialect import CLICKHOUSE
from mpaas.analytics.reports.params import DEFAULT_TZ
from mpaas.analytics.store.base import Forget, LoadBatch, LoadResult
from mpaas.analytics.store.rollups import FORMAT, RollupWriter

_S = "Nullable(String)"
_T = "DateTime64(3, 'UTC')"
TABLES = (
    f"""CREATE TABLE IF NOT EXISTS events (
    app String, source String, channel {_S}, type String, event {_S}, message_id String,
    user_id {_S}, anonymous_id {_S}, previous_id {_S}, group_id {_S},
    timestamp {_T}, original_timestamp Nullable({_T}), sent_at Nullable({_T}), received_at {_T},
    app_version {_S}, platform {_S}, os {_S}, os_version {_S}, device_model {_S}, device_id {_S},
    library {_S}, packages {_S}, properties {_S}, context {_S}, flags Array(String)
) ENGINE = MergeTree PARTITION BY toYYYYMM(timestamp) ORDER BY (app, timestamp, message_id)""",
    # the hash of the event's own id that reports join on (ADR 0014), computed on insert;
    # ``SELECT *`` leaves a MATERIALIZED column out, so the inserts need no change
    "ALTER TABLE events ADD COLUMN IF NOT EXISTS own Nullable(UInt64) "
    "MATERIALIZED cityHash64(coalesce(user_id, anonymous_id))",
    f"""CREATE TABLE IF NOT EXISTS identity_links (
    app String, kind String, user_id {_S}, anonymous_id {_S}, previous_id {_S}, group_id {_S},
    traits {_S}, timestamp Nullable({_T}), received_at {_T}, message_id String
) ENGINE = MergeTree ORDER BY (app, message_id)""",
    f"""CREATE TABLE IF NOT EXISTS invalid_events (
    app {_S}, received_at Nullable({_T}), record_id {_S}, reason {_S}, raw {_S}
) ENGINE = MergeTree ORDER BY tuple()""",
    """CREATE TABLE IF NOT EXISTS spool_positions (segment String, position Int64, version UInt64)
ENGINE = ReplacingMergeTree(version) ORDER BY segment""",
    f"""CREATE TABLE IF NOT EXISTS forgotten (
    request_id Int64, app {_S}, id_kind String, id String, requested_at {_T}
) ENGINE = MergeTree ORDER BY (id_kind, id)""",
    f"""CREATE TABLE IF NOT EXISTS _incoming (
    seq Int64, app {_S}, source {_S}, channel {_S}, type {_S}, event {_S}, message_id {_S},
    user_id {_S}, anonymous_id {_S}, previous_id {_S}, group_id {_S}, ts_raw {_S}, sent_raw {_S},
    received_at Nullable({_T}), app_version {_S}, platform {_S}, os {_S}, os_version {_S},
    device_model {_S}, device_id {_S}, library {_S}, packages {_S}, properties {_S}, context {_S},
    flags Array(String)
) ENGINE = Memory""",
    "CREATE TABLE IF NOT EXISTS _fresh AS events ENGINE = Memory",
    """CREATE TABLE IF NOT EXISTS rollup_persons (
    app String, lkey UInt64, lperson Nullable(UInt64), lts Nullable(Int64), lmid String
) ENGINE = MergeTree ORDER BY (app, lkey)""",
    """CREATE TABLE IF NOT EXISTS rollup_own_days (app String, own UInt64, dnum Int64)
ENGINE = ReplacingMergeTree ORDER BY (app, own, dnum)""",
    """CREATE TABLE IF NOT EXISTS rollup_person_days (
    app String, person UInt64, dnum Int64, fday Int64, nxt Nullable(Int64)
) ENGINE = MergeTree ORDER BY (app, person, dnum)""",
    """CREATE TABLE IF NOT EXISTS rollup_state (name String, value String, version UInt64)
ENGINE = ReplacingMergeTree(version) ORDER BY name""",
)


def _ms(column: str) -> str:
    return f"toUnixTimestamp64Milli({column})"


#: The first of each (app, message_id) not stored within the dedupe window and not of a
#: forgotten user, with the clock corrected as the DuckDB store does it.
FRESH = f"""
INSERT INTO _fresh
SELECT assumeNotNull(app), assumeNotNull(source), channel, assumeNotNull(type), event,
    assumeNotNull(message_id),
    user_id, anonymous_id, previous_id, group_id,
    CASE WHEN ts IS NULL THEN assumeNotNull(received_at) WHEN sent IS NULL THEN assumeNotNull(ts)
         ELSE fromUnixTimestamp64Milli({_ms("assumeNotNull(received_at)")} - ({_ms("assumeNotNull(sent)")}
              - {_ms("assumeNotNull(ts)")}), 'UTC') END,
    ts, sent, assumeNotNull(received_at), app_version, platform, os, os_version, device_model, device_id,
    library, packages, properties, context,
    if(ts_raw IS NOT NULL AND ts IS NULL, arrayPushBack(flags, 'bad_timestamp'), flags)
FROM (
    SELECT *, parseDateTime64BestEffortOrNull(ts_raw, 3, 'UTC') AS ts,
        parseDateTime64BestEffortOrNull(sent_raw, 3, 'UTC') AS sent
    FROM _incoming AS i
    WHERE (i.app, i.message_id) NOT IN (
        SELECT app, message_id FROM events WHERE received_at >= {{cutoff}}
        AND message_id IN (SELECT assumeNotNull(message_id) FROM _incoming))
      AND {{forgotten}}
    ORDER BY seq
    LIMIT 1 BY app, message_id
)
"""
LINKS = """
INSERT INTO identity_links
SELECT app, type, user_id, anonymous_id, previous_id, group_id, properties, timestamp, received_at, message_id
FROM _fresh WHERE type IN ('identify', 'alias', 'group')
"""


class ClickHouseConnection(Protocol):
    def command(self, sql: str) -> None: ...

    def rows(self, sql: str) -> list[tuple[Any, ...]]: ...

    def insert_arrow(self, table: str, data: pa.Table) -> None: ...

    def close(self) -> None: ...


class ClickHouseConnectClient:
    """A real server through clickhouse-connect (HTTP)."""

    def __init__(self, url: str) -> None:
        import clickhouse_connect

        self.client = clickhouse_connect.get_client(dsn=url)

    def command(self, sql: str) -> None:
        self.client.command(sql)

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        from clickhouse_connect.driver.exceptions import OperationalError

        try:
            return [tuple(r) for r in self.client.query(sql).result_rows]
        except OperationalError as exc:  # the server is down or unreachable
            raise ConnectionError(str(exc)) from exc

    def insert_arrow(self, table: str, data: pa.Table) -> None:
        self.client.insert_arrow(table, data)

    def close(self) -> None:
        self.client.close()


class ChdbConnection:
    """ClickHouse's engine in-process (chdb); the same SQL as a server runs."""

    def __init__(self, path: str | None = None, database: str = "mpaas") -> None:
        from chdb import session

        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", database):
            raise ValueError(f"bad database name {database!r}")
        self.session = session.Session(path) if path else session.Session()
        self.session.query(f"CREATE DATABASE IF NOT EXISTS {database}")
        self.session.query(f"USE {database}")

    def command(self, sql: str) -> None:
        self.session.query(sql)

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        raw = self.session.query(sql, "ArrowStream").bytes()
        if not raw:
            return []
        table = pa.ipc.open_stream(raw).read_all()
        return [tuple(r.values()) for r in table.to_pylist()]

    def insert_arrow(self, table: str, data: pa.Table) -> None:
        fd, path = tempfile.mkstemp(suffix=".parquet")
        os.close(fd)
        try:
            pq.write_table(data, path)
            columns = ", ".join(data.column_names)
            self.session.query(
                f"INSERT INTO {table} ({columns}) SELECT {columns} FROM file('{path}', Parquet)"
            )
        finally:
            os.unlink(path)

    def close(self) -> None:
        self.session.close()


def _lit(value: str | None) -> str:
    if value is None:
        return "NULL"
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class ClickHouseStore:
    """The event store in ClickHouse; one writer (the loader), any number of readers."""

    def __init__(
        self, connection: ClickHouseConnection, *, dedupe_days: int = 7, rollup_tz: str = DEFAULT_TZ
    ) -> None:
        self.connection = connection
        self.dedupe = timedelta(days=dedupe_days)
        self.path = "clickhouse"
        self.rollup_tz = rollup_tz
        self._lock = threading.Lock()
        for ddl in TABLES:
            connection.command(ddl)
        self._rollups = RollupWriter(CLICKHOUSE, rollup_tz, connection.command, connection.rows)
        self._version = ""
        self._materialized_ctes: bool | None = None

    @classmethod
    def from_url(cls, url: str, *, dedupe_days: int = 7, rollup_tz: str = DEFAULT_TZ) -> ClickHouseStore:
        return cls(ClickHouseConnectClient(url), dedupe_days=dedupe_days, rollup_tz=rollup_tz)

    def _wanted(self) -> dict[str, str]:
        if not self._version:
            self._version = str(self.connection.rows("SELECT version()")[0][0])
        return {"tz": self.rollup_tz, "engine": self._version, "format": FORMAT, "dirty": "0"}

    def materialized_ctes(self) -> bool:
        """Whether the server computes ``WITH x AS MATERIALIZED (...)`` once (the reports'
        funnel then steps by ASOF joins, ADR 0014)."""
        if self._materialized_ctes is None:
            with self._lock:
                found = self.connection.rows(
                    "SELECT count() FROM system.settings WHERE name = 'enable_materialized_cte'"
                )
            self._materialized_ctes = bool(found and found[0][0])
        return self._materialized_ctes

    def _state(self) -> dict[str, str]:
        rows = self.connection.rows("SELECT name, argMax(value, version) FROM rollup_state GROUP BY name")
        return {str(n): str(v) for n, v in rows}

    def _set_state(self, values: dict[str, str]) -> None:
        version = time.time_ns()
        rows = ", ".join(f"({_lit(k)}, {_lit(v)}, {version})" for k, v in values.items())
        self.connection.command(f"INSERT INTO rollup_state VALUES {rows}")

    def rollup_zone(self) -> str | None:
        """The rollups' time zone when they are current; None until the writer (the loader's
        next batch, or :meth:`rebuild_rollups`) has built them, or while a load that was
        interrupted leaves them to rebuild."""
        with self._lock:
            return self.rollup_tz if self._state() == self._wanted() else None

    def rebuild_rollups(self) -> None:
        with self._lock:
            self._rebuild()

    def _rebuild(self) -> None:
        self._set_state({"dirty": "1"})
        self._rollups.rebuild()
        self._set_state(self._wanted())

    def positions(self) -> dict[str, int]:
        with self._lock:
            rows = self.connection.rows(
                "SELECT segment, position FROM spool_positions FINAL WHERE position >= 0"
            )
        return {str(s): int(p) for s, p in rows}

    def load(self, batch: LoadBatch) -> LoadResult:
        con, received, inserted = self.connection, batch.events.num_rows, 0
        with self._lock:
            if received:
                # no transaction: mark the rollups dirty until the batch is folded in, so
                # that a crash in between makes the next load rebuild them
                current = self._state() == self._wanted()
                self._set_state({"dirty": "1"})
                con.command("TRUNCATE TABLE _incoming")
                con.command("TRUNCATE TABLE _fresh")
                con.insert_arrow("_incoming", batch.events)
                cutoff = min(t for t in batch.events.column("received_at").to_pylist() if t is not None)
                stamp = (cutoff - self.dedupe).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
                sql = FRESH.replace("{cutoff}", f"toDateTime64('{stamp}', 3, 'UTC')")
                con.command(sql.replace("{forgotten}", self._not_forgotten()))
                con.command(LINKS)
                con.command("INSERT INTO events SELECT * FROM _fresh")
                inserted = int(con.rows("SELECT count() FROM _fresh")[0][0])
                if current:
                    self._rollups.batch("_fresh")
                    self._set_state({"dirty": "0"})
                else:
                    self._rebuild()
            if batch.invalid.num_rows:
                con.insert_arrow("invalid_events", batch.invalid)
            version = time.time_ns()
            rows = [(s, int(p)) for s, p in batch.positions.items()] + [(s, -1) for s in batch.stale]
            if rows:
                values = ", ".join(f"({_lit(s)}, {p}, {version})" for s, p in rows)
                con.command(f"INSERT INTO spool_positions VALUES {values}")
        return LoadResult(received, inserted, batch.invalid.num_rows)

    def _not_forgotten(self) -> str:
        """A condition on ``_incoming AS i`` that drops events of users forgotten after the
        event was received (few rows: only the batch's forgotten ids are read)."""
        rows = self.connection.rows(
            "SELECT id_kind, id, app, toString(max(requested_at)) FROM forgotten WHERE id IN "
            "(SELECT user_id FROM _incoming UNION ALL SELECT anonymous_id FROM _incoming) "
            "GROUP BY id_kind, id, app"
        )
        conds = []
        for kind, ident, app, upto in rows:
            column = "i.user_id" if kind == "user" else "i.anonymous_id"
            scope = f" AND i.app = {_lit(app)}" if app is not None else ""
            conds.append(
                f"NOT ({column} = {_lit(ident)}{scope} "
                f"AND i.received_at <= toDateTime64({_lit(upto)}, 3, 'UTC'))"
            )
        return " AND ".join(conds) or "1 = 1"

    def forget(self, request: Forget) -> tuple[int, int]:
        """As the DuckDB store: the user's events and links, and the ids linked to the user."""
        app = f"app = {_lit(request.app)} AND " if request.app is not None else ""
        user = _lit(request.user_id)
        with self._lock:
            linked = [
                str(r[0])
                for r in self.connection.rows(
                    "SELECT DISTINCT x FROM (SELECT anonymous_id AS x FROM identity_links "
                    f"WHERE {app}user_id = {user} "
                    f"UNION ALL SELECT previous_id FROM identity_links WHERE {app}user_id = {user} "
                    f"UNION ALL SELECT anonymous_id FROM events WHERE {app}user_id = {user}) "
                    "WHERE x IS NOT NULL"
                )
            ]
            ids = ", ".join(_lit(i) for i in [request.user_id, *linked])
            ev_cond = f"{app}(user_id IN ({ids}) OR anonymous_id IN ({ids}))"
            link_cond = f"{app}(user_id IN ({ids}) OR anonymous_id IN ({ids}) OR previous_id IN ({ids}))"
            events = int(self.connection.rows(f"SELECT count() FROM events WHERE {ev_cond}")[0][0])
            links = int(self.connection.rows(f"SELECT count() FROM identity_links WHERE {link_cond}")[0][0])
            stamp = request.requested_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
            rows = (
                [("user", request.user_id)]
                + [("anonymous", a) for a in linked]
                + [("user", a) for a in linked]
            )
            values = ", ".join(
                f"({request.request_id}, {_lit(request.app)}, '{k}', {_lit(i)}, "
                f"toDateTime64('{stamp}', 3, 'UTC'))"
                for k, i in rows
            )
            self.connection.command(f"INSERT INTO forgotten VALUES {values}")
            self.connection.command(f"DELETE FROM events WHERE {ev_cond}")
            self.connection.command(f"DELETE FROM identity_links WHERE {link_cond}")
            self._rebuild()  # rare: simpler than undoing the user's days
        return events, links

    def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        if params:
            raise ValueError("the ClickHouse store takes SQL with literals, not parameters")
        with self._lock:
            return self.connection.rows(sql)

    def close(self) -> None:
        with self._lock:
            self.connection.close()
