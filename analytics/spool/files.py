"""The file spool's writer: one writer task per process, group commit, segments per process.

Every server process appends to its own segment files (``<writer id>-<seq>.seg``), so
that several processes (``mpaas server --workers N``) share one spool directory
without sharing a file. One asyncio task per process writes and fsyncs: requests that
arrive while an fsync runs wait for the next one, and one fsync then covers all of
them (group commit). A request is answered only after the fsync that covers its
record returned.

A writer holds an exclusive ``flock`` on its open segment; the loader treats a segment
nobody holds as sealed (its writer closed it or died), reads it to its last intact
record (:mod:`.framing` drops a torn tail) and deletes it once loaded. A segment is
created under a temporary name, locked, then renamed and its directory fsynced, so the
loader never sees an unlocked segment that is still to be written.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import secrets
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from mpaas.analytics.errors import Overloaded, RetryLater
from mpaas.analytics.spool.framing import frame_parts

log = logging.getLogger("mpaas.analytics.spool")
T = TypeVar("T")
SEGMENT_SUFFIX, TEMP_SUFFIX = ".seg", ".tmp"


class FileSpool:
    def __init__(
        self,
        directory: Path,
        *,
        segment_bytes: int = 64 << 20,
        max_pending_bytes: int = 32 << 20,
        min_free_bytes: int = 0,
        fsync: Callable[[int], None] = os.fdatasync,
    ) -> None:
        self.directory = directory
        self.segment_bytes = segment_bytes
        self.max_pending_bytes = max_pending_bytes
        self.min_free_bytes = min_free_bytes
        self._fsync = fsync
        self.writer_id = f"w{time.time_ns() // 1_000_000:013d}-{os.getpid()}-{secrets.token_hex(3)}"
        #: Counters for tests and metrics: fsyncs that committed, and records they covered.
        self.commits = 0
        self.records = 0
        self._seq = 0
        self._fd: int | None = None
        self._size = 0
        self._pending: list[bytes] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._pending_bytes = 0
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._low_space = False
        self._space_checked = 0.0

    @property
    def pending(self) -> int:
        """Records waiting for the next fsync (not counting those of the fsync running)."""
        return len(self._waiters)

    async def _run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    async def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="mpaas-spool")
        await self._run_sync(self._open_segment)
        self._task = asyncio.create_task(self._writer(), name="mpaas-spool-writer")

    async def append(self, body: bytes | Sequence[bytes], dedupe_id: str = "") -> None:
        """Append one record; returns once an fsync covered it."""
        if self._closing or self._task is None:
            raise RetryLater("the event spool is not running", retry_after=5)
        if self.min_free_bytes and self._short_of_space():
            raise RetryLater("the event spool's disk is nearly full", retry_after=30)
        if self._pending_bytes >= self.max_pending_bytes:
            raise Overloaded("too many events are waiting for the disk; retry shortly", retry_after=1)
        parts = frame_parts([body] if isinstance(body, bytes) else body)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.extend(parts)
        self._waiters.append(waiter)
        self._pending_bytes += sum(map(len, parts))
        self._wake.set()
        await waiter

    async def close(self) -> None:
        """Write what is pending, then seal the open segment."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        if self._executor is not None:
            await self._run_sync(self._close_segment)
            self._executor.shutdown(wait=True)
            self._executor = None

    async def _writer(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self._pending:
                if self._closing:
                    return
                continue
            batch, waiters = self._pending, self._waiters
            self._pending, self._waiters, self._pending_bytes = [], [], 0
            try:
                await self._run_sync(self._commit, batch)
            except OSError as exc:
                log.error("spool write failed; records not acknowledged", extra={"error": str(exc)})
                error = RetryLater("the event spool could not write; retry shortly", retry_after=5)
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_exception(error)
                continue
            self.commits += 1
            self.records += len(waiters)
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
            if self._pending or self._closing:
                self._wake.set()

    def _short_of_space(self) -> bool:
        """Free space under ``min_free_bytes``; statvfs at most once a second."""
        now = time.monotonic()
        if now - self._space_checked >= 1.0:
            self._space_checked = now
            st = os.statvfs(self.directory)
            self._low_space = st.f_bavail * st.f_frsize < self.min_free_bytes
        return self._low_space

    # -- in the spool's thread ------------------------------------------------------

    def _commit(self, parts: list[bytes]) -> None:
        if self._fd is None:
            self._open_segment()
        fd = self._fd
        assert fd is not None
        start = self._size
        try:
            written = write_all(fd, parts)
            self._fsync(fd)
        except OSError:
            self._abandon(start)
            raise
        self._size += written
        if self._size >= self.segment_bytes:
            try:
                self._open_segment()
            except OSError as exc:  # committed all the same; keep this segment, roll later
                log.warning("spool segment roll-over failed", extra={"error": str(exc)})

    def _abandon(self, good_size: int) -> None:
        """After a failed write or fsync: cut the segment back and seal it; the next
        commit opens a new one. Records past ``good_size`` were never acknowledged."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, good_size)
        except OSError:
            pass  # sealed with a torn tail: the reader stops before it
        os.close(fd)

    def _open_segment(self) -> None:
        self._seq += 1
        name = f"{self.writer_id}-{self._seq:06d}"
        temp = self.directory / (name + TEMP_SUFFIX)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC
        fd = os.open(temp, flags, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.rename(temp, self.directory / (name + SEGMENT_SUFFIX))
            fsync_dir(self.directory)
        except OSError:
            os.close(fd)
            raise
        self._close_segment()
        self._fd, self._size = fd, 0

    def _close_segment(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


IOV_MAX = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024


def write_all(fd: int, parts: list[bytes]) -> int:
    """Write every buffer, in order, with as few system calls as writev allows."""
    total = 0
    for i in range(0, len(parts), IOV_MAX):
        chunk = parts[i : i + IOV_MAX]
        size = sum(map(len, chunk))
        done = os.writev(fd, chunk)
        if done < size:  # a short write (rare on files): finish the chunk plainly
            view = memoryview(b"".join(chunk))[done:]
            while view:
                view = view[os.write(fd, view) :]
        total += size
    return total


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
