"""The analytics domain at run time: the spool, the key caches, and (in one process) the loader.

Every server process accepts events into the spool. The loader runs in exactly one
process: the one holding the event store's writer lock. With ``MPAAS_ANALYTICS_LOADER``
on (the default) each server process tries for the lock and the first one wins; the
others try again every :data:`ELECTION_SECONDS`, so that when the holder dies another
takes over. ``mpaas analytics load`` runs the loader on its own instead (set
``MPAAS_ANALYTICS_LOADER=false`` on the servers then). The lock is per data directory:
with JetStream and servers on several hosts, run exactly one loader for the stream.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path

from aiohttp import web

from mpaas.analytics.catalog.service import load_snapshot
from mpaas.analytics.forget import SqlForgetQueue
from mpaas.analytics.ingest.auth import KeyCache, Sender, deployment_key_resolver, now_ms, write_key_resolver
from mpaas.analytics.loader.loader import DEFAULT_BUDGET, Loader
from mpaas.analytics.loader.lock import WriterLock
from mpaas.analytics.spool.base import Spool, SpoolSource
from mpaas.analytics.spool.record import header_line, record_ids
from mpaas.analytics.store.base import EventStore
from mpaas.analytics.store.duckdb import DuckDbStore
from mpaas.settings import Settings
from mpaas.storage.db import Database

log = logging.getLogger("mpaas.analytics")
ELECTION_SECONDS = 5.0


def store_path(settings: Settings) -> Path:
    return settings.data_dir / "analytics" / "events.duckdb"


def spool_dir(settings: Settings) -> Path:
    return settings.data_dir / "analytics" / "spool"


def make_spool(settings: Settings) -> Spool:
    if settings.nats_url:
        from mpaas.analytics.spool.jetstream import JetStreamSpool

        return JetStreamSpool(settings.nats_url, settings.analytics_nats_stream)
    from mpaas.analytics.spool.files import FileSpool

    return FileSpool(spool_dir(settings), min_free_bytes=settings.analytics_spool_min_free_bytes)


def make_source(settings: Settings) -> SpoolSource:
    if settings.nats_url:
        from mpaas.analytics.spool.jetstream import JetStreamSource

        return JetStreamSource(settings.nats_url, settings.analytics_nats_stream)
    from mpaas.analytics.spool.reader import FileSpoolSource

    return FileSpoolSource(spool_dir(settings))


def open_store(settings: Settings, *, read_only: bool = False) -> EventStore:
    """The event store: ClickHouse when ``MPAAS_ANALYTICS_URL`` names one, else the DuckDB file."""
    if settings.analytics_url:
        from mpaas.analytics.store.clickhouse import ClickHouseStore

        return ClickHouseStore.from_url(settings.analytics_url, dedupe_days=settings.analytics_dedupe_days)
    return DuckDbStore(store_path(settings), dedupe_days=settings.analytics_dedupe_days, read_only=read_only)


def make_loader(settings: Settings, db: Database, store: EventStore) -> Loader:
    return Loader(
        store,
        make_source(settings),
        catalog=lambda: load_snapshot(db),
        forgets=SqlForgetQueue(db),
        budget=max(DEFAULT_BUDGET, 2 * settings.analytics_max_batch_bytes + 4096),
        interval=settings.analytics_load_interval,
    )


class AnalyticsRuntime:
    def __init__(self, settings: Settings, db: Database, spool: Spool | None = None) -> None:
        self.settings = settings
        self.db = db
        self.spool = spool if spool is not None else make_spool(settings)
        self.write_keys = KeyCache(write_key_resolver(db))
        self.deployment_keys = KeyCache(deployment_key_resolver(db))
        self.max_event = settings.analytics_max_event_bytes
        self.max_batch = settings.analytics_max_batch_bytes
        #: The JetStream spool dedupes on an id derived from the batch's message ids.
        self.wants_dedupe_id = bool(settings.nats_url)
        self.loader: Loader | None = None
        self.store: EventStore | None = None
        #: Set once this process holds the store's writer lock and its loader exists.
        self.loader_ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._duty: asyncio.Task[None] | None = None

    async def append(
        self, source: str, endpoint: str, sender: Sender, raw: bytes, dedupe_id: str = ""
    ) -> None:
        """Make a raw batch durable; returns when the spool says it is."""
        await self.spool.append(*self.record(source, endpoint, sender, raw, dedupe_id))

    def record(
        self, source: str, endpoint: str, sender: Sender, raw: bytes, dedupe_id: str = ""
    ) -> tuple[list[bytes], str]:
        """A spool record's parts (its header, the raw batch) and its dedupe id (the batch's,
        else the record's own id)."""
        rid = record_ids.next()
        head = header_line(source, endpoint, sender.app, sender.channel, now_ms(), rid)
        return [head, raw], dedupe_id or rid

    async def start(self, *, loader: bool) -> None:
        await self.spool.start()
        if loader:
            self._duty = asyncio.create_task(self._loader_duty(), name="mpaas-analytics-loader")

    async def stop(self) -> None:
        self._stop.set()
        if self._duty is not None:
            await self._duty
        await self.spool.close()

    async def _loader_duty(self) -> None:
        """Take the store's writer lock when it is free, open the store, and load until stopped."""
        lock = WriterLock(store_path(self.settings).with_suffix(".duckdb.lock"))
        while not self._stop.is_set():
            if lock.try_acquire():
                try:
                    self.store = await asyncio.to_thread(open_store, self.settings)
                except Exception as exc:  # e.g. a reader holds the file: try again later
                    log.warning("cannot open the event store", extra={"error": str(exc)[:200]})
                    lock.release()
                else:
                    break
            with suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=ELECTION_SECONDS)
        if self.store is None:
            return
        try:
            self.loader = make_loader(self.settings, self.db, self.store)
            self.loader_ready.set()
            where = "clickhouse" if self.settings.analytics_url else str(store_path(self.settings))
            log.info("this process loads analytics events", extra={"store": where})
            await self.loader.run(self._stop)
            await self.loader.source.close()
        finally:
            await asyncio.to_thread(self.store.close)
            lock.release()


ANALYTICS = web.AppKey("analytics", AnalyticsRuntime)


@asynccontextmanager
async def analytics_context(app: web.Application, settings: Settings, db: Database) -> AsyncIterator[None]:
    """For the app factory's cleanup context: start the spool (and maybe the loader)."""
    runtime = AnalyticsRuntime(settings, db)
    app[ANALYTICS] = runtime
    await runtime.start(loader=settings.analytics_loader)
    try:
        yield
    finally:
        await runtime.stop()
