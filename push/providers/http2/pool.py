"""Connections to one HTTP/2 origin: aioapns' pool, opening :class:`Http2ClientProtocol` connections."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import Any, Protocol

from aioapns.connection import APNsBaseClientProtocol, APNsBaseConnectionPool

from mpaas.push.providers.http2.protocol import Http2ClientProtocol


class ConnectionFactory(Protocol):
    """Builds one connection's protocol, e.g. ``functools.partial(Http2ClientProtocol, authority)``."""

    def __call__(
        self, *, loop: asyncio.AbstractEventLoop, on_connection_lost: Callable[[APNsBaseClientProtocol], Any]
    ) -> Http2ClientProtocol: ...


class Http2Pool(APNsBaseConnectionPool):
    """Up to ``max_connections`` connections to ``host:port``, opened on demand.

    aioapns' pool logic decides: :meth:`acquire` returns the first connection that is not
    busy (:attr:`Http2ClientProtocol.is_busy`: as many requests queued or in flight as the
    peer allows streams, or closing), else opens a new one while under
    ``max_connections``, else polls every 10 ms until one frees up. A connection lost or
    idle for aioapns' ``INACTIVITY_TIME`` (10 s) closes and leaves the pool. Opening a
    connection that fails raises :class:`ConnectError`. Construct it inside the running
    event loop (aioapns binds the pool to the loop current at construction).

    ``ssl_context=None`` speaks cleartext HTTP/2 (prior knowledge; stand-ins only); a TLS
    context must offer ALPN ``h2``.
    """

    def __init__(
        self,
        connection: ConnectionFactory,
        *,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext | None,
        max_connections: int,
    ) -> None:
        super().__init__(max_connections=max_connections, max_connection_attempts=1)
        self._connection = connection
        self.host = host
        self.port = port
        self.ssl_context = ssl_context

    async def create_connection(self) -> APNsBaseClientProtocol:
        def build() -> Http2ClientProtocol:
            return self._connection(loop=self.loop, on_connection_lost=self.discard_connection)

        _, protocol = await self.loop.create_connection(
            build, host=self.host, port=self.port, ssl=self.ssl_context
        )
        return protocol

    async def acquire(self) -> Http2ClientProtocol:
        connection = await super().acquire()
        assert isinstance(connection, Http2ClientProtocol)
        return connection

    @property
    def open_connections(self) -> list[Http2ClientProtocol]:
        """The connections the pool holds (for metrics and tests)."""
        return [c for c in self.connections if isinstance(c, Http2ClientProtocol)]
