"""Write an intake's files strictly inside the destination directory.

Every directory is opened relative to its parent's file descriptor with
``O_NOFOLLOW``, and every file is created with ``O_EXCL | O_NOFOLLOW``, so nothing
placed in ``dest`` (by us or by anyone racing us) can redirect a write outside it.
Byte limits are enforced before each chunk is written, so a rejected entry never
leaves more than the limit on disk. Modes are fixed (0644/0755); nothing is taken
from the archive.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Protocol

from mpaas.packages.errors import UnsafeArchive
from mpaas.packages.intake.rules import IntakeLimits, Rule
from mpaas.packages.manifest import FileEntry, Manifest

READ_CHUNK = 1 << 16
FILE_MODE = 0o644
DIR_MODE = 0o755

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def iter_chunks(reader: Readable, size: int = READ_CHUNK) -> Iterator[bytes]:
    while chunk := reader.read(size):
        yield chunk


def _check_component(part: str) -> None:
    """Last line of defence; the intake rules should have rejected these already."""
    if part in ("", ".", "..") or "/" in part or "\0" in part:
        raise ValueError(f"unsafe path component {part!r} reached the writer")


class TreeWriter:
    """Creates directories and hashed files below an existing, empty ``dest``."""

    def __init__(self, dest: Path, limits: IntakeLimits) -> None:
        self._limits = limits
        self._root_fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            with os.scandir(self._root_fd) as listing:
                if next(listing, None) is not None:
                    raise ValueError(f"intake destination {dest} is not empty")
        except BaseException:
            os.close(self._root_fd)
            raise
        self._dirs: set[tuple[str, ...]] = {()}
        self._files: list[FileEntry] = []
        self.total_bytes = 0

    def __enter__(self) -> TreeWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._root_fd >= 0:
            os.close(self._root_fd)
            self._root_fd = -1

    def manifest(self) -> Manifest:
        return Manifest(self._files)

    def check_declared(self, entry: str, size: int) -> None:
        """Reject a file up front when its declared size already breaks a limit."""
        self._check_growth(entry, 0, size)

    def make_dir(self, parts: tuple[str, ...]) -> None:
        os.close(self._open_dir(parts))

    def write_file(self, entry: str, parts: tuple[str, ...], chunks: Iterable[bytes]) -> FileEntry:
        """Stream ``chunks`` into a new file, hashing and counting as it goes."""
        if not parts:
            raise ValueError("a file needs a name")
        _check_component(parts[-1])
        parent_fd = self._open_dir(parts[:-1])
        try:
            fd = os.open(parts[-1], _NEW_FILE_FLAGS, FILE_MODE, dir_fd=parent_fd)
        finally:
            os.close(parent_fd)
        digest = hashlib.sha256()
        size = 0
        with open(fd, "wb") as out:
            os.fchmod(fd, FILE_MODE)
            for chunk in chunks:
                self._check_growth(entry, size, len(chunk))
                digest.update(chunk)
                out.write(chunk)
                size += len(chunk)
                self.total_bytes += len(chunk)
        written = FileEntry("/".join(parts), size, digest.hexdigest())
        self._files.append(written)
        return written

    def _check_growth(self, entry: str, file_size: int, extra: int) -> None:
        limits = self._limits
        if file_size + extra > limits.max_file_bytes:
            raise UnsafeArchive(
                Rule.FILE_TOO_LARGE, entry=entry, detail=f"over {limits.max_file_bytes} bytes"
            )
        if self.total_bytes + extra > limits.max_total_bytes:
            raise UnsafeArchive(
                Rule.TOTAL_TOO_LARGE, entry=entry, detail=f"archive over {limits.max_total_bytes} bytes"
            )

    def _open_dir(self, parts: tuple[str, ...]) -> int:
        """Open (creating as needed) the directory ``parts``; the caller closes the fd."""
        fd = os.dup(self._root_fd)
        try:
            for depth, part in enumerate(parts, start=1):
                _check_component(part)
                created = parts[:depth] not in self._dirs
                if created:
                    os.mkdir(part, DIR_MODE, dir_fd=fd)
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = child
                if created:
                    os.fchmod(fd, DIR_MODE)
                    self._dirs.add(parts[:depth])
        except BaseException:
            os.close(fd)
            raise
        return fd
