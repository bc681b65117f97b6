"""Limits, entry-name rules and name bookkeeping shared by every intake format.

Nothing here touches the filesystem: :func:`split_entry_name` turns one archive
name into validated path components, and :class:`NameRegistry` sees every entry
of one upload to catch duplicates and file/directory conflicts.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from enum import StrEnum

from mpaas.packages.errors import UnsafeArchive

#: Longest single path component most filesystems accept (NAME_MAX, in bytes).
MAX_COMPONENT_BYTES = 255

_DRIVE_LETTER = re.compile(r"[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # C0 (incl. NUL), DEL, C1
_SURROGATE = re.compile(r"[\ud800-\udfff]")


class Rule(StrEnum):
    """The ``rule`` of an :class:`UnsafeArchive`; values are part of the API."""

    PATH_TRAVERSAL = "path_traversal"
    ABSOLUTE_PATH = "absolute_path"
    BACKSLASH = "backslash"
    DRIVE_LETTER = "drive_letter"
    CONTROL_CHARACTER = "control_character"
    INVALID_ENCODING = "invalid_encoding"
    EMPTY_COMPONENT = "empty_component"
    DOT_COMPONENT = "dot_component"
    SYMLINK = "symlink"
    HARDLINK = "hardlink"
    SPECIAL_FILE = "special_file"
    SPARSE_FILE = "sparse_file"
    ENCRYPTED = "encrypted"
    DUPLICATE_NAME = "duplicate_name"
    FILE_DIR_CONFLICT = "file_dir_conflict"
    OVERLAPPING_ENTRIES = "overlapping_entries"
    CRC_MISMATCH = "crc_mismatch"
    SIZE_MISMATCH = "size_mismatch"
    UNSUPPORTED_COMPRESSION = "unsupported_compression"
    TOO_MANY_ENTRIES = "too_many_entries"
    FILE_TOO_LARGE = "file_too_large"
    TOTAL_TOO_LARGE = "total_too_large"
    COMPRESSION_RATIO = "compression_ratio"
    PATH_TOO_LONG = "path_too_long"
    TOO_DEEP = "too_deep"
    MALFORMED = "malformed"


@dataclass(frozen=True)
class IntakeLimits:
    """Bounds on one upload. Byte counts are of uncompressed file content.

    ``max_ratio`` (uncompressed/compressed) applies per zip entry and to the whole
    archive, but only once the uncompressed size passes ``ratio_min_bytes``: a
    small, very compressible file (a 100 KiB run of zeros deflates ~1000:1) is
    harmless, and the byte limits still bound the total.
    """

    max_entries: int = 20_000
    max_total_bytes: int = 1 << 30
    max_file_bytes: int = 512 << 20
    max_ratio: float = 200.0
    max_path_bytes: int = 1024
    max_depth: int = 64
    ratio_min_bytes: int = 1 << 20


def check_ratio(uncompressed: int, compressed: int, limits: IntakeLimits, *, entry: str | None) -> None:
    """Raise ``compression_ratio`` when ``uncompressed/compressed`` passes the limit."""
    if uncompressed <= limits.ratio_min_bytes:
        return
    if uncompressed > limits.max_ratio * max(compressed, 1):
        raise UnsafeArchive(
            Rule.COMPRESSION_RATIO,
            entry=entry,
            detail=f"{uncompressed} bytes from {compressed}, limit {limits.max_ratio:g}:1",
        )


def _check_characters(name: str) -> None:
    # Lone surrogates are how undecodable bytes arrive (surrogateescape).
    if _SURROGATE.search(name):
        raise UnsafeArchive(Rule.INVALID_ENCODING, entry=name, detail="not valid UTF-8")
    if found := _CONTROL.search(name):
        raise UnsafeArchive(Rule.CONTROL_CHARACTER, entry=name, detail=f"U+{ord(found.group()):04X}")


def split_entry_name(name: str, *, is_dir: bool, limits: IntakeLimits) -> tuple[str, ...]:
    """Validate one archive name and return its components; ``()`` is the root.

    Directory names may end with one ``/``. A single leading ``./`` (what
    ``tar -C dir .`` writes) is dropped, and ``.``/``./`` alone name the root.
    Names are otherwise taken byte for byte: no Unicode normalisation happens.
    """
    if len(name.encode("utf-8", "surrogatepass")) > limits.max_path_bytes:
        raise UnsafeArchive(Rule.PATH_TOO_LONG, entry=name, detail=f"over {limits.max_path_bytes} bytes")
    _check_characters(name)
    if "\\" in name:
        raise UnsafeArchive(Rule.BACKSLASH, entry=name)
    if name.startswith("/"):
        raise UnsafeArchive(Rule.ABSOLUTE_PATH, entry=name)
    if _DRIVE_LETTER.match(name):
        raise UnsafeArchive(Rule.DRIVE_LETTER, entry=name)

    path = name
    if is_dir and path.endswith("/"):
        path = path[:-1]
    elif not is_dir and path.endswith("/"):
        raise UnsafeArchive(Rule.EMPTY_COMPONENT, entry=name, detail="trailing '/' on a file")
    if path.startswith("./"):
        path = path[2:]
    elif is_dir and path == ".":
        path = ""
    if not path:
        if is_dir and name in (".", "./"):
            return ()
        raise UnsafeArchive(Rule.EMPTY_COMPONENT, entry=name, detail="empty name")

    parts = tuple(path.split("/"))
    if ".." in parts:
        raise UnsafeArchive(Rule.PATH_TRAVERSAL, entry=name, detail="'..' component")
    if "" in parts:
        raise UnsafeArchive(Rule.EMPTY_COMPONENT, entry=name, detail="empty component")
    if "." in parts:
        raise UnsafeArchive(Rule.DOT_COMPONENT, entry=name, detail="'.' component")
    if len(parts) > limits.max_depth:
        raise UnsafeArchive(
            Rule.TOO_DEEP, entry=name, detail=f"{len(parts)} levels, limit {limits.max_depth}"
        )
    for part in parts:
        if len(part.encode("utf-8")) > MAX_COMPONENT_BYTES:
            raise UnsafeArchive(
                Rule.PATH_TOO_LONG, entry=name, detail=f"a component is over {MAX_COMPONENT_BYTES} bytes"
            )
    return parts


def fold_name(path: str) -> str:
    """The key under which two names are "the same" on some client filesystem."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", path).casefold())


@dataclass(slots=True)
class _Seen:
    entry: str
    path: str
    is_dir: bool
    explicit: bool


@dataclass
class NameRegistry:
    """Every name (and implied parent directory) of one upload, by folded key.

    Duplicates are reported by the strictest sense in which they are equal:
    exact, after NFC, or after NFC+casefold. A case-insensitive or normalising
    filesystem (macOS, Windows, many CDNs) would merge the latter two.
    """

    limits: IntakeLimits
    entries: int = 0
    _seen: dict[str, _Seen] = field(default_factory=dict)

    def count_entry(self) -> None:
        self.entries += 1
        if self.entries > self.limits.max_entries:
            raise UnsafeArchive(Rule.TOO_MANY_ENTRIES, detail=f"more than {self.limits.max_entries}")

    def add(self, entry: str, parts: tuple[str, ...], *, is_dir: bool) -> None:
        """Record one entry; raise on a duplicate or a file/directory clash."""
        for depth in range(1, len(parts)):
            self._claim(entry, "/".join(parts[:depth]), is_dir=True, explicit=False)
        if parts:
            self._claim(entry, "/".join(parts), is_dir=is_dir, explicit=True)

    def _claim(self, entry: str, path: str, *, is_dir: bool, explicit: bool) -> None:
        key = fold_name(path)
        seen = self._seen.get(key)
        if seen is None:
            self._seen[key] = _Seen(entry, path, is_dir, explicit)
            return
        if seen.is_dir != is_dir:
            raise UnsafeArchive(
                Rule.FILE_DIR_CONFLICT,
                entry=entry,
                detail=f"{path!r} is both a file and a directory (see {seen.entry!r})",
            )
        if seen.path != path:
            how = "after NFC" if _nfc(seen.path) == _nfc(path) else "after NFC+casefold"
            raise UnsafeArchive(Rule.DUPLICATE_NAME, entry=entry, detail=f"same as {seen.entry!r} {how}")
        if explicit and seen.explicit:
            raise UnsafeArchive(Rule.DUPLICATE_NAME, entry=entry, detail="exact duplicate")
        seen.explicit = seen.explicit or explicit


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)
