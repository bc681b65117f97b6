"""CompleteResponse: the update checks' one-write response, on the wire and against aiohttp's."""

from __future__ import annotations

import asyncio
import email.utils
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from mpaas.app import create_app
from mpaas.web.complete_response import JSON_OK, CompleteResponse, ResponseHead

BODY = b'{"ok":true}'
HEAD = ResponseHead(201, "application/x-test", {"Cache-Control": "no-store", "X-Poll-Interval": "60"})


def _app(**routes: Any) -> web.Application:
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_route("*", f"/{path}", handler)
    return app


async def complete(request: web.Request) -> web.StreamResponse:
    response = CompleteResponse(BODY, HEAD, headers={"ETag": '"abc"'})
    response.headers["X-Request-Id"] = "r1"  # as the edge adds it after the handler
    return response


async def plain(request: web.Request) -> web.StreamResponse:
    return web.Response(
        status=201,
        body=BODY,
        content_type="application/x-test",
        headers={"Cache-Control": "no-store", "X-Poll-Interval": "60", "ETag": '"abc"', "X-Request-Id": "r1"},
    )


async def exchange(server: TestServer, request: bytes, *, responses: int = 1) -> bytes:
    """Send raw bytes, read until the server closes or ``responses`` complete messages arrived."""
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(request)
    await writer.drain()
    data = b""
    try:
        while data.count(BODY) < responses:
            chunk = await asyncio.wait_for(reader.read(65536), 5)
            if not chunk:
                break
            data += chunk
        return data
    finally:
        writer.close()


def parse(message: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = message.partition(b"\r\n\r\n")
    status, *lines = head.decode().split("\r\n")
    return status, {k.lower(): v for k, v in (line.split(": ", 1) for line in lines)}, body


async def test_same_answer_as_aiohttp_response(aiohttp_client: Any) -> None:
    client = await aiohttp_client(_app(complete=complete, plain=plain))
    ours, theirs = await client.post("/complete"), await client.post("/plain")
    assert (ours.status, ours.reason) == (theirs.status, theirs.reason) == (201, "Created")
    assert await ours.read() == await theirs.read() == BODY
    for name in (
        "Content-Type",
        "Content-Length",
        "Cache-Control",
        "X-Poll-Interval",
        "ETag",
        "X-Request-Id",
    ):
        assert ours.headers[name] == theirs.headers[name], name
    assert ours.headers["Server"] == theirs.headers["Server"]
    assert email.utils.parsedate_to_datetime(ours.headers["Date"]).tzinfo is not None
    assert ours.headers.get("Connection") is None  # HTTP/1.1 keeps the connection by default


async def test_keep_alive_serves_pipelined_requests_on_one_connection(aiohttp_client: Any) -> None:
    client = await aiohttp_client(_app(complete=complete))
    request = b"POST /complete HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
    data = await exchange(client.server, request * 3, responses=3)
    assert data.count(b"HTTP/1.1 201 Created\r\n") == 3
    assert data.count(BODY) == 3


@pytest.mark.parametrize(
    ("request_line", "connection", "status_line"),
    [
        (b"GET /complete HTTP/1.0\r\n", None, "HTTP/1.0 201 Created"),
        (b"GET /complete HTTP/1.0\r\nConnection: keep-alive\r\n", "keep-alive", "HTTP/1.0 201 Created"),
        (b"GET /complete HTTP/1.1\r\nConnection: close\r\n", "close", "HTTP/1.1 201 Created"),
    ],
)
async def test_connection_header_follows_the_protocol_version(
    aiohttp_client: Any, request_line: bytes, connection: str | None, status_line: str
) -> None:
    client = await aiohttp_client(_app(complete=complete))
    status, headers, body = parse(await exchange(client.server, request_line + b"Host: x\r\n\r\n"))
    assert status == status_line
    assert headers.get("connection") == connection
    assert headers["content-length"] == str(len(BODY)) and body == BODY


async def test_head_sends_the_length_without_the_body(aiohttp_client: Any) -> None:
    client = await aiohttp_client(_app(complete=complete))
    raw = await exchange(client.server, b"HEAD /complete HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    status, headers, body = parse(raw)
    assert status == "HTTP/1.1 201 Created"
    assert headers["content-length"] == str(len(BODY))
    assert body == b""


async def test_a_header_with_a_newline_is_never_sent(aiohttp_client: Any) -> None:
    async def smuggle(request: web.Request) -> web.StreamResponse:
        response = CompleteResponse(BODY)
        response.headers["X-Note"] = "a\r\nSet-Cookie: stolen=1"
        return response

    client = await aiohttp_client(_app(smuggle=smuggle))
    raw = await exchange(client.server, b"GET /smuggle HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b"stolen" not in raw and BODY not in raw


def test_response_heads_are_checked_when_made() -> None:
    for status in (204, 304, 101):
        with pytest.raises(ValueError, match="status with a body"):
            ResponseHead(status)
    with pytest.raises(ValueError, match="newline"):
        ResponseHead(headers={"X-Ok": "1\nX-Evil: 2"})
    with pytest.raises(ValueError, match="newline"):
        ResponseHead(content_type="text/plain\r\nX-Evil: 2")
    for own in ("Content-Length", "date", "Transfer-Encoding", "Content-Type"):
        with pytest.raises(ValueError, match="itself"):
            ResponseHead(headers={own: "1"})
    assert JSON_OK.status == 200 and HEAD.fields == {"Cache-Control": "no-store", "X-Poll-Interval": "60"}


async def test_a_client_that_does_not_read_holds_up_its_own_connection(aiohttp_client: Any) -> None:
    """Flow control: a large answer the client does not read stops the next pipelined request."""
    big = b"x" * (32 << 20)
    served = 0

    async def large(request: web.Request) -> web.StreamResponse:
        nonlocal served
        served += 1
        return CompleteResponse(big, content_type_head)

    content_type_head = ResponseHead(content_type="application/octet-stream")
    client = await aiohttp_client(_app(large=large))
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    writer.write(b"GET /large HTTP/1.1\r\nHost: x\r\n\r\n" * 4)
    await writer.drain()

    def draining() -> bool:
        """The server's connection awaits drain: its handler is blocked on this client."""
        return any(c._drain_waiter is not None for c in client.server.handler.connections)

    # Decided by the event, not a window: either the handler blocks on the unread answer,
    # or (a writer that never drains) the next answers get built.
    async def blocked_or_built() -> None:
        while not (draining() or served > 1):
            await asyncio.sleep(0.01)

    await asyncio.wait_for(blocked_or_built(), 30)
    assert served == 1  # the first answer waits in the socket; the rest are not built
    received = 0
    while received < 4 * len(big):
        chunk = await asyncio.wait_for(reader.read(1 << 20), 10)
        assert chunk
        received += len(chunk)
    writer.close()
    assert served == 4


async def test_mpaas_sends_no_response_prepare_signal(make_settings: Any) -> None:
    """CompleteResponse does not send on_response_prepare; nothing in mpaas may rely on it."""
    app = create_app(make_settings())
    assert len(app.on_response_prepare) == 0


@pytest.mark.parametrize("size", [0, 1, 2047, 2048, 100_000])
async def test_bodies_of_every_size_arrive_whole(aiohttp_client: Any, size: int) -> None:
    """Small bodies are copied after their head, larger ones leave beside it in one writev."""
    body = bytes(i % 251 for i in range(size))

    async def sized(request: web.Request) -> web.StreamResponse:
        return CompleteResponse(body)

    client = await aiohttp_client(_app(sized=sized))
    for _ in range(2):  # twice on one connection: the message ends where Content-Length says
        resp = await client.get("/sized")
        assert resp.status == 200 and int(resp.headers["Content-Length"]) == size
        assert await resp.read() == body
