"""The file spool's writer: one writer thread per process, group commit, segments per process.

Every server process appends to its own segment files (``<writer id>-<seq>.seg``), so
that several processes (``mpaas server --workers N``) share one spool directory
without sharing a file. One thread per process writes and fsyncs: requests that
arrive while an fsync runs wait for the next one, and one fsync then covers all of
them (group commit). A request is answered only after the fsync that covers its
record returned.

The hand-off costs little per round: an append puts its buffers on a list under a
lock and, when no wake-up is due yet, schedules one with ``call_soon`` (a token in a
``SimpleQueue``): it runs after the requests already runnable in the loop appended
too, so a round is not split when the thread could take the list early (zlib's crc32
releases the GIL). After each fsync the thread settles the whole round's futures with
one ``call_soon_threadsafe``. (It replaced a writer task that ran each round through
``run_in_executor`` and woke on an ``asyncio.Event``: callgrind counted the difference.)

Once an fsync has made a round durable, its pages are dropped from the page cache
(``POSIX_FADV_DONTNEED``): the next round's writes then land in pages just freed rather
than in pages the kernel must first reclaim from other files, which cost the ingest
process 5-7 µs of system time a 26 KB record under a full page cache (and its p99), and
the spool, written once and read once by the loader, stops evicting the host's other
caches (PostgreSQL's, DuckDB's). The loader's rate does not change (bench/ingest.py).

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
import queue
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from mpaas.analytics.errors import Overloaded, RetryLater
from mpaas.analytics.spool.framing import frame_parts

log = logging.getLogger("mpaas.analytics.spool")
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
        drop_cache: bool = True,
    ) -> None:
        self.directory = directory
        self.segment_bytes = segment_bytes
        self.max_pending_bytes = max_pending_bytes
        self.min_free_bytes = min_free_bytes
        self._fsync = fsync
        self._drop_cache = drop_cache and hasattr(os, "posix_fadvise")
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
        #: Guards the three above and ``_signalled`` between the loop and the writer thread.
        self._lock = threading.Lock()
        self._wake: queue.SimpleQueue[None] = queue.SimpleQueue()
        self._signalled = False
        self._closing = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._low_space = False
        self._space_checked = 0.0

    @property
    def pending(self) -> int:
        """Records waiting for the next fsync (not counting those of the fsync running)."""
        return len(self._waiters)

    async def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        await asyncio.to_thread(self._open_segment)
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._writer, name="mpaas-spool", daemon=True)
        self._thread.start()

    async def append(self, body: bytes | Sequence[bytes], dedupe_id: str = "") -> None:
        """Append one record; returns once an fsync covered it."""
        await self.submit(body, dedupe_id)

    def submit(self, body: bytes | Sequence[bytes], dedupe_id: str = "") -> asyncio.Future[None]:
        """:meth:`append` without a coroutine: the future is done once an fsync covered the
        record (the lean ingest listener answers from its callback). Raises :class:`RetryLater`
        at once when the spool cannot take the record."""
        loop = self._loop
        if self._closing or self._thread is None or loop is None:
            raise RetryLater("the event spool is not running", retry_after=5)
        if self.min_free_bytes and self._short_of_space():
            raise RetryLater("the event spool's disk is nearly full", retry_after=30)
        if self._pending_bytes >= self.max_pending_bytes:
            raise Overloaded("too many events are waiting for the disk; retry shortly", retry_after=1)
        parts = frame_parts([body] if isinstance(body, bytes) else body)
        waiter: asyncio.Future[None] = loop.create_future()
        size = sum(map(len, parts))
        with self._lock:
            self._pending += parts
            self._waiters.append(waiter)
            self._pending_bytes += size
            kick, self._signalled = not self._signalled, True
        if kick:  # wake the thread after the requests already runnable have appended too
            loop.call_soon(self._wake.put, None)
        return waiter

    async def close(self) -> None:
        """Write what is pending, then seal the open segment."""
        with self._lock:
            self._closing = True
            if not self._signalled:
                self._signalled = True
                self._wake.put(None)
        thread, self._thread = self._thread, None
        if thread is not None:
            await asyncio.to_thread(thread.join)
            await asyncio.to_thread(self._close_segment)

    def _settle(self, waiters: list[asyncio.Future[None]], error: BaseException | None) -> None:
        """In the loop: answer one round's requests (after its fsync returned, or failed)."""
        if error is None:
            self.commits += 1
            self.records += len(waiters)
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
            return
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(error)

    def _short_of_space(self) -> bool:
        """Free space under ``min_free_bytes``; statvfs at most once a second."""
        now = time.monotonic()
        if now - self._space_checked >= 1.0:
            self._space_checked = now
            st = os.statvfs(self.directory)
            self._low_space = st.f_bavail * st.f_frsize < self.min_free_bytes
        return self._low_space

    # -- in the spool's thread ------------------------------------------------------

    def _writer(self) -> None:
        loop = self._loop
        assert loop is not None
        while True:
            self._wake.get()
            with self._lock:
                self._signalled = False
                batch, waiters = self._pending, self._waiters
                self._pending, self._waiters, self._pending_bytes = [], [], 0
                closing = self._closing
            if not waiters:
                if closing:
                    return
                continue
            error: BaseException | None = None
            try:
                self._commit(batch)
            except OSError as exc:
                log.error("spool write failed; records not acknowledged", extra={"error": str(exc)})
                error = RetryLater("the event spool could not write; retry shortly", retry_after=5)
            try:
                loop.call_soon_threadsafe(self._settle, waiters, error)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                return
            if closing:  # nothing can be appended once closing is set
                return

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
        if self._drop_cache:  # durable now: let the next round reuse these pages (docstring)
            try:
                os.posix_fadvise(fd, start, written, os.POSIX_FADV_DONTNEED)
            except OSError:  # a hint: the round is committed all the same
                self._drop_cache = False
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
