"""Intake rules for limits and bombs: entry counts, file and total sizes, compression ratios, huge headers.

One test (at least) per rule. Fixtures ``archive_factory`` (builders) and ``intake_area``
(scratch root + empty dest, with ``zip``/``tar``/``files`` source builders and a ``reject``
helper that also proves nothing outside dest changed) come from tests/packages/conftest.py.
"""

from __future__ import annotations

import io
import os
import tarfile
import zlib
from typing import Any

import pytest

from mpaas.packages.intake.unpack import IntakeLimits

DEFLATED, BZIP2 = 8, 12
SMALL = IntakeLimits(max_entries=3, max_file_bytes=10, max_total_bytes=25, max_path_bytes=64, max_depth=3)


# --- limits -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["zip", "tar.gz", "dir"])
def test_too_many_entries(intake_area: Any, fmt: str) -> None:
    source = intake_area.files(fmt, ["a", "b", "c", "d"])
    intake_area.reject(source, "too_many_entries", entry=None, limits=SMALL)


def test_zip_entry_count_is_checked_before_reading_the_directory(
    archive_factory: Any, intake_area: Any
) -> None:
    data = bytearray(archive_factory.craft_zip([archive_factory.ZipMember("a", b"1")]))
    data[-14:-10] = (60_000).to_bytes(2, "little") * 2  # the end record claims many more
    error = intake_area.reject(intake_area.source("x.zip", bytes(data)), "too_many_entries", entry=None)
    assert error.detail == "60000 entries, limit 20000"


def test_directories_count_as_entries(archive_factory: Any, intake_area: Any) -> None:
    members = [archive_factory.tar_member(n, kind=tarfile.DIRTYPE) for n in ("a", "b", "c")] + [
        archive_factory.tar_member("d", b"1")
    ]
    intake_area.reject(intake_area.tar(*members), "too_many_entries", entry=None, limits=SMALL)


@pytest.mark.parametrize("fmt", ["zip", "tar.gz", "dir"])
def test_file_too_large(intake_area: Any, fmt: str) -> None:
    source = intake_area.files(fmt, ["big.bin"], data=b"x" * 11)
    intake_area.reject(source, "file_too_large", entry="big.bin", limits=SMALL)
    assert intake_area.dest_bytes() == 0


@pytest.mark.parametrize("fmt", ["zip", "tar.gz", "dir"])
def test_declared_size_is_refused_before_any_write(intake_area: Any, fmt: str) -> None:
    limits = IntakeLimits(max_file_bytes=100_000)
    source = intake_area.files(fmt, ["big.bin"], data=os.urandom(300_000))
    intake_area.reject(source, "file_too_large", entry="big.bin", limits=limits)
    assert list(intake_area.dest.iterdir()) == []


@pytest.mark.parametrize("fmt", ["zip", "tar.gz", "dir"])
def test_total_too_large(intake_area: Any, fmt: str) -> None:
    source = intake_area.files(fmt, ["a", "b", "c"], data=b"x" * 9)
    intake_area.reject(source, "total_too_large", entry=None if fmt == "zip" else "c", limits=SMALL)
    assert intake_area.dest_bytes() <= SMALL.max_total_bytes


def test_limits_hold_when_the_file_grows_while_streaming(archive_factory: Any, intake_area: Any) -> None:
    """Declared sizes are a pre-check only; the writer counts real bytes."""
    data = b"x" * 11
    member = archive_factory.ZipMember("a.js", data, file_size=10, crc=zlib.crc32(data[:10]))
    intake_area.reject(intake_area.zip(member), "size_mismatch", entry="a.js", limits=SMALL)
    assert intake_area.dest_bytes() <= 10


# --- bombs --------------------------------------------------------------------------------------------

BOMB_LIMITS = IntakeLimits(max_ratio=100.0, ratio_min_bytes=64 << 10)


class Zeros(io.RawIOBase):
    """``size`` zero bytes without holding them in memory."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        count = min(len(buffer), self.left)
        buffer[:count] = bytes(count)
        self.left -= count
        return count


def test_zip_bomb_rejected_by_entry_ratio_before_writing(archive_factory: Any, intake_area: Any) -> None:
    data = bytes(8 << 20)
    source = intake_area.zip(archive_factory.ZipMember("bomb.bin", data, method=DEFLATED))
    error = intake_area.reject(source, "compression_ratio", entry="bomb.bin", limits=BOMB_LIMITS)
    assert "limit 100:1" in error.detail
    assert intake_area.dest_bytes() == 0


def test_zip_bomb_rejected_by_whole_archive_ratio(archive_factory: Any, intake_area: Any) -> None:
    """Each entry stays under ratio_min_bytes; together they do not."""
    members = [archive_factory.ZipMember(f"part{i}.bin", bytes(60 << 10), method=DEFLATED) for i in range(8)]
    intake_area.reject(intake_area.zip(*members), "compression_ratio", entry=None, limits=BOMB_LIMITS)
    assert intake_area.dest_bytes() == 0


def test_zip_bomb_with_lying_sizes_stops_at_the_declared_size(archive_factory: Any, intake_area: Any) -> None:
    data = bytes(16 << 20)
    member = archive_factory.ZipMember(
        "bomb.bin", data, method=DEFLATED, file_size=1000, crc=zlib.crc32(data[:1000])
    )
    intake_area.reject(intake_area.zip(member), "size_mismatch", entry="bomb.bin", limits=BOMB_LIMITS)
    assert intake_area.dest_bytes() <= 1000


def test_gzip_bomb_is_stopped_while_streaming(intake_area: Any) -> None:
    size = 64 << 20
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=9) as archive:
        info = tarfile.TarInfo("zeros.bin")
        info.size = size
        archive.addfile(info, Zeros(size))
    source = intake_area.source("bomb.tgz", buffer.getvalue())
    compressed = source.stat().st_size
    assert size > compressed * BOMB_LIMITS.max_ratio  # it is a bomb, and no other limit catches it
    intake_area.reject(source, "compression_ratio", entry=None, limits=BOMB_LIMITS)
    assert 0 < intake_area.dest_bytes() <= compressed * BOMB_LIMITS.max_ratio


def test_huge_tar_headers_are_refused_before_memory_fills(archive_factory: Any, intake_area: Any) -> None:
    info, data = archive_factory.tar_member("a.js", b"1")
    info.pax_headers = {"comment": "x" * (4 << 20)}
    source = intake_area.tar((info, data))
    error = intake_area.reject(source, "malformed", entry=None)
    assert "tar headers" in error.detail


def test_truncated_tar_is_malformed(archive_factory: Any, intake_area: Any) -> None:
    data = archive_factory.craft_tar([archive_factory.tar_member("a.js", b"x" * 5000)])
    intake_area.reject(intake_area.source("cut.tar", data[:2048]), "malformed", entry=None)
