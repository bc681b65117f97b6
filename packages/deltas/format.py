"""The patch file format (version 1): its layout and streaming reader/writer.

Layout::

    "MPAASDLT"  u16 format version  u16 flags (0)          12 bytes, uncompressed
    one zstd frame (content checksum on) holding:
        u32 header length, JSON header (UTF-8)
        payloads, concatenated in op order (ops with length 0 have none)

All integers are big-endian. The JSON header, its ops and what they mean are in
:mod:`mpaas.packages.deltas.header` (see also docs/adr/0002-delta-format.md).
"""

from __future__ import annotations

import hashlib
import io
import struct
from collections.abc import Iterator
from typing import IO

import zstandard

from mpaas.packages.deltas.codec import MAX_WINDOW_LOG
from mpaas.packages.deltas.errors import PatchError
from mpaas.packages.deltas.header import FORMAT_VERSION, PatchHeader

MAGIC = b"MPAASDLT"
_PREFIX = struct.Struct(">8sHH")
_U32 = struct.Struct(">I")
MAX_HEADER = 64 << 20
CHUNK = 1 << 20


class _HashingSink:
    """Counts and hashes what the compressor writes to the file."""

    def __init__(self, fh: IO[bytes]) -> None:
        self._fh = fh
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        self._fh.write(data)
        return len(data)

    def flush(self) -> None:
        self._fh.flush()


class PatchWriter:
    """Writes prefix, header and payloads; memory use is zstd's window, not the patch."""

    def __init__(self, fh: IO[bytes], header: PatchHeader, *, level: int) -> None:
        self._sink = _HashingSink(fh)
        self._sink.write(_PREFIX.pack(MAGIC, FORMAT_VERSION, 0))
        compressor = zstandard.ZstdCompressor(level=level, write_checksum=True)
        raw = header.to_json()
        # The exact size lets zstd shrink its window and tables to the content: a
        # level-19 context for a 40 KB patch then takes a few MiB, not ~100, on both sides.
        size = _U32.size + len(raw) + header.payload_size
        self._stream = compressor.stream_writer(self._sink, size=size, closefd=False)  # type: ignore[arg-type]
        self._stream.write(_U32.pack(len(raw)))
        self._stream.write(raw)

    def write(self, data: bytes) -> None:
        self._stream.write(data)

    def close(self) -> tuple[int, str]:
        """End the frame; return the patch's (size, sha256 hex)."""
        self._stream.close()
        return self._sink.size, self._sink.sha256.hexdigest()


def _zstd_frame_length(fh: IO[bytes], start: int) -> int:
    """Length of the zstd frame at ``start``, found by walking its block headers (RFC 8878).

    The stream decoder reports a frame cut short at a block boundary as a clean
    end of data, so completeness is checked structurally before decoding.
    """
    fh.seek(start)
    head = fh.read(18)  # the longest frame header
    try:
        pos = start + zstandard.frame_header_size(head)
    except zstandard.ZstdError as exc:
        raise PatchError("patch payload is not a zstd frame") from exc
    has_checksum = bool(head[4] & 0x04)
    while True:
        fh.seek(pos)
        block = fh.read(3)
        if len(block) != 3:
            raise PatchError("patch is truncated")
        word = int.from_bytes(block, "little")
        last, kind, size = word & 1, (word >> 1) & 3, word >> 3
        if kind == 3:
            raise PatchError("patch has a reserved zstd block type")
        pos += 3 + (1 if kind == 1 else size)
        if last:
            return pos + (4 if has_checksum else 0) - start


class PatchReader:
    """Reads a patch front to back without holding more than one payload.

    ``fh`` must be seekable: the frame's completeness is checked up front, so a
    truncated patch fails before anything is written.
    """

    def __init__(self, fh: IO[bytes]) -> None:
        prefix = fh.read(_PREFIX.size)
        if len(prefix) != _PREFIX.size:
            raise PatchError("patch is truncated")
        magic, version, flags = _PREFIX.unpack(prefix)
        if magic != MAGIC:
            raise PatchError("not an mpaas patch")
        if version != FORMAT_VERSION or flags != 0:
            raise PatchError(f"unsupported patch format version {version}")
        end = _PREFIX.size + _zstd_frame_length(fh, _PREFIX.size)
        size = fh.seek(0, io.SEEK_END)
        if size != end:
            raise PatchError("patch is truncated" if size < end else "patch has data after its end")
        fh.seek(_PREFIX.size)
        decompressor = zstandard.ZstdDecompressor(max_window_size=1 << MAX_WINDOW_LOG)
        self._stream = decompressor.stream_reader(fh, closefd=False)
        (length,) = _U32.unpack(self.read_exact(_U32.size))
        if length > MAX_HEADER:
            raise PatchError("patch header is too large")
        self.header = PatchHeader.from_json(self.read_exact(length))

    def read_exact(self, n: int) -> bytes:
        parts: list[bytes] = []
        for chunk in self.iter_chunks(n):
            parts.append(chunk)
        return b"".join(parts)

    def iter_chunks(self, n: int) -> Iterator[bytes]:
        """Exactly ``n`` more bytes of the stream, in chunks of at most CHUNK."""
        remaining = n
        while remaining:
            try:
                chunk = self._stream.read(min(remaining, CHUNK))
            except zstandard.ZstdError as exc:
                raise PatchError(f"patch is corrupt: {exc}") from exc
            if not chunk:
                raise PatchError("patch is truncated")
            remaining -= len(chunk)
            yield chunk

    def finish(self) -> None:
        """Check that the frame ends here, which also verifies its checksum."""
        try:
            extra = self._stream.read(1)
        except zstandard.ZstdError as exc:
            raise PatchError(f"patch is corrupt: {exc}") from exc
        if extra:
            raise PatchError("patch has data after its last payload")
