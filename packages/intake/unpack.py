"""Safe intake: turn an uploaded directory, .zip, .tar or .tar.gz into a verified tree.

Every archive is treated as hostile. :func:`unpack` writes only inside ``dest``
(an existing, empty directory the caller owns, deletes on error and commits on
success), creates files 0644 and directories 0755 whatever the archive says, and
returns the :class:`~mpaas.packages.manifest.Manifest` of what it wrote, hashed
while writing. It is synchronous and does no I/O besides ``source`` and ``dest``.

A rejected upload raises :class:`~mpaas.packages.errors.UnsafeArchive` whose
``rule`` is one of:

==========================  ==================================================
``path_traversal``          a ``..`` component
``absolute_path``           a leading ``/``
``backslash``               a ``\\`` anywhere in a name
``drive_letter``            a name starting ``C:``
``control_character``       C0 (incl. NUL), DEL or C1 in a name
``invalid_encoding``        a name that is not valid UTF-8
``empty_component``         ``a//b``, an empty name, a trailing ``/`` on a file
``dot_component``           ``a/./b`` (one leading ``./`` is allowed and dropped)
``symlink``                 a symbolic link (zip unix mode, tar, directory)
``hardlink``                a tar hard link
``special_file``            a device, fifo, socket or unknown tar member type
``sparse_file``             a GNU or pax sparse tar member
``encrypted``               zip flag bit 0/6/13 or AES (method 99)
``duplicate_name``          equal names: exact, after NFC, or after NFC+casefold
``file_dir_conflict``       ``a`` is a file and also a directory (``a/b``)
``overlapping_entries``     zip entries sharing bytes, or one header used twice
``crc_mismatch``            zip data whose CRC-32 differs from the declared one
``size_mismatch``           zip data decompressing to other than its declared size
``unsupported_compression`` a zip method other than stored, deflate, bzip2
``too_many_entries``        more than ``max_entries`` entries (dirs included)
``file_too_large``          one file over ``max_file_bytes``
``total_too_large``         all files together over ``max_total_bytes``
``compression_ratio``       over ``max_ratio`` (zip: per entry and whole;
                            tar.gz: tar bytes vs compressed file size)
``path_too_long``           a name over ``max_path_bytes`` or a component > 255
``too_deep``                more than ``max_depth`` components
``malformed``               broken structure: bad headers, truncated streams,
                            zip local/central disagreement, oversized tar headers
==========================  ==================================================

:class:`~mpaas.packages.errors.UnsupportedArchive` means the format is not one
we read (decided by magic bytes, never by extension).

Directory sources are walked with ``lstat`` semantics through directory file
descriptors; only the source root itself may be a symlink (the caller chose it).
Hard-linked files in a directory source are copied like any file: the copy
cannot redirect a write, and the uploader could read the target anyway.
"""

from __future__ import annotations

import gzip
import os
import stat
import zlib
from pathlib import Path
from typing import Literal

from mpaas.packages.errors import UnsafeArchive, UnsupportedArchive
from mpaas.packages.intake.rules import IntakeLimits, NameRegistry, Rule, split_entry_name
from mpaas.packages.intake.tar_reader import unpack_tar
from mpaas.packages.intake.writer import TreeWriter, iter_chunks
from mpaas.packages.intake.zip_reader import unpack_zip
from mpaas.packages.manifest import Manifest

__all__ = ["IntakeLimits", "Rule", "detect_format", "unpack"]

Format = Literal["dir", "zip", "tar.gz", "tar"]

_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
_GZIP_MAGIC = b"\x1f\x8b"
_USTAR_OFFSET = 257
_USTAR_MAGIC = b"ustar"
_TAR_HEADER = 512


def _is_tar_header(block: bytes) -> bool:
    return (
        len(block) >= _TAR_HEADER and block[_USTAR_OFFSET : _USTAR_OFFSET + len(_USTAR_MAGIC)] == _USTAR_MAGIC
    )


def detect_format(source: Path) -> Format:
    """Identify an upload by its magic bytes; raise UnsupportedArchive otherwise.

    tar means POSIX ustar/pax or GNU tar ("ustar" at offset 257); pre-POSIX v7
    tars are not accepted. For gzip, the first decompressed block must be a tar
    header, so a gzip of anything else is unsupported.
    """
    info = os.stat(source)
    if stat.S_ISDIR(info.st_mode):
        return "dir"
    if not stat.S_ISREG(info.st_mode):
        raise UnsupportedArchive(f"{source.name} is neither a regular file nor a directory")
    with open(source, "rb") as fh:
        head = fh.read(_TAR_HEADER)
        if head[:4] in _ZIP_MAGICS:
            return "zip"
        if _is_tar_header(head):
            return "tar"
        if head[:2] == _GZIP_MAGIC:
            fh.seek(0)
            try:
                with gzip.GzipFile(fileobj=fh, mode="rb") as unzipped:
                    first_block = unzipped.read(_TAR_HEADER)  # bounded: at most 512 bytes out
            except (OSError, EOFError, zlib.error):
                raise UnsupportedArchive("corrupt gzip data") from None
            if _is_tar_header(first_block):
                return "tar.gz"
            raise UnsupportedArchive("gzip data that is not a tar archive")
    raise UnsupportedArchive("not a directory, zip, tar or tar.gz (by content)")


def unpack(source: Path, dest: Path, limits: IntakeLimits = IntakeLimits()) -> Manifest:
    """Check ``source`` against every intake rule and write it into empty ``dest``.

    On UnsafeArchive, ``dest`` may hold a partial tree (never more than the
    limits allow, never anything outside it); the caller deletes it.
    """
    kind = detect_format(source)
    if kind == "dir":
        _refuse_nested(source, dest)
    registry = NameRegistry(limits)
    with TreeWriter(dest, limits) as writer:
        if kind == "dir":
            _unpack_dir(source, writer, registry, limits)
        elif kind == "zip":
            unpack_zip(source, writer, registry, limits)
        else:
            unpack_tar(source, writer, registry, limits, gzipped=kind == "tar.gz")
        return writer.manifest()


def _refuse_nested(source: Path, dest: Path) -> None:
    src, dst = source.resolve(), dest.resolve()
    if dst == src or dst.is_relative_to(src) or src.is_relative_to(dst):
        raise ValueError(f"intake destination {dest} overlaps its source {source}")


def _unpack_dir(source: Path, writer: TreeWriter, registry: NameRegistry, limits: IntakeLimits) -> None:
    root_fd = os.open(source, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        _walk_dir(root_fd, (), writer, registry, limits)
    finally:
        os.close(root_fd)


def _walk_dir(
    dir_fd: int, prefix: tuple[str, ...], writer: TreeWriter, registry: NameRegistry, limits: IntakeLimits
) -> None:
    """Copy one directory level; recursion depth is bounded by ``max_depth``."""
    with os.scandir(dir_fd) as listing:
        children = sorted(listing, key=lambda child: child.name)
    for child in children:
        registry.count_entry()
        name = "/".join((*prefix, child.name))
        info = child.stat(follow_symlinks=False)
        if stat.S_ISLNK(info.st_mode):
            raise UnsafeArchive(Rule.SYMLINK, entry=name)
        is_dir = stat.S_ISDIR(info.st_mode)
        if not (is_dir or stat.S_ISREG(info.st_mode)):
            raise UnsafeArchive(Rule.SPECIAL_FILE, entry=name, detail=stat.filemode(info.st_mode))
        parts = split_entry_name(name, is_dir=is_dir, limits=limits)
        registry.add(name, parts, is_dir=is_dir)
        if is_dir:
            writer.make_dir(parts)
            sub_fd = _open_same(child.name, dir_fd, info, os.O_DIRECTORY, name)
            try:
                _walk_dir(sub_fd, parts, writer, registry, limits)
            finally:
                os.close(sub_fd)
        else:
            writer.check_declared(name, info.st_size)
            fd = _open_same(child.name, dir_fd, info, os.O_NONBLOCK, name)
            with open(fd, "rb") as fh:
                writer.write_file(name, parts, iter_chunks(fh))


def _open_same(name: str, dir_fd: int, seen: os.stat_result, extra_flags: int, entry: str) -> int:
    """Open ``name`` without following links and check it is the inode we lstat'ed."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | extra_flags, dir_fd=dir_fd)
    except OSError as exc:
        raise UnsafeArchive(Rule.MALFORMED, entry=entry, detail=f"changed while reading: {exc}") from None
    now = os.fstat(fd)
    if (now.st_dev, now.st_ino, stat.S_IFMT(now.st_mode)) != (
        seen.st_dev,
        seen.st_ino,
        stat.S_IFMT(seen.st_mode),
    ):
        os.close(fd)
        raise UnsafeArchive(Rule.MALFORMED, entry=entry, detail="changed while reading")
    return fd
