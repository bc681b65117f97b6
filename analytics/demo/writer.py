"""Rows of demo events in the loader's Arrow schema, ready for ``EventStore.load``."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
import pyarrow as pa

from mpaas.analytics.loader.rows import EVENT_SCHEMA, INVALID_SCHEMA
from mpaas.analytics.store.base import LoadBatch

LIBRARY = "mpaas-demo"
#: Every demo event reaches the server this long after it happened.
RECEIPT_DELAY = timedelta(seconds=2)
#: The loader's columns that vary per demo event, in the order of the tuples it keeps.
VARYING = (
    "source", "type", "event", "user_id", "anonymous_id", "ts_raw", "received_at", "app_version",
    "platform", "os", "os_version", "device_model", "device_id", "packages", "properties",
)  # fmt: skip


@functools.cache
def _packages(version: str) -> str:
    """The ``packages`` column: the offline package installed on the phone."""
    return orjson.dumps([{"kind": "offline", "id": "transfer", "version": version}]).decode()


@dataclass
class Device:
    """One phone: who holds it, what it runs, what is installed on it now."""

    index: int
    platform: str
    os: str
    os_version: str
    model: str
    app_version: str
    package_version: str
    user_id: str | None = None

    @property
    def device_id(self) -> str:
        return f"dev-{self.index:06d}"

    @property
    def anonymous_id(self) -> str:
        return f"anon-{self.index:06d}"


class EventWriter:
    """Appends events in generation order; message ids are ``demo-<app>-<n>``, stable per run.

    Each event is kept as a short tuple of the columns that vary (:data:`VARYING`); the
    columns that follow from them (sequence, message id, channel, library) and the empty
    ones are made once, as whole Arrow columns, by :meth:`batch`."""

    def __init__(self, app: str, until: datetime | None = None) -> None:
        self.app = app
        #: Events at or after this are left out of the batch (a session may run past the end).
        self.until = until
        self.rows: list[tuple[Any, ...]] = []

    def __len__(self) -> int:
        return len(self.rows)

    def _add(
        self,
        source: str,
        kind: str,
        event: str | None,
        at: datetime,
        device: Device,
        user_id: str | None,
        anonymous_id: str | None,
        properties: dict[str, Any],
    ) -> None:
        app_fields = source == "native"
        self.rows.append(
            (
                source,
                kind,
                event,
                user_id,
                anonymous_id,
                at.isoformat().replace("+00:00", "Z"),
                at + RECEIPT_DELAY,
                device.app_version if app_fields else None,
                device.platform if app_fields else None,
                device.os if app_fields else None,
                device.os_version if app_fields else None,
                device.model if app_fields else None,
                device.device_id,
                _packages(device.package_version) if app_fields else None,
                orjson.dumps(properties).decode(),
            )
        )

    def track(
        self, device: Device, event: str, at: datetime, properties: dict[str, Any] | None = None
    ) -> None:
        """An event the app sends: the device's identity as the app knows it at that moment."""
        self._add("native", "track", event, at, device, device.user_id, device.anonymous_id, properties or {})

    def identify(self, device: Device, user_id: str, at: datetime, traits: dict[str, Any]) -> None:
        """The device logs in: its earlier anonymous events now belong to ``user_id``."""
        device.user_id = user_id
        self._add("native", "identify", None, at, device, user_id, device.anonymous_id, traits)

    def server(self, device: Device, event: str, at: datetime, properties: dict[str, Any]) -> None:
        """A domain's fact about the device (push delivery, release report), as ``emit`` sends it:
        with the device id as its anonymous id (docs: the events contract)."""
        self._add("server", "track", event, at, device, device.user_id, device.device_id, properties)

    def batch(self) -> LoadBatch:
        """The events as the loader hands them to a store, built by column name (a column the
        loader adds later is simply empty here)."""
        until = self.until
        rows = self.rows if until is None else [r for r in self.rows if r[6] - RECEIPT_DELAY < until]
        n = len(rows)
        columns: dict[str, Any] = dict(zip(VARYING, zip(*rows, strict=True), strict=True)) if rows else {}
        native = [source == "native" for source in columns.get("source", ())]
        columns["seq"] = range(n)
        columns["app"] = [self.app] * n
        columns["message_id"] = [f"demo-{self.app}-{i}" for i in range(n)]
        columns["channel"] = ["production" if x else None for x in native]
        columns["library"] = [LIBRARY if x else "mpaas-server" for x in native]
        columns["flags"] = pa.ListArray.from_arrays(
            pa.array([0] * (n + 1), pa.int32()), pa.array([], pa.string())
        )
        arrays = [
            columns[f.name]
            if isinstance(columns.get(f.name), pa.Array)
            else pa.array(columns.get(f.name, [None] * n), type=f.type)
            for f in EVENT_SCHEMA
        ]
        table = pa.Table.from_arrays(arrays, schema=EVENT_SCHEMA)
        return LoadBatch(events=table, invalid=INVALID_SCHEMA.empty_table())
