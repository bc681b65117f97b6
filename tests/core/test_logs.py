"""The log never blocks the server (ADR 0021): lines are written by a thread from a bounded
queue, a stderr nobody reads costs dropped records (counted, and said once it can write
again), never a stalled caller; each line is formatted where it was logged."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from mpaas.logs import QUEUE_RECORDS, dropped_records, flush_logs, request_id_var, setup_logging

BLOCKED = r"""
import logging
from mpaas.logs import dropped_records, setup_logging
setup_logging("INFO")
log = logging.getLogger("mpaas.test")
for i in range(RECORDS):
    log.warning("line %d %s", i, "x" * 200)
print(dropped_records(), flush=True)  # reached although nobody reads stderr
"""


def test_a_stderr_nobody_reads_costs_records_not_the_caller() -> None:
    records = 3 * 10_000
    code = BLOCKED.replace("RECORDS", str(records))
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    dropped = int(proc.stdout.readline())  # blocks for ever if logging blocked the loop
    _, err = proc.communicate(timeout=120)  # now read: the writer goes on, and at exit flushes
    assert proc.returncode == 0
    lines = [json.loads(line) for line in err.splitlines()]
    written = [line for line in lines if line["logger"] == "mpaas.test"]
    notes = [line for line in lines if line["logger"] == "mpaas.logs"]
    assert dropped > 0 and len(written) + dropped == records  # every record written or counted
    assert [n["msg"] for n in notes] == [f"dropped {dropped} log records: stderr was not being read"]
    assert len(written) <= QUEUE_RECORDS + 1000  # what a pipe holds, and the queue
    assert [line["msg"].split()[1] for line in written] == sorted(
        (line["msg"].split()[1] for line in written), key=int
    )  # in order


@pytest.fixture
def json_logs() -> Iterator[None]:
    """The server's logging, for one test."""
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    setup_logging("INFO", as_json=True)
    yield
    flush_logs()
    root.handlers[:] = saved
    root.setLevel(level)


def test_a_line_carries_the_request_id_it_was_logged_under(json_logs: None, capfd: Any) -> None:
    token = request_id_var.set("r_123")
    try:
        logging.getLogger("mpaas.test").warning("inside a request")
    finally:
        request_id_var.reset(token)
    logging.getLogger("mpaas.test").warning("outside")
    flush_logs()
    captured = capfd.readouterr()
    lines = [json.loads(line) for line in captured.err.splitlines() if line.startswith("{")]
    mine = [line for line in lines if line["logger"] == "mpaas.test"]
    assert [(line["msg"], line.get("request_id")) for line in mine] == [
        ("inside a request", "r_123"),
        ("outside", None),
    ]
    assert dropped_records() == 0


FORKED = r"""
import logging, os, sys
from mpaas.logs import setup_logging
setup_logging("INFO")
pid = os.fork()
logging.getLogger("mpaas.test").warning("from %s", "child" if pid == 0 else "parent")
if pid == 0:
    sys.exit(0)  # atexit: the child's writer writes its line
os.waitpid(pid, 0)
"""


def test_a_forked_child_writes_its_own_lines() -> None:
    done = subprocess.run(
        [sys.executable, "-c", FORKED], capture_output=True, text=True, timeout=60, check=True
    )
    assert sorted(json.loads(line)["msg"] for line in done.stderr.splitlines()) == [
        "from child",
        "from parent",
    ]
