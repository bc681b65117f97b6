"""The loader's side of the file spool: read segments from the offsets the store recorded.

A segment whose writer still holds its lock is live: only its complete, intact records
are read, and an incomplete tail is left for the next read. A segment nobody holds is
sealed: everything after its last intact record is a torn tail and is ignored, and once
it is read to the end its position becomes ``DONE`` and, after the load commits, the
file is deleted.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import time
from collections.abc import Mapping
from pathlib import Path

from mpaas.analytics.spool.base import DONE, SpoolBatch
from mpaas.analytics.spool.files import SEGMENT_SUFFIX, TEMP_SUFFIX
from mpaas.analytics.spool.framing import unframe

#: A temp segment (a writer died between creating and renaming it) is removed after this.
STALE_TEMP_SECONDS = 3600.0


def _sealed(fd: int) -> bool:
    """True when no writer holds the segment (a shared lock can be taken)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


class FileSpoolSource:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def read(self, positions: Mapping[str, int], budget: int) -> SpoolBatch:
        return await asyncio.to_thread(self.read_sync, positions, budget)

    def read_sync(self, positions: Mapping[str, int], budget: int) -> SpoolBatch:
        batch = SpoolBatch()
        if not self.directory.is_dir():
            return batch
        names = sorted(p.name for p in self.directory.iterdir() if p.name.endswith(SEGMENT_SUFFIX))
        present = set(names)
        batch.stale = [n for n, pos in positions.items() if pos == DONE and n not in present]
        used = 0
        for name in names:
            pos = positions.get(name, 0)
            if pos == DONE:
                continue
            used += self._read_segment(name, pos, budget - used, batch)
            if used >= budget:
                batch.full = True
                break
        return batch

    def _read_segment(self, name: str, pos: int, room: int, batch: SpoolBatch) -> int:
        try:
            fd = os.open(self.directory / name, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return 0
        try:
            sealed = _sealed(fd)  # decided before reading: a sealed file no longer grows
            size = os.fstat(fd).st_size
            want = max(0, min(size - pos, room))
            buf = os.pread(fd, want, pos) if want else b""
        finally:
            os.close(fd)  # also releases the shared lock
        found = unframe(buf, pos)
        batch.records.extend((f"{name}:{offset}", body) for offset, body in found.records)
        if sealed and pos + want >= size:
            batch.positions[name] = DONE  # read to the end; anything after found.end is torn
        elif found.end != pos:
            batch.positions[name] = found.end
        return want

    async def committed(self, batch: SpoolBatch) -> None:
        await asyncio.to_thread(self._cleanup, batch)

    def _cleanup(self, batch: SpoolBatch) -> None:
        for name, pos in batch.positions.items():
            if pos == DONE:
                try:
                    os.unlink(self.directory / name)
                except FileNotFoundError:
                    pass
        now = time.time()
        for path in self.directory.glob("*" + TEMP_SUFFIX):
            try:
                if now - path.stat().st_mtime < STALE_TEMP_SECONDS:
                    continue
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    if _sealed(fd):
                        path.unlink()
                finally:
                    os.close(fd)
            except FileNotFoundError:
                continue

    async def close(self) -> None:
        return None
