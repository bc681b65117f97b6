"""The two sides of a spool: ingest appends (:class:`Spool`), the loader reads (:class:`SpoolSource`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

#: Position of a segment the loader has read completely and that its writer sealed.
DONE = -1


class Spool(Protocol):
    """Where ingest appends records. ``append`` returns only once the record is durable
    (fsynced, or acknowledged by the broker); it raises :class:`RetryLater` otherwise."""

    async def start(self) -> None: ...

    async def append(self, body: bytes | Sequence[bytes], dedupe_id: str) -> None:
        """Append one record whose body is ``body`` (or its parts, joined)."""
        ...

    async def close(self) -> None: ...


@dataclass
class SpoolBatch:
    """Records read by the loader, and what to record about them in the same transaction.

    ``records`` are ``(record id, body)``; the id is stable across re-reads (segment
    and offset, or the broker's message id). ``positions`` map a segment to the offset
    just past its last record read (``DONE`` once finished); ``stale`` names position
    rows whose segment is gone. ``full`` says the read budget ran out: read again now.
    """

    records: list[tuple[str, bytes]] = field(default_factory=list)
    positions: dict[str, int] = field(default_factory=dict)
    stale: list[str] = field(default_factory=list)
    full: bool = False
    token: Any = None


class SpoolSource(Protocol):
    """What the single loader reads from. After the batch's rows and positions are
    committed, :meth:`committed` lets the source clean up (delete finished segments,
    acknowledge broker messages)."""

    async def read(self, positions: Mapping[str, int], budget: int) -> SpoolBatch: ...

    async def committed(self, batch: SpoolBatch) -> None: ...

    async def close(self) -> None: ...
