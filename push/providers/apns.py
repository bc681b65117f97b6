"""APNs over HTTP/2 with token (.p8) authentication, built on aioapns 4.0.

aioapns keeps the connection pool and the inactivity timer. :class:`ApnsClientProtocol`
replaces its request/answer handling because aioapns 4.0:

- never acknowledges received DATA, so after ~64 KiB of error bodies on one connection
  the server stops sending answers; they stall until the idle timeout closes the
  connection and the pool re-sends them (duplicate notifications);
- ignores its own send window: with a few hundred notifications in flight the 64 KiB
  window fills and h2 raises ``FlowControlError``, which aioapns answers by sleeping a
  second and re-sending (or, with one attempt, by failing the notification);
- matches answers by the echoed ``apns-id`` and assumes each error body arrives in one
  DATA frame; an error without a JSON body never completes;
- raises ``InvalidStateError`` inside ``data_received``/``connection_lost`` when a
  waiting request was cancelled (our per-request timeout), and leaks its stream slot;
- drops the ``retry-after`` header;
- costs more CPU per notification than the rest of mpaas's pipeline: a task per request,
  hpack's table search and Huffman coding of every header, one socket write per request.

Here requests wait in a per-connection queue until a stream is free (the peer's
SETTINGS_MAX_CONCURRENT_STREAMS) and the send window holds their body (WINDOW_UPDATE);
the queue is drained once per event-loop tick in one socket write; headers are encoded
as HPACK literals with cached repeated fields; answers are matched by stream id, bodies
are buffered until END_STREAM, every DATA frame is acknowledged, and a request that
times out (queued or sent) gives up its place or resets its stream.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import ssl
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import jwt
from aioapns import APNs, NotificationRequest, PushType
from aioapns.common import NotificationResult
from aioapns.connection import (
    APNsBaseClientProtocol,
    APNsProductionClientProtocol,
    AuthorizationHeaderProvider,
)
from aioapns.exceptions import ConnectionClosed
from aioapns.exceptions import ConnectionError as ApnsConnectionError
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key
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

from mpaas.errors import ConfigError
from mpaas.push.providers.base import (
    Notification,
    Outcome,
    SendResult,
    datetime_from_epoch_ms,
    parse_retry_after,
)

log = logging.getLogger(__name__)

PRODUCTION_HOST = "api.push.apple.com"
SANDBOX_HOST = "api.development.push.apple.com"

#: Apple rejects provider tokens older than 60 minutes and refreshes more often than
#: every 20 minutes (TooManyProviderTokenUpdates).
MAX_JWT_REFRESH_SECONDS = 50 * 60
DEFAULT_JWT_REFRESH_SECONDS = 30 * 60

DEFAULT_MAX_PAYLOAD_BYTES = 4096
VOIP_MAX_PAYLOAD_BYTES = 5120

#: Error bodies are tiny JSON objects; anything longer is cut (still acknowledged).
_MAX_ERROR_BODY = 16 * 1024

_TOKEN_RE = re.compile(r"[0-9A-Fa-f]{8,200}")

#: Topic suffixes Apple requires for some push types.
_TOPIC_SUFFIX = {
    PushType.VOIP: ".voip",
    PushType.COMPLICATION: ".complication",
    PushType.FILEPROVIDER: ".pushkit.fileprovider",
    PushType.LIVEACTIVITY: ".push-type.liveactivity",
}

_PUSH_TYPES = {t.value: t for t in PushType}

#: 403 reasons after which a fresh provider token may succeed.
_REFRESH_REASONS = frozenset({"ExpiredProviderToken", "InvalidProviderToken"})
#: 400 reasons that condemn the device token itself.
_DEAD_TOKEN_REASONS = frozenset({"BadDeviceToken"})


class ProviderTokenSigner(AuthorizationHeaderProvider):
    """The ES256 provider JWT, shared by every connection of one provider.

    aioapns mints one per connection and refreshes after 30 minutes of ``time.time()``;
    ours takes an injectable clock, refuses intervals Apple would reject, re-mints when
    the clock goes backwards, and can be invalidated after a 403 ExpiredProviderToken.
    """

    def __init__(
        self,
        *,
        key: ec.EllipticCurvePrivateKey,
        key_id: str,
        team_id: str,
        refresh_seconds: float = DEFAULT_JWT_REFRESH_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 0 < refresh_seconds <= MAX_JWT_REFRESH_SECONDS:
            raise ConfigError(f"APNs JWT refresh must be in (0, {MAX_JWT_REFRESH_SECONDS}] seconds")
        self._key = key
        self._key_id = key_id
        self._team_id = team_id
        self._refresh_seconds = refresh_seconds
        self._clock = clock
        self._header: str | None = None
        self._issued_at = 0.0
        #: Bumped on every mint; lets a 403 invalidate only the token it was answered for.
        self.generation = 0

    def get_header(self) -> str:
        now = self._clock()
        age = now - self._issued_at
        if self._header is None or age >= self._refresh_seconds or age < 0:
            self._issued_at = now
            token = jwt.encode(
                {"iss": self._team_id, "iat": int(now)},
                self._key,
                algorithm="ES256",
                headers={"kid": self._key_id},
            )
            self._header = f"bearer {token}"
            self.generation += 1
        return self._header

    def invalidate(self, generation: int) -> None:
        """Forget the token of ``generation`` (no-op if a newer one was minted meanwhile)."""
        if generation == self.generation:
            self._header = None


class ApnsAnswer(NotificationResult):
    """aioapns' result plus what it drops: Retry-After, the echoed apns-id, the JWT generation."""

    __slots__ = ("apns_id", "retry_after", "token_generation")

    def __init__(
        self,
        notification_id: str,
        status: str,
        *,
        description: str | None,
        timestamp: int | None,
        apns_id: str | None,
        retry_after: str | None,
        token_generation: int,
    ) -> None:
        super().__init__(notification_id, status, description=description, timestamp=timestamp)
        self.apns_id = apns_id
        self.retry_after = retry_after
        self.token_generation = token_generation


class RequestTimeout(Exception):
    """No answer within the request timeout; ``sent`` tells whether the request left the client."""

    def __init__(self, sent: bool) -> None:
        super().__init__(
            "sent, no answer in time" if sent else "never sent: no stream or flow-control window"
        )
        self.sent = sent


def _hpack_int(value: int, prefix_bits: int, flags: int) -> bytes:
    """RFC 7541 §5.1 integer with an N-bit prefix; ``flags`` fills the bits above the prefix."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((flags | value,))
    out = bytearray((flags | limit,))
    value -= limit
    while value >= 128:
        out.append((value & 127) | 128)
        value >>= 7
    out.append(value)
    return bytes(out)


def _hpack_str(data: bytes) -> bytes:
    """RFC 7541 §5.2 string literal, not Huffman-coded (H = 0)."""
    return _hpack_int(len(data), 7, 0) + data


#: RFC 7541 Appendix A: fully indexed fields and indexed names we send.
_HPACK_STATIC_FIELDS = {
    (b":method", b"GET"): 2,
    (b":method", b"POST"): 3,
    (b":scheme", b"http"): 6,
    (b":scheme", b"https"): 7,
}
_HPACK_STATIC_NAMES = {b":authority": 1, b":method": 2, b":path": 4, b":scheme": 6, b"authorization": 23}
_HPACK_NEVER_INDEXED = frozenset({b"authorization"})
#: Encoded repeated fields kept per connection (a JWT, a topic, a few expirations and collapse ids).
_HEADER_CACHE_SIZE = 256


class LiteralHeaderEncoder:
    """An HPACK encoder without a dynamic table, replacing hpack's on our h2 connections.

    hpack searches its whole table and Huffman-codes every value in pure Python, which
    was most of our CPU per notification. Apple asks for ``:path``, ``authorization``
    and per-request values to be sent as literals without indexing anyway, so this
    encoder sends every field that way (static-table names where there is one), never
    indexes (``authorization`` as never-indexed), announces a dynamic table of size 0
    in its first block, and caches the encoded bytes of repeated fields (topic, push
    type, priority, collapse id, expiration, the JWT): only ``:path`` and ``apns-id``
    are encoded per request.
    """

    def __init__(self, *, per_request: frozenset[bytes] = frozenset({b":path", b"apns-id"})) -> None:
        self._per_request = per_request
        self._cache: dict[tuple[bytes, bytes], bytes] = {}
        self._announced = False
        #: Set by h2 on the peer's SETTINGS_HEADER_TABLE_SIZE; irrelevant to an encoder that never indexes.
        self.header_table_size = 4096

    def encode(self, headers: Iterable[tuple[bytes, bytes]]) -> bytes:
        parts: list[bytes] = []
        if not self._announced:
            parts.append(b"\x20")  # dynamic table size update: 0 (RFC 7541 §6.3)
            self._announced = True
        cache = self._cache
        for name, value in headers:
            block = cache.get((name, value))
            if block is None:
                block = self.encode_field(name, value)
                if name not in self._per_request:
                    if len(cache) >= _HEADER_CACHE_SIZE:
                        cache.clear()
                    cache[(name, value)] = block
            parts.append(block)
        return b"".join(parts)

    @staticmethod
    def encode_field(name: bytes, value: bytes) -> bytes:
        index = _HPACK_STATIC_FIELDS.get((name, value))
        if index is not None:
            return bytes((0x80 | index,))
        flags = 0x10 if name in _HPACK_NEVER_INDEXED else 0x00
        name_index = _HPACK_STATIC_NAMES.get(name)
        if name_index is not None:
            return _hpack_int(name_index, 4, flags) + _hpack_str(value)
        return bytes((flags,)) + _hpack_str(name) + _hpack_str(value)


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

#: Streams per connection even if the peer allows more (Apple advertises 1000).
MAX_STREAMS_PER_CONNECTION = 1000


class ApnsRequest:
    """One notification queued on, or sent over, a connection."""

    __slots__ = (
        "apns_id",
        "body",
        "body_sent",
        "fields",
        "future",
        "path",
        "response_body",
        "response_headers",
        "stream_id",
        "timer",
        "token_generation",
    )

    def __init__(
        self,
        apns_id: str,
        path: bytes,
        fields: list[tuple[bytes, bytes]],
        body: bytes,
        future: asyncio.Future[ApnsAnswer],
    ) -> None:
        self.apns_id = apns_id
        self.path = path
        self.fields = fields
        self.body = body
        self.future = future
        self.stream_id: int | None = None
        self.body_sent = 0
        self.timer: asyncio.TimerHandle | None = None
        self.token_generation = 0
        self.response_headers: dict[bytes, bytes] = {}
        self.response_body = b""


class ApnsClientProtocol(APNsProductionClientProtocol):
    """aioapns' protocol with a send queue that honours HTTP/2 flow control (see module doc).

    :meth:`submit` queues a request; the queue is drained at most once per event-loop
    tick, and again whenever the server frees something (an answer ends a stream, a
    WINDOW_UPDATE widens a window, SETTINGS change the stream limit), with one socket
    write per drain. A request leaves the queue only when a stream is free under the
    peer's SETTINGS_MAX_CONCURRENT_STREAMS and the connection's send window holds its
    whole body; a body larger than its stream's window is sent as far as the window
    allows and finished after WINDOW_UPDATE. Each request has its own deadline, which
    covers the time it waits in the queue. Nothing waits before the peer's first SETTINGS.

    Use :func:`protocol_class_for` to bind the endpoint, signer and clock.
    """

    token_signer: ClassVar[ProviderTokenSigner | None] = None

    @staticmethod
    def clock() -> float:
        """UNIX time for ``apns-expiration``; bound classes use the provider's clock."""
        return time.time()

    def __init__(
        self,
        apns_topic: str,
        loop: asyncio.AbstractEventLoop | None = None,
        on_connection_lost: Callable[[APNsBaseClientProtocol], Any] | None = None,
        auth_provider: AuthorizationHeaderProvider | None = None,
    ) -> None:
        super().__init__(apns_topic, loop, on_connection_lost, self.token_signer or auth_provider)
        self.conn: _CountingH2Connection = _CountingH2Connection(_H2_CONFIG)
        self.conn.encoder = LiteralHeaderEncoder()  # type: ignore[assignment]
        self._pseudo = [
            (b":method", b"POST"),
            (b":scheme", b"https"),
            (b":authority", self.APNS_SERVER.encode()),
        ]
        self._queue: deque[ApnsRequest] = deque()
        #: Sent requests by stream id, until their answer ends (or we reset them).
        self._streams: dict[int, ApnsRequest] = {}
        #: Streams whose body is partly sent, waiting for their stream's window.
        self._blocked: deque[ApnsRequest] = deque()
        self._drain_scheduled = False
        self._settings_received = False
        #: Times the queue had to wait for a WINDOW_UPDATE (exposed for tests and metrics).
        self.window_stalls = 0

    # -- sending -------------------------------------------------------------------------

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

    def submit(
        self, apns_id: str, path: bytes, fields: list[tuple[bytes, bytes]], body: bytes, timeout: float
    ) -> ApnsRequest:
        """Queue one request; its future gets an :class:`ApnsAnswer` or an exception."""
        if self.transport is None or self.transport.is_closing():
            raise ConnectionClosed("connection is closing")
        request = ApnsRequest(apns_id, path, fields, body, self.loop.create_future())
        request.timer = self.loop.call_later(timeout, self._expire, request)
        self._queue.append(request)
        if not self._drain_scheduled:
            self._drain_scheduled = True
            self.loop.call_soon(self._drain)
        return request

    async def send_notification(self, request: NotificationRequest) -> NotificationResult:
        """aioapns' entry point, for completeness (``ApnsProvider`` calls :meth:`submit`)."""
        fields = request_fields(request, int(self.clock()), self.apns_topic)
        path = b"/3/device/" + request.device_token.encode()
        queued = self.submit(request.notification_id, path, fields, encode_payload(request.message), 10.0)
        try:
            return await queued.future
        except asyncio.CancelledError:
            self.abandon(queued)
            raise

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
            log.warning("APNs connection error while sending, closing: %r", exc)
            self._fail_all(ConnectionClosed(f"HTTP/2 error: {exc!r}"))
            self.close()
            return
        self.flush()

    def _open(self, request: ApnsRequest) -> None:
        conn = self.conn
        stream_id = conn.get_next_available_stream_id()
        headers = [*self._pseudo, (b":path", request.path), *request.fields]
        if self.auth_provider is not None:
            headers.append((b"authorization", self.auth_provider.get_header().encode()))
            if isinstance(self.auth_provider, ProviderTokenSigner):
                request.token_generation = self.auth_provider.generation
        conn.send_headers(stream_id, headers)
        request.stream_id = stream_id
        self._streams[stream_id] = request
        conn.outbound_open = len(self._streams)

    def _send_body(self, request: ApnsRequest) -> bool:
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

    def abandon(self, request: ApnsRequest) -> None:
        """Give up on a request: drop it from the queue, or reset its stream; the future is cancelled."""
        if request.timer is not None:
            request.timer.cancel()
        if not request.future.done():
            request.future.cancel()
        self._forget(request, reset=True)
        self.flush()

    def _expire(self, request: ApnsRequest) -> None:
        if request.future.done():
            return
        sent = request.stream_id is not None
        request.future.set_exception(RequestTimeout(sent))
        self._forget(request, reset=True)
        self.flush()

    def _forget(self, request: ApnsRequest, *, reset: bool) -> None:
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
            log.warning("APNs connection protocol error, closing: %s", exc)
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
                if request is not None and len(request.response_body) < _MAX_ERROR_BODY:
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
        status = headers.get(b":status", b"").decode("latin-1")
        reason: str | None = None
        timestamp: int | None = None
        if request.response_body:
            try:
                parsed = json.loads(request.response_body)
            except ValueError:
                parsed = None
            if isinstance(parsed, dict):
                raw_reason = parsed.get("reason")
                reason = raw_reason if isinstance(raw_reason, str) else None
                raw_ts = parsed.get("timestamp")
                timestamp = raw_ts if isinstance(raw_ts, int) and not isinstance(raw_ts, bool) else None
        retry_after = headers.get(b"retry-after")
        apns_id = headers.get(b"apns-id")
        request.future.set_result(
            ApnsAnswer(
                request.apns_id,
                status,
                description=reason,
                timestamp=timestamp,
                apns_id=apns_id.decode("latin-1") if apns_id is not None else None,
                retry_after=retry_after.decode("latin-1") if retry_after is not None else None,
                token_generation=request.token_generation,
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


def request_fields(request: NotificationRequest, now: int, default_topic: str) -> list[tuple[bytes, bytes]]:
    """The ``apns-*`` headers of an aioapns request (``now``: UNIX seconds for ``apns-expiration``)."""
    fields = [
        (b"apns-id", request.notification_id.encode()),
        (b"apns-topic", (request.apns_topic or default_topic).encode()),
    ]
    if request.time_to_live is not None:
        # 0 means "deliver now or never"; otherwise an absolute UNIX time.
        ttl = request.time_to_live
        fields.append((b"apns-expiration", b"0" if ttl <= 0 else str(now + ttl).encode()))
    if request.priority is not None:
        fields.append((b"apns-priority", str(request.priority).encode()))
    if request.collapse_key is not None:
        fields.append((b"apns-collapse-id", request.collapse_key.encode()))
    if request.push_type is not None:
        fields.append((b"apns-push-type", request.push_type.value.encode()))
    return fields


def protocol_class_for(
    host: str,
    port: int,
    signer: ProviderTokenSigner | None,
    clock_fn: Callable[[], float] = time.time,
) -> type[ApnsClientProtocol]:
    """A protocol class bound to one endpoint, as aioapns' pool wants a class (``pool.protocol_class``)."""

    class BoundApnsClientProtocol(ApnsClientProtocol):
        APNS_SERVER = host
        APNS_PORT = port
        token_signer = signer

        @staticmethod
        def clock() -> float:
            return clock_fn()

    return BoundApnsClientProtocol


@dataclass(frozen=True)
class ApnsEndpoint:
    """Where to connect. ``tls=False`` speaks cleartext HTTP/2 (stand-ins only)."""

    host: str = PRODUCTION_HOST
    port: int = 443
    tls: bool = True
    #: Custom trust (e.g. a stand-in's self-signed certificate); default: system CAs.
    ssl_context: ssl.SSLContext | None = None

    @classmethod
    def production(cls) -> ApnsEndpoint:
        return cls(PRODUCTION_HOST, 443)

    @classmethod
    def sandbox(cls) -> ApnsEndpoint:
        return cls(SANDBOX_HOST, 443)


def encode_payload(message: Mapping[str, Any]) -> bytes:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode()


def build_payload(n: Notification) -> dict[str, Any]:
    """The APNs JSON payload: ``aps`` plus the custom data keys at the top level."""
    aps: dict[str, Any] = {}
    if n.title is not None or n.body is not None:
        alert: dict[str, str] = {}
        if n.title is not None:
            alert["title"] = n.title
        if n.body is not None:
            alert["body"] = n.body
        aps["alert"] = alert
    if n.badge is not None:
        aps["badge"] = n.badge
    if n.sound is not None:
        aps["sound"] = n.sound
    if n.push_type == PushType.BACKGROUND.value:
        aps["content-available"] = 1
    payload: dict[str, Any] = {"aps": aps}
    for key, value in n.data.items():
        if key == "aps":
            raise ValueError("data may not contain the reserved key 'aps'")
        payload[key] = value
    return payload


def apns_id_for(message_id: str) -> str:
    """Our delivery id as a canonical UUID: itself if it is one, else a UUIDv5 derived from it."""
    try:
        return str(uuid.UUID(message_id))
    except ValueError:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"mpaas:delivery:{message_id}"))


def classify_answer(
    status: int,
    reason: str | None,
    *,
    timestamp: int | None,
    retry_after: str | None,
    apns_id: str | None,
    now: datetime,
) -> SendResult:
    """Map an APNs answer to what the delivery queue should do."""
    if status == 200:
        return SendResult(outcome=Outcome.SENT, status=status, provider_id=apns_id)
    if status == 410:
        return SendResult(
            outcome=Outcome.INVALID_TOKEN,
            status=status,
            reason=reason,
            token_invalid_since=datetime_from_epoch_ms(timestamp) if timestamp is not None else None,
        )
    if status == 400 and reason in _DEAD_TOKEN_REASONS:
        return SendResult(outcome=Outcome.INVALID_TOKEN, status=status, reason=reason)
    if status == 403 and reason in _REFRESH_REASONS:
        return SendResult(outcome=Outcome.RETRY, status=status, reason=reason, retry_after=0.0)
    if status == 429 or status >= 500:
        return SendResult(
            outcome=Outcome.RETRY,
            status=status,
            reason=reason,
            retry_after=parse_retry_after(retry_after, now),
        )
    return SendResult(outcome=Outcome.REJECTED, status=status, reason=reason)


class _Refused(Exception):
    def __init__(self, result: SendResult) -> None:
        super().__init__(result.reason)
        self.result = result


async def _ignore_error(request: NotificationRequest, result: NotificationResult) -> None:
    """aioapns logs every non-200 at ERROR level unless given an err_func; we classify instead."""


@dataclass(frozen=True, slots=True)
class _Outgoing:
    apns_id: str
    path: bytes
    fields: list[tuple[bytes, bytes]]
    body: bytes


class ApnsProvider:
    """APNs through aioapns with one attempt and one deadline per notification.

    ``message_id`` becomes the ``apns-id`` (:func:`apns_id_for`); a second send with the
    same id while the first is in flight is REJECTED (``DuplicateApnsId``) rather than
    sent, since APNs and aioapns could not tell the two apart. Tokens that are not hex,
    unknown push types and payloads over the size limit are refused locally.

    aioapns' pool opens the connections (up to ``max_connections``, the next one when a
    connection holds as many requests as the peer allows streams); :meth:`send_many`
    queues up to ``concurrency`` notifications at once on them without a task per
    notification, and each connection sends what its HTTP/2 windows allow.
    """

    name = "apns"

    def __init__(
        self,
        *,
        key: str,
        key_id: str,
        team_id: str,
        topic: str,
        use_sandbox: bool = False,
        endpoint: ApnsEndpoint | None = None,
        max_connections: int = 4,
        concurrency: int = 1000,
        request_timeout: float = 10.0,
        jwt_refresh_seconds: float = DEFAULT_JWT_REFRESH_SECONDS,
        max_payload_bytes: int | None = DEFAULT_MAX_PAYLOAD_BYTES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``key`` is the PEM text of the .p8 key; ``clock`` (UNIX seconds) drives JWT age and expiry.

        ``concurrency`` bounds notifications queued or in flight per :meth:`send_many`;
        ``request_timeout`` bounds each one from queueing to answer, waits for a stream or
        a flow-control window included.
        """
        try:
            private_key = load_pem_private_key(key.encode(), password=None)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"APNs key is not a PEM private key: {exc}") from exc
        if not isinstance(private_key, ec.EllipticCurvePrivateKey) or private_key.curve.name != "secp256r1":
            raise ConfigError("APNs key must be an EC P-256 (.p8) key")
        if concurrency < 1 or max_connections < 1 or request_timeout <= 0:
            raise ConfigError("APNs concurrency, max_connections and request_timeout must be positive")
        self._key_pem = key
        self._key_id = key_id
        self._team_id = team_id
        self._topic = topic
        self._use_sandbox = use_sandbox
        self._endpoint = endpoint or (ApnsEndpoint.sandbox() if use_sandbox else ApnsEndpoint.production())
        self._max_connections = max_connections
        self._concurrency = concurrency
        self._timeout = request_timeout
        self._max_payload = max_payload_bytes
        self._clock = clock
        self.signer = ProviderTokenSigner(
            key=private_key,
            key_id=key_id,
            team_id=team_id,
            refresh_seconds=jwt_refresh_seconds,
            clock=clock,
        )
        self._client: APNs | None = None
        self._in_flight: set[str] = set()
        self._closed = False

    @classmethod
    def from_key_file(cls, path: str | Path, **kwargs: Any) -> ApnsProvider:
        return cls(key=Path(path).read_text(encoding="utf-8"), **kwargs)

    @property
    def connections(self) -> list[ApnsClientProtocol]:
        """The open connections (for metrics and tests)."""
        if self._client is None:
            return []
        return [c for c in self._client.pool.connections if isinstance(c, ApnsClientProtocol)]

    def _client_or_create(self) -> APNs:
        # Created lazily: aioapns' pool binds to the event loop running at construction.
        if self._client is None:
            client = APNs(
                key=self._key_pem,
                key_id=self._key_id,
                team_id=self._team_id,
                topic=self._topic,
                use_sandbox=self._use_sandbox,
                max_connections=self._max_connections,
                max_connection_attempts=1,
                err_func=_ignore_error,
            )
            pool = client.pool
            pool.protocol_class = protocol_class_for(
                self._endpoint.host, self._endpoint.port, self.signer, self._clock
            )
            if self._endpoint.tls:
                context = self._endpoint.ssl_context or ssl.create_default_context()
                context.set_alpn_protocols(["h2"])
                pool.ssl_context = context
            else:
                pool.ssl_context = None
            self._client = client
        return self._client

    def _prepare(self, n: Notification, now: int) -> _Outgoing:
        """Check and encode one notification (``now``: UNIX seconds for ``apns-expiration``)."""
        if not _TOKEN_RE.fullmatch(n.token):
            raise _Refused(SendResult(outcome=Outcome.INVALID_TOKEN, reason="BadDeviceToken"))
        push_type = _PUSH_TYPES.get(n.push_type)
        if push_type is None:
            raise _Refused(SendResult(outcome=Outcome.REJECTED, reason="InvalidPushType"))
        try:
            body = encode_payload(build_payload(n))
        except ValueError:
            raise _Refused(SendResult(outcome=Outcome.REJECTED, reason="ReservedDataKey")) from None
        if self._max_payload is not None:
            limit = VOIP_MAX_PAYLOAD_BYTES if push_type is PushType.VOIP else self._max_payload
            if len(body) > limit:
                raise _Refused(SendResult(outcome=Outcome.REJECTED, reason="PayloadTooLarge"))
        apns_id = apns_id_for(n.message_id)
        fields = [
            (b"apns-id", apns_id.encode()),
            (b"apns-topic", (self._topic + _TOPIC_SUFFIX.get(push_type, "")).encode()),
        ]
        if n.ttl_seconds is not None:
            # 0 means "deliver now or never"; otherwise an absolute UNIX time.
            ttl = n.ttl_seconds
            fields.append((b"apns-expiration", b"0" if ttl <= 0 else str(now + ttl).encode()))
        # Apple refuses priority 10 for background pushes.
        high = n.priority == "high" and push_type is not PushType.BACKGROUND
        fields.append((b"apns-priority", b"10" if high else b"5"))
        if n.collapse_id is not None:
            fields.append((b"apns-collapse-id", n.collapse_id.encode()))
        fields.append((b"apns-push-type", push_type.value.encode()))
        return _Outgoing(apns_id, b"/3/device/" + n.token.encode(), fields, body)

    async def send(self, n: Notification) -> SendResult:
        return (await self.send_many([n]))[0]

    async def send_many(self, ns: Sequence[Notification]) -> list[SendResult]:
        if self._closed:
            return [SendResult(outcome=Outcome.RETRY, reason="ProviderClosed") for _ in ns]
        results: list[SendResult | None] = [None] * len(ns)
        todo: list[tuple[int, _Outgoing]] = []
        now = int(self._clock())
        for i, n in enumerate(ns):
            try:
                outgoing = self._prepare(n, now)
            except _Refused as refused:
                results[i] = refused.result
                continue
            if outgoing.apns_id in self._in_flight:
                # Two requests with one apns-id would be indistinguishable to APNs and to us.
                results[i] = SendResult(outcome=Outcome.REJECTED, reason="DuplicateApnsId")
                continue
            self._in_flight.add(outgoing.apns_id)
            todo.append((i, outgoing))
        try:
            await self._dispatch(todo, results)
        finally:
            for _, outgoing in todo:
                self._in_flight.discard(outgoing.apns_id)
        return [r if r is not None else SendResult(outcome=Outcome.RETRY, reason="NotSent") for r in results]

    async def _dispatch(self, todo: list[tuple[int, _Outgoing]], results: list[SendResult | None]) -> None:
        """Queue ``todo`` on the pool's connections, at most ``concurrency`` unanswered at a time."""
        if not todo:
            return
        loop = asyncio.get_running_loop()
        pool = self._client_or_create().pool
        free = self._concurrency
        waiter: asyncio.Future[None] | None = None
        submitted: list[tuple[int, ApnsClientProtocol, ApnsRequest]] = []

        def release(_: asyncio.Future[ApnsAnswer]) -> None:
            nonlocal free
            free += 1
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

        try:
            for position, (i, outgoing) in enumerate(todo):
                while free <= 0:
                    waiter = loop.create_future()
                    await waiter
                try:
                    connection = await pool.acquire()
                    assert isinstance(connection, ApnsClientProtocol)
                    request = connection.submit(
                        outgoing.apns_id, outgoing.path, outgoing.fields, outgoing.body, self._timeout
                    )
                except (ApnsConnectionError, ConnectionClosed, OSError) as exc:
                    log.debug("APNs connection failed: %r", exc)
                    for j, _ in todo[position:]:
                        results[j] = SendResult(outcome=Outcome.RETRY, reason="ConnectionError")
                    break
                free -= 1
                request.future.add_done_callback(release)
                submitted.append((i, connection, request))
            if submitted:
                await asyncio.wait([request.future for _, _, request in submitted])
        except BaseException:
            for _, connection, request in submitted:
                connection.abandon(request)
            raise
        now: datetime | None = None
        for i, _, request in submitted:
            future = request.future
            error = future.exception()
            if error is not None:
                if isinstance(error, RequestTimeout):
                    results[i] = SendResult(outcome=Outcome.RETRY, reason="Timeout")
                else:
                    log.debug("APNs send %s failed: %r", request.apns_id, error)
                    results[i] = SendResult(outcome=Outcome.RETRY, reason="ConnectionError")
                continue
            answer = future.result()
            if answer.status == "200":  # the common case, without a clock or a parse
                results[i] = SendResult(
                    outcome=Outcome.SENT, status=200, provider_id=answer.apns_id or request.apns_id
                )
                continue
            if now is None:
                now = datetime.fromtimestamp(self._clock(), UTC)
            results[i] = self._classify(answer, request.apns_id, now)

    def _classify(self, answer: ApnsAnswer, apns_id: str, now: datetime) -> SendResult:
        try:
            status = int(answer.status)
        except ValueError:
            return SendResult(outcome=Outcome.RETRY, reason="MalformedAnswer")
        if status == 403 and answer.description in _REFRESH_REASONS:
            self.signer.invalidate(answer.token_generation)
        return classify_answer(
            status,
            answer.description,
            timestamp=answer.timestamp,
            retry_after=answer.retry_after,
            apns_id=answer.apns_id or apns_id,
            now=now,
        )

    async def close(self) -> None:
        self._closed = True
        if self._client is not None:
            self._client.pool.close()
            self._client = None
            await asyncio.sleep(0)  # let connection_lost callbacks run
