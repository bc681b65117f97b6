"""The event store protocol: one writer loads normalised batches and carries out deletions.

The loader hands a store one :class:`LoadBatch` at a time. A store commits, in ONE
transaction, the batch's new events (those whose ``(app, message_id)`` it has not
stored within the dedupe window), their identity links, the invalid events, and the
spool positions the batch was read up to. A crash before the commit leaves nothing of
the batch; a crash after it leaves all of it, and the spool is re-read from the
recorded positions: nothing is lost and nothing is loaded twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import pyarrow as pa


@dataclass
class LoadBatch:
    """Normalised events (an Arrow table in :data:`mpaas.analytics.loader.rows.EVENT_SCHEMA`),
    invalid events, and the spool positions to record with them."""

    events: pa.Table
    invalid: pa.Table
    positions: Mapping[str, int] = field(default_factory=dict)
    stale: Sequence[str] = ()


@dataclass(frozen=True)
class LoadResult:
    received: int
    inserted: int
    invalid: int

    @property
    def dropped(self) -> int:
        """Duplicates, and events of users forgotten before they were loaded."""
        return self.received - self.inserted


@dataclass(frozen=True)
class Forget:
    request_id: int
    app: str | None
    user_id: str
    requested_at: datetime


class EventStore(Protocol):
    def positions(self) -> dict[str, int]: ...

    def load(self, batch: LoadBatch) -> LoadResult: ...

    def forget(self, request: Forget) -> tuple[int, int]:
        """Delete a user's events and identity links; returns (events, links) deleted."""
        ...

    def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    def close(self) -> None: ...
