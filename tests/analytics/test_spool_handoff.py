"""The spool's writer thread: group commit across tasks, nothing acked before its fsync,
close drains what is pending, and the hot path's header line is the record format's."""

from __future__ import annotations

import asyncio
import os
import struct
import threading
import zlib
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from mpaas.analytics.errors import RetryLater
from mpaas.analytics.spool.files import FileSpool
from mpaas.analytics.spool.framing import MAGIC, frame, frame_parts, unframe
from mpaas.analytics.spool.reader import FileSpoolSource
from mpaas.analytics.spool.record import RecordHeader, decode, encode, encode_parts, header_line


class Gate:
    """An fsync that blocks the calls listed in ``hold`` until released, and counts calls."""

    def __init__(self, hold: set[int]) -> None:
        self.hold = hold
        self.calls = 0
        self.started = {n: threading.Event() for n in hold}
        self.release = {n: threading.Event() for n in hold}

    def __call__(self, fd: int) -> None:
        self.calls += 1
        n = self.calls
        if n in self.hold:
            self.started[n].set()
            assert self.release[n].wait(30)
        os.fdatasync(fd)


async def until(predicate: object) -> None:
    for _ in range(10_000):
        if predicate():  # type: ignore[operator]
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


def read_all(directory: Path) -> list[bytes]:
    return [body for _, body in FileSpoolSource(directory).read_sync({}, 1 << 24).records]


async def test_each_round_is_one_fsync_and_no_record_is_acked_before_its_own(tmp_path: Path) -> None:
    gate = Gate({1, 2})
    spool = FileSpool(tmp_path, fsync=gate)
    await spool.start()
    first = asyncio.create_task(spool.append(b"a"))
    await asyncio.to_thread(gate.started[1].wait, 30)
    second = [asyncio.create_task(spool.append([b"b", b"%d" % i])) for i in range(20)]
    await until(lambda: spool.pending == 20)
    gate.release[1].set()
    await first
    await asyncio.to_thread(gate.started[2].wait, 30)  # the 20 are in the second fsync, still held
    third = [asyncio.create_task(spool.append(b"c%d" % i)) for i in range(7)]
    await until(lambda: spool.pending == 7)
    assert not any(t.done() for t in (*second, *third))
    gate.release[2].set()
    await asyncio.gather(*second, *third)
    assert (gate.calls, spool.commits, spool.records) == (3, 3, 28)
    await spool.close()
    expected = [b"a", *(b"b%d" % i for i in range(20)), *(b"c%d" % i for i in range(7))]
    assert read_all(tmp_path) == expected
    on_disk = b"".join(p.read_bytes() for p in sorted(tmp_path.glob("*.seg")))
    assert on_disk == b"".join(frame(body) for body in expected)  # the framing's bytes, unchanged


async def test_appends_runnable_together_share_one_fsync(tmp_path: Path) -> None:
    """Requests that append in one pass of the loop are one round, even though framing a
    large body releases the GIL (zlib's crc32) and the writer thread could run meanwhile."""
    spool = FileSpool(tmp_path)
    await spool.start()
    bodies = [bytes([i]) * 40_000 for i in range(20)]
    await asyncio.gather(*(spool.append(body) for body in bodies))
    assert (spool.commits, spool.records) == (1, 20)
    await spool.close()
    assert read_all(tmp_path) == bodies


async def test_close_writes_what_is_pending_and_refuses_what_comes_after(tmp_path: Path) -> None:
    gate = Gate({1})
    spool = FileSpool(tmp_path, fsync=gate)
    await spool.start()
    held = asyncio.create_task(spool.append(b"held"))
    await asyncio.to_thread(gate.started[1].wait, 30)
    waiting = [asyncio.create_task(spool.append(b"w%d" % i)) for i in range(5)]
    await until(lambda: spool.pending == 5)
    closing = asyncio.create_task(spool.close())
    await until(lambda: spool._closing)
    try:
        await spool.append(b"late")
        raise AssertionError("a record was accepted by a closing spool")
    except RetryLater as exc:
        assert exc.status == 503
    gate.release[1].set()
    await asyncio.gather(held, *waiting, closing)
    assert read_all(tmp_path) == [b"held", *(b"w%d" % i for i in range(5))]


async def test_a_failed_fsync_fails_its_whole_round_and_the_next_round_succeeds(tmp_path: Path) -> None:
    state = {"calls": 0}
    started, release = threading.Event(), threading.Event()

    def fsync(fd: int) -> None:
        state["calls"] += 1
        if state["calls"] == 1:
            started.set()
            assert release.wait(30)
            raise OSError(5, "Input/output error")
        os.fdatasync(fd)

    spool = FileSpool(tmp_path, fsync=fsync)
    await spool.start()
    doomed = [asyncio.create_task(spool.append(b"x"))]
    await asyncio.to_thread(started.wait, 30)
    later = [asyncio.create_task(spool.append(b"y%d" % i)) for i in range(3)]
    await until(lambda: spool.pending == 3)
    release.set()
    outcomes = await asyncio.gather(*doomed, *later, return_exceptions=True)
    assert isinstance(outcomes[0], RetryLater) and outcomes[1:] == [None, None, None]
    await spool.close()
    assert read_all(tmp_path) == [b"y0", b"y1", b"y2"]


names = st.text(max_size=40)


@given(
    source=names,
    endpoint=names,
    app=names,
    channel=st.none() | names,
    received=st.integers(min_value=0, max_value=2**63 - 1),
    rid=names,
    raw=st.binary(max_size=64),
)
def test_the_hot_paths_header_line_is_the_record_formats(
    source: str, endpoint: str, app: str, channel: str | None, received: int, rid: str, raw: bytes
) -> None:
    header = RecordHeader(source, endpoint, app, channel, received, rid)
    line = header_line(source, endpoint, app, channel, received, rid)
    assert [line, raw] == encode_parts(header, raw)
    assert b"".join([line, raw]) == encode(header, raw)
    assert decode(line + raw) == (header, raw)


@given(st.lists(st.binary(max_size=300), max_size=5))
def test_the_framing_checksum_is_zlibs_crc32(parts: list[bytes]) -> None:
    """Whichever module computes the CRC (zlib-ng when installed), the bytes are zlib's."""
    body = b"".join(parts)
    expected = MAGIC + struct.pack("<II", len(body), zlib.crc32(body)) + body
    assert b"".join(frame_parts(parts)) == expected == frame(body)
    assert unframe(expected).records == [(0, body)]
