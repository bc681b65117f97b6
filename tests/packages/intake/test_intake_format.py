"""Intake rules: format detection, the error's shape, and what is written (modes, manifest, destination).

One test (at least) per rule. Fixtures ``archive_factory`` (builders) and ``intake_area``
(scratch root + empty dest, with ``zip``/``tar``/``files`` source builders and a ``reject``
helper that also proves nothing outside dest changed) come from tests/packages/conftest.py.
"""

from __future__ import annotations

import bz2
import os
import stat
import tarfile
import zlib
from collections.abc import Iterator
from typing import Any

import pytest

from mpaas.errors import BadRequest
from mpaas.packages.errors import PackageError, UnsafeArchive, UnsupportedArchive
from mpaas.packages.intake.unpack import detect_format, unpack
from mpaas.packages.manifest import manifest_of_tree

DEFLATED, BZIP2 = 8, 12


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
        intake_area.zip(archive_factory.ZipMember("a/../b.js", b"1")),
        "path_traversal",
        entry="a/../b.js",
    )
    assert str(error) == "entry 'a/../b.js' rejected: path_traversal ('..' component)"
    assert error.code == "unsafe_archive" and error.status == 400
    assert isinstance(error, PackageError) and isinstance(error, BadRequest)
    assert error.to_dict() == {"error": {"code": "unsafe_archive", "message": str(error)}}


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
    unpack(intake_area.zip(*members), intake_area.dest)
    modes = {p.name: stat.S_IMODE(p.lstat().st_mode) for p in intake_area.dest.rglob("*")}
    assert modes == {"d": 0o755, "run.sh": 0o644, "ro.js": 0o644}

    second = intake_area.root / "dest2"
    second.mkdir()
    tarred = [
        archive_factory.tar_member("t", kind=tarfile.DIRTYPE, mode=0o700),
        archive_factory.tar_member("t/x", b"1", mode=0o6777),
    ]
    unpack(intake_area.tar(*tarred), second)
    assert {p.name: stat.S_IMODE(p.lstat().st_mode) for p in second.rglob("*")} == {"t": 0o755, "x": 0o644}


def test_manifest_matches_the_written_tree(archive_factory: Any, intake_area: Any) -> None:
    members = [
        archive_factory.ZipMember("index.html", b"<html>", method=DEFLATED),
        archive_factory.ZipMember("js/app.js", os.urandom(5000), method=BZIP2),
        archive_factory.ZipMember("empty/", unix_mode=0o40755),
        archive_factory.ZipMember("zero.txt", b""),
    ]
    manifest = unpack(intake_area.zip(*members), intake_area.dest)
    assert manifest == manifest_of_tree(intake_area.dest)
    assert (intake_area.dest / "empty").is_dir()
    assert [f.path for f in manifest.files] == ["index.html", "js/app.js", "zero.txt"]


def test_destination_must_be_empty(archive_factory: Any, intake_area: Any) -> None:
    (intake_area.dest / "stale").write_bytes(b"1")
    with pytest.raises(ValueError, match="not empty"):
        unpack(intake_area.zip(archive_factory.ZipMember("a", b"1")), intake_area.dest)


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
