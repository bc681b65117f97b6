"""Reports over the event store: one SQL layer, two dialects (DuckDB, ClickHouse)."""
