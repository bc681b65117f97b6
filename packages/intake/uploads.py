"""Resumable uploads: a session, then chunks appended at a known offset.

The bytes go to ``<data dir>/uploads/<id>.part``; the session row records how many
bytes are durable (``received``). A chunk is written and fsynced before ``received``
advances, so after a crash the file may hold a torn tail past ``received``, which
the next chunk truncates away. A client that lost its connection asks for the
session's offset and continues from there.

With several server processes, ``<data dir>/uploads`` must be shared (or the load
balancer must keep an upload on one process).
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterable
from datetime import timedelta
from pathlib import Path

from sqlmodel import col, delete, select, update

from mpaas.identity.models import App
from mpaas.packages.errors import UploadIncomplete, UploadNotFound, UploadOffsetMismatch, UploadTooLarge
from mpaas.packages.manifest import sha256_file
from mpaas.packages.models import UploadSession
from mpaas.storage.blobs import BlobDigestMismatch
from mpaas.storage.db import Database, utcnow

UPLOAD_TTL = timedelta(days=1)


class Uploads:
    def __init__(self, db: Database, root: Path, *, max_size: int, max_chunk: int) -> None:
        self.db = db
        self.root = root
        self.max_size = max_size
        self.max_chunk = max_chunk
        self._locks: dict[str, asyncio.Lock] = {}

    def path(self, upload_id: str) -> Path:
        return self.root / f"{upload_id}.part"

    async def create(self, app: App, actor: str, size: int, sha256: str | None) -> UploadSession:
        if size <= 0:
            raise UploadTooLarge(
                "upload size must be a positive number of bytes", code="validation_error", status=400
            )
        if size > self.max_size:
            raise UploadTooLarge(f"upload of {size} bytes exceeds the limit of {self.max_size} bytes")
        assert app.id is not None
        row = UploadSession(
            id=secrets.token_hex(16),
            app_id=app.id,
            size=size,
            sha256=sha256,
            created_by=actor,
            expires_at=utcnow() + UPLOAD_TTL,
        )
        await asyncio.to_thread(self.root.mkdir, parents=True, exist_ok=True)
        await asyncio.to_thread(self.path(row.id).touch)
        async with self.db.write() as s:
            s.add(row)
        return row

    async def get(self, app: App, upload_id: str) -> UploadSession:
        async with self.db.session() as s:
            row = await s.get(UploadSession, upload_id)
        if row is None or row.app_id != app.id or row.expires_at < utcnow():
            raise UploadNotFound(f"upload {upload_id!r} not found or expired")
        return row

    async def append(
        self, app: App, upload_id: str, offset: int, chunks: AsyncIterable[bytes]
    ) -> UploadSession:
        lock = self._locks.setdefault(upload_id, asyncio.Lock())
        async with lock:
            row = await self.get(app, upload_id)
            if offset != row.received:
                raise UploadOffsetMismatch(
                    f"upload {upload_id} is at offset {row.received}, not {offset}; resume from there"
                )
            limit = min(self.max_chunk, row.size - row.received)
            written = await self._write(self.path(upload_id), row.received, chunks, limit)
            async with self.db.write() as s:
                result = await s.exec(
                    update(UploadSession)
                    .where(col(UploadSession.id) == upload_id, col(UploadSession.received) == offset)
                    .values(received=offset + written)
                )
                if result.rowcount != 1:
                    raise UploadOffsetMismatch(
                        f"upload {upload_id} moved on concurrently; ask for its offset"
                    )
            row.received = offset + written
            return row

    @staticmethod
    async def _write(path: Path, offset: int, chunks: AsyncIterable[bytes], limit: int) -> int:
        fd = await asyncio.to_thread(os.open, path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            await asyncio.to_thread(os.ftruncate, fd, offset)
            await asyncio.to_thread(os.lseek, fd, offset, os.SEEK_SET)
            written = 0
            async for chunk in chunks:
                if written + len(chunk) > limit:
                    raise UploadTooLarge(
                        f"chunk runs past the upload's declared size or the {limit}-byte chunk limit"
                    )
                await asyncio.to_thread(os.write, fd, chunk)
                written += len(chunk)
            await asyncio.to_thread(os.fsync, fd)
            return written
        finally:
            await asyncio.to_thread(os.close, fd)

    async def complete_file(self, app: App, upload_id: str) -> tuple[UploadSession, Path]:
        row = await self.get(app, upload_id)
        if row.received != row.size:
            raise UploadIncomplete(
                f"upload {upload_id} has {row.received} of {row.size} bytes; send the rest first"
            )
        path = self.path(upload_id)
        if row.sha256 is not None:
            digest, _size = await asyncio.to_thread(sha256_file, path)
            if digest != row.sha256:
                await self.discard(upload_id)
                raise BlobDigestMismatch(
                    f"uploaded bytes have sha256 {digest}, not the declared {row.sha256}; upload again"
                )
        return row, path

    async def discard(self, upload_id: str) -> None:
        async with self.db.write() as s:
            await s.exec(delete(UploadSession).where(col(UploadSession.id) == upload_id))
        await asyncio.to_thread(self.path(upload_id).unlink, missing_ok=True)
        self._locks.pop(upload_id, None)

    async def expire(self) -> int:
        """Delete expired sessions and their files; returns how many."""
        async with self.db.session() as s:
            ids = list(
                (await s.exec(select(UploadSession.id).where(UploadSession.expires_at < utcnow()))).all()
            )
        for upload_id in ids:
            await self.discard(upload_id)
        return len(ids)
