"""The engines reports run on: anything that answers SQL over ``events`` and ``identity_links``.

A :class:`ReportEngine` is a dialect plus a way to run a query. :class:`StoreEngine`
wraps an event store's ``fetch`` (the DuckDB store's own connection, or the ClickHouse
store's client, or a chdb session in tests), so reports read what the loader wrote.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

from mpaas.analytics.reports.dialect import CLICKHOUSE, DUCKDB, Dialect
from mpaas.analytics.reports.errors import EngineUnavailable


class Fetcher(Protocol):
    def fetch(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]: ...


class ReportEngine(Protocol):
    @property
    def dialect(self) -> Dialect: ...

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        """Run a query; values are int, float, str or None (NaN becomes None)."""
        ...

    def rollup_zone(self) -> str | None:
        """The time zone of the store's current rollups (ADR 0014), or None: read the raw events."""
        ...

    def materialized_ctes(self) -> bool:
        """Whether ``WITH x AS MATERIALIZED (...)`` computes a CTE once (ClickHouse 25.x+)."""
        ...


class StoreEngine:
    """``rollups=False`` makes every report read the raw events (the reference path)."""

    def __init__(self, store: Fetcher, dialect: Dialect, *, rollups: bool = True) -> None:
        self.store = store
        self._dialect = dialect
        self.rollups = rollups

    @property
    def dialect(self) -> Dialect:
        return self._dialect

    def rollup_zone(self) -> str | None:
        zone = getattr(self.store, "rollup_zone", None)
        if not self.rollups or zone is None:
            return None
        try:
            found = zone()
        except (OSError, ConnectionError) as exc:
            raise EngineUnavailable(f"the event store cannot be read: {exc}") from exc
        return str(found) if found is not None else None

    def materialized_ctes(self) -> bool:
        supported = getattr(self.store, "materialized_ctes", None)
        return bool(supported()) if supported is not None else False

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        try:
            raw = self.store.fetch(sql)
        except (OSError, ConnectionError) as exc:
            raise EngineUnavailable(f"the event store cannot be read: {exc}") from exc
        return [tuple(_plain(v) for v in row) for row in raw]


def _plain(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def engine_for(store: Fetcher) -> StoreEngine:
    """The engine over an event store, with the store's dialect."""
    from mpaas.analytics.store.duckdb import DuckDbStore

    return StoreEngine(store, DUCKDB if isinstance(store, DuckDbStore) else CLICKHOUSE)
