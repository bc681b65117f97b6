"""Archive builders for the intake tests.

``craft_zip`` writes zip bytes by hand so a test can make the things zipfile
refuses to write (or silently repairs): lying sizes and CRCs, encrypted flags,
NUL in names, two central entries for one local header, overlapping data.
Exposed through the session-scoped ``archive_factory`` fixture (the test modules are
imported with ``--import-mode=importlib`` and cannot import this file).
"""

from __future__ import annotations

import bz2
import io
import itertools
import os
import struct
import tarfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mpaas.packages.errors import UnsafeArchive
from mpaas.packages.intake.unpack import IntakeLimits, unpack

STORED, DEFLATED, BZIP2 = 0, 8, 12
FLAG_UTF8 = 0x0800


@dataclass
class ZipMember:
    """One zip entry; every field a test may want to falsify is overridable."""

    name: str | bytes
    data: bytes = b""
    method: int = STORED
    flags: int = FLAG_UTF8
    unix_mode: int = 0o100644
    crc: int | None = None
    file_size: int | None = None
    compress_size: int | None = None
    payload: bytes | None = None
    local_name: bytes | None = None
    local_flags: int | None = None

    @property
    def raw_name(self) -> bytes:
        return self.name if isinstance(self.name, bytes) else self.name.encode("utf-8")

    @property
    def stored(self) -> bytes:
        if self.payload is not None:
            return self.payload
        if self.method == DEFLATED:
            packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
            return packer.compress(self.data) + packer.flush()
        if self.method == BZIP2:
            return bz2.compress(self.data)
        return self.data

    @property
    def declared(self) -> tuple[int, int, int]:
        """(crc, compressed size, uncompressed size) as written in the headers."""
        crc = zlib.crc32(self.data) if self.crc is None else self.crc
        csize = len(self.stored) if self.compress_size is None else self.compress_size
        usize = len(self.data) if self.file_size is None else self.file_size
        return crc, csize, usize

    def local_record(self) -> bytes:
        crc, csize, usize = self.declared
        name = self.raw_name if self.local_name is None else self.local_name
        flags = self.flags if self.local_flags is None else self.local_flags
        header = struct.pack(
            "<4sHHHHHIIIHH", b"PK\x03\x04", 20, flags, self.method, 0, 0x21, crc, csize, usize, len(name), 0
        )
        return header + name + self.stored

    def data_offset(self, header_offset: int) -> int:
        name = self.raw_name if self.local_name is None else self.local_name
        return header_offset + 30 + len(name)

    def central_record(self, offset: int, *, zip64: bool = False) -> bytes:
        crc, csize, usize = self.declared
        extra = b""
        if zip64:
            extra = struct.pack("<HHQQQ", 1, 24, usize, csize, offset)
            csize = usize = offset = 0xFFFFFFFF
        header = struct.pack(
            "<4sBBHHHHHIIIHHHHHII",
            b"PK\x01\x02",
            45 if zip64 else 20,
            3,  # made on Unix, so the high 16 bits of external_attr are st_mode
            45 if zip64 else 20,
            self.flags,
            self.method,
            0,
            0x21,
            crc,
            csize,
            usize,
            len(self.raw_name),
            len(extra),
            0,
            0,
            0,
            (self.unix_mode << 16) & 0xFFFFFFFF,
            offset,
        )
        return header + self.raw_name + extra


def craft_zip(
    members: Sequence[ZipMember],
    *,
    central: Sequence[tuple[ZipMember, int]] | None = None,
    zip64: bool = False,
) -> bytes:
    """Local records for ``members`` in order, then a central directory.

    ``central`` overrides the directory as (member, local header offset) pairs, so
    a test can point entries anywhere.
    """
    body = b""
    refs: list[tuple[ZipMember, int]] = []
    for member in members:
        refs.append((member, len(body)))
        body += member.local_record()
    directory = b"".join(m.central_record(offset, zip64=zip64) for m, offset in (central or refs))
    count = len(central or refs)
    cd_offset, cd_size = len(body), len(directory)
    tail = b""
    if zip64:
        eocd64_offset = cd_offset + cd_size
        tail += struct.pack("<4sQHHIIQQQQ", b"PK\x06\x06", 44, 45, 45, 0, 0, count, count, cd_size, cd_offset)
        tail += struct.pack("<4sIQI", b"PK\x06\x07", 0, eocd64_offset, 1)
        count, cd_size, cd_offset = 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF
    tail += struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, count, count, cd_size, cd_offset, 0)
    return body + directory + tail


def tar_member(
    name: str, data: bytes = b"", *, kind: bytes = tarfile.REGTYPE, linkname: str = "", mode: int = 0o644
) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.mode = mode
    info.size = len(data) if kind in (tarfile.REGTYPE, tarfile.AREGTYPE) else 0
    return info, data


def craft_tar(
    members: Sequence[tuple[tarfile.TarInfo, bytes]], *, gz: bool = False, fmt: int = tarfile.PAX_FORMAT
) -> bytes:
    """tarfile writes member names and types verbatim through ``addfile``."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz" if gz else "w", format=fmt) as archive:
        for info, data in members:
            archive.addfile(info, io.BytesIO(data) if info.size else None)
    return buffer.getvalue()


class ArchiveFactory:
    """Namespace handed to tests by the ``archive_factory`` fixture."""

    ZipMember = ZipMember
    craft_zip = staticmethod(craft_zip)
    tar_member = staticmethod(tar_member)
    craft_tar = staticmethod(craft_tar)


@dataclass
class IntakeArea:
    """A scratch root holding the sources (``in/``) and the empty ``dest/``.

    ``zip``, ``tar`` and ``files`` write a crafted source into ``in/``. ``reject`` checks
    the rule and entry of the rejection and that nothing in the root outside ``dest`` was
    created, changed or removed.
    """

    root: Path
    dest: Path
    _serial: Iterator[int] = field(default_factory=itertools.count, repr=False)

    def source(self, name: str, data: bytes) -> Path:
        path = self.root / "in" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    def tree(self, name: str = "tree") -> Path:
        path = self.root / "in" / name
        path.mkdir(parents=True)
        return path

    def zip(self, *members: ZipMember, **kwargs: Any) -> Path:
        """A source holding ``craft_zip(members, **kwargs)``."""
        return self.source(f"up{next(self._serial)}.zip", craft_zip(members, **kwargs))

    def tar(self, *members: tuple[tarfile.TarInfo, bytes], gz: bool = False, **kwargs: Any) -> Path:
        """A source holding ``craft_tar(members, gz=gz, **kwargs)``."""
        data = craft_tar(members, gz=gz, **kwargs)
        return self.source(f"up{next(self._serial)}.tgz" if gz else f"up{next(self._serial)}.tar", data)

    def files(self, fmt: str, names: list[str], data: bytes = b"x") -> Path:
        """The same regular files as a zip, a tar.gz or a directory."""
        if fmt == "zip":
            return self.zip(*(ZipMember(n, data, method=DEFLATED) for n in names))
        if fmt == "tar.gz":
            return self.tar(*(tar_member(n, data) for n in names), gz=True)
        root = self.tree()
        for name in names:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(data)
        return root

    def reject(
        self, source: Path, rule: str, *, entry: str | None, limits: IntakeLimits | None = None
    ) -> UnsafeArchive:
        before = self.outside_dest()
        with pytest.raises(UnsafeArchive) as caught:
            unpack(source, self.dest, limits or IntakeLimits())
        assert (caught.value.rule, caught.value.entry) == (rule, entry), str(caught.value)
        assert self.outside_dest() == before
        return caught.value

    def outside_dest(self) -> dict[str, tuple[int, int, int]]:
        found: dict[str, tuple[int, int, int]] = {}
        for dirpath, dirnames, filenames in os.walk(self.root):
            if Path(dirpath) == self.root and self.dest.name in dirnames:
                dirnames.remove(self.dest.name)
            for name in (*dirnames, *filenames):
                path = Path(dirpath, name)
                info = path.lstat()
                found[str(path)] = (info.st_mode, info.st_size, info.st_mtime_ns)
        return found

    def dest_bytes(self) -> int:
        return sum(p.lstat().st_size for p in self.dest.rglob("*") if p.is_file())


@pytest.fixture(scope="session")
def archive_factory() -> ArchiveFactory:
    return ArchiveFactory()


@pytest.fixture
def intake_area(tmp_path: Path) -> IntakeArea:
    dest = tmp_path / "dest"
    dest.mkdir()
    return IntakeArea(tmp_path, dest)
