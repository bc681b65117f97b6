"""Ingest over HTTP: auth, the size limits, gzip, and the 4xx rule (tested through the routes)."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from mpaas.analytics.store.duckdb import DuckDbStore
from tests_support import assert_error

Load = Callable[[], Awaitable[DuckDbStore]]


@pytest.fixture(params=["sqlite"])
def backend(request: pytest.FixtureRequest) -> str:
    """Ingest does not depend on the SQL backend (keys are cached); SQLite only, to stay fast."""
    return str(request.param)


def message(i: int, **extra: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Transfer Confirmed",
        "userId": f"u{i % 3}",
        "anonymousId": None,
        "messageId": f"m-{i}",
        "timestamp": "2026-01-01T00:00:00.000Z",
        "properties": {"amount": i},
        "context": {"library": {"name": "test", "version": "1"}},
    } | extra


def batch(n: int, start: int = 0) -> dict[str, Any]:
    return {"batch": [message(i) for i in range(start, start + n)], "sentAt": "2026-01-01T00:00:05.000Z"}


async def test_segment_batch_with_basic_auth_is_spooled_and_loaded(
    client: Any, keys: dict[str, str], basic: Any, load: Load
) -> None:
    resp = await client.post("/v1/batch", json=batch(5), headers=basic(keys["write"]))
    assert resp.status == 200, await resp.text()
    assert await resp.json() == {"success": True}
    store = await load()
    assert store.counts("bank") == {"Transfer Confirmed": 5}


async def test_write_key_in_the_body_alone_is_enough(
    client: Any, keys: dict[str, str], basic: Any, load: Load
) -> None:
    resp = await client.post("/v1/batch", json=batch(2) | {"writeKey": keys["write"]})
    assert resp.status == 200, await resp.text()
    resp = await client.post("/v1/identify", json={"userId": 7, "traits": {}, "writeKey": keys["write"]})
    assert resp.status == 200, await resp.text()
    store = await load()
    assert store.counts("bank") == {"Transfer Confirmed": 2, "identify": 1}


async def test_a_bad_write_key_is_a_401(client: Any, keys: dict[str, str], runtime: Any) -> None:
    cases: list[tuple[dict[str, str], Any]] = [
        ({"Authorization": "Basic bm9wZTo="}, batch(1)),  # "nope:"
        ({"Authorization": "Basic !!!"}, batch(1)),
        ({}, batch(1)),
        ({}, batch(1) | {"writeKey": "nope"}),
        ({}, batch(1) | {"writeKey": 12}),
    ]
    for headers, body in cases:
        resp = await client.post("/v1/batch", json=body, headers=headers)
        assert resp.status == 401, (headers, body)
        assert_error(await resp.json(), "invalid_write_key")
    assert runtime.spool.records == 0


async def test_a_non_ascii_basic_header_is_a_401_not_a_500(client: Any, runtime: Any) -> None:
    """Regression (found by the listener's fuzz test): base64 refuses non-ASCII text with a
    ValueError that escaped as a 500 on both ports."""
    body = b'{"batch":[{"type":"track","event":"e","userId":"u"}]}'
    for value in (b"Basic \xc3\xa9abc", b"Basic 6Q==", b"Basic \xff"):
        reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
        writer.write(
            b"POST /v1/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: "
            + value
            + b"\r\nContent-Length: %d\r\n\r\n" % len(body)
            + body
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        writer.close()
        assert head.startswith(b"HTTP/1.1 401 "), (value, head)
    assert runtime.spool.records == 0


async def test_malformed_bodies_are_a_400(client: Any, keys: dict[str, str], basic: Any) -> None:
    cases = [
        (b"{not json", "invalid_json"),
        (b"", "invalid_json"),
        (b"[1, 2]", "invalid_events"),
        (b'{"batch": {}}', "invalid_events"),
        (b'{"batch": []}', "invalid_events"),
        (b'{"batch": [{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}]}", "invalid_json"),
        (b'{"batch": [{"a": tru}]}', "invalid_json"),
    ]
    for raw, code in cases:
        resp = await client.post("/v1/batch", data=raw, headers=basic(keys["write"]))
        assert resp.status == 400, raw[:20]
        assert_error(await resp.json(), code)


async def test_a_batch_over_500_kb_is_a_413_by_content_length(
    client: Any, keys: dict[str, str], basic: Any, runtime: Any
) -> None:
    body = json.dumps(batch(1) | {"pad": "x" * (500 * 1024)}).encode()
    before = runtime.spool.records
    resp = await client.post("/v1/batch", data=body, headers=basic(keys["write"]))
    assert resp.status == 413
    assert_error(await resp.json(), "batch_too_large")
    assert runtime.spool.records == before


async def test_a_chunked_batch_over_500_kb_is_a_413(client: Any, keys: dict[str, str], basic: Any) -> None:
    async def chunks() -> Any:
        yield b'{"batch": [], "pad": "'
        for _ in range(600):
            yield b"x" * 1024
        yield b'"}'

    resp = await client.post("/v1/batch", data=chunks(), headers=basic(keys["write"]))
    assert resp.status == 413
    assert_error(await resp.json(), "batch_too_large")


async def test_an_event_over_32_kb_is_a_413(client: Any, keys: dict[str, str], basic: Any) -> None:
    big = message(1, properties={"pad": "x" * (32 * 1024)})
    resp = await client.post("/v1/batch", json={"batch": [message(0), big]}, headers=basic(keys["write"]))
    assert resp.status == 413
    body = await resp.json()
    assert_error(body, "event_too_large")
    assert "batch[1]" in body["error"]["message"]
    resp = await client.post("/v1/track", json=big, headers=basic(keys["write"]))
    assert resp.status == 413


async def test_gzip_bodies_are_accepted(client: Any, keys: dict[str, str], basic: Any, load: Load) -> None:
    raw = gzip.compress(json.dumps(batch(3)).encode())
    headers = basic(keys["write"]) | {"Content-Encoding": "gzip", "Content-Type": "application/json"}
    resp = await client.post("/v1/batch", data=raw, headers=headers)
    assert resp.status == 200, await resp.text()
    assert (await load()).counts("bank") == {"Transfer Confirmed": 3}


async def test_a_gzip_bomb_is_bounded_by_its_decoded_size(
    client: Any, keys: dict[str, str], basic: Any
) -> None:
    bomb = gzip.compress(b'{"batch": [], "pad": "' + b"0" * (8 << 20) + b'"}')
    assert len(bomb) < 20_000
    headers = basic(keys["write"]) | {"Content-Encoding": "gzip"}
    resp = await client.post("/v1/batch", data=bomb, headers=headers)
    assert resp.status == 413
    assert_error(await resp.json(), "batch_too_large")


async def test_unknown_encodings_are_a_415_and_broken_gzip_a_400(
    client: Any, keys: dict[str, str], basic: Any
) -> None:
    headers = basic(keys["write"]) | {"Content-Encoding": "lzma"}
    resp = await client.post("/v1/batch", data=b"{}", headers=headers)
    assert resp.status == 415
    assert_error(await resp.json(), "unsupported_content_encoding")
    # aiohttp closes the connection after a body it cannot decode; the 400 comes first.
    headers = basic(keys["write"]) | {"Content-Encoding": "gzip", "Connection": "close"}
    resp = await client.post("/v1/batch", data=b"\x1f\x8bnot gzip at all", headers=headers)
    assert resp.status == 400
    assert_error(await resp.json(), "invalid_encoding")


async def test_native_events_with_the_deployment_key(
    client: Any, keys: dict[str, str], basic: Any, load: Load
) -> None:
    body = {
        "sent_at": "2026-01-01T00:00:10Z",
        "user_id": "u1",
        "context": {"app": {"version": "5.3.0"}, "os": {"name": "Android", "version": "14"}},
        "events": [
            {
                "message_id": "n1",
                "event": "ux.app_start",
                "timestamp": "2026-01-01T00:00:00Z",
                "properties": {"start_type": "cold", "duration_ms": 840},
            },
            {"message_id": "n2", "type": "screen", "name": "Home"},
        ],
    }
    resp = await client.post("/client/v1/events", json=body, headers={"X-Deployment-Key": keys["production"]})
    assert resp.status == 200, await resp.text()
    assert await resp.json() == {"accepted": 2}
    resp = await client.post("/client/v1/events", json=body | {"deployment_key": keys["staging"]})
    assert resp.status == 200
    store = await load()
    rows = store.fetch(
        "SELECT channel, event, app_version, os, flags FROM events ORDER BY channel, message_id"
    )
    assert rows == [
        ("production", "ux.app_start", "5.3.0", "Android", []),
        ("production", "Home", "5.3.0", "Android", []),
    ]  # the staging copy carries the same message ids: deduplicated


async def test_native_bad_key_is_a_401_before_the_body_is_read(
    client: Any, keys: dict[str, str], basic: Any
) -> None:
    resp = await client.post("/client/v1/events", data=b"x" * 10, headers={"X-Deployment-Key": "nope"})
    assert resp.status == 401
    assert_error(await resp.json(), "invalid_deployment_key")
    resp = await client.post("/client/v1/events", json={"events": [{"event": "a"}]})
    assert resp.status == 401
    resp = await client.post(
        "/client/v1/events", json={"events": []}, headers={"X-Deployment-Key": keys["staging"]}
    )
    assert resp.status == 400


async def test_spool_failure_is_503_and_overload_429_both_with_retry_after(
    client: Any, keys: dict[str, str], basic: Any, runtime: Any, tmp_path: Any
) -> None:
    import asyncio
    import os
    import threading

    from mpaas.analytics.spool.files import FileSpool

    def broken(fd: int) -> None:
        raise OSError(28, "No space left on device")

    await runtime.spool.close()
    runtime.spool = FileSpool(tmp_path / "broken", fsync=broken)
    await runtime.spool.start()
    resp = await client.post("/v1/batch", json=batch(1), headers=basic(keys["write"]))
    assert resp.status == 503 and int(resp.headers["Retry-After"]) >= 1
    assert_error(await resp.json(), "spool_unavailable")
    await runtime.spool.close()

    started, release = threading.Event(), threading.Event()

    def slow(fd: int) -> None:
        started.set()
        assert release.wait(30)
        os.fdatasync(fd)

    runtime.spool = FileSpool(tmp_path / "slow", fsync=slow, max_pending_bytes=1)
    await runtime.spool.start()
    first = asyncio.create_task(client.post("/v1/batch", json=batch(1), headers=basic(keys["write"])))
    await asyncio.to_thread(started.wait, 30)
    second = asyncio.create_task(client.post("/v1/batch", json=batch(1, 1), headers=basic(keys["write"])))
    for _ in range(100_000):
        if runtime.spool.pending:
            break
        await asyncio.sleep(0)
    resp = await client.post("/v1/batch", json=batch(1, 2), headers=basic(keys["write"]))
    assert resp.status == 429 and int(resp.headers["Retry-After"]) >= 1
    assert_error(await resp.json(), "overloaded")
    release.set()
    assert [(await r).status for r in (first, second)] == [200, 200]


async def test_server_side_events_go_through_the_same_pipeline(
    client: Any, keys: dict[str, str], runtime: Any, load: Load
) -> None:
    from mpaas.analytics.emit import emit

    for _ in range(2):  # a retried emit with the same message id loads once
        await emit(runtime, "bank", "release.install_reported", {"release_id": 7}, message_id="rel-7-dev-1")
    store = await load()
    assert store.fetch("SELECT source, type, event, properties, flags FROM events") == [
        ("server", "track", "release.install_reported", '{"release_id":7}', ["undeclared"])
    ]
