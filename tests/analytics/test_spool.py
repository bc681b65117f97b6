"""The file spool: group commit, durability before the answer, torn tails, several writers."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from mpaas.analytics.errors import Overloaded, RetryLater
from mpaas.analytics.spool.base import DONE
from mpaas.analytics.spool.files import FileSpool
from mpaas.analytics.spool.framing import frame, unframe
from mpaas.analytics.spool.reader import FileSpoolSource


class GatedFsync:
    """fdatasync that blocks its first call until released, and counts calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self, fd: int) -> None:
        self.calls += 1
        if self.calls == 1:
            self.started.set()
            assert self.release.wait(30)
        os.fdatasync(fd)


async def until(predicate: Any) -> None:
    """Yield to the loop until ``predicate()`` holds (decided by events, not by time)."""
    for _ in range(10_000):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


async def test_one_fsync_covers_every_request_that_arrived_while_the_previous_ran(tmp_path: Path) -> None:
    fsync = GatedFsync()
    spool = FileSpool(tmp_path, fsync=fsync)
    await spool.start()
    first = asyncio.create_task(spool.append(b"first"))
    await asyncio.to_thread(fsync.started.wait, 30)
    rest = [asyncio.create_task(spool.append(b"r%d" % i)) for i in range(50)]
    await until(lambda: spool.pending == 50)
    assert not first.done() and not any(t.done() for t in rest)  # nothing acked before its fsync
    fsync.release.set()
    await asyncio.gather(first, *rest)
    assert (fsync.calls, spool.commits, spool.records) == (2, 2, 51)
    await spool.close()
    batch = FileSpoolSource(tmp_path).read_sync({}, 1 << 20)
    assert [body for _, body in batch.records] == [b"first", *(b"r%d" % i for i in range(50))]


async def test_too_much_waiting_is_overload_and_a_failed_fsync_acks_nothing(tmp_path: Path) -> None:
    fsync = GatedFsync()
    spool = FileSpool(tmp_path / "a", fsync=fsync, max_pending_bytes=1)
    await spool.start()
    first = asyncio.create_task(spool.append(b"one"))
    await asyncio.to_thread(fsync.started.wait, 30)
    second = asyncio.create_task(spool.append(b"two"))
    await until(lambda: spool.pending == 1)
    try:
        await spool.append(b"three")
        raise AssertionError("a third record was accepted")
    except Overloaded as exc:
        assert exc.status == 429 and exc.retry_after >= 1
    fsync.release.set()
    await asyncio.gather(first, second)
    await spool.close()

    fail = {"on": True}

    def failing(fd: int) -> None:
        if fail["on"]:
            raise OSError(5, "Input/output error")
        os.fdatasync(fd)

    spool = FileSpool(tmp_path / "b", fsync=failing)
    await spool.start()
    try:
        await spool.append(b"lost")
        raise AssertionError("a record was acknowledged without its fsync")
    except RetryLater as exc:
        assert exc.status == 503
    fail["on"] = False
    await spool.append(b"kept")
    await spool.close()
    batch = FileSpoolSource(tmp_path / "b").read_sync({}, 1 << 20)
    assert [body for _, body in batch.records] == [b"kept"]  # the failed write was cut back


async def test_a_torn_tail_is_ignored_once_sealed_and_waited_for_while_live(tmp_path: Path) -> None:
    spool = FileSpool(tmp_path)
    await spool.start()
    for i in range(3):
        await spool.append(b"rec%d" % i)
    (segment,) = [p for p in tmp_path.iterdir() if p.suffix == ".seg"]
    torn = frame(b"half written")
    with open(segment, "ab") as f:  # the writer is live: an incomplete record is not yet torn
        f.write(torn[:9])
    source = FileSpoolSource(tmp_path)
    live = source.read_sync({}, 1 << 20)
    assert [b for _, b in live.records] == [b"rec0", b"rec1", b"rec2"]
    assert live.positions[segment.name] != DONE
    with open(segment, "ab") as f:
        f.write(torn[9:])
    more = source.read_sync(live.positions, 1 << 20)
    assert [b for _, b in more.records] == [b"half written"]
    with open(segment, "ab") as f:  # now a writer dies mid-record, then its lock is gone
        f.write(frame(b"never finished")[:-3])
    await spool.close()
    sealed = source.read_sync(more.positions, 1 << 20)
    assert sealed.records == [] and sealed.positions == {segment.name: DONE}
    await source.committed(sealed)
    assert not segment.exists()


async def test_several_processes_share_a_spool_directory(tmp_path: Path) -> None:
    spools = [FileSpool(tmp_path, segment_bytes=64) for _ in range(3)]  # tiny segments: roll-overs too
    for s in spools:
        await s.start()
    await asyncio.gather(*(s.append(b"%d-%d" % (n, i)) for n, s in enumerate(spools) for i in range(20)))
    writers = {p.name.rsplit("-", 1)[0] for p in tmp_path.iterdir()}
    assert len(writers) == 3
    source, positions, seen = FileSpoolSource(tmp_path), {}, []
    while True:  # small budgets: positions carry over between reads
        batch = source.read_sync(positions, 100)
        seen += [b for _, b in batch.records]
        positions |= batch.positions
        if not batch.records and not batch.full:
            break
    assert sorted(seen) == sorted(b"%d-%d" % (n, i) for n in range(3) for i in range(20))
    for s in spools:
        await s.close()


@settings(deadline=None)  # no wall-clock limit: the machine is shared
@given(st.lists(st.binary(max_size=40), max_size=8), st.integers(min_value=0), st.booleans())
def test_unframe_returns_exactly_the_intact_prefix(bodies: list[bytes], cut: int, flip: bool) -> None:
    data = b"".join(frame(b) for b in bodies)
    if not data:
        assert unframe(data).records == []
        return
    cut = cut % (len(data) + 1)
    damaged = bytearray(data[:cut])
    if flip and damaged:
        damaged[-1] ^= 0x01
    found = unframe(bytes(damaged))
    intact, end = [], 0
    for b in bodies:
        if end + len(frame(b)) > cut - (1 if flip and cut else 0):
            break
        intact.append(b)
        end += len(frame(b))
    assert [b for _, b in found.records] == intact
    assert found.end == end
