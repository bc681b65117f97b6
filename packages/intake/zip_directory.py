"""Zip structure: the end record, the central directory and the local headers, read by hand.

Nothing here decompresses or writes: :func:`read_directory` parses and bounds the
central directory, and :func:`data_offsets` checks every local header against it and
against overlaps (CVE-2024-0450) before :mod:`mpaas.packages.intake.zip_reader` reads
any entry's data. Why we do not use ``zipfile`` is in that module.
"""

from __future__ import annotations

import itertools
import struct
from dataclasses import dataclass
from typing import BinaryIO

from mpaas.packages.errors import UnsafeArchive, UnsupportedArchive
from mpaas.packages.intake.rules import IntakeLimits, Rule

STORED, DEFLATED, BZIP2 = 0, 8, 12
SUPPORTED_METHODS = frozenset({STORED, DEFLATED, BZIP2})
AES_METHOD = 99

FLAG_ENCRYPTED = 0x0001
FLAG_DATA_DESCRIPTOR = 0x0008
FLAG_STRONG_ENCRYPTION = 0x0040
FLAG_UTF8 = 0x0800
FLAG_MASKED_HEADERS = 0x2000
ENCRYPTION_FLAGS = FLAG_ENCRYPTED | FLAG_STRONG_ENCRYPTION | FLAG_MASKED_HEADERS

_EOCD = struct.Struct("<4sHHHHIIH")
_EOCD64_LOCATOR = struct.Struct("<4sIQI")
_EOCD64 = struct.Struct("<4sQHHIIQQQQ")
_CENTRAL = struct.Struct("<4sBBHHHHHIIIHHHHHII")
_LOCAL = struct.Struct("<4sHHHHHIIIHH")
_EXTRA_HEADER = struct.Struct("<HH")

_SIG_EOCD = b"PK\x05\x06"
_SIG_EOCD64_LOCATOR = b"PK\x06\x07"
_SIG_EOCD64 = b"PK\x06\x06"
_SIG_CENTRAL = b"PK\x01\x02"
_SIG_LOCAL = b"PK\x03\x04"
_ZIP64_EXTRA_ID = 0x0001
_U16_MAX = 0xFFFF
_U32_MAX = 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class ZipEntry:
    name: str
    raw_name: bytes
    flags: int
    method: int
    crc: int
    compress_size: int
    file_size: int
    header_offset: int
    unix_mode: int


@dataclass(frozen=True, slots=True)
class CentralDirectory:
    entries: list[ZipEntry]
    offset: int


def malformed(detail: str, entry: str | None = None) -> UnsafeArchive:
    return UnsafeArchive(Rule.MALFORMED, entry=entry, detail=detail)


def _read_exact(fh: BinaryIO, size: int, what: str) -> bytes:
    data = fh.read(size)
    if len(data) != size:
        raise malformed(f"truncated {what}")
    return data


def _find_eocd(fh: BinaryIO, archive_size: int) -> tuple[int, bytes]:
    """Locate the end-of-central-directory record: the last one whose comment ends the file."""
    tail_size = min(archive_size, _EOCD.size + _U16_MAX)
    fh.seek(archive_size - tail_size)
    tail = fh.read(tail_size)
    pos = tail.rfind(_SIG_EOCD)
    while pos >= 0:
        record = tail[pos : pos + _EOCD.size]
        if len(record) == _EOCD.size:
            comment_size = _EOCD.unpack(record)[7]
            if pos + _EOCD.size + comment_size == len(tail):
                return archive_size - tail_size + pos, record
        pos = tail.rfind(_SIG_EOCD, 0, pos)
    raise malformed("no end of central directory record")


def _locate_directory(fh: BinaryIO, archive_size: int) -> tuple[int, int, int, int]:
    """Return (entry count, directory offset, directory size, where the directory must end)."""
    eocd_offset, record = _find_eocd(fh, archive_size)
    _, disk, cd_disk, disk_entries, total, cd_size, cd_offset, _ = _EOCD.unpack(record)
    limit = eocd_offset
    if _U16_MAX in (disk_entries, total) or _U32_MAX in (cd_size, cd_offset):
        locator_offset = eocd_offset - _EOCD64_LOCATOR.size
        if locator_offset < 0:
            raise malformed("zip64 locator missing")
        fh.seek(locator_offset)
        sig, disk, eocd64_offset, disks = _EOCD64_LOCATOR.unpack(
            _read_exact(fh, _EOCD64_LOCATOR.size, "zip64 locator")
        )
        if sig != _SIG_EOCD64_LOCATOR or disks != 1 or eocd64_offset + _EOCD64.size > locator_offset:
            raise malformed("bad zip64 locator")
        fh.seek(eocd64_offset)
        fields = _EOCD64.unpack(_read_exact(fh, _EOCD64.size, "zip64 end record"))
        if fields[0] != _SIG_EOCD64:
            raise malformed("bad zip64 end record")
        disk, cd_disk, disk_entries, total, cd_size, cd_offset = fields[4:10]
        limit = eocd64_offset
    if disk or cd_disk or disk_entries != total:
        raise UnsupportedArchive("multi-disk zip archives are not supported")
    if cd_offset + cd_size > limit:
        raise malformed("central directory runs past its end record")
    return total, cd_offset, cd_size, limit


def _decode_name(raw: bytes, flags: int) -> str:
    if flags & FLAG_UTF8:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise UnsafeArchive(
                Rule.INVALID_ENCODING, entry=raw.decode("utf-8", "replace"), detail="UTF-8 flag set"
            ) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        # Legacy zips without the UTF-8 flag use the IBM PC code page (APPNOTE 4.4.4).
        return raw.decode("cp437")


def _apply_zip64(extra: bytes, sizes: list[int], name: str) -> None:
    """Replace the 0xFFFFFFFF placeholders in [file_size, compress_size, offset] in place."""
    pos = 0
    while pos + _EXTRA_HEADER.size <= len(extra):
        tag, size = _EXTRA_HEADER.unpack_from(extra, pos)
        body = extra[pos + _EXTRA_HEADER.size : pos + _EXTRA_HEADER.size + size]
        if len(body) != size:
            raise malformed("truncated extra field", name)
        if tag == _ZIP64_EXTRA_ID:
            field = 0
            for index, value in enumerate(sizes):
                if value == _U32_MAX:
                    if field + 8 > size:
                        raise malformed("short zip64 extra field", name)
                    sizes[index] = struct.unpack_from("<Q", body, field)[0]
                    field += 8
            return
        pos += _EXTRA_HEADER.size + size
    if _U32_MAX in sizes:
        raise malformed("zip64 extra field missing", name)


def read_directory(fh: BinaryIO, archive_size: int, limits: IntakeLimits) -> CentralDirectory:
    total, cd_offset, cd_size, _ = _locate_directory(fh, archive_size)
    if total > limits.max_entries:
        raise UnsafeArchive(Rule.TOO_MANY_ENTRIES, detail=f"{total} entries, limit {limits.max_entries}")
    fh.seek(cd_offset)
    end = cd_offset + cd_size
    pos = cd_offset
    entries: list[ZipEntry] = []
    while pos < end:
        if len(entries) >= total:
            raise malformed("central directory holds more entries than its end record says")
        fields = _CENTRAL.unpack(_read_exact(fh, _CENTRAL.size, "central directory"))
        (sig, _, _, _, flags, method, _, _, crc, csize, usize, name_len, extra_len, comment_len) = fields[:14]
        disk_start, external_attr, offset = fields[14], fields[16], fields[17]
        if sig != _SIG_CENTRAL:
            raise malformed("bad central directory signature")
        raw_name = _read_exact(fh, name_len, "entry name")
        extra = _read_exact(fh, extra_len, "extra field")
        fh.seek(comment_len, 1)
        pos += _CENTRAL.size + name_len + extra_len + comment_len
        name = _decode_name(raw_name, flags)
        sizes = [usize, csize, offset]
        _apply_zip64(extra, sizes, name)
        if disk_start not in (0, _U16_MAX):
            raise UnsupportedArchive("multi-disk zip archives are not supported")
        entries.append(
            ZipEntry(name, raw_name, flags, method, crc, sizes[1], sizes[0], sizes[2], external_attr >> 16)
        )
    if pos != end or len(entries) != total:
        raise malformed("central directory size or entry count disagrees with its end record")
    return CentralDirectory(entries, cd_offset)


@dataclass(frozen=True, slots=True)
class _Local:
    flags: int
    method: int
    raw_name: bytes
    data_offset: int
    #: (crc, compressed, uncompressed), or None when a data descriptor follows the data.
    described: tuple[int, int, int] | None


def _read_local(fh: BinaryIO, entry: ZipEntry, cd_offset: int) -> _Local:
    if entry.header_offset + _LOCAL.size > cd_offset:
        raise UnsafeArchive(
            Rule.OVERLAPPING_ENTRIES, entry=entry.name, detail="local header inside the central directory"
        )
    fh.seek(entry.header_offset)
    sig, _, flags, method, _, _, crc, csize, usize, name_len, extra_len = _LOCAL.unpack(
        _read_exact(fh, _LOCAL.size, "local header")
    )
    if sig != _SIG_LOCAL:
        raise malformed("bad local header signature", entry.name)
    raw_name = _read_exact(fh, name_len, "local name")
    extra = _read_exact(fh, extra_len, "local extra field")
    described = None
    if not flags & FLAG_DATA_DESCRIPTOR:
        sizes = [usize, csize]
        _apply_zip64(extra, sizes, entry.name)
        described = (crc, sizes[1], sizes[0])
    return _Local(
        flags, method, raw_name, entry.header_offset + _LOCAL.size + name_len + extra_len, described
    )


def data_offsets(fh: BinaryIO, directory: CentralDirectory) -> list[int]:
    """Check the local headers against the central directory; return data offsets.

    First rejects any two entries whose header-plus-data spans share a byte, or a
    span reaching into the central directory (CVE-2024-0450, "overlapping files"
    bombs), then any disagreement between a local header and its central entry.
    """
    locals_ = [_read_local(fh, entry, directory.offset) for entry in directory.entries]
    spans: list[tuple[int, int, str]] = []
    for entry, local in zip(directory.entries, locals_, strict=True):
        end = local.data_offset + entry.compress_size
        if end > directory.offset:
            raise UnsafeArchive(
                Rule.OVERLAPPING_ENTRIES, entry=entry.name, detail="data runs into the central directory"
            )
        spans.append((entry.header_offset, end, entry.name))
    spans.sort()
    for (start, end, first), (next_start, _, second) in itertools.pairwise(spans):
        if next_start == start:
            raise UnsafeArchive(
                Rule.OVERLAPPING_ENTRIES, entry=second, detail=f"same local header as {first!r}"
            )
        if next_start < end:
            raise UnsafeArchive(Rule.OVERLAPPING_ENTRIES, entry=second, detail=f"shares bytes with {first!r}")
    for entry, local in zip(directory.entries, locals_, strict=True):
        if local.raw_name != entry.raw_name:
            raise malformed("local header name differs from the central directory", entry.name)
        if local.flags & ENCRYPTION_FLAGS:
            raise UnsafeArchive(Rule.ENCRYPTED, entry=entry.name, detail="local header")
        if local.method != entry.method:
            raise malformed("local header method differs from the central directory", entry.name)
        # Streaming readers (e.g. Android's ZipInputStream) trust the local header.
        if local.described not in (None, (entry.crc, entry.compress_size, entry.file_size)):
            raise malformed("local header sizes or CRC differ from the central directory", entry.name)
    return [local.data_offset for local in locals_]
