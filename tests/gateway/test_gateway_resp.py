"""The gateway's lean Redis client: replies split anywhere parse the same, the script is
reloaded after a SCRIPT FLUSH, a silent server times out, and URLs parse."""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mpaas.gateway.admission import Bucket, Rate
from mpaas.gateway.redis_admission import RedisAdmission
from mpaas.gateway.resp import Resp, RespError, Target, _Protocol, encode, encode_ascii

values: st.SearchStrategy[Any] = st.recursive(
    st.one_of(st.integers(-(2**62), 2**62), st.binary(max_size=40), st.none(), st.text("abc XY", max_size=8)),
    lambda inner: st.lists(inner, max_size=4),
    max_leaves=12,
)


def reply(value: Any) -> bytes:
    """A reference RESP2 encoder for replies (text becomes a simple string)."""
    if value is None:
        return b"$-1\r\n"
    if isinstance(value, int):
        return b":%d\r\n" % value
    if isinstance(value, bytes):
        return b"$%d\r\n%b\r\n" % (len(value), value)
    if isinstance(value, str):
        return b"+%b\r\n" % value.encode()
    return b"*%d\r\n" % len(value) + b"".join(reply(v) for v in value)


@given(st.lists(values, min_size=1, max_size=5), st.data())
def test_replies_split_at_any_byte_parse_the_same(replies: list[Any], data: st.DataObject) -> None:
    async def run() -> list[Any]:
        loop = asyncio.get_running_loop()
        proto = _Protocol()
        waiters = [loop.create_future() for _ in replies]
        proto.waiters.extend(waiters)
        wire = b"".join(reply(v) for v in replies) + b"-ERR last\r\n"
        error = loop.create_future()
        proto.waiters.append(error)
        cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=6)))
        for start, end in zip([0, *cuts], [*cuts, len(wire)], strict=True):
            proto.data_received(wire[start:end])
        assert isinstance(error.exception(), RespError)
        return [w.result() for w in waiters]

    assert asyncio.run(run()) == replies


@given(st.lists(st.text("abcdefghijklmnopqrstuvwxyz0123456789:{}.-", max_size=30), min_size=1, max_size=20))
def test_the_fast_encoder_matches_the_general_one(args: list[str]) -> None:
    assert encode_ascii(args) == encode(*args)


def test_urls() -> None:
    assert Target.parse("redis://:p%40ss@10.0.0.5:6380/3") == Target(
        "10.0.0.5", 6380, None, 3, None, "p@ss", False
    )
    assert Target.parse("rediss://app:pw@redis.example/0").tls
    assert Target.parse("unix:///run/redis.sock?db=2") == Target(
        None, 0, "/run/redis.sock", 2, None, None, False
    )


async def test_a_silent_server_times_out_and_the_next_call_reconnects() -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = Resp(f"redis://127.0.0.1:{port}/0", timeout=0.05)
    for _ in range(2):
        with pytest.raises(ConnectionError):
            await client.call("PING")
    assert len(accepted) == 2  # the second call opened a new connection
    await client.close()
    server.close()


async def test_the_script_is_loaded_again_after_a_flush() -> None:
    url = os.environ.get("MPAAS_TEST_REDIS_URL")
    if not url:
        pytest.skip("MPAAS_TEST_REDIS_URL is not set")
    store = RedisAdmission(url, f"mpaas-test-{secrets.token_hex(6)}:")
    bucket = [Bucket("rl:{bank}:dev:r", "device", Rate(5, 60.0))]
    assert (await store.admit("nonce:{bank}:r:1", time.time() + 300, bucket, time.time())).admitted
    await store.client.call("SCRIPT", "FLUSH")
    assert (await store.admit("nonce:{bank}:r:2", time.time() + 300, bucket, time.time())).admitted
    assert not (await store.admit("nonce:{bank}:r:2", time.time() + 300, bucket, time.time())).fresh
    await store.close()


async def test_non_ascii_keys_are_framed_by_their_bytes() -> None:
    """The admission writes its frame by hand for ASCII keys; any other key must still arrive whole."""
    url = os.environ.get("MPAAS_TEST_REDIS_URL")
    if not url:
        pytest.skip("MPAAS_TEST_REDIS_URL is not set")
    store = RedisAdmission(url, f"mpaas-test-{secrets.token_hex(6)}:")
    one = [Bucket("rl:{bank}:dev:čé", "device", Rate(1, 3600.0))]
    now = time.time()
    assert (await store.admit("nonce:{bank}:é:1", now + 300, one, now)).admitted
    assert not (await store.admit("nonce:{bank}:é:1", now + 300, one, now)).fresh
    limited = await store.admit("nonce:{bank}:é:2", now + 300, one, now)
    assert (limited.limited, limited.retry_after > 3000) == ("device", True)
    assert await store.client.call("PING") == "PONG"  # the connection is still in step
    await store.close()
