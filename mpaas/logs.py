"""Structured logging: one JSON object per line, with the request id when there is one.

The server never writes a log line itself (ADR 0021): a record is formatted where it is
logged (so it carries that request's id) and handed to a bounded queue, and one writer
thread per process writes the lines to stderr. A log collector that stops reading stderr
(a full pipe, a stalled journald or container log driver) then stalls that thread, not
the event loop: requests go on being answered, and records that find the queue full are
dropped and counted (``mpaas_log_records_dropped_total``; the writer logs how many once it
can write again).
"""

from __future__ import annotations

import atexit
import contextvars
import json
import logging
import logging.handlers
import os
import queue
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from prometheus_client.core import CounterMetricFamily
from prometheus_client.metrics_core import Metric

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        rid = request_id_var.get()
        if rid:
            out["request_id"] = rid
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class MalformedRequestFilter(logging.Filter):
    """Keep request bytes out of the log when aiohttp refuses a malformed request.

    aiohttp logs a request it cannot parse (an over-long header line, a bad request
    line) at ERROR with the parser's exception, whose message quotes the first bytes
    of the offending line: for an over-long ``Authorization`` header, a bearer token.
    This filter rewrites such a record to one WARNING line naming only the kind of
    error and its status, and drops the exception.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and _is_parse_error(exc):
            code = getattr(exc, "code", 400)
            record.msg = "refused a malformed request (%s, status %s)"
            record.args = (type(exc).__name__, code)
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def _is_parse_error(exc: BaseException) -> bool:
    from aiohttp.http_exceptions import HttpProcessingError

    return isinstance(exc, HttpProcessingError)


#: Records waiting for the writer thread; beyond it, records are dropped (and counted).
QUEUE_RECORDS = 10_000


class QueueingHandler(logging.handlers.QueueHandler):
    """Formats a record where it is logged and queues the line; never blocks the caller."""

    def __init__(self, lines: queue.Queue[Any]) -> None:
        super().__init__(lines)
        self._lock_dropped = threading.Lock()
        self.dropped = 0  # in all
        self.unreported = 0  # since the writer last said so

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            with self._lock_dropped:
                self.dropped += 1
                self.unreported += 1

    def take_unreported(self) -> int:
        with self._lock_dropped:
            n, self.unreported = self.unreported, 0
            return n


class _Writer(logging.StreamHandler[Any]):
    """The writer thread's handler: the line as formatted, then, once it can write again,
    how many records were dropped while it could not."""

    def __init__(self, source: QueueingHandler) -> None:
        super().__init__(sys.stderr)
        self.setFormatter(logging.Formatter("%(message)s"))
        self.source = source

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr  # whatever it is now (tests capture it; a daemon may replace it)
        super().emit(record)
        if self.source.unreported and (n := self.source.take_unreported()):
            note = logging.makeLogRecord(
                {"name": "mpaas.logs", "levelno": logging.WARNING, "levelname": "WARNING",
                 "msg": "dropped %d log records: stderr was not being read", "args": (n,)}
            )  # fmt: skip
            super().emit(logging.makeLogRecord({"msg": self.source.format(note)}))


class _Logs:
    """This process's queue, handler and writer thread."""

    handler: QueueingHandler | None = None
    lines: queue.Queue[Any] = queue.Queue()
    listener: logging.handlers.QueueListener | None = None


def dropped_records() -> int:
    """Log records this process dropped because stderr was not being read."""
    return _Logs.handler.dropped if _Logs.handler is not None else 0


class LogMetrics:
    """``mpaas_log_records_dropped_total``, read at scrape time."""

    def collect(self) -> Iterator[Metric]:
        dropped = CounterMetricFamily(
            "mpaas_log_records_dropped", "Log records dropped because stderr was not being read"
        )
        dropped.add_metric([], dropped_records())
        yield dropped


def flush_logs() -> None:
    """Wait until every queued line is written (tests; shutdown)."""
    if _Logs.listener is not None:
        _Logs.lines.join()


def _stop(wait: float = 5.0) -> None:
    """Write what is queued, then end the writer thread: within ``wait`` seconds, so that a
    process whose stderr nobody reads still exits (its last lines lost)."""
    listener, _Logs.listener = _Logs.listener, None
    if listener is None or listener._thread is None:
        return
    try:
        _Logs.lines.put(listener._sentinel, timeout=wait)  # type: ignore[attr-defined]
    except queue.Full:
        return
    listener._thread.join(wait)


def _after_fork() -> None:
    """A forked child has no writer thread: give it its own, with the parent's format."""
    if _Logs.listener is not None and _Logs.handler is not None:
        _Logs.listener = None
        _start(_Logs.handler.formatter)


atexit.register(_stop)
os.register_at_fork(after_in_child=_after_fork)


def _start(formatter: logging.Formatter | None) -> QueueingHandler:
    lines: queue.Queue[Any] = queue.Queue(QUEUE_RECORDS)
    handler = QueueingHandler(lines)
    handler.setFormatter(formatter)
    _Logs.handler, _Logs.lines = handler, lines
    _Logs.listener = logging.handlers.QueueListener(lines, _Writer(handler))
    _Logs.listener.start()
    logging.getLogger().handlers[:] = [handler]
    return handler


def setup_logging(level: str = "INFO", *, as_json: bool = True) -> None:
    _stop()
    text = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    _start(JsonFormatter() if as_json else text)
    root = logging.getLogger()
    root.setLevel(level)
    server_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, MalformedRequestFilter) for f in server_log.filters):
        server_log.addFilter(MalformedRequestFilter())
    for noisy in ("aiohttp.access", "alembic", "botocore", "boto3", "s3transfer", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
