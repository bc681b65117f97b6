"""Columns of a normalised batch, built as Python lists and handed to Arrow in one go."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

_S = pa.string()
_TS = pa.timestamp("ms", tz="UTC")

#: The loader's output; timestamps stay raw strings here and the store parses and
#: corrects them in SQL (``ts_raw``, ``sent_raw``).
EVENT_FIELDS: tuple[tuple[str, pa.DataType], ...] = (
    ("seq", pa.int64()),
    ("app", _S),
    ("source", _S),
    ("channel", _S),
    ("type", _S),
    ("event", _S),
    ("message_id", _S),
    ("user_id", _S),
    ("anonymous_id", _S),
    ("previous_id", _S),
    ("group_id", _S),
    ("ts_raw", _S),
    ("sent_raw", _S),
    ("received_at", _TS),
    ("app_version", _S),
    ("platform", _S),
    ("os", _S),
    ("os_version", _S),
    ("device_model", _S),
    ("device_id", _S),
    ("library", _S),
    ("packages", _S),
    ("properties", _S),
    ("context", _S),
    ("flags", pa.list_(_S)),
)
EVENT_SCHEMA = pa.schema(EVENT_FIELDS)
INVALID_FIELDS: tuple[tuple[str, pa.DataType], ...] = (
    ("app", _S),
    ("received_at", _TS),
    ("record_id", _S),
    ("reason", _S),
    ("raw", _S),
)
INVALID_SCHEMA = pa.schema(INVALID_FIELDS)


class Rows:
    """Rows as tuples, turned into Arrow columns in one go by :meth:`table`."""

    def __init__(self, schema: pa.Schema) -> None:
        self.schema = schema
        self.rows: list[tuple[Any, ...]] = []

    def __len__(self) -> int:
        return len(self.rows)

    def table(self) -> pa.Table:
        columns = list(zip(*self.rows, strict=True)) if self.rows else [() for _ in self.schema]
        arrays = [pa.array(values, type=f.type) for values, f in zip(columns, self.schema, strict=True)]
        return pa.Table.from_arrays(arrays, schema=self.schema)
