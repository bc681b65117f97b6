"""Resumable uploads: a session, then chunks appended at a known offset.

The bytes go to ``<data dir>/uploads/<id>.part``; the session row records how many
bytes are durable (``received``). A chunk is written and fsynced before ``received``
advances, so after a crash the file may hold a torn tail past ``received``, which
the next chunk truncates away. A client that lost its connection asks for the
session's offset and continues from there.

With several server processes, ``<data dir>/uploads`` must be shared (or the load
balancer must keep an upload on one process).

An upload leaves nothing behind: one refused as unsafe is deleted at once (and logged
at WARNING and in the audit log with the rule it broke); expired sessions, and
``.part`` files whose session is gone, are swept on a timer (:meth:`Uploads.run_sweeper`)
and by ``mpaas gc``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlmodel import col, delete, select, update

from mpaas.identity.audit import Actor, record
from mpaas.identity.models import App
from mpaas.packages.errors import (
    UnsafeArchive,
    UnsupportedArchive,
    UploadIncomplete,
    UploadNotFound,
    UploadOffsetMismatch,
    UploadTooLarge,
)
from mpaas.packages.manifest import sha256_file
from mpaas.packages.models import UploadSession
from mpaas.storage.blobs import BlobDigestMismatch
from mpaas.storage.db import Database, utcnow

UPLOAD_TTL = timedelta(days=1)
#: How often a server sweeps expired uploads (also done at start and by ``mpaas gc``).
SWEEP_INTERVAL_SECONDS = 3600.0
log = logging.getLogger("mpaas.packages")


@dataclass
class UploadSweep:
    """What a sweep removed (or, in a dry run, would remove)."""

    sessions: int = 0
    orphan_files: int = 0
    bytes: int = 0

    def to_dict(self) -> dict[str, int]:
        return {"stale_uploads": self.sessions, "orphan_files": self.orphan_files, "upload_bytes": self.bytes}


#: What :meth:`Uploads.create` hands out: 32 lowercase hex digits.
UPLOAD_ID_RE = re.compile(r"[0-9a-f]{32}")


class Uploads:
    def __init__(
        self,
        db: Database,
        root: Path,
        *,
        max_size: int,
        max_chunk: int,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.root = root
        self.max_size = max_size
        self.max_chunk = max_chunk
        self.clock = clock
        self._locks: dict[str, asyncio.Lock] = {}
        #: Sweeps done by :meth:`run_sweeper`, and an event set after each (for waiting on one).
        self.sweeps = 0
        self.swept = asyncio.Event()

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
            expires_at=self.clock() + UPLOAD_TTL,
        )
        await asyncio.to_thread(self.root.mkdir, parents=True, exist_ok=True)
        await asyncio.to_thread(self.path(row.id).touch)
        async with self.db.write() as s:
            s.add(row)
        return row

    async def get(self, app: App, upload_id: str) -> UploadSession:
        if not UPLOAD_ID_RE.fullmatch(upload_id):
            raise UploadNotFound(f"upload {upload_id[:64]!r} not found: not an upload id")
        async with self.db.session() as s:
            row = await s.get(UploadSession, upload_id)
        if row is None or row.app_id != app.id or row.expires_at < self.clock():
            raise UploadNotFound(f"upload {upload_id!r} not found or expired")
        return row

    async def append(
        self, app: App, upload_id: str, offset: int, chunks: AsyncIterable[bytes]
    ) -> UploadSession:
        await self.get(app, upload_id)  # no lock is kept for an id that names no upload
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

    async def refuse(
        self, app: App, actor: Actor, upload_id: str, exc: UnsafeArchive | UnsupportedArchive
    ) -> None:
        """An upload refused as unsafe or unreadable: delete it now (it can never publish),
        and say so at WARNING and in the audit log, with the rule it broke."""
        rule = exc.rule if isinstance(exc, UnsafeArchive) else exc.code
        entry = exc.entry[:256] if isinstance(exc, UnsafeArchive) and exc.entry is not None else None
        async with self.db.write() as s:
            await s.exec(delete(UploadSession).where(col(UploadSession.id) == upload_id))
            detail = {"upload_id": upload_id, "rule": rule, "entry": entry, "message": exc.message[:500]}
            record(s, actor, "package.refused", f"upload:{upload_id}", app=app.name, detail=detail)
        await asyncio.to_thread(self.path(upload_id).unlink, missing_ok=True)
        self._locks.pop(upload_id, None)
        log.warning(
            "refused an archive for app %s by rule %s: %s",
            app.name,
            rule,
            exc.message[:500],
            extra={"app": app.name, "rule": rule, "upload_id": upload_id, "actor": actor.name},
        )

    async def sweep(self, *, dry_run: bool = False, orphan_grace: timedelta = UPLOAD_TTL) -> UploadSweep:
        """Remove expired sessions with their files, and ``.part`` files no session owns
        that are older than ``orphan_grace`` (a crash between the file and its row)."""
        now = self.clock()
        out = UploadSweep()
        async with self.db.session() as s:
            expired = list(
                (await s.exec(select(UploadSession.id).where(UploadSession.expires_at < now))).all()
            )
            live = set((await s.exec(select(UploadSession.id))).all())
        for upload_id in expired:
            out.sessions += 1
            out.bytes += await asyncio.to_thread(_size, self.path(upload_id))
            if not dry_run:
                await self.discard(upload_id)
        for path, size, modified in await asyncio.to_thread(_part_files, self.root):
            if path.stem not in live and modified < now - orphan_grace:
                out.orphan_files += 1
                out.bytes += size
                if not dry_run:
                    await asyncio.to_thread(path.unlink, missing_ok=True)
        return out

    async def gc_sweep(self, dry_run: bool, grace: timedelta) -> dict[str, int]:
        """:meth:`sweep` for ``mpaas gc`` (``mpaas.ops.gc.GC_SWEEPERS``)."""
        return (await self.sweep(dry_run=dry_run, orphan_grace=grace)).to_dict()

    async def expire(self) -> int:
        """Delete expired sessions and their files (and orphaned files); returns how many sessions."""
        return (await self.sweep()).sessions

    async def run_sweeper(self, interval: float = SWEEP_INTERVAL_SECONDS) -> None:
        """Sweep every ``interval`` seconds until cancelled; a failed sweep is logged and retried."""
        while True:
            await asyncio.sleep(interval)
            try:
                swept = await self.sweep()
                if swept.sessions or swept.orphan_files:
                    log.info("swept stale uploads", extra=swept.to_dict())
            except Exception:  # the database may be away for a moment; the next round retries
                log.exception("sweeping stale uploads failed")
            self.sweeps += 1
            self.swept.set()
            self.swept.clear()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _part_files(root: Path) -> list[tuple[Path, int, datetime]]:
    """(path, size, modified time in UTC) of every ``.part`` file under ``root``."""
    out = []
    for path in root.glob("*.part") if root.is_dir() else ():
        try:
            st = path.stat()
        except FileNotFoundError:
            continue
        out.append((path, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC)))
    return out
