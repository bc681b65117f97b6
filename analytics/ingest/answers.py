"""The ingest listener's answers as bytes: a whole HTTP/1.1 response with a JSON body.

The 200s are built once a second (their ``Date``); errors carry the same
``{"error": {"code", "message"}}`` as every aiohttp route (:func:`mpaas.web.edge.error_response`).
"""

from __future__ import annotations

import json
import time
from email.utils import formatdate
from http import HTTPStatus

from mpaas.analytics.errors import RetryLater
from mpaas.errors import MpaasError


class _Clock:
    """The ``Date`` header line, formatted once a second, and the 200 answers built with it."""

    def __init__(self) -> None:
        self.second = -1
        self.date = b""
        self.ok: dict[bytes, bytes] = {}

    def tick(self) -> None:
        second = int(time.time())
        if second != self.second:
            self.second = second
            self.date = b"Date: " + formatdate(second, usegmt=True).encode() + b"\r\n"
            self.ok.clear()


_clock = _Clock()


def response(status: int, body: bytes, extra: dict[str, str] | None = None, close: bool = False) -> bytes:
    """A whole HTTP/1.1 answer with a JSON body."""
    _clock.tick()
    head = [
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n".encode(),
        b"Content-Type: application/json\r\n",
    ]
    head.append(b"Content-Length: %d\r\n" % len(body))
    head.append(_clock.date)
    head.append(b"Server: mpaas\r\n")
    for name, value in (extra or {}).items():
        head.append(f"{name}: {value}\r\n".encode("latin-1"))
    if close:
        head.append(b"Connection: close\r\n")
    head.append(b"\r\n")
    head.append(body)
    return b"".join(head)


def ok(body: bytes, close: bool) -> bytes:
    """A 200 with ``body``; the common answers are built once a second."""
    _clock.tick()
    if close:
        return response(200, body, close=True)
    found = _clock.ok.get(body)
    if found is None:
        found = response(200, body)
        if len(_clock.ok) < 64:
            _clock.ok[body] = found
    return found


def error(exc: MpaasError, close: bool = False, extra: dict[str, str] | None = None) -> bytes:
    headers = dict(extra or {})
    if isinstance(exc, RetryLater):
        headers["Retry-After"] = str(exc.retry_after)
    body = json.dumps({"error": {"code": exc.code, "message": exc.message}}).encode()
    return response(exc.status, body, headers, close)


def refusal(status: int, code: str, message: str, extra: dict[str, str] | None = None) -> MpaasError:
    exc = MpaasError(message, code=code, status=status)
    exc.extra = extra or {}  # type: ignore[attr-defined]
    return exc
