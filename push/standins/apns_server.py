"""The APNs stand-in's wire side: one raw HTTP/2 server connection (``h2`` over an ``asyncio.Protocol``).

It honours HTTP/2 flow control both ways: it acknowledges what it receives, and it holds
answers back while the client's receive window is exhausted - exactly what makes a
client that never sends WINDOW_UPDATE stall. What to answer is decided by
:meth:`ApnsStandin.handle <mpaas.push.standins.apns.ApnsStandin.handle>`.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    RequestReceived,
    StreamEnded,
    StreamReset,
    WindowUpdated,
)
from h2.exceptions import ProtocolError
from h2.settings import SettingCodes

if TYPE_CHECKING:
    from mpaas.push.standins.apns import ApnsStandin

_MAX_REQUEST_BODY = 64 * 1024


@dataclass(frozen=True)
class Answer:
    status: int
    reason: str | None = None
    timestamp: int | None = None
    retry_after: str | None = None


class _Request:
    __slots__ = ("body", "headers")

    def __init__(self, headers: dict[str, str]) -> None:
        self.headers = headers
        self.body = bytearray()


class ApnsServerProtocol(asyncio.Protocol):
    def __init__(self, standin: ApnsStandin) -> None:
        self.standin = standin
        self.conn = H2Connection(H2Configuration(client_side=False, header_encoding="utf-8"))
        self.transport: asyncio.Transport | None = None
        self.requests: dict[int, _Request] = {}
        #: Answers waiting for the client to open its receive window, in order.
        self.blocked: dict[int, bytes] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.standin.connections_accepted += 1
        self.standin.live.add(self)
        self.conn.initiate_connection()
        self.conn.update_settings({SettingCodes.MAX_CONCURRENT_STREAMS: self.standin.max_concurrent_streams})
        self.flush()
        self.standin.notify()

    def connection_lost(self, exc: Exception | None) -> None:
        self.standin.live.discard(self)
        self.transport = None
        self.standin.notify()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def goaway(self) -> None:
        """Send GOAWAY (no error, last stream: the highest one received) and keep the socket open."""
        if self.transport is not None:
            self.conn.close_connection()
            self.flush()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        started = time.thread_time()
        try:
            events = self.conn.receive_data(data)
        except ProtocolError:
            self.flush()
            if self.transport is not None:
                self.transport.close()
            return
        for event in events:
            if isinstance(event, RequestReceived):
                self.requests[event.stream_id] = _Request(dict(event.headers))  # type: ignore[arg-type]
            elif isinstance(event, DataReceived):
                request = self.requests.get(event.stream_id)
                if request is not None and len(request.body) <= _MAX_REQUEST_BODY:
                    request.body += event.data
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, StreamEnded):
                self.on_request(event.stream_id)
            elif isinstance(event, StreamReset):
                self.requests.pop(event.stream_id, None)
                self.blocked.pop(event.stream_id, None)
                self.standin.resets_received += 1
            elif isinstance(event, WindowUpdated):
                self.standin.window_updates_received += 1
                self.send_blocked()
            elif isinstance(event, ConnectionTerminated):
                self.flush()
                if self.transport is not None:
                    self.transport.close()
                return
        self.flush()
        self.standin.cpu_seconds += time.thread_time() - started
        self.standin.notify()

    def on_request(self, stream_id: int) -> None:
        request = self.requests.pop(stream_id, None)
        if request is None:
            return
        apns_id, answer = self.standin.handle(request.headers, bytes(request.body))
        delay = self.standin.response_delay
        if self.standin.holding:
            self.standin.held.append((self, stream_id, apns_id, answer))
        elif delay > 0:
            asyncio.get_running_loop().call_later(delay, self.respond_later, stream_id, apns_id, answer)
        else:
            self.respond(stream_id, apns_id, answer)

    def respond_later(self, stream_id: int, apns_id: str, answer: Answer) -> None:
        self.respond(stream_id, apns_id, answer)
        self.flush()

    def respond(self, stream_id: int, apns_id: str, answer: Answer) -> None:
        headers = [(":status", str(answer.status)), ("apns-id", apns_id)]
        body: bytes | None = None
        if answer.status != 200:
            error: dict[str, str | int] = {"reason": answer.reason or "InternalServerError"}
            if answer.timestamp is not None:
                error["timestamp"] = answer.timestamp
            body = json.dumps(error, separators=(",", ":")).encode()
            headers += [("content-type", "application/json"), ("content-length", str(len(body)))]
            if answer.retry_after is not None:
                headers.append(("retry-after", answer.retry_after))
        try:
            self.conn.send_headers(stream_id, headers, end_stream=body is None)
        except ProtocolError:
            return  # the client reset or the connection closed meanwhile
        if body is not None:
            if self.blocked or self.conn.local_flow_control_window(stream_id) < len(body):
                self.blocked[stream_id] = body
            else:
                self.conn.send_data(stream_id, body, end_stream=True)
                self.standin.response_body_bytes += len(body)

    def send_blocked(self) -> None:
        for stream_id in list(self.blocked):
            body = self.blocked[stream_id]
            try:
                if self.conn.local_flow_control_window(stream_id) < len(body):
                    return
                self.conn.send_data(stream_id, body, end_stream=True)
                self.standin.response_body_bytes += len(body)
            except ProtocolError:
                pass
            del self.blocked[stream_id]
