"""Blob store on a local directory."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

from mpaas.storage.blobs.base import (
    READ_CHUNK,
    BlobDigestMismatch,
    BlobInfo,
    BlobNotFound,
    BlobRef,
    Hasher,
    blob_key,
    check_digest,
    copy_verified,
)


class LocalBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / ".tmp"

    def _path(self, sha256: str) -> Path:
        return self.root / blob_key(sha256)

    def _ensure_dirs(self) -> None:
        self.tmp.mkdir(parents=True, exist_ok=True)

    async def put_stream(
        self, chunks: AsyncIterable[bytes], *, expected_sha256: str | None = None
    ) -> BlobRef:
        await asyncio.to_thread(self._ensure_dirs)
        tmp = self.tmp / f"{uuid.uuid4().hex}.part"
        hasher = Hasher()
        fh: BinaryIO = await asyncio.to_thread(open, tmp, "wb")
        try:
            try:
                async for chunk in chunks:
                    hasher.update(chunk)
                    await asyncio.to_thread(fh.write, chunk)
                await asyncio.to_thread(_flush_and_sync, fh)
            finally:
                await asyncio.to_thread(fh.close)
            return await asyncio.to_thread(self._commit, tmp, hasher, expected_sha256)
        except BaseException:
            await asyncio.to_thread(_unlink_quietly, tmp)
            raise

    def _commit(self, tmp: Path, hasher: Hasher, expected: str | None) -> BlobRef:
        digest = hasher.hexdigest
        if expected is not None and expected != digest:
            raise BlobDigestMismatch(f"content sha256 {digest} does not match expected {expected}")
        final = self._path(digest)
        if final.exists():
            tmp.unlink()
        else:
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, final)
            _fsync_dir(final.parent)
        return BlobRef(digest, hasher.size)

    async def put_file(self, path: Path, *, sha256: str | None = None) -> BlobRef:
        async def chunks() -> AsyncIterator[bytes]:
            with open(path, "rb") as fh:
                while chunk := await asyncio.to_thread(fh.read, READ_CHUNK):
                    yield chunk

        if sha256 is not None and await self.exists(sha256):
            return BlobRef(sha256, await self.size(sha256))
        return await self.put_stream(chunks(), expected_sha256=sha256)

    async def exists(self, sha256: str) -> bool:
        return await asyncio.to_thread(self._path(sha256).is_file)

    async def size(self, sha256: str) -> int:
        try:
            return (await asyncio.to_thread(self._path(sha256).stat)).st_size
        except FileNotFoundError:
            raise BlobNotFound(f"blob {sha256} not found") from None

    async def read(self, sha256: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        try:
            fh: BinaryIO = await asyncio.to_thread(open, self._path(sha256), "rb")
        except FileNotFoundError:
            raise BlobNotFound(f"blob {sha256} not found") from None
        try:
            await asyncio.to_thread(fh.seek, start)
            remaining = None if end is None else max(0, end - start)
            while remaining is None or remaining > 0:
                want = READ_CHUNK if remaining is None else min(READ_CHUNK, remaining)
                chunk = await asyncio.to_thread(fh.read, want)
                if not chunk:
                    break
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk
        finally:
            await asyncio.to_thread(fh.close)

    async def get_to_file(self, sha256: str, dest: Path) -> None:
        await copy_verified(self.read(sha256), sha256, dest, "on disk")

    async def delete(self, sha256: str) -> None:
        await asyncio.to_thread(_unlink_quietly, self._path(sha256))

    async def list_blobs(self) -> AsyncIterator[BlobInfo]:
        for info in await asyncio.to_thread(_scan, self.root / "sha256"):
            yield info

    def download_url(self, sha256: str, *, expires: int = 3600, filename: str | None = None) -> str | None:
        check_digest(sha256)
        return None

    async def check(self) -> None:
        await asyncio.to_thread(self._probe)

    def _probe(self) -> None:
        self._ensure_dirs()
        probe = self.tmp / f"health-{uuid.uuid4().hex}"
        probe.write_bytes(b"ok")
        probe.unlink()

    async def close(self) -> None:
        return None


def _scan(base: Path) -> list[BlobInfo]:
    out: list[BlobInfo] = []
    if not base.is_dir():
        return out
    for sub in sorted(base.iterdir()):
        if not (sub.is_dir() and len(sub.name) == 2):
            continue
        for f in sorted(sub.iterdir()):
            st = f.stat()
            out.append(BlobInfo(sub.name + f.name, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC)))
    return out


def sweep_stale(directory: Path, older_than: timedelta) -> int:
    """Remove temp files a crashed writer left behind; returns how many."""
    if not directory.is_dir():
        return 0
    cutoff = datetime.now(UTC) - older_than
    removed = 0
    for entry in directory.iterdir():
        try:
            if datetime.fromtimestamp(entry.lstat().st_mtime, UTC) < cutoff:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink()
                removed += 1
        except FileNotFoundError:
            continue
    return removed


def _flush_and_sync(fh: BinaryIO) -> None:
    fh.flush()
    os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
