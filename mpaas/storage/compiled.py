"""A SQLAlchemy statement compiled once and run on the database driver itself.

The hot paths that talk to asyncpg or ``sqlite3`` directly (the transfer's reads and write,
ADR 0019; the gateway's device keys; the session lookup) still take their SQL from
SQLAlchemy's compiler, with each parameter's own bind conversion and each result column's
own result conversion, so a row read or written this way is the one the ORM reads or writes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from sqlalchemy.engine import Dialect
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement


class Compiled:
    """A Core statement compiled once for a dialect: SQL text, parameter order, conversions."""

    def __init__(self, stmt: ClauseElement, dialect: Dialect) -> None:
        compiled = cast(SQLCompiler, stmt.compile(dialect=dialect))
        self.sql = compiled.string
        self.names = tuple(compiled.positiontup or ())
        processors: Mapping[str, Any] = compiled._bind_processors  # a callable per scalar bind
        self.processors = tuple(processors.get(name) for name in self.names)
        #: a SELECT's result conversions (SQLite's datetime text to aware datetimes, ...)
        columns = getattr(compiled, "_result_columns", None) or []
        self.results = tuple(c[3]._cached_result_processor(dialect, None) for c in columns)

    def row(self, raw: Any) -> tuple[Any, ...] | None:
        """A driver's row as SQLAlchemy would hand it back (None stays None)."""
        if raw is None:
            return None
        return tuple(v if p is None else p(v) for v, p in zip(tuple(raw), self.results, strict=True))

    def args(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(
            values[n] if p is None else p(values[n]) for n, p in zip(self.names, self.processors, strict=True)
        )
