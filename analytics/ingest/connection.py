"""One connection of the ingest listener (:mod:`.listener`): httptools parses, answers go in order."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import deque
from typing import TYPE_CHECKING

import httptools

from mpaas.analytics.errors import RetryLater
from mpaas.analytics.ingest import routes
from mpaas.analytics.ingest.answers import error, ok, refusal
from mpaas.analytics.ingest.body import check_encoding, wire_limit
from mpaas.errors import MpaasError, PayloadTooLarge

if TYPE_CHECKING:
    from mpaas.analytics.ingest.listener import IngestServer

log = logging.getLogger("mpaas.analytics.ingest")
#: The request line and headers together (aiohttp's limit is 8190 bytes a line).
MAX_HEAD = 16 * 1024
#: Requests parsed ahead of the one being answered before reading pauses.
MAX_PIPELINE = 8
IDLE_SECONDS = 75.0
#: A request must arrive whole within this long of its first byte (a client trickling its
#: head or body a byte at a time would otherwise hold the connection for ever: slowloris).
REQUEST_SECONDS = 60.0
_HEADERS_OF_INTEREST = frozenset(
    {
        b"authorization",
        b"content-encoding",
        b"content-length",
        b"expect",
        b"x-deployment-key",
        b"x-mpaas-deployment-key",
    }
)


class _Request:
    __slots__ = (
        "body",
        "encoding",
        "endpoint",
        "headers",
        "keep_alive",
        "limit",
        "refused",
        "single",
        "size",
        "too_large",
        "wire",
    )

    keep_alive: bool
    single: bool
    limit: int
    too_large: type[PayloadTooLarge]

    def __init__(self, wire: int) -> None:
        self.headers: dict[bytes, bytes] = {}
        self.body: list[bytes] = []
        self.size = 0
        self.endpoint = ""
        self.refused: MpaasError | None = None
        #: Until the route is known: the most any refused request may send before it is cut off.
        self.wire = wire
        self.encoding = ""


class IngestProtocol(asyncio.Protocol):
    """One connection: parse with httptools, answer in order, one request handled at a time."""

    def __init__(self, server: IngestServer) -> None:
        self.server = server
        self.rt = server.runtime
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.req: _Request | None = None
        self.url = b""
        self.head_size = 0
        self.queue: deque[_Request | bytes] = deque()
        self.busy = False
        self.task: asyncio.Task[None] | None = None
        self.closing = False
        self.paused = False
        self.writable: asyncio.Future[None] | None = None
        self.last_active = time.monotonic()
        #: The client half-closed: answer the requests under way, then close.
        self.eof = False
        #: When the request being read began (its first byte), for REQUEST_SECONDS.
        self.req_started = 0.0

    # -- asyncio.Protocol ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.closing = True
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.last_active = time.monotonic()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:  # raised by one of our callbacks
            cause = exc.__context__
            if isinstance(cause, _Refused):
                self.fail(cause.answer)
            else:
                log.error("ingest listener: parser callback failed", exc_info=cause)
                self.fail(error(refusal(500, "internal_error", "internal error"), True))
        except httptools.HttpParserInvalidMethodError:
            self.fail(error(refusal(400, "bad_request_method", "the request method is not valid HTTP"), True))
        except httptools.HttpParserUpgrade:
            self.fail(error(refusal(400, "malformed_request", "protocol upgrades are not served here"), True))
        except httptools.HttpParserError:
            self.fail(error(refusal(400, "malformed_request", "the request is not valid HTTP/1.1"), True))

    def eof_received(self) -> bool:
        """A half-close after the request (legal HTTP/1.1): the answers under way are still
        written (their records are being made durable), then the connection closes. A request
        cut short by the EOF gets no answer."""
        if not self.busy and not self.queue:
            return False  # nothing to answer: the transport closes
        self.eof = True
        return True

    def pause_writing(self) -> None:
        loop = asyncio.get_running_loop()
        self.writable = loop.create_future()

    def resume_writing(self) -> None:
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)
        self.writable = None

    # -- httptools callbacks --------------------------------------------------------

    def on_message_begin(self) -> None:
        self.req_started = time.monotonic()
        self.req = _Request(self.server.refused_wire)
        self.url = b""
        self.head_size = 0

    def on_url(self, url: bytes) -> None:
        self.url += url
        self.head_size += len(url)
        if self.head_size > MAX_HEAD:
            self._head_too_large()

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_size += len(name) + len(value) + 4
        if self.head_size > MAX_HEAD:
            self._head_too_large()
        name = name.lower()
        headers = self.req.headers  # type: ignore[union-attr]
        if name in _HEADERS_OF_INTEREST and name not in headers:
            headers[name] = value

    @staticmethod
    def _head_too_large() -> None:
        exc = refusal(431, "header_too_large", f"the request line and headers are over {MAX_HEAD} bytes")
        raise _Refused(error(exc, True))

    def on_headers_complete(self) -> None:
        req = self.req
        assert req is not None
        parser = self.parser
        req.keep_alive = parser.should_keep_alive()
        route = self.server.routes.get(self.url)
        if route is None and (route := self.server.routes.get(self.url.partition(b"?")[0])) is None:
            req.refused = refusal(404, "not_found", "no such resource")
            return
        method = parser.get_method()
        if method != b"POST":
            req.refused = refusal(
                405,
                "method_not_allowed",
                f"method {method.decode('latin-1')} not allowed; allowed: POST",
                {"Allow": "POST"},
            )
            return
        req.endpoint, req.single, req.limit, req.too_large = route
        headers = req.headers
        coding = headers.get(b"content-encoding")
        if coding is None:
            req.wire = req.limit
        else:
            try:
                req.encoding = check_encoding(coding.decode("latin-1"))
            except MpaasError as exc:
                req.refused = exc
                return
            req.wire = wire_limit(req.limit, req.encoding)
        length = headers.get(b"content-length")
        if length is not None and int(length) > req.wire:  # llhttp checked that it is a number
            raise _Refused(
                error(req.too_large(f"the body is {int(length)} bytes; the limit is {req.limit} bytes"), True)
            )
        if (
            b"expect" in headers
            and headers[b"expect"].lower() == b"100-continue"
            and self.transport is not None
            and not self.busy  # behind a pipelined answer the client sends its body unprompted
            and not self.queue
        ):
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, chunk: bytes) -> None:
        req = self.req
        assert req is not None
        req.size += len(chunk)
        if req.size > req.wire:
            if req.refused is not None:
                raise _Refused(error(req.refused, True))
            raise _Refused(
                error(req.too_large(f"the decoded body is over the limit of {req.limit} bytes"), True)
            )
        if req.refused is None:
            req.body.append(chunk)

    def on_message_complete(self) -> None:
        req, self.req = self.req, None
        assert req is not None
        if not self.busy and not self.queue:
            self._begin(req)
            return
        self.queue.append(req)
        if len(self.queue) >= MAX_PIPELINE and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    # -- answering --------------------------------------------------------------------
    # One request at a time per connection, in order. A request whose keys are cached goes
    # through the checks and into the spool without a coroutine, and is answered from the
    # spool future's callback; the others (a key to look up) run as a task.

    def fail(self, answer: bytes) -> None:
        """Answer a request that cannot go on, after those before it, and close."""
        self.closing = True
        if self.transport is not None:
            self.transport.pause_reading()
        if self.busy:
            self.queue.append(answer)
        else:
            self._write(answer)
            self._close()

    def _begin(self, req: _Request) -> None:
        self.busy = True
        started = time.perf_counter()
        try:
            if req.refused is not None:
                raise req.refused
            pending = None
            if self.server.submit is not None:
                headers = req.headers
                native = req.endpoint == routes.NATIVE_ENDPOINT
                auth = None if native else headers.get(b"authorization")
                dkey = _deployment_key(headers) if native else None
                pending = routes.without_waiting(
                    self.rt,
                    self.server.submit,
                    req.endpoint,
                    req.single,
                    None if auth is None else auth.decode("latin-1"),
                    None if dkey is None else dkey.decode("latin-1"),
                    req.body[0] if len(req.body) == 1 else b"".join(req.body),
                    req.encoding,
                    req.limit,
                    req.too_large,
                )
        except MpaasError as exc:
            self._finish(
                req, started, exc.status, error(exc, not req.keep_alive, getattr(exc, "extra", None))
            )
            return
        except Exception:
            log.exception("ingest listener: unexpected error")
            self._finish(req, started, 500, error(MpaasError("internal error"), not req.keep_alive))
            return
        if pending is None:
            self.task = asyncio.get_running_loop().create_task(self._slow(req, started))
        else:
            future, body = pending
            future.add_done_callback(functools.partial(self._spooled, req, started, body))

    def _spooled(self, req: _Request, started: float, body: bytes, future: asyncio.Future[None]) -> None:
        close = not req.keep_alive
        if future.cancelled():  # nobody cancels it; were it done, the record is not known durable
            exc: BaseException | None = RetryLater("the event spool did not confirm the write", retry_after=1)
        else:
            exc = future.exception()
        if exc is None:
            self._finish(req, started, 200, ok(body, close))
        elif isinstance(exc, MpaasError):
            self._finish(req, started, exc.status, error(exc, close))
        else:
            log.error("ingest listener: the spool failed", exc_info=exc)
            self._finish(req, started, 500, error(MpaasError("internal error"), close))
        self._next()

    async def _slow(self, req: _Request, started: float) -> None:
        close = not req.keep_alive
        status = 200
        try:
            answer = ok(await self._handle(req), close)
        except MpaasError as exc:
            status, answer = exc.status, error(exc, close, getattr(exc, "extra", None))
        except Exception:
            log.exception("ingest listener: unexpected error")
            status, answer = 500, error(MpaasError("internal error"), close)
        finally:
            self.task = None
        self._finish(req, started, status, answer)
        self._next()

    async def _handle(self, req: _Request) -> bytes:
        """The route with awaits (a key to look up, or a spool with no ``submit``)."""
        headers = req.headers
        auth, dkey = headers.get(b"authorization"), _deployment_key(headers)
        sender = await routes.header_sender(
            self.rt,
            req.endpoint,
            None if auth is None else auth.decode("latin-1"),
            None if dkey is None else dkey.decode("latin-1"),
        )
        body = req.body[0] if len(req.body) == 1 else b"".join(req.body)
        raw = routes.decoded(body, req.encoding, req.limit, req.too_large)
        if req.endpoint == routes.NATIVE_ENDPOINT:
            return await routes.native(self.rt, sender, raw)
        return await routes.segment(self.rt, req.endpoint, req.single, sender, raw)

    def _finish(self, req: _Request, started: float, status: int, answer: bytes) -> None:
        self.busy = False
        self.server.record(req.endpoint, status, time.perf_counter() - started)
        self._write(answer)
        if not req.keep_alive or self.server.closing or (self.eof and not self.queue):
            self._close()

    def _next(self) -> None:
        """Answer the requests queued behind the one just answered (pipelining)."""
        while self.queue and not self.busy:
            if self.transport is None or self.transport.is_closing():
                self.queue.clear()
                return
            if self.writable is not None:  # the client reads slowly: wait for the buffer to drain
                self.writable.add_done_callback(lambda _: self._next())
                return
            item = self.queue.popleft()
            if isinstance(item, bytes):  # a refusal queued behind answers: the last one
                self._write(item)
                self._close()
                return
            self._begin(item)
        if self.paused and len(self.queue) < MAX_PIPELINE // 2 and not self.closing and self.transport:
            self.paused = False
            self.transport.resume_reading()

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _close(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.close()

    def idle(self) -> bool:
        return not self.busy and self.req is None and not self.queue


def _deployment_key(headers: dict[bytes, bytes]) -> bytes | None:
    return headers.get(b"x-deployment-key") or headers.get(b"x-mpaas-deployment-key")


class _Refused(Exception):
    """Raised from a parser callback: answer this and close the connection."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
