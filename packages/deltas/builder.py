"""Per-file delta patches between two package versions: build, inspect, apply.

Pure synchronous code with no I/O beyond the given paths, meant for a worker
thread or process. The file format is in :mod:`mpaas.packages.deltas.format` (its
header in :mod:`mpaas.packages.deltas.header`), the codecs in
:mod:`mpaas.packages.deltas.codec`, rename detection in
:mod:`mpaas.packages.deltas.renames`; the reasoning is in docs/adr/0002-delta-format.md.

Building is cheap for H5 packages because only changed files get delta work:
unchanged files cost nothing, pure moves and duplicates become copies, and only
modified and renamed files are diffed, one at a time (memory: old + new + delta of
one file, at most :data:`MAX_DELTA_FILE` each; larger files are streamed whole).
Delta payloads are spooled (in memory up to 16 MiB, then a temp file) so the header,
which records their lengths and codecs, can precede them in the patch.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO

from mpaas.packages.deltas.codec import DELTA_CODECS, MAX_DELTA_FILE, Codec, decode, encode_best
from mpaas.packages.deltas.errors import PatchError
from mpaas.packages.deltas.format import CHUNK, PatchReader, PatchWriter
from mpaas.packages.deltas.header import Op, OpKind, PatchHeader, PatchStats
from mpaas.packages.deltas.renames import match_predecessors
from mpaas.packages.manifest import FileEntry, Manifest, manifest_of_tree

__all__ = [
    "MAX_DELTA_FILE",
    "PatchError",
    "PatchHeader",
    "PatchInfo",
    "PatchStats",
    "apply_patch",
    "build_patch",
    "plan_ops",
    "read_patch_header",
]

DEFAULT_LEVEL = 19
_SPOOL_IN_MEMORY = 16 << 20


@dataclass(frozen=True)
class PatchInfo:
    from_hash: str
    to_hash: str
    size: int
    sha256: str
    stats: PatchStats


def plan_ops(old: Manifest, new: Manifest) -> list[Op]:
    """The ops turning ``old`` into ``new``, without payload decisions yet.

    Precedence for each new file that differs from the old file at its path:
    copy (its bytes exist somewhere in ``old``), modify (its path exists in
    ``old``), rename (a removed file has the same hash-stripped name), add.
    """
    old_by_path = old.by_path()
    new_by_path = new.by_path()
    old_by_content: dict[tuple[str, int], FileEntry] = {}
    for entry in old.files:
        old_by_content.setdefault((entry.sha256, entry.size), entry)
    removed = [f for f in old.files if f.path not in new_by_path]
    fresh = [f for f in new.files if f.path not in old_by_path and (f.sha256, f.size) not in old_by_content]
    predecessors = match_predecessors(removed, fresh)
    ops = [Op(OpKind.DELETE, f.path) for f in removed]
    for entry in new.files:
        current = old_by_path.get(entry.path)
        if current == entry:
            continue
        source = old_by_content.get((entry.sha256, entry.size))
        if source is not None:
            ops.append(Op(OpKind.COPY, entry.path, source.path, entry.size, entry.sha256))
        elif current is not None:
            ops.append(Op(OpKind.MODIFY, entry.path, entry.path, entry.size, entry.sha256))
        elif entry.path in predecessors:
            base = predecessors[entry.path].path
            ops.append(Op(OpKind.RENAME, entry.path, base, entry.size, entry.sha256))
        else:
            ops.append(Op(OpKind.ADD, entry.path, None, entry.size, entry.sha256, Codec.RAW, entry.size))
    ops.sort(key=lambda op: op.path.encode())
    return ops


def _read_checked(path: Path, entry: FileEntry) -> bytes:
    data = path.read_bytes()
    if len(data) != entry.size or hashlib.sha256(data).hexdigest() != entry.sha256:
        raise ValueError(f"{path} does not match its manifest entry")
    return data


def _with_payload(
    op: Op,
    old_root: Path,
    old: FileEntry,
    new_root: Path,
    *,
    level: int,
    max_delta_file: int,
    codecs: Sequence[Codec],
) -> tuple[Op, bytes | None]:
    """Decide how a modified or renamed file travels: smallest delta, or whole."""
    if max(op.size, old.size) > max_delta_file or not codecs:
        return replace(op, codec=Codec.RAW, length=op.size), None
    new_bytes = _read_checked(new_root / op.path, op.entry)
    codec, delta = encode_best(_read_checked(old_root / old.path, old), new_bytes, level=level, codecs=codecs)
    if delta is None:
        return replace(op, codec=Codec.RAW, length=op.size), None
    return replace(op, codec=codec, length=len(delta)), delta


def _stream_checked(path: Path, entry: FileEntry) -> Iterable[bytes]:
    """The file's bytes in chunks; raises after the last one if they do not match ``entry``."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
            yield chunk
    if size != entry.size or digest.hexdigest() != entry.sha256:
        raise ValueError(f"{path} does not match its manifest entry")


def build_patch(
    old_root: Path,
    old: Manifest,
    new_root: Path,
    new: Manifest,
    out: Path,
    *,
    level: int = DEFAULT_LEVEL,
    max_delta_file: int = MAX_DELTA_FILE,
    codecs: Sequence[Codec] = DELTA_CODECS,
) -> PatchInfo:
    """Write the patch from ``old`` to ``new`` to ``out`` (atomically) and describe it.

    Both trees must match their manifests; a file that does not raises ValueError
    and leaves no output. ``codecs`` limits the delta codecs tried (empty: none).
    """
    with tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY) as spool:
        old_files = old.by_path()
        ops: list[Op] = []
        for op in plan_ops(old, new):
            if op.kind in (OpKind.MODIFY, OpKind.RENAME):
                base = old_files[op.base or ""]
                op, delta = _with_payload(
                    op, old_root, base, new_root, level=level, max_delta_file=max_delta_file, codecs=codecs
                )
                if delta is not None:
                    spool.write(delta)
            ops.append(op)
        header = PatchHeader(old.package_hash, new.package_hash, tuple(ops), PatchStats.of(ops, old, new))
        spool.seek(0)
        tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex}.tmp")
        try:
            with open(tmp, "xb") as fh:
                size, sha256 = _write_patch(fh, header, spool, new_root, level)
            os.replace(tmp, out)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    return PatchInfo(header.from_hash, header.to_hash, size, sha256, header.stats)


def _write_patch(
    fh: IO[bytes], header: PatchHeader, spool: IO[bytes], new_root: Path, level: int
) -> tuple[int, str]:
    writer = PatchWriter(fh, header, level=level)
    for op in header.ops:
        if op.codec is Codec.RAW:
            for chunk in _stream_checked(new_root / op.path, op.entry):
                writer.write(chunk)
        elif op.codec is not None:
            writer.write(spool.read(op.length))
    result = writer.close()
    fh.flush()
    return result


def read_patch_header(patch: Path) -> PatchHeader:
    """The header alone (hashes, ops, stats); reads no payload."""
    with open(patch, "rb") as fh:
        return PatchReader(fh).header


def _write_checked(target: Path, chunks: Iterable[bytes], entry: FileEntry, *, fsync: bool) -> None:
    """Create ``target`` (never overwrite) from ``chunks``, checking size and sha256."""
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    with open(target, "xb") as fh:
        for chunk in chunks:
            size += len(chunk)
            if size > entry.size:
                raise PatchError(f"{entry.path!r} is larger than the manifest says")
            digest.update(chunk)
            fh.write(chunk)
        if fsync:
            fh.flush()
            os.fsync(fh.fileno())
    if size != entry.size or digest.hexdigest() != entry.sha256:
        raise PatchError(f"{entry.path!r} does not match the new manifest")


def _read_chunks(path: Path) -> Iterable[bytes]:
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            yield chunk


def _prepare_dest(dest: Path) -> bool:
    """Make sure ``dest`` is an empty directory; True if it was created here."""
    try:
        dest.mkdir(parents=True)
        return True
    except FileExistsError:
        if not dest.is_dir() or any(dest.iterdir()):
            raise PatchError(f"{dest} must be an empty directory") from None
        return False


def _clear(dest: Path, created: bool) -> None:
    if created:
        shutil.rmtree(dest, ignore_errors=True)
        return
    for child in dest.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def _fsync_dirs(root: Path) -> None:
    for dirpath, _, _ in os.walk(root):
        fd = os.open(dirpath, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def apply_patch(old_root: Path, patch: Path, dest: Path, *, fsync: bool = False) -> Manifest:
    """Write the patched tree into the empty (or absent) directory ``dest``.

    Checks first that ``old_root`` is the patch's base (its package hash equals
    ``from``) and that the ops yield the ``to`` package, then writes every file,
    checking its size and sha256 against the new manifest, which it returns.
    Raises PatchError on any mismatch or corruption, leaving ``dest`` as it found it.
    ``fsync=True`` makes files and directories durable before returning.
    """
    created = _prepare_dest(dest)
    try:
        with open(patch, "rb") as fh:
            reader = PatchReader(fh)
            header = reader.header
            old = manifest_of_tree(old_root)
            if old.package_hash != header.from_hash:
                raise PatchError(
                    "patch was made for another version of this package", code="patch_base_mismatch"
                )
            new = header.new_manifest(old)
            old_files = old.by_path()
            for op in header.ops:
                _apply_op(op, reader, old_root, old_files, dest, fsync=fsync)
            reader.finish()
        named = {op.path for op in header.ops}
        for entry in new.files:
            if entry.path not in named:
                _write_checked(dest / entry.path, _read_chunks(old_root / entry.path), entry, fsync=fsync)
        if fsync:
            _fsync_dirs(dest)
    except BaseException:
        _clear(dest, created)
        raise
    return new


def _apply_op(
    op: Op, reader: PatchReader, old_root: Path, old_files: dict[str, FileEntry], dest: Path, *, fsync: bool
) -> None:
    target = dest / op.path
    if op.kind is OpKind.DELETE:
        return
    if op.kind is OpKind.COPY:
        _write_checked(target, _read_chunks(old_root / (op.base or "")), op.entry, fsync=fsync)
    elif op.codec is Codec.RAW:
        _write_checked(target, reader.iter_chunks(op.length), op.entry, fsync=fsync)
    elif op.codec is not None:
        base = old_files[op.base or ""]
        if max(base.size, op.size, op.length) > MAX_DELTA_FILE:
            raise PatchError(f"delta for {op.path!r} exceeds the delta size limit")
        delta = reader.read_exact(op.length)
        data = decode(op.codec, (old_root / base.path).read_bytes(), delta, op.size)
        _write_checked(target, (data,), op.entry, fsync=fsync)
