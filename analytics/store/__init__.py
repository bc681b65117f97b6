"""Event stores: where loaded events live (:class:`.base.EventStore`; DuckDB today)."""
