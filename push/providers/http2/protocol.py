"""One HTTP/2 client connection: a send queue under the peer's stream limit and flow control.

See :mod:`mpaas.push.providers.http2` for why it exists and where it runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from aioapns.connection import APNsBaseClientProtocol, APNsProductionClientProtocol
from aioapns.exceptions import ConnectionClosed
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    RemoteSettingsChanged,
    ResponseReceived,
    StreamEnded,
    StreamReset,
)
from h2.exceptions import H2Error, ProtocolError

from mpaas.push.providers.http2.hpack import LiteralHeaderEncoder
from mpaas.push.providers.http2.requests import Credential, Http2Request, Http2Response, RequestTimeout

log = logging.getLogger(__name__)

#: Streams per connection even if the peer allows more (Apple advertises 1000).
MAX_STREAMS_PER_CONNECTION = 1000


class _CountingH2Connection(H2Connection):
    """h2 recounts every stream (and prunes closed ones) on each ``send_headers``.

    That is O(streams in flight) per request, so hundreds of streams per connection cost
    more than the request itself. The protocol counts its open streams exactly (it is the
    only one opening them) and prunes h2's table once per write instead.
    """

    def __init__(self, config: H2Configuration) -> None:
        super().__init__(config)
        self.outbound_open = 0

    @property
    def open_outbound_streams(self) -> int:
        return self.outbound_open

    def prune_closed_streams(self) -> None:
        H2Connection.open_outbound_streams.fget(self)  # type: ignore[attr-defined]


_H2_CONFIG = H2Configuration(
    client_side=True,
    header_encoding=None,
    # Our headers are built here, lowercase and valid; h2 re-checking them cost ~20 % of a send.
    validate_outbound_headers=False,
    normalize_outbound_headers=False,
)


class Http2ClientProtocol(APNsProductionClientProtocol):
    """An HTTP/2 client connection with a send queue that honours flow control.

    :meth:`submit` queues a request; the queue is drained at most once per event-loop
    tick, and again whenever the server frees something (an answer ends a stream, a
    WINDOW_UPDATE widens a window, SETTINGS change the stream limit), with one socket
    write per drain. A request leaves the queue only when a stream is free under the
    peer's SETTINGS_MAX_CONCURRENT_STREAMS and the connection's send window holds its
    whole body; a body larger than its stream's window is sent as far as the window
    allows and finished after WINDOW_UPDATE. Each request has its own deadline, which
    covers the time it waits in the queue. Nothing is sent before the peer's first SETTINGS.

    It subclasses aioapns' protocol so that aioapns' pool can hold it (``is_busy``, the
    inactivity timer, ``close``, the ``on_connection_lost`` discard); every request and
    answer goes through the methods below. Connections are opened by
    :class:`~mpaas.push.providers.http2.pool.Http2Pool`.
    """

    #: Answer bodies are buffered up to this size; the rest is acknowledged and dropped.
    MAX_RESPONSE_BODY = 16 * 1024

    def __init__(
        self,
        authority: str,
        *,
        credential: Credential | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        on_connection_lost: Callable[[APNsBaseClientProtocol], Any] | None = None,
    ) -> None:
        """``authority`` is the ``:authority`` of every request; ``credential`` signs every stream."""
        super().__init__("", loop, on_connection_lost, None)
        self.credential = credential
        self.conn: _CountingH2Connection = _CountingH2Connection(_H2_CONFIG)
        self.conn.encoder = LiteralHeaderEncoder()  # type: ignore[assignment]
        self._pseudo = [
            (b":method", b"POST"),
            (b":scheme", b"https"),
            (b":authority", authority.encode()),
        ]
        self._queue: deque[Http2Request] = deque()
        #: Sent requests by stream id, until their answer ends (or we reset them).
        self._streams: dict[int, Http2Request] = {}
        #: Streams whose body is partly sent, waiting for their stream's window.
        self._blocked: deque[Http2Request] = deque()
        self._drain_scheduled = False
        self._settings_received = False
        #: Times the queue had to wait for a WINDOW_UPDATE (exposed for tests and metrics).
        self.window_stalls = 0

    # -- state ---------------------------------------------------------------------------

    @property
    def is_busy(self) -> bool:
        closing = self.transport is None or self.transport.is_closing()
        return closing or len(self._queue) + len(self._streams) >= self.stream_limit

    @property
    def stream_limit(self) -> int:
        return min(self.conn.remote_settings.max_concurrent_streams, MAX_STREAMS_PER_CONNECTION)

    @property
    def peer_initial_window(self) -> int:
        return self.conn.remote_settings.initial_window_size

    @property
    def in_flight(self) -> int:
        """Requests sent and not yet answered (open streams)."""
        return len(self._streams)

    @property
    def queued(self) -> int:
        """Requests waiting for a stream or a window (including given-up ones not yet dropped)."""
        return len(self._queue)

    # -- sending -------------------------------------------------------------------------

    def submit(
        self, path: bytes, fields: list[tuple[bytes, bytes]], body: bytes, timeout: float
    ) -> Http2Request:
        """Queue one POST; its future gets an :class:`Http2Response` or an exception.

        ``fields`` are the request's headers after the pseudo-headers (lowercase, valid);
        ``timeout`` bounds it from now to its answer, waits in the queue included.
        """
        if self.transport is None or self.transport.is_closing():
            raise ConnectionClosed("connection is closing")
        request = Http2Request(path, fields, body, self.loop.create_future())
        request.timer = self.loop.call_later(timeout, self._expire, request)
        self._queue.append(request)
        if not self._drain_scheduled:
            self._drain_scheduled = True
            self.loop.call_soon(self._drain)
        return request

    def _drain(self) -> None:
        self._drain_scheduled = False
        if self.transport is None or self.transport.is_closing() or not self._settings_received:
            return
        conn = self.conn
        try:
            while self._blocked:
                if not self._send_body(self._blocked[0]):
                    break
                self._blocked.popleft()
            if not self._blocked and self._queue:
                conn.prune_closed_streams()
                limit = self.stream_limit
                queue, streams = self._queue, self._streams
                while queue and len(streams) < limit:
                    request = queue[0]
                    if request.future.done():  # expired or abandoned while queued
                        queue.popleft()
                        continue
                    if conn.outbound_flow_control_window < len(request.body):
                        self.window_stalls += 1
                        break
                    queue.popleft()
                    self._open(request)
                    if not self._send_body(request):
                        self._blocked.append(request)
                        break
        except H2Error as exc:
            # The connection is unusable (e.g. stream ids exhausted): fail all, reconnect later.
            log.warning("HTTP/2 connection error while sending, closing: %r", exc)
            self._fail_all(ConnectionClosed(f"HTTP/2 error: {exc!r}"))
            self.close()
            return
        self.flush()

    def _open(self, request: Http2Request) -> None:
        conn = self.conn
        stream_id = conn.get_next_available_stream_id()
        headers = [*self._pseudo, (b":path", request.path), *request.fields]
        credential = self.credential
        if credential is not None:
            headers.append((b"authorization", credential.get_header().encode()))
            request.credential_generation = credential.generation
        conn.send_headers(stream_id, headers)
        request.stream_id = stream_id
        self._streams[stream_id] = request
        conn.outbound_open = len(self._streams)

    def _send_body(self, request: Http2Request) -> bool:
        """Send what the windows allow of the body; True when all of it (with END_STREAM) is out."""
        conn, stream_id, body = self.conn, request.stream_id, request.body
        assert stream_id is not None
        if request.future.done():
            return True  # reset meanwhile
        while True:
            left = len(body) - request.body_sent
            room = min(conn.local_flow_control_window(stream_id), conn.max_outbound_frame_size)
            if room <= 0 and left > 0:
                self.window_stalls += 1
                return False
            size = min(left, room)
            start = request.body_sent
            conn.send_data(stream_id, body[start : start + size], end_stream=size == left)
            request.body_sent += size
            if size == left:
                return True

    def flush(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        super().flush()

    def abandon(self, request: Http2Request) -> None:
        """Give up on a request: drop it from the queue, or reset its stream; the future is cancelled."""
        if request.timer is not None:
            request.timer.cancel()
        if not request.future.done():
            request.future.cancel()
        self._forget(request, reset=True)
        self.flush()

    def _expire(self, request: Http2Request) -> None:
        if request.future.done():
            return
        sent = request.stream_id is not None
        request.future.set_exception(RequestTimeout(sent))
        self._forget(request, reset=True)
        self.flush()

    def _forget(self, request: Http2Request, *, reset: bool) -> None:
        stream_id = request.stream_id
        if stream_id is None or self._streams.pop(stream_id, None) is None:
            return  # still queued: the drain skips done futures
        self.conn.outbound_open = len(self._streams)
        if reset:
            try:
                self.conn.reset_stream(stream_id, ErrorCodes.CANCEL)
            except H2Error:
                pass
        if not self._drain_scheduled and self._queue:
            self._drain_scheduled = True
            self.loop.call_soon(self._drain)

    def _fail_all(self, exc: Exception) -> None:
        pending = [*self._queue, *self._streams.values()]
        self._queue.clear()
        self._streams.clear()
        self._blocked.clear()
        self.conn.outbound_open = 0
        for request in pending:
            if request.timer is not None:
                request.timer.cancel()
            if not request.future.done():
                request.future.set_exception(exc)

    # -- receiving -----------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        try:
            events = self.conn.receive_data(data)
        except ProtocolError as exc:
            log.warning("HTTP/2 connection protocol error, closing: %s", exc)
            self.flush()
            self.close()
            return
        streams = self._streams
        for event in events:
            if isinstance(event, ResponseReceived):
                request = streams.get(event.stream_id)
                if request is not None:
                    request.response_headers = dict(event.headers)
            elif isinstance(event, StreamEnded):
                self._finish(event.stream_id)
            elif isinstance(event, DataReceived):
                request = streams.get(event.stream_id)
                if request is not None and len(request.response_body) < self.MAX_RESPONSE_BODY:
                    request.response_body += event.data
                # The fix aioapns lacks: hand the window back to the server.
                if event.flow_controlled_length:
                    self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, StreamReset):
                self._fail(event.stream_id, ConnectionClosed(f"stream reset by server: {event.error_code!r}"))
            elif isinstance(event, RemoteSettingsChanged):
                self._settings_received = True
                self.on_remote_settings_changed(event.changed_settings)  # type: ignore[arg-type]
            elif isinstance(event, ConnectionTerminated):
                self.on_connection_terminated(event)
        # Answers freed streams, WINDOW_UPDATE widened windows: send what now fits, in this one write.
        self._drain()

    def _finish(self, stream_id: int) -> None:
        request = self._streams.pop(stream_id, None)
        if request is None:
            return
        self.conn.outbound_open = len(self._streams)
        if request.timer is not None:
            request.timer.cancel()
        if request.future.done():
            return
        headers = request.response_headers
        request.future.set_result(
            Http2Response(
                headers.get(b":status", b"").decode("latin-1"),
                headers,
                request.response_body,
                request.credential_generation,
            )
        )

    def _fail(self, stream_id: int, exc: Exception) -> None:
        request = self._streams.get(stream_id)
        if request is None:
            return
        self._forget(request, reset=False)
        if request.timer is not None:
            request.timer.cancel()
        if not request.future.done():
            request.future.set_exception(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail_all(ConnectionClosed(str(exc)))
        super().connection_lost(exc)
