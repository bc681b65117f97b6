"""One test (at least) per intake rule, on archive_factory built in the test.

Fixtures ``archive_factory`` (builders) and ``intake_area`` (scratch root + empty dest, with a
``reject`` helper that also proves nothing outside dest changed) come from
conftest.py.
"""

from __future__ import annotations

import bz2
import io
import itertools
import os
import socket
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from mpaas.errors import BadRequest
from mpaas.packages.errors import PackageError, UnsafeArchive, UnsupportedArchive
from mpaas.packages.intake.unpack import IntakeLimits, detect_format, unpack
from mpaas.packages.manifest import manifest_of_tree

DEFLATED, BZIP2 = 8, 12
_serial = itertools.count()
SMALL = IntakeLimits(max_entries=3, max_file_bytes=10, max_total_bytes=25, max_path_bytes=64, max_depth=3)


def zip_of(archive_factory: Any, intake_area: Any, *members: Any, **kwargs: Any) -> Path:
    return intake_area.source(f"up{next(_serial)}.zip", archive_factory.craft_zip(members, **kwargs))


def tar_of(archive_factory: Any, intake_area: Any, *members: Any, gz: bool = False, **kwargs: Any) -> Path:
    data = archive_factory.craft_tar(members, gz=gz, **kwargs)
    return intake_area.source(f"up{next(_serial)}.tgz" if gz else f"up{next(_serial)}.tar", data)


def files_of(archive_factory: Any, intake_area: Any, fmt: str, names: list[str], data: bytes = b"x") -> Path:
    """The same regular files as a zip, a tar.gz or a directory."""
    if fmt == "zip":
        return zip_of(
            archive_factory,
            intake_area,
            *(archive_factory.ZipMember(n, data, method=DEFLATED) for n in names),
        )
    if fmt == "tar.gz":
        return tar_of(
            archive_factory, intake_area, *(archive_factory.tar_member(n, data) for n in names), gz=True
        )
    root = intake_area.tree()
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


# --- format detection ---------------------------------------------------------------------------


def test_detect_format_uses_content_not_extension(archive_factory: Any, intake_area: Any) -> None:
    zipped = intake_area.source("a.tar.gz", archive_factory.craft_zip([archive_factory.ZipMember("a", b"1")]))
    gzipped = intake_area.source(
        "b.zip", archive_factory.craft_tar([archive_factory.tar_member("a", b"1")], gz=True)
    )
    plain = intake_area.source("c.zip", archive_factory.craft_tar([archive_factory.tar_member("a", b"1")]))
    empty_zip = intake_area.source("d.bin", archive_factory.craft_zip([]))
    assert [detect_format(p) for p in (zipped, gzipped, plain, empty_zip, intake_area.root)] == [
        "zip",
        "tar.gz",
        "tar",
        "zip",
        "dir",
    ]


@pytest.mark.parametrize(
    "data",
    [b"", b"hello world", b"\x1f\x8b\x08" + b"\0" * 40, zlib.compress(b"x"), bz2.compress(b"x" * 600)],
    ids=["empty", "text", "corrupt-gzip", "zlib", "bzip2"],
)
def test_unknown_content_is_unsupported(intake_area: Any, data: bytes) -> None:
    with pytest.raises(UnsupportedArchive) as caught:
        unpack(intake_area.source("x.zip", data), intake_area.dest)
    assert caught.value.code == "unsupported_archive"
    assert caught.value.status == 400


def test_gzip_of_something_else_is_unsupported(intake_area: Any) -> None:
    import gzip

    with pytest.raises(UnsupportedArchive, match="not a tar"):
        detect_format(intake_area.source("x.tgz", gzip.compress(b"just text" * 100)))


def test_error_shape(archive_factory: Any, intake_area: Any) -> None:
    error = intake_area.reject(
        zip_of(archive_factory, intake_area, archive_factory.ZipMember("a/../b.js", b"1")),
        "path_traversal",
        entry="a/../b.js",
    )
    assert str(error) == "entry 'a/../b.js' rejected: path_traversal ('..' component)"
    assert error.code == "unsafe_archive" and error.status == 400
    assert isinstance(error, PackageError) and isinstance(error, BadRequest)
    assert error.to_dict() == {"error": {"code": "unsafe_archive", "message": str(error)}}


# --- names ----------------------------------------------------------------------------------------

NAME_CASES = [
    ("a/../b.js", "path_traversal"),
    ("../canary.js", "path_traversal"),
    ("a/../../canary.js", "path_traversal"),
    ("a\\b.js", "backslash"),
    ("..\\canary.js", "backslash"),
    ("C:/x.js", "drive_letter"),
    ("c:x.js", "drive_letter"),
    ("a\x00.js", "control_character"),
    ("a\x1f.js", "control_character"),
    ("a\n.js", "control_character"),
    ("a\x7f.js", "control_character"),
    ("a\u0085.js", "control_character"),
    ("a\u009b.js", "control_character"),
    ("a//b.js", "empty_component"),
    ("a/./b.js", "dot_component"),
]


@pytest.mark.parametrize(("name", "rule"), NAME_CASES, ids=[r + ":" + repr(n) for n, r in NAME_CASES])
def test_zip_name_rules(archive_factory: Any, intake_area: Any, name: str, rule: str) -> None:
    intake_area.reject(
        zip_of(archive_factory, intake_area, archive_factory.ZipMember(name, b"evil")), rule, entry=name
    )


@pytest.mark.parametrize(
    ("name", "rule"),
    [case for case in NAME_CASES if "\x00" not in case[0]],  # a tar header cannot hold NUL
    ids=[r + ":" + repr(n) for n, r in NAME_CASES if "\x00" not in n],
)
def test_tar_name_rules(archive_factory: Any, intake_area: Any, name: str, rule: str) -> None:
    intake_area.reject(
        tar_of(archive_factory, intake_area, archive_factory.tar_member(name, b"evil"), gz=True),
        rule,
        entry=name,
    )


def test_absolute_path(archive_factory: Any, intake_area: Any) -> None:
    target = str(intake_area.root / "canary.js")
    intake_area.reject(
        zip_of(archive_factory, intake_area, archive_factory.ZipMember(target, b"evil")),
        "absolute_path",
        entry=target,
    )
    intake_area.reject(
        tar_of(archive_factory, intake_area, archive_factory.tar_member(target, b"evil")),
        "absolute_path",
        entry=target,
    )


def test_tar_root_directory_slash_is_absolute(archive_factory: Any, intake_area: Any) -> None:
    # tarfile strips trailing slashes of directories, so "/" arrives as "".
    intake_area.reject(
        tar_of(archive_factory, intake_area, archive_factory.tar_member("/", kind=tarfile.DIRTYPE)),
        "empty_component",
        entry="",
    )


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("a\\b.js", "backslash"),
        ("C:", "drive_letter"),
        ("a\x01.js", "control_character"),
        ("x\u0080", "control_character"),
    ],
)
def test_directory_source_name_rules(intake_area: Any, name: str, rule: str) -> None:
    root = intake_area.tree()
    (root / name).write_bytes(b"1")
    intake_area.reject(root, rule, entry=name)


def test_trailing_slash_on_a_file(archive_factory: Any, intake_area: Any) -> None:
    sources = {
        "x.js/": zip_of(
            archive_factory, intake_area, archive_factory.ZipMember("x.js/", b"data")
        ),  # a "directory" with content
        "y/": zip_of(
            archive_factory, intake_area, archive_factory.ZipMember("y/", b"", unix_mode=0o100644)
        ),  # says regular file
        "z.js/": tar_of(archive_factory, intake_area, archive_factory.tar_member("z.js/", b"data")),
    }
    for name, source in sources.items():
        error = intake_area.reject(source, "empty_component", entry=name)
        assert error.detail == "trailing '/' on a file"


def test_invalid_encoding(archive_factory: Any, intake_area: Any) -> None:
    intake_area.reject(
        zip_of(archive_factory, intake_area, archive_factory.ZipMember(b"\xff.js", b"1")),
        "invalid_encoding",
        entry="\ufffd.js",
    )
    tarred = tar_of(
        archive_factory, intake_area, archive_factory.tar_member("\udcff.js", b"1"), fmt=tarfile.USTAR_FORMAT
    )
    intake_area.reject(tarred, "invalid_encoding", entry="\udcff.js")
    root = intake_area.tree()
    (root / "ok").mkdir()
    fd = os.open(os.fsencode(root / "ok") + b"/\xfe.js", os.O_WRONLY | os.O_CREAT, 0o644)
    os.close(fd)
    intake_area.reject(root, "invalid_encoding", entry="ok/\udcfe.js")


def test_legacy_cp437_names_are_decoded(archive_factory: Any, intake_area: Any) -> None:
    member = archive_factory.ZipMember(b"caf\x82.js", b"1", flags=0)  # 0x82 is "é" in code page 437
    manifest = unpack(zip_of(archive_factory, intake_area, member), intake_area.dest)
    assert [f.path for f in manifest.files] == ["café.js"]


def test_path_too_long(archive_factory: Any, intake_area: Any) -> None:
    long_name = "d/" * 31 + "abc"  # 65 bytes
    intake_area.reject(
        files_of(archive_factory, intake_area, "zip", [long_name]),
        "path_too_long",
        entry=long_name,
        limits=SMALL,
    )
    component = "x" * 256
    intake_area.reject(
        files_of(archive_factory, intake_area, "tar.gz", [component]), "path_too_long", entry=component
    )


@pytest.mark.parametrize("fmt", ["zip", "tar.gz", "dir"])
def test_too_deep(archive_factory: Any, intake_area: Any, fmt: str) -> None:
    source = files_of(archive_factory, intake_area, fmt, ["a/b/c.js", "a/b/c/d.js"])
    intake_area.reject(source, "too_deep", entry="a/b/c/d.js", limits=replace(SMALL, max_entries=100))


def test_leading_dot_slash_is_dropped(archive_factory: Any, intake_area: Any) -> None:
    members = [
        archive_factory.tar_member(".", kind=tarfile.DIRTYPE),
        archive_factory.tar_member("./a", kind=tarfile.DIRTYPE),
        archive_factory.tar_member("./a/x.js", b"x"),
    ]
    manifest = unpack(tar_of(archive_factory, intake_area, *members, gz=True), intake_area.dest)
    assert [f.path for f in manifest.files] == ["a/x.js"]


# --- entry types ----------------------------------------------------------------------------------


def test_symlink(archive_factory: Any, intake_area: Any) -> None:
    outside = str(intake_area.root / "canary.js")
    link = archive_factory.ZipMember("link.js", outside.encode(), unix_mode=0o120777)
    intake_area.reject(zip_of(archive_factory, intake_area, link), "symlink", entry="link.js")
    member = archive_factory.tar_member("link.js", kind=tarfile.SYMTYPE, linkname=outside)
    intake_area.reject(tar_of(archive_factory, intake_area, member), "symlink", entry="link.js")


def test_symlink_in_directory_source_is_not_followed(intake_area: Any) -> None:
    secret = intake_area.root / "secret"
    secret.mkdir()
    (secret / "key.pem").write_bytes(b"secret")
    root = intake_area.tree()
    (root / "ok.js").write_bytes(b"1")
    (root / "leak").symlink_to(secret)
    intake_area.reject(root, "symlink", entry="leak")
    assert not (intake_area.dest / "leak").exists()


def test_hardlink(archive_factory: Any, intake_area: Any) -> None:
    members = [
        archive_factory.tar_member("a.js", b"1"),
        archive_factory.tar_member("b.js", kind=tarfile.LNKTYPE, linkname="/etc/passwd"),
    ]
    intake_area.reject(tar_of(archive_factory, intake_area, *members), "hardlink", entry="b.js")


@pytest.mark.parametrize(
    ("kind", "detail"),
    [
        (tarfile.CHRTYPE, "character device"),
        (tarfile.BLKTYPE, "block device"),
        (tarfile.FIFOTYPE, "fifo"),
        (b"V", "tar type b'V'"),
    ],
)
def test_tar_special_members(archive_factory: Any, intake_area: Any, kind: bytes, detail: str) -> None:
    source = tar_of(archive_factory, intake_area, archive_factory.tar_member("dev", kind=kind))
    assert intake_area.reject(source, "special_file", entry="dev").detail == detail


@pytest.mark.parametrize("mode", [stat.S_IFIFO | 0o644, stat.S_IFCHR | 0o644, stat.S_IFSOCK | 0o644])
def test_zip_special_members(archive_factory: Any, intake_area: Any, mode: int) -> None:
    intake_area.reject(
        zip_of(archive_factory, intake_area, archive_factory.ZipMember("dev", unix_mode=mode)),
        "special_file",
        entry="dev",
    )


def test_directory_source_specials(intake_area: Any) -> None:
    root = intake_area.tree()
    os.mkfifo(root / "pipe")
    intake_area.reject(root, "special_file", entry="pipe")
    os.unlink(root / "pipe")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(root / "sock"))
        intake_area.reject(root, "special_file", entry="sock")


def test_sparse_tar_member(archive_factory: Any, intake_area: Any) -> None:
    info, _ = archive_factory.tar_member("sparse.bin", kind=tarfile.GNUTYPE_SPARSE)
    intake_area.reject(
        tar_of(archive_factory, intake_area, (info, b""), fmt=tarfile.GNU_FORMAT),
        "sparse_file",
        entry="sparse.bin",
    )


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
    source = zip_of(
        archive_factory, intake_area, archive_factory.ZipMember("secret.js", b"ciphertext", **member)
    )
    intake_area.reject(source, "encrypted", entry="secret.js")


@pytest.mark.parametrize("method", [9, 14, 95])  # Deflate64, LZMA, XZ
def test_unsupported_compression(archive_factory: Any, intake_area: Any, method: int) -> None:
    source = zip_of(archive_factory, intake_area, archive_factory.ZipMember("a.js", b"data", method=method))
    intake_area.reject(source, "unsupported_compression", entry="a.js")


@pytest.mark.parametrize("method", [0, DEFLATED, BZIP2])
def test_crc_mismatch(archive_factory: Any, intake_area: Any, method: int) -> None:
    member = archive_factory.ZipMember("a.js", b"payload", method=method, crc=zlib.crc32(b"other"))
    intake_area.reject(zip_of(archive_factory, intake_area, member), "crc_mismatch", entry="a.js")


def test_size_mismatch_declared_larger(archive_factory: Any, intake_area: Any) -> None:
    member = archive_factory.ZipMember("a.js", b"payload", method=DEFLATED, file_size=8)
    intake_area.reject(zip_of(archive_factory, intake_area, member), "size_mismatch", entry="a.js")


def test_size_mismatch_prefix_with_matching_crc(archive_factory: Any, intake_area: Any) -> None:
    """The attack zipfile accepts: declared size and CRC describe only a prefix."""
    data = b"console.log('safe');" + b"/*hidden*/ stealCookies();"
    member = archive_factory.ZipMember("a.js", data, method=DEFLATED, file_size=20, crc=zlib.crc32(data[:20]))
    source = zip_of(archive_factory, intake_area, member)
    with zipfile.ZipFile(source) as lenient:
        assert lenient.read("a.js") == data[:20]
    intake_area.reject(source, "size_mismatch", entry="a.js")


def test_stored_size_mismatch(archive_factory: Any, intake_area: Any) -> None:
    member = archive_factory.ZipMember("a.js", b"0123456789", file_size=4, crc=zlib.crc32(b"0123"))
    intake_area.reject(zip_of(archive_factory, intake_area, member), "size_mismatch", entry="a.js")


def test_overlapping_entries_one_header_twice(archive_factory: Any, intake_area: Any) -> None:
    one = archive_factory.ZipMember("a.js", b"same bytes")
    two = archive_factory.ZipMember("b.js", b"same bytes")
    source = zip_of(archive_factory, intake_area, one, central=[(one, 0), (two, 0)])
    error = intake_area.reject(source, "overlapping_entries", entry="b.js")
    assert error.detail == "same local header as 'a.js'"


def test_overlapping_entries_nested_ranges(archive_factory: Any, intake_area: Any) -> None:
    inner = archive_factory.ZipMember("inner.js", b"payload")
    outer = archive_factory.ZipMember("outer.bin", inner.local_record())
    source = zip_of(archive_factory, intake_area, outer, central=[(outer, 0), (inner, outer.data_offset(0))])
    intake_area.reject(source, "overlapping_entries", entry="inner.js")


def test_overlapping_entry_into_central_directory(archive_factory: Any, intake_area: Any) -> None:
    member = archive_factory.ZipMember("a.js", b"abc", compress_size=50, file_size=50)
    intake_area.reject(zip_of(archive_factory, intake_area, member), "overlapping_entries", entry="a.js")


def test_local_header_name_must_match(archive_factory: Any, intake_area: Any) -> None:
    member = archive_factory.ZipMember("safe.js", b"1", local_name=b"../evil.js")
    intake_area.reject(zip_of(archive_factory, intake_area, member), "malformed", entry="safe.js")


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
    error = intake_area.reject(zip_of(archive_factory, intake_area, member), "malformed", entry="a.js")
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
    error = intake_area.reject(zip_of(archive_factory, intake_area, member), "malformed", entry="a.js")
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
    manifest = unpack(zip_of(archive_factory, intake_area, member, zip64=True), intake_area.dest)
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


# --- names that collide -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second", "detail"),
    [
        ("a.js", "a.js", "exact duplicate"),
        ("caf\u00e9.js", "cafe\u0301.js", "same as 'café.js' after NFC"),
        ("Index.html", "index.html", "same as 'Index.html' after NFC+casefold"),
        ("STRASSE.js", "straße.js", "same as 'STRASSE.js' after NFC+casefold"),
        ("A/x.js", "a/y.js", "same as 'A/x.js' after NFC+casefold"),
    ],
)
@pytest.mark.parametrize("fmt", ["zip", "tar.gz"])
def test_duplicate_names(
    archive_factory: Any, intake_area: Any, fmt: str, first: str, second: str, detail: str
) -> None:
    if fmt == "zip":
        source = zip_of(
            archive_factory,
            intake_area,
            archive_factory.ZipMember(first, b"1"),
            archive_factory.ZipMember(second, b"2"),
        )
    else:
        source = tar_of(
            archive_factory,
            intake_area,
            archive_factory.tar_member(first, b"1"),
            archive_factory.tar_member(second, b"2"),
            gz=True,
        )
    error = intake_area.reject(source, "duplicate_name", entry=second)
    assert error.detail == detail


def test_duplicate_names_in_directory_source(intake_area: Any) -> None:
    root = intake_area.tree()
    (root / "Logo.png").write_bytes(b"1")
    (root / "logo.png").write_bytes(b"2")
    error = intake_area.reject(root, "duplicate_name", entry="logo.png")
    assert error.detail.endswith("after NFC+casefold")


def test_repeated_directory_entries(archive_factory: Any, intake_area: Any) -> None:
    dirs = [
        archive_factory.ZipMember("d/", unix_mode=0o40755),
        archive_factory.ZipMember("d/", unix_mode=0o40755),
    ]
    intake_area.reject(zip_of(archive_factory, intake_area, *dirs), "duplicate_name", entry="d/")
    # an explicit directory after a file inside it is fine
    ok = [archive_factory.ZipMember("e/x.js", b"1"), archive_factory.ZipMember("e/", unix_mode=0o40755)]
    assert unpack(zip_of(archive_factory, intake_area, *ok), intake_area.dest).file_count == 1


@pytest.mark.parametrize(
    "names",
    [["a", "a/b.js"], ["a/b.js", "a"], ["x/A", "x/a/b.js"]],
    ids=["file-first", "dir-first", "casefold"],
)
@pytest.mark.parametrize("fmt", ["zip", "tar.gz"])
def test_file_dir_conflict(archive_factory: Any, intake_area: Any, fmt: str, names: list[str]) -> None:
    intake_area.reject(
        files_of(archive_factory, intake_area, fmt, names), "file_dir_conflict", entry=names[1]
    )


def test_file_dir_conflict_with_directory_entry(archive_factory: Any, intake_area: Any) -> None:
    members = [archive_factory.tar_member("a", b"1"), archive_factory.tar_member("a", kind=tarfile.DIRTYPE)]
    intake_area.reject(tar_of(archive_factory, intake_area, *members), "file_dir_conflict", entry="a")


# --- limits -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["zip", "tar.gz", "dir"])
def test_too_many_entries(archive_factory: Any, intake_area: Any, fmt: str) -> None:
    source = files_of(archive_factory, intake_area, fmt, ["a", "b", "c", "d"])
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
    intake_area.reject(
        tar_of(archive_factory, intake_area, *members), "too_many_entries", entry=None, limits=SMALL
    )


@pytest.mark.parametrize("fmt", ["zip", "tar.gz", "dir"])
def test_file_too_large(archive_factory: Any, intake_area: Any, fmt: str) -> None:
    source = files_of(archive_factory, intake_area, fmt, ["big.bin"], data=b"x" * 11)
    intake_area.reject(source, "file_too_large", entry="big.bin", limits=SMALL)
    assert intake_area.dest_bytes() == 0


@pytest.mark.parametrize("fmt", ["zip", "tar.gz", "dir"])
def test_declared_size_is_refused_before_any_write(archive_factory: Any, intake_area: Any, fmt: str) -> None:
    limits = IntakeLimits(max_file_bytes=100_000)
    source = files_of(archive_factory, intake_area, fmt, ["big.bin"], data=os.urandom(300_000))
    intake_area.reject(source, "file_too_large", entry="big.bin", limits=limits)
    assert list(intake_area.dest.iterdir()) == []


@pytest.mark.parametrize("fmt", ["zip", "tar.gz", "dir"])
def test_total_too_large(archive_factory: Any, intake_area: Any, fmt: str) -> None:
    source = files_of(archive_factory, intake_area, fmt, ["a", "b", "c"], data=b"x" * 9)
    intake_area.reject(source, "total_too_large", entry=None if fmt == "zip" else "c", limits=SMALL)
    assert intake_area.dest_bytes() <= SMALL.max_total_bytes


def test_limits_hold_when_the_file_grows_while_streaming(archive_factory: Any, intake_area: Any) -> None:
    """Declared sizes are a pre-check only; the writer counts real bytes."""
    data = b"x" * 11
    member = archive_factory.ZipMember("a.js", data, file_size=10, crc=zlib.crc32(data[:10]))
    intake_area.reject(
        zip_of(archive_factory, intake_area, member), "size_mismatch", entry="a.js", limits=SMALL
    )
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
    source = zip_of(
        archive_factory, intake_area, archive_factory.ZipMember("bomb.bin", data, method=DEFLATED)
    )
    error = intake_area.reject(source, "compression_ratio", entry="bomb.bin", limits=BOMB_LIMITS)
    assert "limit 100:1" in error.detail
    assert intake_area.dest_bytes() == 0


def test_zip_bomb_rejected_by_whole_archive_ratio(archive_factory: Any, intake_area: Any) -> None:
    """Each entry stays under ratio_min_bytes; together they do not."""
    members = [archive_factory.ZipMember(f"part{i}.bin", bytes(60 << 10), method=DEFLATED) for i in range(8)]
    intake_area.reject(
        zip_of(archive_factory, intake_area, *members), "compression_ratio", entry=None, limits=BOMB_LIMITS
    )
    assert intake_area.dest_bytes() == 0


def test_zip_bomb_with_lying_sizes_stops_at_the_declared_size(archive_factory: Any, intake_area: Any) -> None:
    data = bytes(16 << 20)
    member = archive_factory.ZipMember(
        "bomb.bin", data, method=DEFLATED, file_size=1000, crc=zlib.crc32(data[:1000])
    )
    intake_area.reject(
        zip_of(archive_factory, intake_area, member), "size_mismatch", entry="bomb.bin", limits=BOMB_LIMITS
    )
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
    source = tar_of(archive_factory, intake_area, (info, data))
    error = intake_area.reject(source, "malformed", entry=None)
    assert "tar headers" in error.detail


def test_truncated_tar_is_malformed(archive_factory: Any, intake_area: Any) -> None:
    data = archive_factory.craft_tar([archive_factory.tar_member("a.js", b"x" * 5000)])
    intake_area.reject(intake_area.source("cut.tar", data[:2048]), "malformed", entry=None)


# --- what is written ------------------------------------------------------------------------------------


@pytest.fixture
def strict_umask() -> Iterator[None]:
    """A umask that would turn 0644/0755 into 0600/0700 unless intake sets modes itself."""
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.mark.usefixtures("strict_umask")
def test_modes_are_fixed_not_copied(archive_factory: Any, intake_area: Any) -> None:
    members = [
        archive_factory.ZipMember("d/", unix_mode=0o40700),
        archive_factory.ZipMember("d/run.sh", b"#!/bin/sh", unix_mode=0o104777),
        archive_factory.ZipMember("ro.js", b"1", unix_mode=0o100400),
    ]
    unpack(zip_of(archive_factory, intake_area, *members), intake_area.dest)
    modes = {p.name: stat.S_IMODE(p.lstat().st_mode) for p in intake_area.dest.rglob("*")}
    assert modes == {"d": 0o755, "run.sh": 0o644, "ro.js": 0o644}

    second = intake_area.root / "dest2"
    second.mkdir()
    tarred = [
        archive_factory.tar_member("t", kind=tarfile.DIRTYPE, mode=0o700),
        archive_factory.tar_member("t/x", b"1", mode=0o6777),
    ]
    unpack(tar_of(archive_factory, intake_area, *tarred), second)
    assert {p.name: stat.S_IMODE(p.lstat().st_mode) for p in second.rglob("*")} == {"t": 0o755, "x": 0o644}


def test_manifest_matches_the_written_tree(archive_factory: Any, intake_area: Any) -> None:
    members = [
        archive_factory.ZipMember("index.html", b"<html>", method=DEFLATED),
        archive_factory.ZipMember("js/app.js", os.urandom(5000), method=BZIP2),
        archive_factory.ZipMember("empty/", unix_mode=0o40755),
        archive_factory.ZipMember("zero.txt", b""),
    ]
    manifest = unpack(zip_of(archive_factory, intake_area, *members), intake_area.dest)
    assert manifest == manifest_of_tree(intake_area.dest)
    assert (intake_area.dest / "empty").is_dir()
    assert [f.path for f in manifest.files] == ["index.html", "js/app.js", "zero.txt"]


def test_destination_must_be_empty(archive_factory: Any, intake_area: Any) -> None:
    (intake_area.dest / "stale").write_bytes(b"1")
    with pytest.raises(ValueError, match="not empty"):
        unpack(zip_of(archive_factory, intake_area, archive_factory.ZipMember("a", b"1")), intake_area.dest)


def test_destination_inside_directory_source_is_refused(intake_area: Any) -> None:
    root = intake_area.tree()
    inner = root / "out"
    inner.mkdir()
    with pytest.raises(ValueError, match="overlaps"):
        unpack(root, inner)


def test_unsupported_archive_is_a_package_error(intake_area: Any) -> None:
    with pytest.raises(PackageError):
        unpack(intake_area.source("x", b"nope"), intake_area.dest)


def test_unsafe_archive_quotes_control_characters(intake_area: Any) -> None:
    error = UnsafeArchive("control_character", entry="a\nforged log line", detail="U+000A")
    assert "\n" not in str(error)
    assert error.entry == "a\nforged log line"
