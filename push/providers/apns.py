"""APNs over HTTP/2 with token (.p8) authentication, built on aioapns 4.0.

aioapns keeps the connection pool, the stream-id allocation and the inactivity timer.
:class:`ApnsClientProtocol` replaces its request/answer handling because aioapns 4.0:

- never acknowledges received DATA, so after ~64 KiB of error bodies on one connection
  the server stops sending answers; they stall until the idle timeout closes the
  connection and the pool re-sends them (duplicate notifications);
- matches answers by the echoed ``apns-id`` and assumes each error body arrives in one
  DATA frame; an error without a JSON body never completes;
- raises ``InvalidStateError`` inside ``data_received``/``connection_lost`` when a
  waiting request was cancelled (our per-request timeout), and leaks its stream slot;
- drops the ``retry-after`` header.

Here answers are matched by stream id, bodies are buffered until END_STREAM, every DATA
frame is acknowledged (WINDOW_UPDATE), a cancelled request resets its stream and frees
its slot, and the pool makes exactly one attempt (``max_connection_attempts=1``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import ssl
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
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
from aioapns.exceptions import ConnectionClosed, MaxAttemptsExceeded
from aioapns.exceptions import ConnectionError as ApnsConnectionError
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key
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
    send_bounded,
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


class _Stream:
    __slots__ = ("body", "future", "headers", "notification_id", "token_generation")

    def __init__(self, notification_id: str, future: asyncio.Future[ApnsAnswer], generation: int) -> None:
        self.notification_id = notification_id
        self.future = future
        self.token_generation = generation
        self.headers: dict[bytes, bytes] = {}
        self.body = bytearray()


class ApnsClientProtocol(APNsProductionClientProtocol):
    """aioapns' protocol with stream-keyed answers and HTTP/2 flow control (see module doc).

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
        self._streams: dict[int, _Stream] = {}

    @property
    def is_busy(self) -> bool:
        closing = self.transport is None or self.transport.is_closing()
        return closing or self.free_channels.is_busy

    def flush(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        super().flush()

    async def send_notification(self, request: NotificationRequest) -> NotificationResult:
        stream_id = await self.free_channels.acquire()
        if self.transport is None or self.transport.is_closing():
            self.free_channels.release()
            raise ConnectionClosed("connection is closing")
        generation = 0
        headers = self._request_headers(request)
        if self.auth_provider is not None:
            headers.append(("authorization", self.auth_provider.get_header()))
            if isinstance(self.auth_provider, ProviderTokenSigner):
                generation = self.auth_provider.generation
        body = encode_payload(request.message)
        stream = _Stream(request.notification_id, self.loop.create_future(), generation)
        self._streams[stream_id] = stream
        try:
            self.conn.send_headers(stream_id, headers)
            self.conn.send_data(stream_id, body, end_stream=True)
        except BaseException:
            self._abandon(stream_id)
            raise
        self.flush()
        try:
            return await stream.future
        except asyncio.CancelledError:
            self._abandon(stream_id)
            raise

    def _request_headers(self, request: NotificationRequest) -> list[tuple[str, str]]:
        headers = [
            (":method", "POST"),
            (":scheme", "https"),
            (":authority", self.APNS_SERVER),
            (":path", f"/3/device/{request.device_token}"),
            ("apns-id", request.notification_id),
            ("apns-topic", request.apns_topic or self.apns_topic),
        ]
        if request.time_to_live is not None:
            # 0 means "deliver now or never"; otherwise an absolute UNIX time.
            ttl = request.time_to_live
            expiration = 0 if ttl <= 0 else int(self.clock()) + ttl
            headers.append(("apns-expiration", str(expiration)))
        if request.priority is not None:
            headers.append(("apns-priority", str(request.priority)))
        if request.collapse_key is not None:
            headers.append(("apns-collapse-id", request.collapse_key))
        if request.push_type is not None:
            headers.append(("apns-push-type", request.push_type.value))
        return headers

    def _abandon(self, stream_id: int) -> None:
        """Give up on a stream we still own: reset it and free its slot."""
        stream = self._streams.pop(stream_id, None)
        if stream is None:
            return
        try:
            self.conn.reset_stream(stream_id, ErrorCodes.CANCEL)
        except ProtocolError:
            pass
        self.free_channels.release()
        self.flush()

    def data_received(self, data: bytes) -> None:
        try:
            events = self.conn.receive_data(data)
        except ProtocolError as exc:
            log.warning("APNs connection protocol error, closing: %s", exc)
            self.flush()
            self.close()
            return
        for event in events:
            if isinstance(event, ResponseReceived):
                stream = self._streams.get(event.stream_id)
                if stream is not None:
                    stream.headers = dict(event.headers)
            elif isinstance(event, DataReceived):
                stream = self._streams.get(event.stream_id)
                if stream is not None and len(stream.body) < _MAX_ERROR_BODY:
                    stream.body += event.data
                # The fix aioapns lacks: hand the window back to the server.
                if event.flow_controlled_length:
                    self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, StreamEnded):
                self._finish(event.stream_id)
            elif isinstance(event, StreamReset):
                self._fail(event.stream_id, ConnectionClosed(f"stream reset by server: {event.error_code!r}"))
            elif isinstance(event, RemoteSettingsChanged):
                self.on_remote_settings_changed(event.changed_settings)  # type: ignore[arg-type]
            elif isinstance(event, ConnectionTerminated):
                self.on_connection_terminated(event)
        self.flush()

    def _finish(self, stream_id: int) -> None:
        stream = self._streams.pop(stream_id, None)
        if stream is None:
            return
        self.free_channels.release()
        status = stream.headers.get(b":status", b"").decode("latin-1")
        reason: str | None = None
        timestamp: int | None = None
        if stream.body:
            try:
                parsed = json.loads(stream.body)
            except ValueError:
                parsed = None
            if isinstance(parsed, dict):
                raw_reason = parsed.get("reason")
                reason = raw_reason if isinstance(raw_reason, str) else None
                raw_ts = parsed.get("timestamp")
                timestamp = raw_ts if isinstance(raw_ts, int) and not isinstance(raw_ts, bool) else None
        retry_after = stream.headers.get(b"retry-after")
        apns_id = stream.headers.get(b"apns-id")
        answer = ApnsAnswer(
            stream.notification_id,
            status,
            description=reason,
            timestamp=timestamp,
            apns_id=apns_id.decode("latin-1") if apns_id is not None else None,
            retry_after=retry_after.decode("latin-1") if retry_after is not None else None,
            token_generation=stream.token_generation,
        )
        if not stream.future.done():
            stream.future.set_result(answer)

    def _fail(self, stream_id: int, exc: Exception) -> None:
        stream = self._streams.pop(stream_id, None)
        if stream is None:
            return
        self.free_channels.release()
        if not stream.future.done():
            stream.future.set_exception(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        streams, self._streams = self._streams, {}
        closed = ConnectionClosed(str(exc))
        for stream in streams.values():
            if not stream.future.done():
                stream.future.set_exception(closed)
        super().connection_lost(exc)


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


class ApnsProvider:
    """APNs through aioapns with one attempt and one deadline per notification.

    ``message_id`` becomes the ``apns-id`` (:func:`apns_id_for`); a second send with the
    same id while the first is in flight is REJECTED (``DuplicateApnsId``) rather than
    sent, since APNs and aioapns could not tell the two apart. Tokens that are not hex,
    unknown push types and payloads over the size limit are refused locally.
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
        concurrency: int = 200,
        request_timeout: float = 10.0,
        jwt_refresh_seconds: float = DEFAULT_JWT_REFRESH_SECONDS,
        max_payload_bytes: int | None = DEFAULT_MAX_PAYLOAD_BYTES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``key`` is the PEM text of the .p8 key; ``clock`` (UNIX seconds) drives JWT age and expiry."""
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

    def _request_for(self, n: Notification) -> NotificationRequest:
        if not _TOKEN_RE.fullmatch(n.token):
            raise _Refused(SendResult(outcome=Outcome.INVALID_TOKEN, reason="BadDeviceToken"))
        try:
            push_type = PushType(n.push_type)
        except ValueError:
            raise _Refused(SendResult(outcome=Outcome.REJECTED, reason="InvalidPushType")) from None
        try:
            payload = build_payload(n)
        except ValueError:
            raise _Refused(SendResult(outcome=Outcome.REJECTED, reason="ReservedDataKey")) from None
        if self._max_payload is not None:
            limit = VOIP_MAX_PAYLOAD_BYTES if push_type is PushType.VOIP else self._max_payload
            if len(encode_payload(payload)) > limit:
                raise _Refused(SendResult(outcome=Outcome.REJECTED, reason="PayloadTooLarge"))
        # Apple refuses priority 10 for background pushes.
        priority = 10 if n.priority == "high" and push_type is not PushType.BACKGROUND else 5
        return NotificationRequest(
            device_token=n.token,
            message=payload,
            notification_id=apns_id_for(n.message_id),
            time_to_live=n.ttl_seconds,
            priority=priority,
            collapse_key=n.collapse_id,
            push_type=push_type,
            apns_topic=self._topic + _TOPIC_SUFFIX.get(push_type, ""),
        )

    async def send(self, n: Notification) -> SendResult:
        if self._closed:
            return SendResult(outcome=Outcome.RETRY, reason="ProviderClosed")
        try:
            request = self._request_for(n)
        except _Refused as refused:
            return refused.result
        apns_id = request.notification_id
        if apns_id in self._in_flight:
            # Two requests with one apns-id would be indistinguishable to APNs and to us.
            return SendResult(outcome=Outcome.REJECTED, reason="DuplicateApnsId")
        self._in_flight.add(apns_id)
        try:
            answer = await asyncio.wait_for(
                self._client_or_create().send_notification(request), timeout=self._timeout
            )
        except TimeoutError:
            return SendResult(outcome=Outcome.RETRY, reason="Timeout")
        except (MaxAttemptsExceeded, ConnectionClosed, ApnsConnectionError, OSError, H2Error) as exc:
            log.debug("APNs send %s failed: %r", apns_id, exc)
            return SendResult(outcome=Outcome.RETRY, reason="ConnectionError")
        finally:
            self._in_flight.discard(apns_id)
        if not isinstance(answer, ApnsAnswer):  # pragma: no cover - our protocol always answers so
            raise TypeError(f"unexpected aioapns result {answer!r}")
        try:
            status = int(answer.status)
        except ValueError:
            return SendResult(outcome=Outcome.RETRY, reason="MalformedAnswer")
        result = classify_answer(
            status,
            answer.description,
            timestamp=answer.timestamp,
            retry_after=answer.retry_after,
            apns_id=answer.apns_id or apns_id,
            now=datetime.fromtimestamp(self._clock(), UTC),
        )
        if status == 403 and answer.description in _REFRESH_REASONS:
            self.signer.invalidate(answer.token_generation)
        return result

    async def send_many(self, ns: Sequence[Notification]) -> list[SendResult]:
        return await send_bounded(self.send, ns, self._concurrency)

    async def close(self) -> None:
        self._closed = True
        if self._client is not None:
            self._client.pool.close()
            self._client = None
            await asyncio.sleep(0)  # let connection_lost callbacks run
