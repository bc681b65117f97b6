"""Intake rules for entry types: symlinks, hard links, devices, fifos, sockets, sparse files.

One test (at least) per rule. Fixtures ``archive_factory`` (builders) and ``intake_area``
(scratch root + empty dest, with ``zip``/``tar``/``files`` source builders and a ``reject``
helper that also proves nothing outside dest changed) come from tests/packages/conftest.py.
"""

from __future__ import annotations

import os
import socket
import stat
import tarfile
from typing import Any

import pytest

# --- entry types ----------------------------------------------------------------------------------


def test_symlink(archive_factory: Any, intake_area: Any) -> None:
    outside = str(intake_area.root / "canary.js")
    link = archive_factory.ZipMember("link.js", outside.encode(), unix_mode=0o120777)
    intake_area.reject(intake_area.zip(link), "symlink", entry="link.js")
    member = archive_factory.tar_member("link.js", kind=tarfile.SYMTYPE, linkname=outside)
    intake_area.reject(intake_area.tar(member), "symlink", entry="link.js")


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
    intake_area.reject(intake_area.tar(*members), "hardlink", entry="b.js")


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
    source = intake_area.tar(archive_factory.tar_member("dev", kind=kind))
    assert intake_area.reject(source, "special_file", entry="dev").detail == detail


@pytest.mark.parametrize("mode", [stat.S_IFIFO | 0o644, stat.S_IFCHR | 0o644, stat.S_IFSOCK | 0o644])
def test_zip_special_members(archive_factory: Any, intake_area: Any, mode: int) -> None:
    intake_area.reject(
        intake_area.zip(archive_factory.ZipMember("dev", unix_mode=mode)),
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
        intake_area.tar((info, b""), fmt=tarfile.GNU_FORMAT),
        "sparse_file",
        entry="sparse.bin",
    )
