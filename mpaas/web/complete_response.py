"""Responses sent whole: mpaas writes the head, and head and body leave in one write.

aiohttp's ``web.Response`` serves every case (streaming, chunked and compressed bodies,
cookies, ``on_response_prepare`` signals) and pays for that on every answer: the
headers go into a multidict, then through half a dozen coroutines that decide on
length, chunking, keep-alive and compression, before a serializer turns them into
bytes. That is about 55 k CPU instructions per request, a quarter of what a minimal
aiohttp handler costs in all (``bench/update_check_instructions.py``, ADR 0008).

The update checks answer a small body known in full before the first byte goes out,
millions of times a day. :class:`CompleteResponse` formats its status line and headers
in one pass and writes head and body to the connection's transport at once. It keeps
aiohttp's contract for a response (``prepare``, ``write_eof``, ``keep_alive``,
``force_close``) and its flow control: when the transport's buffer is over the
writer's limit, it waits for the request's writer to drain before the next request on
the connection is served. It supports what those answers need and nothing more: a
status that carries a body, plain headers (no cookies, compression or chunking),
``HEAD``, HTTP/1.0 and 1.1. mpaas registers no ``on_response_prepare`` signal, which
this class would not send; a test keeps it that way.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from email.utils import formatdate
from http import HTTPStatus

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http import SERVER_SOFTWARE

#: Statuses a complete response may carry: those with a body.
_REASONS = {s.value: s.phrase for s in HTTPStatus if s.value >= 200 and s.value not in (204, 205, 304)}
#: The writer drains above this many buffered bytes, as aiohttp's StreamWriter does.
_DRAIN_ABOVE = 0x10000
#: Bodies from this size leave with their head in one writev instead of being copied after it.
_GATHER_ABOVE = 2048
#: Headers a complete response writes itself (lower case); a fixed header may not repeat them.
_OWN = frozenset({"content-type", "content-length", "date", "server", "connection", "transfer-encoding"})


class _Clock:
    """The ``Date`` header's value, formatted once a second."""

    __slots__ = ("_second", "_value")

    def __init__(self) -> None:
        self._second, self._value = -1, ""

    def now(self) -> str:
        second = int(time.time())
        if second != self._second:
            self._second, self._value = second, formatdate(second, usegmt=True)
        return self._value


_clock = _Clock()


class ResponseHead:
    """The status, content type and fixed headers of complete responses, formatted once.

    Checked when made: a status with a body, and no CR or LF in any name or value.
    ``fields`` keeps the fixed headers (without the content type) for answers that
    are not complete responses, such as a 304 to the same request.
    """

    __slots__ = ("fields", "status", "text")

    def __init__(
        self,
        status: int = 200,
        content_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if status not in _REASONS:
            raise ValueError(f"a complete response needs a status with a body, not {status}")
        self.status = status
        self.fields = dict(headers or {})
        if clash := sorted(name for name in self.fields if name.lower() in _OWN):
            raise ValueError(f"a complete response writes {', '.join(clash)} itself")
        lines = [f"Content-Type: {content_type}", *(f"{k}: {v}" for k, v in self.fields.items())]
        if any("\r" in line or "\n" in line for line in lines):
            raise ValueError("a header name or value holds a newline")
        self.text = f" {status} {_REASONS[status]}\r\n" + "".join(f"{line}\r\n" for line in lines)
        self.text += f"Server: {SERVER_SOFTWARE}\r\n"


#: 200 with a JSON body and no other fixed header.
JSON_OK = ResponseHead()


class CompleteResponse(web.StreamResponse):
    """A response whose whole body is known: one formatting pass and one write.

    Headers may be changed until the response is prepared (the edge adds the request
    id). A name or value holding CR or LF is refused when the head is written, as
    aiohttp's own serializer refuses it, so no header can smuggle another.
    """

    def __init__(
        self,
        body: bytes,
        head: ResponseHead = JSON_OK,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(status=head.status, headers=headers)
        self._head, self._whole = head.text, body
        self._alive: bool | None = None
        self._sent = False

    @property
    def prepared(self) -> bool:
        return self._sent

    @property
    def keep_alive(self) -> bool | None:
        return self._alive

    def force_close(self) -> None:
        self._alive = False

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        if self._sent:
            return None
        self._sent = True
        alive = self._alive
        if alive is None:
            alive = self._alive = request.keep_alive
        body = self._whole
        fields = self.headers
        extra = "".join([f"{name}: {value}\r\n" for name, value in fields.items()])
        if extra.count("\n") != len(fields) or extra.count("\r") != len(fields):
            raise ValueError("a header name or value holds a newline")
        major, minor = request.version
        if alive:
            connection = "" if minor else "Connection: keep-alive\r\n"  # 1.0 closes by default
        else:
            connection = "Connection: close\r\n" if minor else ""  # 1.1 keeps by default
        head = (
            f"HTTP/{major}.{minor}{self._head}Content-Length: {len(body)}\r\n"
            f"Date: {_clock.now()}\r\n{extra}{connection}\r\n"
        ).encode()
        self._body_length = len(body)
        transport = request.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("the client has gone")
        if request.method == "HEAD" or not body:
            transport.write(head)
        elif len(body) < _GATHER_ABOVE:
            transport.write(head + body)
        else:  # one writev, without copying the body next to its head
            transport.writelines((head, body))
        writer = request.writer
        if transport.get_write_buffer_size() > _DRAIN_ABOVE:
            await writer.drain()
        return writer

    async def write_eof(self, data: bytes = b"") -> None:
        """Nothing to do: :meth:`prepare` sent the whole message."""
        if data:
            raise RuntimeError("a complete response takes its body in the constructor")
