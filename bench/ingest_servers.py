"""Helpers of bench/ingest.py: the no-op on the ingest listener's layer, and what the runs need
around the servers (waiting for a port, CPU times of a process, recycling the spool)."""

from __future__ import annotations

from pathlib import Path

#: A no-op on the ingest listener's layer (asyncio.Protocol + httptools): it parses each
#: request, keeps its body and answers the same 200, without checking or spooling anything.
LEAN_NOOP = """
import httptools
class LeanNoop(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport, self.parser, self.body = transport, httptools.HttpRequestParser(self), []
    def data_received(self, data):
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()
    def on_message_begin(self):
        self.body = []
    def on_body(self, chunk):
        self.body.append(chunk)
    def on_message_complete(self):
        b"".join(self.body)
        self.transport.write(b"HTTP/1.1 200 OK\\r\\nContent-Type: application/json\\r\\n"
                             b"Content-Length: 16\\r\\n\\r\\n{\\"success\\":true}")
"""
LEAN_SERVER = """
import asyncio, sys
import uvloop
LEAN_NOOP
async def main():
    await asyncio.get_running_loop().create_server(LeanNoop, "127.0.0.1", int(sys.argv[1]), backlog=1024)
    await asyncio.Event().wait()
uvloop.run(main())
""".replace("LEAN_NOOP", LEAN_NOOP)

NOOP, LEAN = "aiohttp+uvloop no-op handler", "httptools no-op (the ingest listener's layer)"


def delete_sealed(directory: Path) -> int:
    """Delete the spool segments no writer holds (what the loader deletes once it loaded them);
    the bytes freed. With the loader off the spool grows by gigabytes a run, and on a VM the
    kernel's copies into never-used page-cache pages cost several times those into recycled
    ones: this keeps the page cache turning over as it does in service."""
    import fcntl
    import os

    freed = 0
    for path in directory.glob("*.seg"):
        fd = os.open(path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # the open segment: its writer holds it
        finally:
            os.close(fd)
        freed += path.stat().st_size
        path.unlink()
    return freed


def wait_port(port: int, timeout: float = 30.0) -> None:
    """Until something accepts connections on ``port`` (the lean no-op has no /healthz)."""
    import socket
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def cpu_ticks(pid: int) -> tuple[int, int]:
    """User and system CPU of a process so far, in clock ticks (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return int(fields[11]), int(fields[12])
