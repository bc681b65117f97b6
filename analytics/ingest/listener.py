"""The ingest listener: the ingest routes alone on their own port (``MPAAS_INGEST_PORT``).

Segment's tracking API and PostHog's capture run apart from their app servers; so can
mpaas's. This listener serves ``/v1/*`` and ``/client/v1/events`` over HTTP/1.1 on
``asyncio.Protocol`` and httptools (llhttp, uvicorn's parser), without aiohttp's
request objects, router, edge or response machinery: per request it parses, checks and
spools what the aiohttp routes do (:mod:`.routes`) and writes one prebuilt response.

It keeps what clients rely on: keep-alive and pipelining (answers in order), chunked
bodies, gzip and deflate (bounded by the decoded size), ``Expect: 100-continue``, 413
for a body over the limit (answered as soon as it is known, then the connection
closes), 431 for a request head over :data:`.connection.MAX_HEAD`, 400 for malformed
HTTP, 404 and 405 (with ``Allow``), the same ``{"error": {"code", "message"}}`` as every
route, ``Retry-After`` on 429 and 503, and the HTTP metrics of the main server's routes
(the same ``route`` labels). It writes no access-log line and no ``X-Request-Id``.
:meth:`IngestServer.close` stops accepting, lets the requests under way get their
answers (their fsync), then closes the connections: it runs before the spool closes.

A request whose key is in its cache runs without a coroutine: checked, handed to the file
spool's :meth:`~mpaas.analytics.spool.files.FileSpool.submit`, and answered from the
future's callback once the group commit's fsync covered it (:mod:`.connection`). A key
to look up, or a spool without ``submit`` (JetStream), takes the same checks with awaits.
Connections idle for :data:`.connection.IDLE_SECONDS` are closed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

from mpaas.analytics.ingest import routes
from mpaas.analytics.ingest.answers import error, refusal
from mpaas.analytics.ingest.body import allowed_wire_size
from mpaas.analytics.ingest.connection import IDLE_SECONDS, REQUEST_SECONDS, IngestProtocol
from mpaas.analytics.runtime import AnalyticsRuntime
from mpaas.errors import PayloadTooLarge
from mpaas.settings import Settings
from mpaas.web.edge import HttpMetrics

log = logging.getLogger("mpaas.analytics.ingest")


class IngestServer:
    """The listener: its connections, its metrics, and a graceful close."""

    def __init__(self, runtime: AnalyticsRuntime, metrics: HttpMetrics | None = None) -> None:
        self.runtime = runtime
        self.metrics = metrics
        self.connections: set[IngestProtocol] = set()
        self.closing = False
        self.port = 0
        self._server: asyncio.AbstractServer | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._stats: dict[str, Any] = {}
        #: The spool's append without a coroutine (the file spool has one), else None.
        self.submit: routes.Submit | None = getattr(runtime.spool, "submit", None)
        #: Path -> (endpoint, single-message route, decoded limit, its 413).
        self.routes: dict[bytes, tuple[str, bool, int, type[PayloadTooLarge]]] = {
            path: (endpoint, single, *routes.limits(runtime, endpoint, single))
            for path, (endpoint, single) in routes.ROUTES.items()
        }
        #: What a request refused before its body (404, 405, 415) may send before it is cut off.
        self.refused_wire = allowed_wire_size(runtime.max_batch)

    async def start(self, host: str, port: int, *, reuse_port: bool = False) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: IngestProtocol(self), host, port, reuse_port=reuse_port or None, backlog=1024
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._sweeper = loop.create_task(self._sweep())

    def record(self, endpoint: str, status: int, seconds: float) -> None:
        if self.metrics is None:
            return
        stats = self._stats.get(endpoint)
        if stats is None:
            route = "/client/v1/events" if endpoint == routes.NATIVE_ENDPOINT else f"/v1/{endpoint}"
            if not endpoint:
                self.metrics.record("POST", "unmatched", status, seconds)
                return
            stats = self._stats[endpoint] = self.metrics.route("POST", route)
        stats.record(status, seconds)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(IDLE_SECONDS / 5)
            self.sweep_once(time.monotonic())

    def sweep_once(self, now: float) -> None:
        """Close connections idle for :data:`IDLE_SECONDS` (keep-alive, or a stalled head), and
        answer 408 to a request not whole :data:`REQUEST_SECONDS` after its first byte."""
        for conn in list(self.connections):
            if conn.busy:
                continue
            if conn.req is not None and now - conn.req_started > REQUEST_SECONDS:
                conn.fail(error(refusal(408, "request_timeout", "the request did not arrive in time"), True))
            elif conn.last_active < now - IDLE_SECONDS:
                conn._close()

    async def close(self, timeout: float = 10.0) -> None:
        """Stop accepting, let the requests under way be answered, then close every connection."""
        self.closing = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            if conn.idle():
                conn._close()
        deadline = time.monotonic() + timeout
        while any(c.busy for c in self.connections) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for conn in list(self.connections):
            conn._close()
        if self._server is not None:
            await self._server.wait_closed()


INGEST_SERVER = web.AppKey("ingest_server", IngestServer)


@asynccontextmanager
async def ingest_listener(
    settings: Settings, runtime: AnalyticsRuntime, metrics: HttpMetrics | None
) -> AsyncIterator[IngestServer]:
    """Listen on ``MPAAS_INGEST_PORT`` (the server's host) while the app runs; close gracefully.

    The port is opened with SO_REUSEPORT so that ``mpaas server --workers N`` shares it.
    """
    server = IngestServer(runtime, metrics)
    await server.start(settings.host, settings.ingest_port or 0, reuse_port=True)
    log.info("ingest listener on %s:%s", settings.host, server.port)
    try:
        yield server
    finally:
        await server.close()
