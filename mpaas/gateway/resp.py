"""A lean Redis client for the gateway's hot path: one pipelined connection, RESP2.

Why not redis-py: its asyncio client spends about 300 µs of CPU per ``EVALSHA`` on this
machine (connection-pool locks, command packing, the pure-Python parser), more than
the rest of a gateway call together (``bench/gateway.py``). This client keeps one
connection per process and sends every command on it at once; Redis answers in order,
so replies are matched to a FIFO of futures, and concurrent calls share the connection
without a pool or a lock. It speaks only what the gateway needs (commands out; simple
strings, errors, integers, bulk strings and arrays in), over TCP, TLS (``rediss://``)
or a Unix socket, with ``AUTH`` and ``SELECT`` from the URL.

A reply that does not come within ``timeout`` seconds closes the connection: every
waiting call fails, and the next call reconnects. Replies come in order, so the oldest
waiting call is always the first to run out of time: one timer per connection watches
it, rather than a timer per call. Callers fail closed (the gateway
answers 6666 rather than skip a nonce or a rate limit).
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit


class RespError(Exception):
    """An error reply from Redis (``-ERR ...``, ``-NOSCRIPT ...``)."""


class _Incomplete(Exception):
    pass


def encode(*args: bytes | str | int | float) -> bytes:
    """A command as a RESP array of bulk strings."""
    parts = [a if isinstance(a, bytes) else str(a).encode() for a in args]
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%b\r\n" % (len(p), p) for p in parts)


def encode_ascii(args: list[str]) -> bytes:
    """The same for ASCII-only text arguments (their length in characters is their length in
    bytes): one join and one encode, about three times faster than :func:`encode`."""
    body = "".join([f"${len(a)}\r\n{a}\r\n" for a in args])
    return f"*{len(args)}\r\n{body}".encode()


def parse(buf: bytes | bytearray, pos: int) -> tuple[Any, int]:
    """One reply starting at ``pos``: (value, position after it); _Incomplete if cut short."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        raise _Incomplete
    kind, line = buf[pos : pos + 1], bytes(buf[pos + 1 : end])
    pos = end + 2
    if kind == b"+":
        return line.decode(), pos
    if kind == b"-":
        return RespError(line.decode(errors="replace")), pos
    if kind == b":":
        return int(line), pos
    if kind == b"$":
        size = int(line)
        if size < 0:
            return None, pos
        if len(buf) < pos + size + 2:
            raise _Incomplete
        return bytes(buf[pos : pos + size]), pos + size + 2
    if kind == b"*":
        count = int(line)
        if count < 0:
            return None, pos
        items = []
        for _ in range(count):
            item, pos = parse(buf, pos)
            items.append(item)
        return items, pos
    raise ConnectionError(f"unexpected reply type {kind!r} from Redis")


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiters: deque[asyncio.Future[Any]] = deque()
        #: When each waiter (same order) runs out of time, on the loop's clock.
        self.deadlines: deque[float] = deque()
        self.watchdog: asyncio.TimerHandle | None = None
        self.buffer = bytearray()
        self.outgoing: list[bytes] = []
        self.lost: BaseException | None = None

    def flush(self) -> None:
        if self.outgoing and self.transport is not None and self.lost is None:
            self.transport.write(b"".join(self.outgoing))
        self.outgoing.clear()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        pos = 0
        try:
            while pos < len(self.buffer):
                value, pos = parse(self.buffer, pos)
                waiter = self.waiters.popleft()
                if self.deadlines:
                    self.deadlines.popleft()
                if not waiter.done():
                    if isinstance(value, RespError):
                        waiter.set_exception(value)
                    else:
                        waiter.set_result(value)
        except _Incomplete:
            pass
        except (ConnectionError, ValueError, IndexError) as exc:
            self.fail(ConnectionError(f"bad reply from Redis: {exc}"))
            return
        del self.buffer[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(exc or ConnectionError("Redis closed the connection"))

    def watch(self) -> None:
        """The watchdog's turn: fail the connection if the oldest call is late, else wait for it."""
        self.watchdog = None
        if not self.deadlines or self.lost is not None or self.transport is None:
            return
        loop = asyncio.get_running_loop()
        late = self.deadlines[0] - loop.time()
        if late <= 0:
            self.fail(TimeoutError("Redis did not answer in time"))
        else:
            self.watchdog = loop.call_later(late, self.watch)

    def fail(self, exc: BaseException) -> None:
        self.lost = self.lost or exc
        self.deadlines.clear()
        if self.watchdog is not None:
            self.watchdog.cancel()
            self.watchdog = None
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_exception(ConnectionError(str(exc)))
        if self.transport is not None:
            self.transport.close()


@dataclass(frozen=True)
class Target:
    host: str | None
    port: int
    path: str | None
    db: int
    username: str | None
    password: str | None
    tls: bool

    @classmethod
    def parse(cls, url: str) -> Target:
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        if parts.scheme == "unix":
            db = int(query.get("db", ["0"])[0])
            return cls(None, 0, parts.path, db, unquote(parts.username or "") or None, parts.password, False)
        db_text = parts.path.strip("/") or query.get("db", ["0"])[0]
        return cls(
            parts.hostname or "127.0.0.1",
            parts.port or 6379,
            None,
            int(db_text),
            unquote(parts.username) if parts.username else None,
            unquote(parts.password) if parts.password else None,
            parts.scheme == "rediss",
        )


class Resp:
    """``await client.call("EVALSHA", sha, ...)``: one shared connection, reconnecting on demand."""

    def __init__(self, url: str, timeout: float = 2.0) -> None:
        self.target = Target.parse(url)
        self.timeout = timeout
        self._proto: _Protocol | None = None
        self._connecting: asyncio.Lock | None = None

    async def _connection(self) -> _Protocol:
        proto = self._proto
        if proto is not None and proto.lost is None:
            return proto
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._proto is not None and self._proto.lost is None:
                return self._proto
            loop = asyncio.get_running_loop()
            t = self.target
            fresh = _Protocol()
            if t.path is not None:
                await asyncio.wait_for(loop.create_unix_connection(lambda: fresh, t.path), self.timeout)
            else:
                context = ssl.create_default_context() if t.tls else None
                await asyncio.wait_for(
                    loop.create_connection(lambda: fresh, t.host or "127.0.0.1", t.port, ssl=context),
                    self.timeout,
                )
            if t.password is not None:
                auth = ("AUTH", t.username, t.password) if t.username else ("AUTH", t.password)
                await self._send(fresh, encode(*auth))
            if t.db:
                await self._send(fresh, encode("SELECT", t.db))
            self._proto = fresh
            return fresh

    def _send(self, proto: _Protocol, frame: bytes) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Any] = loop.create_future()
        if proto.lost is not None or proto.transport is None:
            waiter.set_exception(ConnectionError("not connected to Redis"))
            return waiter
        proto.waiters.append(waiter)
        proto.deadlines.append(loop.time() + self.timeout)
        if proto.watchdog is None:
            proto.watchdog = loop.call_later(self.timeout, proto.watch)
        # Commands issued in one turn of the event loop leave in one write (one system call).
        if not proto.outgoing:
            loop.call_soon(proto.flush)
        proto.outgoing.append(frame)
        return waiter

    async def call(self, *args: bytes | str | int | float) -> Any:
        return await self._send(await self._connection(), encode(*args))

    async def call_ascii(self, args: list[str]) -> Any:
        """:meth:`call` for ASCII-only text arguments (the hot path)."""
        return await self._send(await self._connection(), encode_ascii(args))

    async def call_frame(self, frame: bytes) -> Any:
        """Send one command already encoded as a RESP array (the caller formats it)."""
        return await self._send(await self._connection(), frame)

    async def close(self) -> None:
        if self._proto is not None:
            if self._proto.watchdog is not None:
                self._proto.watchdog.cancel()
            if self._proto.transport is not None:
                self._proto.transport.close()
        self._proto = None
