"""The JetStream spool: any number of ingest processes on any number of hosts, one loader.

Ingest publishes each raw batch to the stream and answers only after the broker's
publish acknowledgement (the stream is file-backed, so acknowledged means stored).
``Nats-Msg-Id`` is derived from the batch's message ids, so a batch an SDK retries
within the stream's duplicate window is stored once.

The loader reads the stream in order with an ordered consumer that starts just after
the stream sequence it committed to the event store last (in the same transaction as
the rows), and purges what it has loaded. A loader killed at any moment resumes
from its committed position, and so does the next cycle after a load that failed:
nothing is lost, nothing is loaded twice, and no acknowledgement timeout has to pass
first.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import (
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

from mpaas.analytics.errors import Overloaded, RetryLater
from mpaas.analytics.spool.base import SpoolBatch
from mpaas.errors import ConfigError

log = logging.getLogger("mpaas.analytics.jetstream")
#: How long a retried batch is recognised by its Nats-Msg-Id.
DUPLICATE_WINDOW = 600.0
#: JetStream's answers when the stream (or the account) is full.
FULL_CODES = frozenset({10027, 10028, 10047, 10048, 10077})


def subject(stream: str) -> str:
    return f"mpaas.analytics.{stream}"


def position_key(stream: str) -> str:
    return f"jetstream:{stream}"


async def _quiet(exc: Exception) -> None:
    log.warning("NATS connection problem", extra={"error": f"{type(exc).__name__}: {exc}"[:200]})


async def connect(url: str, timeout: float = 5.0) -> Client:
    """Connect (reconnecting for ever once connected); the first connect gives up after ``timeout``."""
    return await asyncio.wait_for(
        nats.connect(
            servers=[u.strip() for u in url.split(",")],
            connect_timeout=2,
            max_reconnect_attempts=-1,
            reconnect_time_wait=1,
            error_cb=_quiet,
            name="mpaas",
        ),
        timeout,
    )


async def ensure_stream(js: JetStreamContext, stream: str) -> None:
    try:
        await js.stream_info(stream)
    except nats.js.errors.NotFoundError:
        await js.add_stream(
            StreamConfig(
                name=stream,
                subjects=[subject(stream)],
                retention=RetentionPolicy.LIMITS,
                storage=StorageType.FILE,
                discard=DiscardPolicy.NEW,
                duplicate_window=DUPLICATE_WINDOW,
            )
        )


def _check_name(stream: str) -> None:
    if not stream or any(not (c.isalnum() or c in "_-") for c in stream) or len(stream) > 64:
        raise ConfigError(f"MPAAS_ANALYTICS_NATS_STREAM={stream!r} must be 1-64 letters, digits, '_' or '-'")


class JetStreamSpool:
    def __init__(
        self, url: str, stream: str, *, publish_timeout: float = 5.0, connect_timeout: float = 5.0
    ) -> None:
        _check_name(stream)
        self.url, self.stream, self.subject = url, stream, subject(stream)
        self.publish_timeout, self.connect_timeout = publish_timeout, connect_timeout
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._connecting: asyncio.Task[None] | None = None

    async def start(self) -> None:
        try:
            await self._connect()
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            log.error(
                "cannot reach NATS; events are refused (503) until it answers", extra={"error": str(exc)}
            )
            self._connecting = asyncio.create_task(self._keep_connecting())

    async def _connect(self) -> None:
        nc = await connect(self.url, self.connect_timeout)
        try:
            js = nc.jetstream()
            await ensure_stream(js, self.stream)
        except BaseException:
            await nc.close()
            raise
        self._nc, self._js = nc, js

    async def _keep_connecting(self) -> None:
        while self._js is None:
            await asyncio.sleep(2)
            try:
                await self._connect()
            except (nats.errors.Error, OSError, TimeoutError):
                continue

    async def append(self, body: bytes | Sequence[bytes], dedupe_id: str) -> None:
        js = self._js
        if js is None:
            raise RetryLater("the event broker is not reachable", retry_after=5, code="broker_unavailable")
        try:
            payload = body if isinstance(body, bytes) else b"".join(body)
            await js.publish(
                self.subject, payload, timeout=self.publish_timeout, headers={"Nats-Msg-Id": dedupe_id}
            )
        except nats.js.errors.APIError as exc:
            if exc.err_code in FULL_CODES:
                raise Overloaded("the event stream is full; retry later", retry_after=30) from None
            raise RetryLater(
                "the event broker refused the batch", retry_after=2, code="broker_unavailable"
            ) from None
        except (nats.errors.Error, OSError, TimeoutError):
            raise RetryLater(
                "the event broker did not confirm", retry_after=2, code="broker_unavailable"
            ) from None

    async def close(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
        if self._nc is not None:
            await self._nc.close()
            self._nc = self._js = None


class JetStreamSource:
    """The loader's reader: an ordered consumer from the committed stream sequence on.

    A read goes on until it has what the stream held when the read began (the stream's last
    sequence then), or the budget: the client's buffer may be empty between deliveries while
    the broker holds more, and ``full`` is how the loader knows to read again. A read that
    does not start where the last one ended (its batch was not committed: the load failed)
    subscribes again from the committed sequence, so those messages are read again.
    """

    def __init__(self, url: str, stream: str) -> None:
        _check_name(stream)
        self.url, self.stream, self.key = url, stream, position_key(stream)
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._sub: Any = None
        #: The stream sequence the subscription delivers next.
        self._next = 0

    async def _subscribe(self, start: int) -> None:
        if self._nc is None:
            self._nc = await connect(self.url)
            self._js = self._nc.jetstream()
            await ensure_stream(self._js, self.stream)
        assert self._js is not None
        if self._sub is not None:
            await self._sub.unsubscribe()
        self._sub = await self._js.subscribe(
            subject(self.stream),
            stream=self.stream,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            config=ConsumerConfig(opt_start_seq=start),
            pending_msgs_limit=100_000,
            pending_bytes_limit=256 << 20,
        )
        self._next = start

    async def read(self, positions: Mapping[str, int], budget: int) -> SpoolBatch:
        start = positions.get(self.key, 0) + 1
        if self._sub is None or self._next != start:
            await self._subscribe(start)
        assert self._js is not None
        target = (await self._js.stream_info(self.stream)).state.last_seq
        batch = SpoolBatch()
        if target < start:  # nothing stored after the committed position
            return batch
        size, last = 0, 0
        while True:
            try:
                msg = await self._sub.next_msg(timeout=1.0)
            except nats.errors.TimeoutError:
                # stored but not delivered yet: read again (unless nothing came at all, as
                # when retention removed what was there: then there is nothing to wait for)
                batch.full = last > 0
                break
            seq = msg.metadata.sequence.stream
            batch.records.append((f"js:{seq}", msg.data))
            size, last = size + len(msg.data), seq
            if size >= budget:
                batch.full = True
                break
            if seq >= target and not self._sub.pending_msgs:
                break
        if last:
            batch.positions[self.key] = last
            batch.token = last
            self._next = last + 1
        return batch

    async def committed(self, batch: SpoolBatch) -> None:
        """Purge what the store now holds (everything below the next sequence)."""
        if batch.token and self._js is not None:
            try:
                await self._js.purge_stream(self.stream, seq=int(batch.token) + 1)
            except (nats.errors.Error, nats.js.errors.Error) as exc:  # purged on a later cycle
                log.warning("stream purge failed", extra={"error": str(exc)})

    async def close(self) -> None:
        if self._nc is not None:
            await self._nc.close()
            self._nc = self._js = self._sub = None
