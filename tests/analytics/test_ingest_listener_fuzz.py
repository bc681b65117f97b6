"""Mutated requests against the lean ingest listener: whatever arrives, the listener answers
with a well-formed HTTP status it means (never a 500) or closes, and keeps serving."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from mpaas.analytics.ingest.listener import INGEST_SERVER

# the listener's app (SQLite, MPAAS_INGEST_PORT=0): the fixtures of its own tests
from .test_ingest_listener import auth, backend, batch, post, request, settings  # noqa: F401

#: What a refusal may be; 200 when a mutation left a valid request.
MEANT = {200, 400, 401, 404, 405, 413, 415, 429, 431, 503}
CASES = 150


def mutate(rng: random.Random, valid: bytes) -> bytes:
    data = bytearray(valid)
    kind = rng.randrange(7)
    if kind == 0:  # flip bytes anywhere, head or body
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif kind == 1:  # cut short
        del data[rng.randrange(1, len(data)) :]
    elif kind == 2:  # a strange header
        name = rng.choice([b"Content-Length", b"Transfer-Encoding", b"Content-Encoding", b"Expect", b"X"])
        value = rng.choice(
            [b"-1", b"99999999999999999999", b"chunked", b"gzip", b"100-continue", b"\x00\xff"]
        )
        data[data.index(b"\r\n") + 2 : data.index(b"\r\n") + 2] = name + b": " + value + b"\r\n"
    elif kind == 3:  # a chunked body with broken chunks
        head, _, body = bytes(data).partition(b"\r\n\r\n")
        head = head.replace(b"Content-Length", b"Transfer-Encoding").split(b"Transfer-Encoding")[0]
        size = rng.choice([b"5", b"zz", b"ffffffffffffffff", b"0"])
        data = bytearray(head + b"Transfer-Encoding: chunked\r\n\r\n" + size + b"\r\n" + body[:40] + b"\r\n")
    elif kind == 4:  # another method, path or version
        line_end = data.index(b"\r\n")
        line = rng.choice([b"GET /v1/batch HTTP/1.1", b"POST /v1/x HTTP/1.1", b"POST /v1/batch HTTP/9.9",
                           b"POST  HTTP/1.1", b"\xff\xfe /v1/batch HTTP/1.1", b"POST /v1/batch?x=%ZZ HTTP/1.1"])  # fmt: skip
        data[:line_end] = line
    elif kind == 5:  # random bytes after a valid head
        head, _, _ = bytes(data).partition(b"\r\n\r\n")
        data = bytearray(head + b"\r\n\r\n" + rng.randbytes(rng.randrange(200)))
    else:  # still valid: header names in another case, an unknown header
        data = bytearray(
            bytes(data)
            .replace(b"Content-Length", b"content-LENGTH")
            .replace(b"Host: x", b"Host: x\r\nX-Y: z")
        )
    return bytes(data)


async def answer_of(port: int, data: bytes) -> int | None:
    """The status of the first answer, or None when the listener closed without one."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
        raw = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    if not raw:
        return None
    assert raw.startswith(b"HTTP/1.1 "), raw[:80]
    return int(raw[9:12])


async def test_mutated_requests_get_meant_answers_and_the_listener_lives_on(
    client: Any, keys: dict[str, str]
) -> None:
    port = int(client.app[INGEST_SERVER].port)
    valid = request(batch(3), headers={"Authorization": auth(keys["write"])})
    rng = random.Random(20261205)
    seen: set[int | None] = set()
    for _ in range(CASES):
        status = await answer_of(port, mutate(rng, valid))
        assert status is None or status in MEANT, status
        seen.add(status)
    assert {200, 400, None} <= seen  # valid requests, refusals, and requests cut short
    assert (await post(port, valid))[0] == 200
