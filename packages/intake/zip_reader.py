"""Zip intake: our own parser, because ``zipfile`` (3.11.7) trusts too much.

zipfile rewrites bad names instead of rejecting them, cuts names at NUL, lets the
last duplicate win, has no CVE-2024-0450 overlap check, and its reader stops at
the declared size. So we read the central directory ourselves, check every entry
before writing anything, check that local headers agree with it and that no two
entries share bytes, then decompress each entry's exact compressed range with
zlib/bz2, counting the output against the declared size and CRC.

Local headers must agree with the central directory on name, method, flags
and (unless a data descriptor is used) CRC and sizes, so a streaming reader
that trusts local headers sees the same archive we checked.

Names flagged UTF-8 must be valid UTF-8; unflagged names are taken as UTF-8 when
they decode as such (what most tools write) and as code page 437 otherwise. The
Info-ZIP Unicode Path extra field (0x7075) is ignored, as zipfile ignores it.

Supported methods: stored (0), deflate (8), bzip2 (12). Everything else,
including Deflate64 and LZMA, is ``unsupported_compression``.

The records themselves (end record, central directory, local headers, overlaps) are
parsed in :mod:`mpaas.packages.intake.zip_directory`; this module applies the entry
rules and streams each entry out, verified.
"""

from __future__ import annotations

import bz2
import stat
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from mpaas.packages.errors import UnsafeArchive
from mpaas.packages.intake.rules import IntakeLimits, NameRegistry, Rule, check_ratio, split_entry_name
from mpaas.packages.intake.writer import TreeWriter
from mpaas.packages.intake.zip_directory import (
    AES_METHOD,
    BZIP2,
    DEFLATED,
    ENCRYPTION_FLAGS,
    SUPPORTED_METHODS,
    ZipEntry,
    data_offsets,
    malformed,
    read_directory,
)

READ_CHUNK = 1 << 16

_SPECIAL_TYPES = {
    stat.S_IFCHR: "character device",
    stat.S_IFBLK: "block device",
    stat.S_IFIFO: "fifo",
    stat.S_IFSOCK: "socket",
}


def _check_entry(
    entry: ZipEntry, registry: NameRegistry, writer: TreeWriter, limits: IntakeLimits
) -> tuple[tuple[str, ...], bool]:
    """Apply every rule that needs only the central directory; return (parts, is_dir)."""
    registry.count_entry()
    name = entry.name
    if entry.flags & ENCRYPTION_FLAGS or entry.method == AES_METHOD:
        raise UnsafeArchive(Rule.ENCRYPTED, entry=name)
    file_type = stat.S_IFMT(entry.unix_mode)
    if file_type == stat.S_IFLNK:
        raise UnsafeArchive(Rule.SYMLINK, entry=name)
    if file_type in _SPECIAL_TYPES:
        raise UnsafeArchive(Rule.SPECIAL_FILE, entry=name, detail=_SPECIAL_TYPES[file_type])
    is_dir = name.endswith("/") and file_type != stat.S_IFREG and entry.file_size == 0
    if file_type == stat.S_IFDIR and not is_dir:
        raise malformed("directory mode on a file entry", name)
    parts = split_entry_name(name, is_dir=is_dir, limits=limits)
    registry.add(name, parts, is_dir=is_dir)
    if is_dir:
        return parts, True
    if entry.method not in SUPPORTED_METHODS:
        raise UnsafeArchive(Rule.UNSUPPORTED_COMPRESSION, entry=name, detail=f"method {entry.method}")
    writer.check_declared(name, entry.file_size)
    check_ratio(entry.file_size, entry.compress_size, limits, entry=name)
    return parts, False


def _raw_chunks(fh: BinaryIO, offset: int, size: int) -> Iterator[bytes]:
    fh.seek(offset)
    left = size
    while left:
        chunk = fh.read(min(left, READ_CHUNK))
        if not chunk:
            raise malformed("truncated entry data")
        left -= len(chunk)
        yield chunk


def _inflate(raw: Iterator[bytes], name: str) -> Iterator[bytes]:
    """Raw deflate, yielding at most READ_CHUNK bytes at a time (bomb-safe)."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        for chunk in raw:
            if inflater.eof:
                raise malformed("data after the end of the deflate stream", name)
            data = chunk
            while data and not inflater.eof:
                yield inflater.decompress(data, READ_CHUNK)
                data = inflater.unconsumed_tail
            if inflater.unused_data:
                raise malformed("data after the end of the deflate stream", name)
        while not inflater.eof:
            out = inflater.decompress(b"", READ_CHUNK)
            if not out:
                break
            yield out
    except zlib.error as exc:
        raise malformed(f"bad deflate data: {exc}", name) from None
    if not inflater.eof:
        raise malformed("deflate stream is truncated", name)


def _bunzip(raw: Iterator[bytes], name: str) -> Iterator[bytes]:
    """bzip2, yielding at most READ_CHUNK bytes at a time (bomb-safe)."""
    decompressor = bz2.BZ2Decompressor()
    try:
        for chunk in raw:
            if decompressor.eof:
                raise malformed("data after the end of the bzip2 stream", name)
            yield decompressor.decompress(chunk, READ_CHUNK)
            while not decompressor.eof and not decompressor.needs_input:
                yield decompressor.decompress(b"", READ_CHUNK)
            if decompressor.unused_data:
                raise malformed("data after the end of the bzip2 stream", name)
    except OSError as exc:
        raise malformed(f"bad bzip2 data: {exc}", name) from None
    if not decompressor.eof:
        raise malformed("bzip2 stream is truncated", name)


def _verified(entry: ZipEntry, raw: Iterator[bytes]) -> Iterator[bytes]:
    """Decompress, counting output against the declared size and CRC as it flows."""
    if entry.method == DEFLATED:
        stream = _inflate(raw, entry.name)
    elif entry.method == BZIP2:
        stream = _bunzip(raw, entry.name)
    else:
        stream = raw
    size = 0
    crc = 0
    for chunk in stream:
        if not chunk:
            continue
        size += len(chunk)
        if size > entry.file_size:
            raise UnsafeArchive(
                Rule.SIZE_MISMATCH, entry=entry.name, detail=f"more than the declared {entry.file_size} bytes"
            )
        crc = zlib.crc32(chunk, crc)
        yield chunk
    if size != entry.file_size:
        raise UnsafeArchive(
            Rule.SIZE_MISMATCH, entry=entry.name, detail=f"{size} bytes, declared {entry.file_size}"
        )
    if crc != entry.crc:
        raise UnsafeArchive(
            Rule.CRC_MISMATCH, entry=entry.name, detail=f"{crc:08x}, declared {entry.crc:08x}"
        )


def unpack_zip(source: Path, writer: TreeWriter, registry: NameRegistry, limits: IntakeLimits) -> None:
    """Validate the whole central directory, then write every entry."""
    archive_size = source.stat().st_size
    with open(source, "rb") as fh:
        directory = read_directory(fh, archive_size, limits)
        checked = [_check_entry(entry, registry, writer, limits) for entry in directory.entries]
        declared = sum(entry.file_size for entry in directory.entries)
        if declared > limits.max_total_bytes:
            raise UnsafeArchive(Rule.TOTAL_TOO_LARGE, detail=f"declares {declared} bytes")
        check_ratio(declared, archive_size, limits, entry=None)
        offsets = data_offsets(fh, directory)
        for entry, (parts, is_dir), data_offset in zip(directory.entries, checked, offsets, strict=True):
            if is_dir:
                writer.make_dir(parts)
            else:
                raw = _raw_chunks(fh, data_offset, entry.compress_size)
                writer.write_file(entry.name, parts, _verified(entry, raw))
