"""A spool record: the raw batch as the client sent it (decompressed), plus who and when.

The body is one line of JSON (the header) and then the raw bytes. Nothing is
normalised on the hot path; the loader reads the header to know the app, the protocol
and the server's ``receivedAt``.
"""

from __future__ import annotations

import itertools
import os
import secrets
from dataclasses import dataclass
from typing import Any

import orjson

#: Where a record came from: the native protocol, a Segment SDK, or a server-side domain.
NATIVE, SEGMENT, SERVER = "native", "segment", "server"


@dataclass(frozen=True, slots=True)
class RecordHeader:
    source: str
    endpoint: str
    app: str
    channel: str | None
    received_ms: int
    rid: str

    def to_json(self) -> dict[str, Any]:
        return {
            "src": self.source,
            "ep": self.endpoint,
            "app": self.app,
            "ch": self.channel,
            "r": self.received_ms,
            "id": self.rid,
        }


def encode_parts(header: RecordHeader, raw: bytes) -> list[bytes]:
    """The record body as buffers (header line, raw batch): spools write them without a copy."""
    return [orjson.dumps(header.to_json(), option=orjson.OPT_APPEND_NEWLINE), raw]


def header_line(
    source: str, endpoint: str, app: str, channel: str | None, received_ms: int, rid: str
) -> bytes:
    """What ``encode_parts`` writes before the raw batch, without building a :class:`RecordHeader`
    (the ingest's hot path; the same bytes, which a test checks)."""
    return orjson.dumps(
        {"src": source, "ep": endpoint, "app": app, "ch": channel, "r": received_ms, "id": rid},
        option=orjson.OPT_APPEND_NEWLINE,
    )


def encode(header: RecordHeader, raw: bytes) -> bytes:
    return b"".join(encode_parts(header, raw))


def decode(body: bytes) -> tuple[RecordHeader, bytes]:
    """The header and raw bytes of a record body; ValueError when it is not one."""
    line, sep, raw = body.partition(b"\n")
    if not sep:
        raise ValueError("spool record has no header line")
    h = orjson.loads(line)
    if not isinstance(h, dict):
        raise ValueError("spool record header is not an object")
    return (
        RecordHeader(str(h["src"]), str(h["ep"]), str(h["app"]), h.get("ch"), int(h["r"]), str(h["id"])),
        raw,
    )


class RecordIds:
    """Record ids: a random prefix per process, then a counter (no syscall per request)."""

    def __init__(self) -> None:
        self._reseed()
        os.register_at_fork(after_in_child=self._reseed)

    def _reseed(self) -> None:
        self._prefix = secrets.token_hex(6) + "-"
        self._counter = itertools.count(1)

    def next(self) -> str:
        return self._prefix + str(next(self._counter))


record_ids = RecordIds()
