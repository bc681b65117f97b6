"""Server-side events: how the domains (releases, push) put their own events into the pipeline.

``await emit(app[ANALYTICS], "bank", "push.sent", {...}, message_id="push:12:sent")``
spools a ``track`` event with source ``server``; the loader treats it like any other,
so reports can join it with what the app said. Give a ``message_id`` that is stable for
the fact you report (a receipt id, a delivery id): a retried emit is then loaded once.

The domains do not call :func:`emit` on their own path: they hand their facts to the
:class:`ServerEvents` of their database (:func:`server_events`), which builds and
spools the events in the background. A spool that refuses (full, down, shutting
down) costs a warning and the ``mpaas_analytics_server_events_dropped_total`` metric,
never a failed or slower push or release report: the domain's own tables are the
source of truth, the events are their copy for analysis.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter

from mpaas.analytics.ingest.auth import Sender
from mpaas.analytics.runtime import AnalyticsRuntime
from mpaas.analytics.spool.record import SERVER
from mpaas.storage.db import Database

log = logging.getLogger("mpaas.analytics.emit")
#: Background emits waiting at most; beyond this, new facts are dropped (and counted).
MAX_PENDING = 10_000


async def emit(
    runtime: AnalyticsRuntime,
    app: str,
    event: str,
    properties: dict[str, Any] | None = None,
    *,
    message_id: str | None = None,
    user_id: str | None = None,
    anonymous_id: str | None = None,
    timestamp: datetime | None = None,
    context: dict[str, Any] | None = None,
) -> None:
    """Spool one server-side event durably (raises ``RetryLater`` when the spool cannot)."""
    item: dict[str, Any] = {"type": "track", "event": event, "properties": properties or {}}
    for key, value in (("message_id", message_id), ("user_id", user_id), ("anonymous_id", anonymous_id)):
        if value is not None:
            item[key] = value
    if timestamp is not None:
        item["timestamp"] = timestamp.isoformat()
    raw = orjson.dumps({"events": [item], "context": context or {}})
    dedupe = f"server:{app}:{message_id}" if message_id else ""
    await runtime.append(SERVER, "emit", Sender(app), raw, dedupe)


@dataclass(frozen=True)
class ServerEvent:
    """One fact a domain reports, as :func:`emit` takes it."""

    app: str
    event: str
    properties: dict[str, Any]
    message_id: str
    anonymous_id: str | None = None
    user_id: str | None = None
    timestamp: datetime | None = None


#: Builds the events of some facts (may query the database); runs in the background.
Builder = Callable[[], Awaitable[Sequence[ServerEvent]]]


@dataclass
class ServerEvents:
    """Spools the domains' events in the background; never raises into the caller."""

    runtime: AnalyticsRuntime
    registry: CollectorRegistry | None = None
    emitted: int = 0
    dropped: int = 0
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._dropped = (
            Counter(
                "mpaas_analytics_server_events_dropped",
                "Server-side analytics events not spooled (the domain's own record is kept)",
                ["event"],
                registry=self.registry,
            )
            if self.registry is not None
            else None
        )

    def submit(self, build: Builder) -> None:
        """Build and spool events later; returns at once."""
        if len(self._tasks) >= MAX_PENDING:
            self._drop("*", "too many server-side events are waiting for the spool")
            return
        task = asyncio.get_running_loop().create_task(self._run(build))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, build: Builder) -> None:
        try:
            events = await build()
        except Exception as exc:  # the domain's path is done; only the analysis copy is lost
            self._drop("*", f"cannot build server-side events: {type(exc).__name__}: {exc}"[:300])
            return
        for e in events:
            try:
                await emit(
                    self.runtime,
                    e.app,
                    e.event,
                    e.properties,
                    message_id=e.message_id,
                    user_id=e.user_id,
                    anonymous_id=e.anonymous_id,
                    timestamp=e.timestamp,
                )
                self.emitted += 1
            except Exception as exc:  # RetryLater (spool full or closed) or an I/O error
                self._drop(e.event, f"server-side event not spooled: {type(exc).__name__}: {exc}"[:300])

    def _drop(self, event: str, message: str) -> None:
        self.dropped += 1
        if self._dropped is not None:
            self._dropped.labels(event).inc()
        log.warning(message, extra={"event": event})

    async def idle(self) -> None:
        """Wait until every submitted event is spooled or dropped."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


_BY_DB: weakref.WeakKeyDictionary[Database, ServerEvents] = weakref.WeakKeyDictionary()


def server_events(db: Database) -> ServerEvents | None:
    """The server-side events of the app that owns ``db`` (None before analytics started)."""
    return _BY_DB.get(db)


@asynccontextmanager
async def attached(
    db: Database, runtime: AnalyticsRuntime, registry: CollectorRegistry | None = None, *, grace: float = 5.0
) -> AsyncIterator[ServerEvents]:
    """For the app's analytics start-up: domains using ``db`` emit into ``runtime`` meanwhile."""
    events = ServerEvents(runtime, registry)
    _BY_DB[db] = events
    try:
        yield events
    finally:
        if _BY_DB.get(db) is events:
            del _BY_DB[db]
        with suppress(TimeoutError):
            await asyncio.wait_for(events.idle(), timeout=grace)
