"""What differs between DuckDB's SQL and ClickHouse's, and nothing else.

The report queries are written once (:mod:`.sql` and the report modules) against a
:class:`Dialect`; every function that is spelt differently on the two engines is one
method here. Queries return only integers, floats and strings, so the two engines'
Python values compare equal. Values are rendered as literals (neither chdb nor
clickhouse-connect's server-side binding matches DuckDB's ``?``); :meth:`Dialect.text`
escapes them for the engine's own string syntax.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from mpaas.analytics.reports.errors import InvalidReportParameter

_KEY_RE = re.compile(r"[A-Za-z0-9_$.\-]{1,100}")


class Dialect:
    name = "abstract"
    #: Whether a CTE the query reads twice is computed once (DuckDB) or inlined (ClickHouse).
    materializes_ctes = False

    def text(self, value: str) -> str:
        """A string literal (no NUL: neither engine takes one in a literal)."""
        raise NotImplementedError

    @staticmethod
    def _plain(value: str) -> str:
        if "\x00" in value:
            raise InvalidReportParameter("a value contains a NUL character")
        return value

    def instant(self, moment: datetime) -> str:
        """A UTC timestamp literal comparable with ``events.timestamp``."""
        raise NotImplementedError

    def epoch_ms(self, column: str) -> str:
        """Milliseconds since the epoch of a timestamp column (an integer)."""
        raise NotImplementedError

    def floor_div(self, expr: str, divisor: int) -> str:
        """Integer division of a non-negative integer expression."""
        raise NotImplementedError

    def json_text(self, column: str, key: str) -> str:
        """A top-level JSON property as text; NULL when missing or empty."""
        raise NotImplementedError

    def json_number(self, column: str, key: str) -> str:
        """A top-level JSON property as a double; NULL when missing or not a number."""
        raise NotImplementedError

    def package_version(self, column: str, package_id: str) -> str:
        """The version of package ``package_id`` in a ``packages`` JSON list; NULL if absent."""
        raise NotImplementedError

    def quantile(self, expr: str, q: float) -> str:
        """Linear-interpolated (R-7) quantile of the group's non-NULL values."""
        raise NotImplementedError

    def contains(self, haystack: str, needle: str) -> str:
        raise NotImplementedError

    def to_text(self, expr: str) -> str:
        raise NotImplementedError

    def null_text(self) -> str:
        """A NULL of the text type."""
        raise NotImplementedError

    def null_int(self) -> str:
        """A NULL of the 64-bit integer type."""
        raise NotImplementedError

    def key_hash(self, expr: str) -> str:
        """A 64-bit integer standing for a text key (NULL for NULL): windows, joins and
        DISTINCTs on it are cheaper than on the text. The engines hash differently, but a
        report only compares keys, so the answers are the same."""
        raise NotImplementedError

    def arg_min(self, value: str, key: str) -> str:
        """``value`` at the row of the smallest non-NULL ``key`` (rows with a NULL skipped)."""
        raise NotImplementedError

    def next_days(self, source: str, where: str) -> str:
        """A query over ``source`` rows (``person``, ``dnum``) matching ``where``: each distinct
        (person, day) once as ``dnum``, with ``nxt`` the person's next such day (NULL for the last)."""
        return (
            "SELECT dnum, lead(dnum) OVER (PARTITION BY person ORDER BY dnum) AS nxt "
            f"FROM (SELECT DISTINCT person, dnum FROM {source} WHERE {where}) AS pd"
        )

    def lead(self, expr: str, over: str, *, lag: bool = False) -> str:
        """The next (or previous) row's value in the window; NULL when there is none."""
        return f"{'lag' if lag else 'lead'}({expr}) OVER ({over})"

    @staticmethod
    def key(key: str) -> str:
        """A JSON key fit to be put in a path; the parameter checks already allow no more."""
        if not _KEY_RE.fullmatch(key):
            raise ValueError(f"bad JSON key {key!r}")
        return key


class DuckDbDialect(Dialect):
    name = "duckdb"
    materializes_ctes = True

    def text(self, value: str) -> str:
        return "'" + self._plain(value).replace("'", "''") + "'"

    def instant(self, moment: datetime) -> str:
        utc = moment.astimezone(UTC).replace(tzinfo=None)
        return f"TIMESTAMPTZ '{utc.isoformat(sep=' ', timespec='milliseconds')}+00'"

    def epoch_ms(self, column: str) -> str:
        return f"epoch_ms({column})"

    def floor_div(self, expr: str, divisor: int) -> str:
        return f"({expr} // {divisor})"

    def _path(self, key: str) -> str:
        return self.text('$."' + self.key(key) + '"')

    def json_text(self, column: str, key: str) -> str:
        return f"nullif(json_extract_string({column}, {self._path(key)}), '')"

    def json_number(self, column: str, key: str) -> str:
        return f"TRY_CAST(json_extract_string({column}, {self._path(key)}) AS DOUBLE)"

    def package_version(self, column: str, package_id: str) -> str:
        shape = self.text('[{"id":"VARCHAR","version":"VARCHAR"}]')
        return (
            f"list_filter(from_json({column}, {shape}), lambda p: p.id = {self.text(package_id)})[1].version"
        )

    def quantile(self, expr: str, q: float) -> str:
        return f"quantile_cont({expr}, {q!r})"

    def contains(self, haystack: str, needle: str) -> str:
        return f"contains({haystack}, {needle})"

    def to_text(self, expr: str) -> str:
        return f"CAST({expr} AS VARCHAR)"

    def arg_min(self, value: str, key: str) -> str:
        return f"arg_min({value}, {key})"

    def null_text(self) -> str:
        return "CAST(NULL AS VARCHAR)"

    def null_int(self) -> str:
        return "CAST(NULL AS BIGINT)"

    def key_hash(self, expr: str) -> str:
        return f"CASE WHEN ({expr}) IS NOT NULL THEN hash({expr}) END"  # hash(NULL) is a number


class ClickHouseDialect(Dialect):
    name = "clickhouse"

    def text(self, value: str) -> str:
        return "'" + self._plain(value).replace("\\", "\\\\").replace("'", "\\'") + "'"

    def instant(self, moment: datetime) -> str:
        utc = moment.astimezone(UTC).replace(tzinfo=None)
        return f"toDateTime64('{utc.isoformat(sep=' ', timespec='milliseconds')}', 3, 'UTC')"

    def epoch_ms(self, column: str) -> str:
        return f"toUnixTimestamp64Milli({column})"

    def floor_div(self, expr: str, divisor: int) -> str:
        return f"intDiv({expr}, {divisor})"

    def json_text(self, column: str, key: str) -> str:
        k = self.text(self.key(key))
        return (
            f"if(JSONType({column}, {k}) = 'String', nullIf(JSONExtractString({column}, {k}), ''), "
            f"nullIf(JSONExtractRaw({column}, {k}), ''))"
        )

    def json_number(self, column: str, key: str) -> str:
        return f"JSONExtract({column}, {self.text(self.key(key))}, 'Nullable(Float64)')"

    def package_version(self, column: str, package_id: str) -> str:
        match = f"x -> JSONExtractString(x, 'id') = {self.text(package_id)}"
        return (
            f"nullIf(JSONExtractString(arrayFirst({match}, JSONExtractArrayRaw(ifNull({column}, ''))), "
            f"'version'), '')"
        )

    def quantile(self, expr: str, q: float) -> str:
        return f"quantileExactInclusive({q!r})({expr})"

    def contains(self, haystack: str, needle: str) -> str:
        return f"(position({haystack}, {needle}) > 0)"

    def to_text(self, expr: str) -> str:
        return f"toString({expr})"

    def arg_min(self, value: str, key: str) -> str:
        return f"argMin({value}, {key})"

    def null_text(self) -> str:
        return "CAST(NULL AS Nullable(String))"

    def null_int(self) -> str:
        return "CAST(NULL AS Nullable(Int64))"

    def key_hash(self, expr: str) -> str:
        return f"cityHash64({expr})"  # NULL for NULL

    def next_days(self, source: str, where: str) -> str:
        # a sorted array of each person's days, zipped with itself shifted: about twice as
        # fast as a DISTINCT and a window on ClickHouse (not on DuckDB, whose lambdas are slow)
        last = 1 << 40
        return (
            f"SELECT t.1 AS dnum, nullIf(t.2, {last}) AS nxt FROM ("
            f"SELECT arraySort(groupUniqArray(dnum)) AS ds FROM {source} WHERE {where} GROUP BY person"
            f") AS pl ARRAY JOIN arrayZip(ds, arrayPushBack(arrayPopFront(ds), {last})) AS t"
        )

    def lead(self, expr: str, over: str, *, lag: bool = False) -> str:
        # ClickHouse fills a missing neighbour with the type's default (0, ''), not NULL.
        return f"{'lag' if lag else 'lead'}(toNullable({expr})) OVER ({over})"


DUCKDB = DuckDbDialect()
CLICKHOUSE = ClickHouseDialect()
