"""Intake rules for zip structure: encryption, methods, sizes and CRCs, overlaps, local headers, zip64.

One test (at least) per rule. Fixtures ``archive_factory`` (builders) and ``intake_area``
(scratch root + empty dest, with ``zip``/``tar``/``files`` source builders and a ``reject``
helper that also proves nothing outside dest changed) come from tests/packages/conftest.py.
"""

from __future__ import annotations

import bz2
import io
import zipfile
import zlib
from typing import Any

import pytest

from mpaas.packages.intake.unpack import unpack

DEFLATED, BZIP2 = 8, 12


# --- zip structure ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "member",
    [
        {"flags": 0x0801},  # traditional PKWARE encryption
        {"flags": 0x0841},  # strong encryption
        {"method": 99},  # WinZip AES
        {"local_flags": 0x0801},  # only the local header says so
    ],
    ids=["bit0", "strong", "aes", "local-bit0"],
)
def test_encrypted(archive_factory: Any, intake_area: Any, member: dict[str, int]) -> None:
    source = intake_area.zip(archive_factory.ZipMember("secret.js", b"ciphertext", **member))
    intake_area.reject(source, "encrypted", entry="secret.js")


@pytest.mark.parametrize("method", [9, 14, 95])  # Deflate64, LZMA, XZ
def test_unsupported_compression(archive_factory: Any, intake_area: Any, method: int) -> None:
    source = intake_area.zip(archive_factory.ZipMember("a.js", b"data", method=method))
    intake_area.reject(source, "unsupported_compression", entry="a.js")


@pytest.mark.parametrize("method", [0, DEFLATED, BZIP2])
def test_crc_mismatch(archive_factory: Any, intake_area: Any, method: int) -> None:
    member = archive_factory.ZipMember("a.js", b"payload", method=method, crc=zlib.crc32(b"other"))
    intake_area.reject(intake_area.zip(member), "crc_mismatch", entry="a.js")


def test_size_mismatch_declared_larger(archive_factory: Any, intake_area: Any) -> None:
    member = archive_factory.ZipMember("a.js", b"payload", method=DEFLATED, file_size=8)
    intake_area.reject(intake_area.zip(member), "size_mismatch", entry="a.js")


def test_size_mismatch_prefix_with_matching_crc(archive_factory: Any, intake_area: Any) -> None:
    """The attack zipfile accepts: declared size and CRC describe only a prefix."""
    data = b"console.log('safe');" + b"/*hidden*/ stealCookies();"
    member = archive_factory.ZipMember("a.js", data, method=DEFLATED, file_size=20, crc=zlib.crc32(data[:20]))
    source = intake_area.zip(member)
    with zipfile.ZipFile(source) as lenient:
        assert lenient.read("a.js") == data[:20]
    intake_area.reject(source, "size_mismatch", entry="a.js")


def test_stored_size_mismatch(archive_factory: Any, intake_area: Any) -> None:
    member = archive_factory.ZipMember("a.js", b"0123456789", file_size=4, crc=zlib.crc32(b"0123"))
    intake_area.reject(intake_area.zip(member), "size_mismatch", entry="a.js")


def test_overlapping_entries_one_header_twice(archive_factory: Any, intake_area: Any) -> None:
    one = archive_factory.ZipMember("a.js", b"same bytes")
    two = archive_factory.ZipMember("b.js", b"same bytes")
    source = intake_area.zip(one, central=[(one, 0), (two, 0)])
    error = intake_area.reject(source, "overlapping_entries", entry="b.js")
    assert error.detail == "same local header as 'a.js'"


def test_overlapping_entries_nested_ranges(archive_factory: Any, intake_area: Any) -> None:
    inner = archive_factory.ZipMember("inner.js", b"payload")
    outer = archive_factory.ZipMember("outer.bin", inner.local_record())
    source = intake_area.zip(outer, central=[(outer, 0), (inner, outer.data_offset(0))])
    intake_area.reject(source, "overlapping_entries", entry="inner.js")


def test_overlapping_entry_into_central_directory(archive_factory: Any, intake_area: Any) -> None:
    member = archive_factory.ZipMember("a.js", b"abc", compress_size=50, file_size=50)
    intake_area.reject(intake_area.zip(member), "overlapping_entries", entry="a.js")


def test_local_header_name_must_match(archive_factory: Any, intake_area: Any) -> None:
    member = archive_factory.ZipMember("safe.js", b"1", local_name=b"../evil.js")
    intake_area.reject(intake_area.zip(member), "malformed", entry="safe.js")


@pytest.mark.parametrize(
    "change",
    [
        {"payload": b"\xff\xfe not deflate"},
        {"payload": zlib.compressobj(9, zlib.DEFLATED, -15).compress(b"x" * 1000)},  # unflushed: truncated
        {"payload": zlib.compress(b"x")[2:-4] + b"junk"},  # bytes after the stream end
    ],
    ids=["garbage", "truncated", "trailing"],
)
def test_broken_deflate_is_malformed(
    archive_factory: Any, intake_area: Any, change: dict[str, bytes]
) -> None:
    member = archive_factory.ZipMember("a.js", b"x", method=DEFLATED, **change)
    error = intake_area.reject(intake_area.zip(member), "malformed", entry="a.js")
    assert "deflate" in error.detail


@pytest.mark.parametrize(
    ("payload", "detail"),
    [
        (bz2.compress(b"x" * 1000)[:-8], "bzip2 stream is truncated"),
        (bz2.compress(b"x" * 1000) + b"junk", "data after the end of the bzip2 stream"),
    ],
    ids=["truncated", "trailing"],
)
def test_broken_bzip2_is_malformed(
    archive_factory: Any, intake_area: Any, payload: bytes, detail: str
) -> None:
    member = archive_factory.ZipMember("a.js", b"x" * 1000, method=BZIP2, payload=payload)
    error = intake_area.reject(intake_area.zip(member), "malformed", entry="a.js")
    assert error.detail == detail


def test_local_header_method_must_match(archive_factory: Any, intake_area: Any) -> None:
    member = archive_factory.ZipMember("a.js", b"abc", method=DEFLATED)
    data = bytearray(archive_factory.craft_zip([member]))
    data[8:10] = (0).to_bytes(2, "little")  # the local header now claims "stored"
    error = intake_area.reject(intake_area.source("m.zip", bytes(data)), "malformed", entry="a.js")
    assert "method" in error.detail


@pytest.mark.parametrize("offset", [14, 18, 22], ids=["crc", "compressed-size", "size"])
def test_local_header_sizes_must_match(archive_factory: Any, intake_area: Any, offset: int) -> None:
    """A streaming unzip would read what the local header says; it must be what we checked."""
    data = bytearray(archive_factory.craft_zip([archive_factory.ZipMember("a.js", b"abc")]))
    data[offset] ^= 0x01
    error = intake_area.reject(intake_area.source("l.zip", bytes(data)), "malformed", entry="a.js")
    assert error.detail == "local header sizes or CRC differ from the central directory"


def test_zip_without_end_record(archive_factory: Any, intake_area: Any) -> None:
    data = archive_factory.craft_zip([archive_factory.ZipMember("a.js", b"1")])
    intake_area.reject(intake_area.source("x.zip", data[:-5]), "malformed", entry=None)


def test_zip64_and_data_descriptors_are_read(archive_factory: Any, intake_area: Any) -> None:
    member = archive_factory.ZipMember("a/b.js", b"hello" * 100, method=DEFLATED)
    manifest = unpack(intake_area.zip(member, zip64=True), intake_area.dest)
    assert (intake_area.dest / "a/b.js").read_bytes() == b"hello" * 100
    assert manifest.by_path()["a/b.js"].size == 500

    streamed = io.BytesIO()

    class Unseekable(io.RawIOBase):
        def writable(self) -> bool:
            return True

        def write(self, data: Any) -> int:
            return streamed.write(data)

    with zipfile.ZipFile(Unseekable(), "w", zipfile.ZIP_DEFLATED) as zf:  # forces data descriptors
        zf.writestr("c.js", b"streamed" * 50)
    with zipfile.ZipFile(io.BytesIO(streamed.getvalue())) as check:
        assert check.infolist()[0].flag_bits & 0x08
    second = intake_area.root / "dest2"
    second.mkdir()
    unpack(intake_area.source("dd.zip", streamed.getvalue()), second)
    assert (second / "c.js").read_bytes() == b"streamed" * 50
