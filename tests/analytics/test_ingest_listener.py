"""The lean ingest listener (MPAAS_INGEST_PORT): the same answers as the aiohttp routes, on raw HTTP."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import threading
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from mpaas.analytics.ingest.auth import KeyCache, Sender
from mpaas.analytics.ingest.connection import MAX_HEAD, REQUEST_SECONDS
from mpaas.analytics.ingest.listener import INGEST_SERVER
from mpaas.analytics.runtime import AnalyticsRuntime, spool_dir
from mpaas.analytics.spool import record
from mpaas.analytics.spool.reader import FileSpoolSource
from mpaas.analytics.store.duckdb import DuckDbStore
from mpaas.errors import ConfigError
from mpaas.settings import Settings


@pytest.fixture(params=["sqlite"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings(analytics_settings: Callable[..., Settings]) -> Settings:
    return analytics_settings(ingest_port=0)


@pytest.fixture
def port(client: Any) -> int:
    return int(client.app[INGEST_SERVER].port)


def batch(n: int, start: int = 0, **top: Any) -> bytes:
    events = [
        {
            "type": "track",
            "event": "Tapped",
            "userId": f"u{i % 3}",
            "messageId": f"m-{i}",
            "properties": {"i": i},
        }
        for i in range(start, start + n)
    ]
    return json.dumps({"batch": events, "sentAt": "2026-12-03T10:00:05.000Z", **top}).encode()


def auth(key: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


def request(
    body: bytes, path: str = "/v1/batch", headers: dict[str, str] | None = None, method: str = "POST"
) -> bytes:
    head = {"Host": "x", "Content-Type": "application/json", "Content-Length": str(len(body))} | (
        headers or {}
    )
    lines = [f"{method} {path} HTTP/1.1", *(f"{k}: {v}" for k, v in head.items() if v)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Conn:
    """One client connection that reads whole responses."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Conn:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def response(self) -> tuple[int, dict[str, str], bytes]:
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 10)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        return status, headers, body

    async def closed(self) -> bool:
        return await asyncio.wait_for(self.reader.read(), 10) == b""

    def close(self) -> None:
        self.writer.close()


async def post(port: int, data: bytes) -> tuple[int, dict[str, str], bytes]:
    conn = await Conn.open(port)
    try:
        await conn.send(data)
        return await conn.response()
    finally:
        conn.close()


async def test_batch_is_spooled_and_loaded_over_keep_alive_and_pipelining(
    port: int, keys: dict[str, str], load: Callable[[], Awaitable[DuckDbStore]]
) -> None:
    conn = await Conn.open(port)
    hdr = {"Authorization": auth(keys["write"])}
    await conn.send(request(batch(3, 0), headers=hdr))
    status, headers, body = await conn.response()
    assert (status, body) == (200, b'{"success":true}')
    assert headers["content-type"] == "application/json" and "date" in headers
    # two pipelined requests on the same connection, answered in order
    await conn.send(request(batch(2, 3), headers=hdr) + request(batch(1, 5), headers=hdr))
    assert (await conn.response())[0] == 200
    assert (await conn.response())[0] == 200
    conn.close()
    store = await load()
    assert store.counts("bank") == {"Tapped": 6}


async def test_chunked_gzip_and_expect_continue(
    port: int, keys: dict[str, str], load: Callable[[], Awaitable[DuckDbStore]]
) -> None:
    body = gzip.compress(batch(4))
    chunks = b"".join(
        b"%x\r\n%s\r\n" % (len(body[i : i + 100]), body[i : i + 100]) for i in range(0, len(body), 100)
    )
    hdr = {"Authorization": auth(keys["write"]), "Content-Encoding": "gzip", "Transfer-Encoding": "chunked"}
    conn = await Conn.open(port)
    head = request(b"", headers=hdr | {"Content-Length": "", "Expect": "100-continue"})
    await conn.send(head)
    assert await asyncio.wait_for(conn.reader.readuntil(b"\r\n\r\n"), 10) == b"HTTP/1.1 100 Continue\r\n\r\n"
    await conn.send(chunks + b"0\r\n\r\n")
    assert (await conn.response())[:3:2] == (200, b'{"success":true}')
    deflated = zlib.compress(batch(1, 10))
    await conn.send(
        request(deflated, headers={"Authorization": auth(keys["write"]), "Content-Encoding": "deflate"})
    )
    assert (await conn.response())[0] == 200
    conn.close()
    assert (await load()).counts("bank") == {"Tapped": 5}


async def test_native_route_with_the_deployment_key_header(port: int, keys: dict[str, str]) -> None:
    body = json.dumps({"events": [{"name": "a", "message_id": "n1"}, {"name": "b"}]}).encode()
    status, _, answer = await post(
        port, request(body, "/client/v1/events", {"X-Deployment-Key": keys["production"]})
    )
    assert (status, answer) == (200, b'{"accepted":2}')
    status, _, answer = await post(port, request(body, "/client/v1/events", {"X-Deployment-Key": "nope"}))
    assert status == 401 and json.loads(answer)["error"]["code"] == "invalid_deployment_key"


@pytest.mark.parametrize(
    ("body", "headers", "code"),
    [
        (b"{not json", {}, "invalid_json"),
        (b'{"batch": []}', {}, "invalid_events"),
        (b'{"batch": [{"a": "\\u0000"}]}', {}, "validation_error"),
        (b"", {}, "invalid_json"),
        (b"x", {"Content-Encoding": "compress"}, "unsupported_content_encoding"),
        (b"not gzip", {"Content-Encoding": "gzip"}, "invalid_encoding"),
        (batch(1), {"Authorization": auth("wk_unknown")}, "invalid_write_key"),
    ],
)
async def test_refusals_match_the_aiohttp_route(
    client: Any, port: int, keys: dict[str, str], body: bytes, headers: dict[str, str], code: str
) -> None:
    hdr = {"Authorization": auth(keys["write"])} | headers
    status, _, answer = await post(port, request(body, headers=hdr))
    resp = await client.post("/v1/batch", data=body, headers=hdr)
    assert (status, json.loads(answer)) == (resp.status, await resp.json())
    assert json.loads(answer)["error"]["code"] == code


async def test_size_limits_and_malformed_http(port: int, keys: dict[str, str], client: Any) -> None:
    limit = client.app[INGEST_SERVER].runtime.max_batch
    conn = await Conn.open(port)
    await conn.send(
        request(b"", headers={"Content-Length": str(limit + 1), "Authorization": auth(keys["write"])})
    )
    status, headers, answer = await conn.response()
    assert status == 413 and json.loads(answer)["error"]["code"] == "batch_too_large"
    assert headers["connection"] == "close" and await conn.closed()
    # a chunked body over the limit: refused as soon as it passes it
    conn = await Conn.open(port)
    await conn.send(request(b"", headers={"Content-Length": "", "Transfer-Encoding": "chunked"}))
    await conn.send((b"%x\r\n" % (limit + 10)) + b" " * (limit + 10) + b"\r\n")
    assert (await conn.response())[0] == 413
    conn.close()
    # a gzip bomb: small on the wire, over the limit decoded
    bomb = gzip.compress(b'{"batch": [' + b" " * (limit + 10) + b"{}]}")
    status, _, answer = await post(port, request(bomb, headers={"Content-Encoding": "gzip"}))
    assert status == 413
    huge = {"X-Filler": "a" * (MAX_HEAD + 10)}
    status, _, answer = await post(port, request(batch(1), headers=huge))
    assert status == 431 and json.loads(answer)["error"]["code"] == "header_too_large"
    status, _, answer = await post(port, b"POST /v1/batch HTTP/1.1\r\nContent-Length: x\r\n\r\n")
    assert status == 400 and json.loads(answer)["error"]["code"] == "malformed_request"
    status, _, answer = await post(port, b"GARBAGE\r\n\r\n")
    assert status == 400


async def test_not_found_and_method_not_allowed_keep_the_connection(port: int) -> None:
    conn = await Conn.open(port)
    await conn.send(request(b"{}", "/api/v1/apps"))
    status, _, answer = await conn.response()
    assert status == 404 and json.loads(answer) == {
        "error": {"code": "not_found", "message": "no such resource"}
    }
    await conn.send(request(b"", "/v1/batch", method="GET", headers={"Content-Length": ""}))
    status, headers, answer = await conn.response()
    assert status == 405 and headers["allow"] == "POST"
    conn.close()


async def test_overload_answers_retry_after_on_both_paths(
    port: int, keys: dict[str, str], client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime: AnalyticsRuntime = client.app[INGEST_SERVER].runtime
    monkeypatch.setattr(runtime.spool, "max_pending_bytes", 0)
    hdr = {"Authorization": auth(keys["write"])}
    # the first request looks its key up (the path with awaits), the second finds it cached
    for _ in range(2):
        status, headers, answer = await post(port, request(batch(1), headers=hdr))
        assert status == 429 and headers["retry-after"] == "1"
        assert json.loads(answer)["error"]["code"] == "overloaded"


async def test_close_answers_the_requests_under_way(port: int, keys: dict[str, str], client: Any) -> None:
    server = client.app[INGEST_SERVER]
    hdr = {"Authorization": auth(keys["write"])}
    assert (await post(port, request(batch(1), headers=hdr)))[0] == 200  # the key is cached now
    release, entered = threading.Event(), threading.Event()
    spool = server.runtime.spool
    fsync = spool._fsync

    def slow(fd: int) -> None:
        entered.set()
        release.wait(10)
        fsync(fd)

    spool._fsync = slow
    busy, idle = await Conn.open(port), await Conn.open(port)
    await busy.send(request(batch(1, 1), headers=hdr))
    assert await asyncio.to_thread(entered.wait, 10)
    closing = asyncio.create_task(server.close())
    assert await idle.closed()  # an idle connection closes at once
    release.set()
    status, headers, _ = await busy.response()
    assert status == 200 and headers["content-type"] == "application/json"
    assert await busy.closed()
    await closing
    with pytest.raises(OSError):
        await Conn.open(port)


async def test_segment_analytics_python_against_the_listener(
    port: int, keys: dict[str, str], load: Callable[[], Awaitable[DuckDbStore]]
) -> None:
    from segment.analytics import Client

    errors: list[Any] = []
    sdk = Client(
        keys["write"],
        host=f"http://127.0.0.1:{port}",
        gzip=True,
        max_retries=2,
        on_error=lambda e, b: errors.append(e),
    )
    for i in range(120):
        sdk.track(user_id=f"u{i % 5}", event="Py", properties={"i": i}, message_id=f"lp-{i}")
    sdk.identify(anonymous_id="anon", traits={"plan": "x"}, message_id="lp-identify")
    await asyncio.to_thread(sdk.flush)
    await asyncio.to_thread(sdk.join)
    assert errors == []
    assert (await load()).counts("bank") == {"Py": 120, "identify": 1}


async def test_records_from_both_paths_are_alike(client: Any, port: int, keys: dict[str, str]) -> None:
    """The first request looks its key up (the path with awaits, through AnalyticsRuntime.append);
    the second finds it cached and goes to the spool without a coroutine: the same records."""
    hdr = {"Authorization": auth(keys["write"])}
    bodies = [batch(1, 0), batch(1, 1)]
    for body in bodies:
        assert (await post(port, request(body, headers=hdr)))[0] == 200
    assert (await post(port, request(bodies[0], "/v1/track", hdr)))[0] == 200
    runtime: AnalyticsRuntime = client.app[INGEST_SERVER].runtime
    found = FileSpoolSource(spool_dir(runtime.settings)).read_sync({}, 1 << 20).records
    records = [record.decode(body) for _, body in found]
    assert [raw for _, raw in records] == [*bodies, bodies[0]]
    heads = [(h.source, h.endpoint, h.app, h.channel) for h, _ in records]
    assert heads == [("segment", "batch", "bank", None)] * 2 + [("segment", "track", "bank", None)]
    assert len({h.rid for h, _ in records}) == 3


async def test_pipelined_answers_keep_their_order_through_errors(port: int, keys: dict[str, str]) -> None:
    hdr = {"Authorization": auth(keys["write"])}
    conn = await Conn.open(port)
    await conn.send(request(batch(1), headers=hdr))  # the key is looked up once, then cached
    assert (await conn.response())[0] == 200
    await conn.send(
        request(batch(1, 1), headers=hdr)
        + request(b"{oops", headers=hdr)
        + request(batch(1, 2), "/nowhere", hdr)
        + request(batch(1, 3), headers=hdr)
    )
    assert [(await conn.response())[0] for _ in range(4)] == [200, 400, 404, 200]
    conn.close()
    # HTTP/1.0 without keep-alive: answered, then closed
    conn = await Conn.open(port)
    await conn.send(request(batch(1, 4), headers=hdr).replace(b"HTTP/1.1", b"HTTP/1.0", 1))
    status, headers, _ = await conn.response()
    assert status == 200 and headers["connection"] == "close"
    assert await conn.closed()


def test_the_key_cache_answers_without_a_query_only_when_it_knows() -> None:
    now = [0.0]
    cache = KeyCache(
        lambda key: asyncio.sleep(0, Sender("bank") if key == "good" else None), clock=lambda: now[0]
    )
    assert cache.cached("good") == (False, None)
    assert cache.cached("") == (True, None) and cache.cached("k" * 1000) == (True, None)
    assert asyncio.run(cache.get("good")) == Sender("bank")
    assert asyncio.run(cache.get("bad")) is None
    assert cache.cached("good") == (True, Sender("bank")) and cache.cached("bad") == (True, None)
    now[0] = 60.0  # both expired
    assert cache.cached("good") == (False, None) and cache.cached("bad") == (False, None)


async def test_segment_analytics_node_against_the_listener(
    port: int, keys: dict[str, str], load: Callable[[], Awaitable[DuckDbStore]], node_sdk: Any
) -> None:
    result = await node_sdk(f"http://127.0.0.1:{port}", keys["write"], 60)
    assert result["failures"] == []
    counts = (await load()).counts("bank")
    assert counts == {"Node 0": 20, "Node 1": 20, "Node 2": 20, "identify": 1, "Home": 1}


def test_the_ingest_port_setting_is_off_by_default_and_validated() -> None:
    assert Settings.from_env({}).ingest_port is None
    assert Settings.from_env({"MPAAS_INGEST_PORT": "9100"}).ingest_port == 9100
    for bad in ("abc", "70000", "-1"):
        with pytest.raises(ConfigError, match="MPAAS_INGEST_PORT"):
            Settings.from_env({"MPAAS_INGEST_PORT": bad})


async def test_a_half_close_after_the_request_still_gets_the_answer(port: int, keys: dict[str, str]) -> None:
    """Regression: the listener closed on the client's EOF before the fsync answered, so a
    client that half-closes (legal in HTTP/1.1) never saw its 200 and retried."""
    conn = await Conn.open(port)
    await conn.send(request(batch(2), headers={"Authorization": auth(keys["write"])}) * 2)  # two, pipelined
    conn.writer.write_eof()
    assert (await conn.response())[0] == 200 and (await conn.response())[0] == 200
    assert await conn.closed()


async def test_a_request_trickled_too_slowly_gets_a_408(client: Any, port: int) -> None:
    """Slowloris: a request not whole REQUEST_SECONDS after its first byte is answered 408 and
    the connection closed, however often bytes keep coming; a whole idle keep-alive is not."""
    server = client.app[INGEST_SERVER]
    slow, idle = await Conn.open(port), await Conn.open(port)
    await slow.send(b"POST /v1/batch HTTP/1.1\r\nHost: x\r\n")  # the head, never finished
    await asyncio.sleep(0)
    while len(server.connections) < 2 or not any(c.req is not None for c in server.connections):
        await asyncio.sleep(0.01)
    started = min(c.req_started for c in server.connections if c.req is not None)
    server.sweep_once(started + REQUEST_SECONDS - 1)  # in time: nothing happens
    server.sweep_once(started + REQUEST_SECONDS + 1)
    status, _, body = await slow.response()
    assert status == 408 and json.loads(body)["error"]["code"] == "request_timeout"
    assert await slow.closed()
    assert len(server.connections) == 1  # the idle one stays until IDLE_SECONDS
    idle.close()
