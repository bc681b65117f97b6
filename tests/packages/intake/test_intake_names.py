"""Intake rules for entry names: traversal, separators, encodings, lengths, depth, and names that collide.

One test (at least) per rule. Fixtures ``archive_factory`` (builders) and ``intake_area``
(scratch root + empty dest, with ``zip``/``tar``/``files`` source builders and a ``reject``
helper that also proves nothing outside dest changed) come from tests/packages/conftest.py.
"""

from __future__ import annotations

import os
import tarfile
from dataclasses import replace
from typing import Any

import pytest

from mpaas.packages.intake.unpack import IntakeLimits, unpack

SMALL = IntakeLimits(max_entries=3, max_file_bytes=10, max_total_bytes=25, max_path_bytes=64, max_depth=3)


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
    intake_area.reject(intake_area.zip(archive_factory.ZipMember(name, b"evil")), rule, entry=name)


@pytest.mark.parametrize(
    ("name", "rule"),
    [case for case in NAME_CASES if "\x00" not in case[0]],  # a tar header cannot hold NUL
    ids=[r + ":" + repr(n) for n, r in NAME_CASES if "\x00" not in n],
)
def test_tar_name_rules(archive_factory: Any, intake_area: Any, name: str, rule: str) -> None:
    intake_area.reject(
        intake_area.tar(archive_factory.tar_member(name, b"evil"), gz=True),
        rule,
        entry=name,
    )


def test_absolute_path(archive_factory: Any, intake_area: Any) -> None:
    target = str(intake_area.root / "canary.js")
    intake_area.reject(
        intake_area.zip(archive_factory.ZipMember(target, b"evil")),
        "absolute_path",
        entry=target,
    )
    intake_area.reject(
        intake_area.tar(archive_factory.tar_member(target, b"evil")),
        "absolute_path",
        entry=target,
    )


def test_tar_root_directory_slash_is_absolute(archive_factory: Any, intake_area: Any) -> None:
    # tarfile strips trailing slashes of directories, so "/" arrives as "".
    intake_area.reject(
        intake_area.tar(archive_factory.tar_member("/", kind=tarfile.DIRTYPE)),
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
        "x.js/": intake_area.zip(archive_factory.ZipMember("x.js/", b"data")),  # a "directory" with content
        "y/": intake_area.zip(archive_factory.ZipMember("y/", b"", unix_mode=0o100644)),  # says regular file
        "z.js/": intake_area.tar(archive_factory.tar_member("z.js/", b"data")),
    }
    for name, source in sources.items():
        error = intake_area.reject(source, "empty_component", entry=name)
        assert error.detail == "trailing '/' on a file"


def test_invalid_encoding(archive_factory: Any, intake_area: Any) -> None:
    intake_area.reject(
        intake_area.zip(archive_factory.ZipMember(b"\xff.js", b"1")),
        "invalid_encoding",
        entry="\ufffd.js",
    )
    tarred = intake_area.tar(archive_factory.tar_member("\udcff.js", b"1"), fmt=tarfile.USTAR_FORMAT)
    intake_area.reject(tarred, "invalid_encoding", entry="\udcff.js")
    root = intake_area.tree()
    (root / "ok").mkdir()
    fd = os.open(os.fsencode(root / "ok") + b"/\xfe.js", os.O_WRONLY | os.O_CREAT, 0o644)
    os.close(fd)
    intake_area.reject(root, "invalid_encoding", entry="ok/\udcfe.js")


def test_legacy_cp437_names_are_decoded(archive_factory: Any, intake_area: Any) -> None:
    member = archive_factory.ZipMember(b"caf\x82.js", b"1", flags=0)  # 0x82 is "é" in code page 437
    manifest = unpack(intake_area.zip(member), intake_area.dest)
    assert [f.path for f in manifest.files] == ["café.js"]


def test_path_too_long(intake_area: Any) -> None:
    long_name = "d/" * 31 + "abc"  # 65 bytes
    intake_area.reject(
        intake_area.files("zip", [long_name]),
        "path_too_long",
        entry=long_name,
        limits=SMALL,
    )
    component = "x" * 256
    intake_area.reject(intake_area.files("tar.gz", [component]), "path_too_long", entry=component)


@pytest.mark.parametrize("fmt", ["zip", "tar.gz", "dir"])
def test_too_deep(intake_area: Any, fmt: str) -> None:
    source = intake_area.files(fmt, ["a/b/c.js", "a/b/c/d.js"])
    intake_area.reject(source, "too_deep", entry="a/b/c/d.js", limits=replace(SMALL, max_entries=100))


def test_leading_dot_slash_is_dropped(archive_factory: Any, intake_area: Any) -> None:
    members = [
        archive_factory.tar_member(".", kind=tarfile.DIRTYPE),
        archive_factory.tar_member("./a", kind=tarfile.DIRTYPE),
        archive_factory.tar_member("./a/x.js", b"x"),
    ]
    manifest = unpack(intake_area.tar(*members, gz=True), intake_area.dest)
    assert [f.path for f in manifest.files] == ["a/x.js"]


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
        source = intake_area.zip(
            archive_factory.ZipMember(first, b"1"),
            archive_factory.ZipMember(second, b"2"),
        )
    else:
        source = intake_area.tar(
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
    intake_area.reject(intake_area.zip(*dirs), "duplicate_name", entry="d/")
    # an explicit directory after a file inside it is fine
    ok = [archive_factory.ZipMember("e/x.js", b"1"), archive_factory.ZipMember("e/", unix_mode=0o40755)]
    assert unpack(intake_area.zip(*ok), intake_area.dest).file_count == 1


@pytest.mark.parametrize(
    "names",
    [["a", "a/b.js"], ["a/b.js", "a"], ["x/A", "x/a/b.js"]],
    ids=["file-first", "dir-first", "casefold"],
)
@pytest.mark.parametrize("fmt", ["zip", "tar.gz"])
def test_file_dir_conflict(intake_area: Any, fmt: str, names: list[str]) -> None:
    intake_area.reject(intake_area.files(fmt, names), "file_dir_conflict", entry=names[1])


def test_file_dir_conflict_with_directory_entry(archive_factory: Any, intake_area: Any) -> None:
    members = [archive_factory.tar_member("a", b"1"), archive_factory.tar_member("a", kind=tarfile.DIRTYPE)]
    intake_area.reject(intake_area.tar(*members), "file_dir_conflict", entry="a")
