"""Length + checksum framing of spool records, so that a torn tail is detected.

A record on disk is ``MAGIC | u32 length | u32 crc32(body) | body`` (little-endian).
A writer killed in the middle of a write leaves a tail that is too short, or whose
checksum does not match; :func:`unframe` stops before it.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

try:  # zlib-ng's crc32 (carry-less multiply) is about 4x zlib's on a 26 KB batch; same values
    from zlib_ng.zlib_ng import crc32 as _crc32
except ImportError:  # pragma: no cover - the accelerated module is optional
    from zlib import crc32 as _crc32

#: zlib's CRC-32 (the polynomial of gzip and PNG), whichever module computes it.
crc32: Callable[..., int] = _crc32

MAGIC = b"\xa7MPs"
_HEAD = struct.Struct("<4sII")
HEAD_SIZE = _HEAD.size
#: Far above any record the ingest accepts; a larger length is corruption, not data.
MAX_BODY = 16 << 20


def frame_parts(parts: Sequence[bytes]) -> list[bytes]:
    """The record whose body is ``parts`` joined, as buffers to write in order (no copy)."""
    crc, size = 0, 0
    for part in parts:
        crc, size = crc32(part, crc), size + len(part)
    return [_HEAD.pack(MAGIC, size, crc), *parts]


def frame(body: bytes) -> bytes:
    return b"".join(frame_parts([body]))


@dataclass(frozen=True, slots=True)
class Unframed:
    """The complete, intact records of a buffer and where reading stopped.

    ``end`` is the offset just past the last good record. ``clean`` is True when the
    buffer ended exactly there; otherwise the bytes from ``end`` on are an incomplete
    record (a live writer may still finish it) or corrupt (a dead writer's torn tail).
    """

    records: list[tuple[int, bytes]]
    end: int
    clean: bool


def unframe(buf: bytes, base: int = 0) -> Unframed:
    """Split ``buf`` (which starts at file offset ``base``) into ``(offset, body)`` records."""
    records: list[tuple[int, bytes]] = []
    pos, size = 0, len(buf)
    view = memoryview(buf)
    while pos + HEAD_SIZE <= size:
        magic, length, crc = _HEAD.unpack_from(buf, pos)
        if magic != MAGIC or length > MAX_BODY:
            break
        start, stop = pos + HEAD_SIZE, pos + HEAD_SIZE + length
        if stop > size:
            break
        body = bytes(view[start:stop])
        if crc32(body) != crc:
            break
        records.append((base + pos, body))
        pos = stop
    return Unframed(records, base + pos, pos == size)
