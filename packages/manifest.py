"""File manifests and the two package hashes.

A manifest lists every regular file of a package: its POSIX relative path, its size
and the sha256 of its bytes. Directories are implied and never listed.

``package_hash`` (mpaas's own) is defined as::

    sha256( "".join(f"{path}\\t{size}\\t{sha256}\\n" for each file, sorted by UTF-8 path bytes) )

Paths never contain control characters (intake rejects them), so the tab/newline
framing is unambiguous, and any SDK can recompute it without a JSON library.

``codepush_hash`` is what react-native-code-push computes on the device
(``CodePushUpdateUtils``): sha256 hex of ``JSON.stringify`` of the sorted list of
``"path:sha256"`` strings, skipping ``__MACOSX/``, ``.DS_Store`` and
``.codepushrelease``. JavaScript and Java sort strings by UTF-16 code units, so we
do too.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHUNK = 1 << 20

CODEPUSH_SIGNATURE_FILE = ".codepushrelease"


@dataclass(frozen=True, slots=True)
class FileEntry:
    path: str
    size: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "sha256": self.sha256}


def _utf8_key(entry: FileEntry) -> bytes:
    return entry.path.encode("utf-8")


def _utf16_key(text: str) -> bytes:
    return text.encode("utf-16-be", "surrogatepass")


def codepush_ignored(path: str) -> bool:
    """True for the paths the CodePush device code leaves out of its hash."""
    name = path.rsplit("/", 1)[-1]
    return path.startswith("__MACOSX/") or name in (".DS_Store", CODEPUSH_SIGNATURE_FILE)


@dataclass(frozen=True, slots=True)
class Manifest:
    files: tuple[FileEntry, ...]

    def __init__(self, files: Iterable[FileEntry]) -> None:
        object.__setattr__(self, "files", tuple(sorted(files, key=_utf8_key)))

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def file_count(self) -> int:
        return len(self.files)

    @property
    def package_hash(self) -> str:
        h = hashlib.sha256()
        for f in self.files:
            h.update(f"{f.path}\t{f.size}\t{f.sha256}\n".encode())
        return h.hexdigest()

    @property
    def codepush_hash(self) -> str:
        items = sorted(
            (f"{f.path}:{f.sha256}" for f in self.files if not codepush_ignored(f.path)),
            key=_utf16_key,
        )
        text = json.dumps(items, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def by_path(self) -> dict[str, FileEntry]:
        return {f.path: f for f in self.files}

    def to_dict(self) -> dict[str, Any]:
        return {
            "package_hash": self.package_hash,
            "codepush_hash": self.codepush_hash,
            "files": [f.to_dict() for f in self.files],
        }

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        return cls(FileEntry(str(f["path"]), int(f["size"]), str(f["sha256"])) for f in data["files"])

    @classmethod
    def from_json(cls, raw: bytes | str) -> Manifest:
        return cls.from_dict(json.loads(raw))


def sha256_file(path: Path) -> tuple[str, int]:
    """Stream a file through sha256; return (hex digest, size)."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def walk_files(root: Path) -> Iterator[tuple[str, Path]]:
    """Yield (posix relative path, absolute path) for every regular file under root."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            full = Path(dirpath) / name
            yield full.relative_to(root).as_posix(), full


def manifest_of_tree(root: Path) -> Manifest:
    """Hash every regular file under an already-verified directory tree."""
    entries = []
    for rel, full in walk_files(root):
        digest, size = sha256_file(full)
        entries.append(FileEntry(rel, size, digest))
    return Manifest(entries)
