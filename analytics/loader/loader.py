"""The load cycle: read the spool from the recorded positions, normalise, load, clean up.

Exactly once, by construction: the store commits a batch's rows together with the spool
positions the batch was read up to (:class:`mpaas.analytics.store.base.EventStore`), so a
crash before the commit re-reads the same records and a crash after it reads on from
the new positions. Dedupe by ``(app, message_id)`` inside the store covers what the
positions cannot: a client that sent the same event twice, or a broker redelivery.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from mpaas.analytics.catalog.checker import CatalogSnapshot
from mpaas.analytics.loader.columnar import ColumnarNormaliser
from mpaas.analytics.spool.base import SpoolBatch, SpoolSource
from mpaas.analytics.store.base import EventStore, Forget, LoadBatch, LoadResult

log = logging.getLogger("mpaas.analytics.loader")


class ForgetQueue(Protocol):
    async def pending(self) -> list[Forget]: ...

    async def done(self, request_id: int, events: int, links: int) -> None: ...


@dataclass
class LoaderStats:
    cycles: int = 0
    records: int = 0
    received: int = 0
    inserted: int = 0
    invalid: int = 0
    forgotten: int = 0
    errors: int = 0
    last_error: str | None = None

    def add(self, records: int, result: LoadResult) -> None:
        self.records += records
        self.received += result.received
        self.inserted += result.inserted
        self.invalid += result.invalid


#: Spool bytes read per cycle, one store transaction. A batch of at least DuckDB's row group
#: (122,880 rows, about 60 MiB of Segment batches as analytics-python sends them) is written
#: to the file compressed as it is inserted; a smaller one goes through the WAL and a
#: checkpoint, which cost the store 1.7 times as much per event (measured at 32 MiB).
DEFAULT_BUDGET = 128 << 20


async def _no_catalog() -> CatalogSnapshot:
    return CatalogSnapshot()


@dataclass
class _Prepared:
    """A batch read and normalised from ``start`` (the positions it was read from)."""

    start: dict[str, int]
    batch: SpoolBatch
    records: int
    load: LoadBatch | None


def _after(positions: dict[str, int], batch: SpoolBatch) -> dict[str, int]:
    """The positions once ``batch`` is committed."""
    after = {name: pos for name, pos in positions.items() if name not in batch.stale}
    after.update(batch.positions)
    return after


class Loader:
    def __init__(
        self,
        store: EventStore,
        source: SpoolSource,
        *,
        catalog: Callable[[], Awaitable[CatalogSnapshot]] = _no_catalog,
        forgets: ForgetQueue | None = None,
        budget: int = DEFAULT_BUDGET,
        interval: float = 1.0,
    ) -> None:
        self.store = store
        self.source = source
        self.catalog = catalog
        self.forgets = forgets
        self.budget = budget
        self.interval = interval
        self.stats = LoaderStats()
        self._positions: dict[str, int] | None = None
        self._cycle = asyncio.Lock()
        self._source = asyncio.Lock()  # a read and a clean-up never overlap
        self._columnar: ColumnarNormaliser | None = None
        #: The next batch, read and normalised while the store loads the current one.
        self._ahead: asyncio.Task[_Prepared] | None = None

    async def run_once(self) -> bool:
        """One cycle; True when the spool had more than one read budget (go again)."""
        async with self._cycle:
            return await self._run_once()

    async def _run_once(self) -> bool:
        positions = self._positions
        if positions is None:
            loaded: dict[str, int] = await asyncio.to_thread(self.store.positions)
            positions = self._positions = loaded
        if self.forgets is not None:
            await self._forget()
        prepared = await self._take_ahead(positions)
        if prepared is None:
            prepared = await self._prepare(positions)
        batch = prepared.batch
        if prepared.load is not None:
            if batch.full:  # a backlog: read and normalise the next batch meanwhile
                self._ahead = asyncio.create_task(self._prepare(_after(positions, batch)))
            try:
                result = await asyncio.to_thread(self.store.load, prepared.load)
            except BaseException:
                await self._drop_ahead()  # read from positions that were not committed
                raise
            self.stats.add(prepared.records, result)
            for name in batch.stale:
                positions.pop(name, None)
            positions.update(batch.positions)
            async with self._source:
                await self.source.committed(batch)
        self.stats.cycles += 1
        return batch.full

    async def _prepare(self, positions: dict[str, int]) -> _Prepared:
        """Read from ``positions`` and normalise (in a thread: DuckDB releases the GIL)."""
        start = dict(positions)
        snapshot = await self.catalog()
        async with self._source:
            batch = await self.source.read(start, self.budget)
        if not (batch.records or batch.positions or batch.stale):
            return _Prepared(start, batch, 0, None)
        records = len(batch.records)
        load = await asyncio.to_thread(self._normalise, snapshot, batch)
        return _Prepared(start, batch, records, load)

    async def _take_ahead(self, positions: dict[str, int]) -> _Prepared | None:
        """The batch read ahead, when it was read from ``positions`` (else it is dropped)."""
        task, self._ahead = self._ahead, None
        if task is None:
            return None
        prepared = await task  # its error is this cycle's error; the next cycle reads again
        return prepared if prepared.start == positions else None

    async def _drop_ahead(self) -> None:
        task, self._ahead = self._ahead, None
        if task is not None:
            try:
                await task
            except Exception:  # the cycle's own error is the one to report
                log.debug("read-ahead failed", exc_info=True)

    def _normalise(self, snapshot: CatalogSnapshot, batch: SpoolBatch) -> LoadBatch:
        if self._columnar is None:
            self._columnar = ColumnarNormaliser()
        events, invalid = self._columnar.normalise(snapshot, batch.records)
        batch.records = []  # the raw records are no longer needed: free them before the load
        return LoadBatch(events, invalid, batch.positions, batch.stale)

    async def _forget(self) -> None:
        assert self.forgets is not None
        for request in await self.forgets.pending():
            events, links = await asyncio.to_thread(self.store.forget, request)
            await self.forgets.done(request.request_id, events, links)
            self.stats.forgotten += 1
            log.info(
                "forgot a user",
                extra={"request_id": request.request_id, "events": events, "links": links},
            )

    async def drain(self) -> None:
        """Load until the spool has nothing more (for ``mpaas analytics load --once`` and tests)."""
        while await self.run_once():
            pass

    async def run(self, stop: asyncio.Event) -> None:
        """Cycle until ``stop`` is set; errors are logged and retried with a back-off."""
        delay = self.interval
        while not stop.is_set():
            started = time.monotonic()
            try:
                more = await self.run_once()
                delay = self.interval
            except Exception as exc:  # keep loading: the spool keeps the records
                self.stats.errors += 1
                self.stats.last_error = f"{type(exc).__name__}: {exc}"[:500]
                log.exception("analytics load cycle failed; retrying")
                more, delay = False, min(max(delay * 2, self.interval), 60.0)
            if more:
                continue
            wait = max(0.0, delay - (time.monotonic() - started))
            try:
                await asyncio.wait_for(stop.wait(), timeout=wait)
            except TimeoutError:
                pass
        await self.close()

    async def close(self) -> None:
        """Wait for a batch being read ahead (it is dropped: the store has not committed it)."""
        async with self._cycle:
            await self._drop_ahead()
