"""tar and tar.gz intake, strictly streaming.

tarfile is opened in stream mode (``r|``) over our own gzip reader, so the bytes
it pulls are counted as they are decompressed: the tar.gz ratio check (tar bytes
vs compressed file size) and a cap on header/metadata bytes abort a gzip bomb as
soon as it crosses a limit, before it can fill the disk or memory (tarfile reads
a whole pax header into memory). Members are never extracted by tarfile; we copy
regular files ourselves and create directories ourselves.

Member types: regular files (incl. the rare "contiguous" type) and directories
are taken; symlinks, hard links, devices and fifos are rejected; GNU and pax
sparse files are rejected (``sparse_file``); unknown types are ``special_file``.
pax global headers (``git archive`` writes one) are consumed by tarfile and
their effect, e.g. a global ``path``, is validated on each member like any name.
Anything after the end-of-archive marker is ignored.
"""

from __future__ import annotations

import contextlib
import gzip
import tarfile
import zlib
from pathlib import Path
from typing import IO, cast

from mpaas.packages.errors import UnsafeArchive
from mpaas.packages.intake.rules import IntakeLimits, NameRegistry, Rule, check_ratio, split_entry_name
from mpaas.packages.intake.writer import Readable, TreeWriter, iter_chunks

READ_CHUNK = 1 << 16
BLOCK = tarfile.BLOCKSIZE

#: Header and pax-record bytes allowed for the archive, plus per member.
METADATA_BASE_BYTES = 1 << 20
METADATA_PER_MEMBER_BYTES = 16 << 10

_SPECIAL_TYPES = {
    tarfile.CHRTYPE: "character device",
    tarfile.BLKTYPE: "block device",
    tarfile.FIFOTYPE: "fifo",
}


class _MeteredStream:
    """The decompressed tar stream, counted and capped as tarfile reads it.

    ``credit`` is raised by each accepted regular file's (block-rounded) size;
    bytes beyond the credit are headers and padding and must stay small.
    """

    def __init__(self, inner: Readable, limits: IntakeLimits, compressed_size: int | None) -> None:
        self._inner = inner
        self._limits = limits
        self._compressed_size = compressed_size
        self.count = 0
        self.credit = 0
        self.members = 0

    def read(self, size: int = -1) -> bytes:
        data = self._inner.read(size if size >= 0 else READ_CHUNK)
        self.count += len(data)
        if self._compressed_size is not None:
            check_ratio(self.count, self._compressed_size, self._limits, entry=None)
        metadata = self.count - self.credit
        allowed = METADATA_BASE_BYTES + METADATA_PER_MEMBER_BYTES * (self.members + 1)
        if metadata > allowed:
            raise UnsafeArchive(Rule.MALFORMED, detail=f"over {allowed} bytes of tar headers")
        return data


def _reject_type(member: tarfile.TarInfo) -> None:
    name = member.name
    if member.issym():
        raise UnsafeArchive(Rule.SYMLINK, entry=name, detail=f"to {member.linkname!r}")
    if member.islnk():
        raise UnsafeArchive(Rule.HARDLINK, entry=name, detail=f"to {member.linkname!r}")
    if member.issparse():
        raise UnsafeArchive(Rule.SPARSE_FILE, entry=name)
    if not (member.isreg() or member.isdir()):
        kind = _SPECIAL_TYPES.get(member.type, f"tar type {member.type!r}")
        raise UnsafeArchive(Rule.SPECIAL_FILE, entry=name, detail=kind)


def _take_member(
    archive: tarfile.TarFile,
    member: tarfile.TarInfo,
    meter: _MeteredStream,
    writer: TreeWriter,
    registry: NameRegistry,
    limits: IntakeLimits,
) -> None:
    registry.count_entry()
    _reject_type(member)
    name = member.name
    parts = split_entry_name(name, is_dir=member.isdir(), limits=limits)
    registry.add(name, parts, is_dir=member.isdir())
    if member.isdir():
        writer.make_dir(parts)
        return
    writer.check_declared(name, member.size)
    meter.credit += -(-member.size // BLOCK) * BLOCK
    reader = archive.extractfile(member)
    if reader is None:  # pragma: no cover - isreg() members always have a reader
        raise UnsafeArchive(Rule.MALFORMED, entry=name, detail="unreadable member")
    with reader:
        written = writer.write_file(name, parts, iter_chunks(reader))
    if written.size != member.size:
        raise UnsafeArchive(Rule.SIZE_MISMATCH, entry=name, detail=f"{written.size} of {member.size} bytes")


def unpack_tar(
    source: Path, writer: TreeWriter, registry: NameRegistry, limits: IntakeLimits, *, gzipped: bool
) -> None:
    compressed_size = source.stat().st_size if gzipped else None
    with open(source, "rb") as raw, contextlib.ExitStack() as stack:
        inner: Readable = stack.enter_context(gzip.GzipFile(fileobj=raw, mode="rb")) if gzipped else raw
        meter = _MeteredStream(inner, limits, compressed_size)
        try:
            # tarfile only ever calls read() on a stream-mode fileobj.
            fileobj = cast("IO[bytes]", meter)
            with tarfile.open(
                fileobj=fileobj, mode="r|", encoding="utf-8", errors="surrogateescape"
            ) as archive:
                while (member := archive.next()) is not None:
                    meter.members += 1
                    _take_member(archive, member, meter, writer, registry, limits)
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise UnsafeArchive(Rule.MALFORMED, detail=f"{type(exc).__name__}: {exc}") from None
