"""The APNs provider: batches of notifications, one attempt and one deadline each."""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from mpaas.errors import ConfigError
from mpaas.push.providers.apns.answers import ApnsAnswer, classify_answer
from mpaas.push.providers.apns.auth import (
    DEFAULT_JWT_REFRESH_SECONDS,
    REFRESH_REASONS,
    ProviderTokenSigner,
    load_p8_key,
)
from mpaas.push.providers.apns.payload import DEFAULT_MAX_PAYLOAD_BYTES, Outgoing, Refused, prepare
from mpaas.push.providers.apns.protocol import ApnsClientProtocol
from mpaas.push.providers.base import Notification, Outcome, SendResult
from mpaas.push.providers.http2 import (
    ConnectError,
    ConnectionClosed,
    Http2ClientProtocol,
    Http2Pool,
    Http2Request,
    Http2Response,
    RequestTimeout,
)

log = logging.getLogger(__name__)

PRODUCTION_HOST = "api.push.apple.com"
SANDBOX_HOST = "api.development.push.apple.com"


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


class ApnsProvider:
    """APNs over our HTTP/2 client with one attempt and one deadline per notification.

    ``message_id`` becomes the ``apns-id`` (:func:`~.payload.apns_id_for`); a second send
    with the same id while the first is in flight is REJECTED (``DuplicateApnsId``) rather
    than sent, since APNs could not tell the two apart. Tokens that are not hex, unknown
    push types and payloads over the size limit are refused locally.

    The pool opens the connections (up to ``max_connections``, the next one when a
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
        private_key = load_p8_key(key)
        if concurrency < 1 or max_connections < 1 or request_timeout <= 0:
            raise ConfigError("APNs concurrency, max_connections and request_timeout must be positive")
        if not (key_id and team_id and topic):
            raise ConfigError("APNs key id, team id and topic must not be empty")
        self._topic = topic
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
        self._pool: Http2Pool | None = None
        self._in_flight: set[str] = set()
        self._closed = False

    @classmethod
    def from_key_file(cls, path: str | Path, **kwargs: Any) -> ApnsProvider:
        return cls(key=Path(path).read_text(encoding="utf-8"), **kwargs)

    @property
    def connections(self) -> list[Http2ClientProtocol]:
        """The open connections (for metrics and tests)."""
        return [] if self._pool is None else self._pool.open_connections

    def _pool_or_create(self) -> Http2Pool:
        # Created lazily: aioapns' pool binds to the event loop running at construction.
        if self._pool is None:
            endpoint = self._endpoint
            context: ssl.SSLContext | None = None
            if endpoint.tls:
                context = endpoint.ssl_context or ssl.create_default_context()
                context.set_alpn_protocols(["h2"])
            connection = partial(
                ApnsClientProtocol,
                endpoint.host,
                topic=self._topic,
                clock=self._clock,
                credential=self.signer,
            )
            self._pool = Http2Pool(
                connection,
                host=endpoint.host,
                port=endpoint.port,
                ssl_context=context,
                max_connections=self._max_connections,
            )
        return self._pool

    async def send(self, n: Notification) -> SendResult:
        return (await self.send_many([n]))[0]

    async def send_many(self, ns: Sequence[Notification]) -> list[SendResult]:
        if self._closed:
            return [SendResult(outcome=Outcome.RETRY, reason="ProviderClosed") for _ in ns]
        results: list[SendResult | None] = [None] * len(ns)
        todo: list[tuple[int, Outgoing]] = []
        now = int(self._clock())
        for i, n in enumerate(ns):
            try:
                outgoing = prepare(n, topic=self._topic, max_payload=self._max_payload, now=now)
            except Refused as refused:
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

    async def _dispatch(self, todo: list[tuple[int, Outgoing]], results: list[SendResult | None]) -> None:
        """Queue ``todo`` on the pool's connections, at most ``concurrency`` unanswered at a time."""
        if not todo:
            return
        loop = asyncio.get_running_loop()
        pool = self._pool_or_create()
        free = self._concurrency
        waiter: asyncio.Future[None] | None = None
        submitted: list[tuple[int, str, Http2ClientProtocol, Http2Request]] = []

        def release(_: asyncio.Future[Http2Response]) -> None:
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
                    request = connection.submit(outgoing.path, outgoing.fields, outgoing.body, self._timeout)
                except (ConnectError, ConnectionClosed, OSError) as exc:
                    log.debug("APNs connection failed: %r", exc)
                    for j, _ in todo[position:]:
                        results[j] = SendResult(outcome=Outcome.RETRY, reason="ConnectionError")
                    break
                free -= 1
                request.future.add_done_callback(release)
                submitted.append((i, outgoing.apns_id, connection, request))
            if submitted:
                await asyncio.wait([request.future for _, _, _, request in submitted])
        except BaseException:
            for _, _, connection, request in submitted:
                connection.abandon(request)
            raise
        now: datetime | None = None
        for i, apns_id, _, request in submitted:
            future = request.future
            error = future.exception()
            if error is not None:
                if isinstance(error, RequestTimeout):
                    results[i] = SendResult(outcome=Outcome.RETRY, reason="Timeout")
                else:
                    log.debug("APNs send %s failed: %r", apns_id, error)
                    results[i] = SendResult(outcome=Outcome.RETRY, reason="ConnectionError")
                continue
            response = future.result()
            if response.status == "200":  # the common case, without a clock or a parse
                echoed = response.headers.get(b"apns-id")
                results[i] = SendResult(
                    outcome=Outcome.SENT,
                    status=200,
                    provider_id=echoed.decode("latin-1") if echoed else apns_id,
                )
                continue
            if now is None:
                now = datetime.fromtimestamp(self._clock(), UTC)
            results[i] = self._classify(ApnsAnswer.from_response(apns_id, response), apns_id, now)

    def _classify(self, answer: ApnsAnswer, apns_id: str, now: datetime) -> SendResult:
        try:
            status = int(answer.status)
        except ValueError:
            return SendResult(outcome=Outcome.RETRY, reason="MalformedAnswer")
        if status == 403 and answer.description in REFRESH_REASONS:
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
        if self._pool is not None:
            self._pool.close()
            self._pool = None
            await asyncio.sleep(0)  # let connection_lost callbacks run
