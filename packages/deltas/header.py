"""The patch header (format version 1): ops, stats, and the manifest they lead to.

The header is JSON inside the patch's zstd frame (layout in
:mod:`mpaas.packages.deltas.format`)::

    {"format": 1, "from": <package hash>, "to": <package hash>,
     "ops": [{"op": "add"|"modify"|"rename"|"copy"|"delete", "path": ...,
              "base": <old path>, "size": n, "sha256": hex, "codec": "raw"|"zstd"|"hdiff",
              "length": <payload bytes>}, ...],
     "stats": {...}}

Every file of the base that no op names keeps its path and bytes, so the new
manifest is *the base manifest with the ops applied* (:meth:`PatchHeader.new_manifest`);
the applier authenticates the base by ``from`` and the result by ``to``. Not listing
unchanged files keeps the header proportional to the change: listing 500 sha256s
alone would cost about 18 KB after compression, more than a typical H5 update's
delta (see docs/adr/0002-delta-format.md).

Op kinds: ``add`` (whole file), ``modify`` (delta against the same path), ``rename``
(delta against a predecessor found by :mod:`mpaas.packages.deltas.renames`), ``copy`` (same
bytes as ``base``: a pure move or a duplicate; no payload) and ``delete``. A raw
payload's length equals the file size. The header is untrusted input: every field is
checked when it is read.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

from mpaas.packages.deltas.codec import Codec
from mpaas.packages.deltas.errors import PatchError
from mpaas.packages.manifest import FileEntry, Manifest

FORMAT_VERSION = 1
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class OpKind(StrEnum):
    ADD = "add"
    MODIFY = "modify"
    RENAME = "rename"
    COPY = "copy"
    DELETE = "delete"


_WITH_BASE = (OpKind.MODIFY, OpKind.RENAME, OpKind.COPY)
_WITH_PAYLOAD = (OpKind.ADD, OpKind.MODIFY, OpKind.RENAME)


def check_rel_path(path: str) -> str:
    """Reject anything but a plain relative POSIX path (the patch is untrusted input)."""
    if (
        not path
        or path.startswith("/")
        or "\\" in path
        or any(ord(c) < 32 or ord(c) == 127 for c in path)
        or any(part in ("", ".", "..") for part in path.split("/"))
    ):
        raise PatchError(f"unsafe path in patch: {path[:200]!r}")
    return path


@dataclass(frozen=True, slots=True)
class Op:
    """One instruction; ``path`` is in the new tree, ``base`` in the old one."""

    kind: OpKind
    path: str
    base: str | None = None
    size: int = 0
    sha256: str = ""
    codec: Codec | None = None
    length: int = 0

    @property
    def entry(self) -> FileEntry:
        return FileEntry(self.path, self.size, self.sha256)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"op": self.kind.value, "path": self.path}
        if self.kind is OpKind.DELETE:
            return out
        if self.base is not None:
            out["base"] = self.base
        out["size"], out["sha256"] = self.size, self.sha256
        if self.codec is not None:
            out["codec"], out["length"] = self.codec.value, self.length
        return out

    @classmethod
    def from_json(cls, raw: Any) -> Op:
        if not isinstance(raw, dict):
            raise PatchError("patch op is not an object")
        kind = _enum(OpKind, raw.get("op"), "op")
        path = check_rel_path(_str(raw, "path"))
        if kind is OpKind.DELETE:
            return cls(kind, path)
        base = check_rel_path(_str(raw, "base")) if kind in _WITH_BASE else None
        size, sha = _int(raw, "size"), _str(raw, "sha256")
        if not _SHA256_HEX.fullmatch(sha):
            raise PatchError("patch op has a malformed sha256")
        if kind is OpKind.COPY:
            return cls(kind, path, base, size, sha)
        codec, length = _enum(Codec, raw.get("codec"), "codec"), _int(raw, "length")
        if kind is OpKind.ADD and codec is not Codec.RAW:
            raise PatchError("an added file must be sent raw")
        if codec is Codec.RAW and length != size:
            raise PatchError("raw payload length differs from the file size")
        return cls(kind, path, base, size, sha, codec, length)


def _str(raw: dict[str, Any], key: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str):
        raise PatchError(f"patch field {key!r} must be a string")
    return value


def _int(raw: dict[str, Any], key: str) -> int:
    value = raw.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise PatchError(f"patch field {key!r} must be a non-negative integer")
    return value


_E = TypeVar("_E", bound=StrEnum)


def _enum(enum: type[_E], value: Any, what: str) -> _E:
    try:
        return enum(value)
    except ValueError:
        raise PatchError(f"unknown patch {what}: {str(value)[:50]!r}") from None


@dataclass(frozen=True, slots=True)
class OpStats:
    files: int = 0
    file_bytes: int = 0
    """Size of these files in the new tree (in the old tree for deletions)."""
    payload_bytes: int = 0
    """Bytes they add to the patch before the outer compression."""

    def plus(self, file_bytes: int, payload_bytes: int = 0) -> OpStats:
        return OpStats(self.files + 1, self.file_bytes + file_bytes, self.payload_bytes + payload_bytes)


@dataclass(frozen=True)
class PatchStats:
    """What a patch changes, per kind of change; shown by ``mpaas diff --stats``."""

    added: OpStats = OpStats()
    modified: OpStats = OpStats()
    renamed: OpStats = OpStats()
    moved: OpStats = OpStats()
    deleted: OpStats = OpStats()
    unchanged: OpStats = OpStats()
    codecs: dict[str, int] = field(default_factory=dict)
    """Number of payload-carrying files per codec."""

    @classmethod
    def of(cls, ops: Iterable[Op], old: Manifest, new: Manifest) -> PatchStats:
        counts: dict[str, OpStats] = {}
        codecs: dict[str, int] = {}
        name = {
            OpKind.ADD: "added",
            OpKind.MODIFY: "modified",
            OpKind.RENAME: "renamed",
            OpKind.COPY: "moved",
            OpKind.DELETE: "deleted",
        }
        old_sizes = {f.path: f.size for f in old.files}
        named: set[str] = set()
        for op in ops:
            named.add(op.path)
            size = old_sizes[op.path] if op.kind is OpKind.DELETE else op.size
            counts[name[op.kind]] = counts.get(name[op.kind], OpStats()).plus(size, op.length)
            if op.codec is not None:
                codecs[op.codec.value] = codecs.get(op.codec.value, 0) + 1
        unchanged = OpStats()
        for entry in new.files:
            if entry.path not in named:
                unchanged = unchanged.plus(entry.size)
        return cls(**counts, unchanged=unchanged, codecs=codecs)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: Any) -> PatchStats:
        try:
            kinds = {k: OpStats(**v) for k, v in raw.items() if k != "codecs"}
            return cls(**kinds, codecs={str(k): int(v) for k, v in raw.get("codecs", {}).items()})
        except (AttributeError, TypeError, ValueError) as exc:
            raise PatchError("malformed patch stats") from exc


@dataclass(frozen=True)
class PatchHeader:
    from_hash: str
    to_hash: str
    ops: tuple[Op, ...]
    stats: PatchStats
    format_version: int = FORMAT_VERSION

    @property
    def payload_size(self) -> int:
        return sum(op.length for op in self.ops)

    def new_manifest(self, old: Manifest) -> Manifest:
        """The base manifest with the ops applied, checked against ``to_hash``.

        Raises PatchError when an op does not fit ``old`` (a deleted or base path
        that is not there, a path named twice, a new file where a directory must
        be) or the result is not the promised package.
        """
        old_files = old.by_path()
        files = dict(old_files)
        seen: set[str] = set()
        for op in self.ops:
            if op.path in seen:
                raise PatchError(f"patch names {op.path!r} twice")
            seen.add(op.path)
            if op.base is not None:
                source = old_files.get(op.base)
                if source is None:
                    raise PatchError(f"patch base file {op.base!r} is not in the installed version")
                if op.kind is OpKind.COPY and (source.size, source.sha256) != (op.size, op.sha256):
                    raise PatchError(f"copy of {op.base!r} expects different content")
            if op.kind is OpKind.DELETE:
                if files.pop(op.path, None) is None:
                    raise PatchError(f"patch deletes {op.path!r}, which is not installed")
                continue
            if op.kind is OpKind.MODIFY and op.base != op.path:
                raise PatchError("a modified file must be based on its own path")
            if op.kind in (OpKind.ADD, OpKind.RENAME, OpKind.MODIFY) and (op.path in files) != (
                op.kind is OpKind.MODIFY
            ):
                raise PatchError(f"patch op {op.kind.value} does not fit {op.path!r}")
            files[op.path] = op.entry
        manifest = Manifest(files.values())
        directories = {path.rsplit("/", 1)[0] for path in files if "/" in path}
        directories |= {d.rsplit("/", i)[0] for d in directories for i in range(1, d.count("/") + 1)}
        if clash := directories & files.keys():
            raise PatchError(f"patch makes {sorted(clash)[0]!r} both a file and a directory")
        if manifest.package_hash != self.to_hash:
            raise PatchError("patched manifest does not match the patch's target package hash")
        return manifest

    def to_json(self) -> bytes:
        doc = {
            "format": self.format_version,
            "from": self.from_hash,
            "to": self.to_hash,
            "ops": [op.to_json() for op in self.ops],
            "stats": self.stats.to_json(),
        }
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> PatchHeader:
        try:
            doc = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise PatchError("patch header is not JSON") from exc
        if not isinstance(doc, dict) or doc.get("format") != FORMAT_VERSION:
            raise PatchError("unsupported patch header")
        from_hash, to_hash = _str(doc, "from"), _str(doc, "to")
        if not (_SHA256_HEX.fullmatch(from_hash) and _SHA256_HEX.fullmatch(to_hash)):
            raise PatchError("malformed package hash in patch header")
        ops = doc.get("ops")
        if not isinstance(ops, list):
            raise PatchError("patch ops must be a list")
        return cls(
            from_hash, to_hash, tuple(Op.from_json(op) for op in ops), PatchStats.from_json(doc.get("stats"))
        )
