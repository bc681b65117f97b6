"""The push worker: expands due messages, claims deliveries, sends them, records outcomes.

It runs inside the server (``MPAAS_PUSH_WORKER=true``) and as ``mpaas push worker`` for
scale-out; any number of them share the queue in the database. ``concurrency`` pumps
each keep one slice of ``claim_size`` deliveries in flight, so several workers share a
queue and sending one slice overlaps claiming the next.

Crash safety: each outcome is written as it arrives (a group commit of the answers that
came in meanwhile), so a worker killed mid-slice leaves only its unanswered requests
claimed. Leases are short (``lease``) and a heartbeat renews them every ``heartbeat``
while the worker lives, so a dead worker's rows are claimed again at most ``lease``
after its last heartbeat (docs/push.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import secrets
import socket
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from mpaas.push.messages import localize
from mpaas.push.models import PushMessage
from mpaas.push.providers.base import Notification, Outcome, PushProvider, SendResult
from mpaas.push.queue.claims import Claimed, claim, renew
from mpaas.push.queue.expansion import expand_one_batch
from mpaas.push.queue.outcomes import SendOutcome, fail_undeliverable, record
from mpaas.push.queue.retry import RetryPolicy
from mpaas.push.queue.sweeps import expire_overdue, fire_fallbacks
from mpaas.storage.db import Database, utcnow

log = logging.getLogger("mpaas.push.worker")

#: Payload keys the SDK reads: our delivery id (for acks and receipts) and message id.
DELIVERY_KEY, MESSAGE_KEY = "mpaas_delivery", "mpaas_message"


@dataclass(frozen=True)
class WorkerConfig:
    #: Devices per expansion step.
    batch_size: int = 500
    concurrency: int = 2
    lease: timedelta = timedelta(seconds=8)
    poll_interval: float = 1.0
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    #: Rows per housekeeping statement (expiry, fallbacks).
    sweep_limit: int = 1000
    #: Deliveries per claim; ``None``: ``MPAAS_PUSH_CLAIM_SIZE`` from the database's settings.
    claim_size: int | None = None
    #: Lease renewal period; ``None``: ``MPAAS_PUSH_HEARTBEAT_SECONDS`` from the database's settings.
    heartbeat: timedelta | None = None


def new_worker_id() -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(3)}"


class MessageCache:
    """Messages are immutable once created (but for status); a small LRU saves a query per batch."""

    def __init__(self, db: Database, size: int = 256) -> None:
        self._db = db
        self._size = size
        self._rows: OrderedDict[int, PushMessage] = OrderedDict()

    async def get_many(self, ids: set[int]) -> dict[int, PushMessage]:
        missing = [i for i in ids if i not in self._rows]
        if missing:
            from sqlmodel import col, select

            async with self._db.session() as s:
                for row in (await s.exec(select(PushMessage).where(col(PushMessage.id).in_(missing)))).all():
                    assert row.id is not None
                    self._rows[row.id] = row
        out = {}
        for i in ids:
            self._rows.move_to_end(i)
            out[i] = self._rows[i]
        while len(self._rows) > self._size:
            self._rows.popitem(last=False)
        return out


def build_notification(d: Claimed, message: PushMessage, now: datetime) -> Notification:
    title, body = localize(message, d.locale)
    assert d.token is not None
    data = dict(message.data)
    data[DELIVERY_KEY] = str(d.id)
    data[MESSAGE_KEY] = str(message.id)
    return Notification(
        token=d.token,
        message_id=f"delivery:{d.id}",
        title=title,
        body=body,
        data=data,
        priority="high" if message.priority == "high" else "normal",
        ttl_seconds=max(int((d.expires_at - now).total_seconds()), 0),
        # A repeat after an unconfirmed attempt replaces the first on the device, not a second banner.
        collapse_id=message.collapse_id or f"mpaas-{message.id}",
        push_type=message.push_type,
    )


class PushWorker:
    def __init__(
        self,
        db: Database,
        providers: Mapping[str, PushProvider],
        config: WorkerConfig,
        *,
        worker_id: str | None = None,
        clock: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
        on_expanded: Callable[[], None] | None = None,
    ) -> None:
        self.db = db
        self.providers = dict(providers)
        self.config = config
        self.worker_id = worker_id or new_worker_id()
        self.clock = clock
        self.rng = rng or random.Random()
        self.on_expanded = on_expanded
        self.messages = MessageCache(db)
        settings = db.settings
        self.claim_size = config.claim_size or settings.push_claim_size
        self.heartbeat = config.heartbeat or timedelta(seconds=settings.push_heartbeat_seconds)
        #: Channels this worker can send on; the WebSocket hub serves ``ws`` in every server.
        self.channels = sorted(set(self.providers) | {"ws"})
        #: Deliveries claimed so far, and the ids whose lease the heartbeat keeps renewing.
        self.claimed = 0
        self._held: set[int] = set()
        self.heartbeats = 0
        self._wake_pumps = asyncio.Event()
        self._wake_housekeeping = asyncio.Event()
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._beat: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """Something was queued in this process: look now rather than at the next poll."""
        self._wake_pumps.set()
        self._wake_housekeeping.set()

    def start(self) -> None:
        self._beat = asyncio.create_task(self._heartbeat(), name="push-heartbeat")
        self._tasks = [asyncio.create_task(self._housekeeping(), name="push-housekeeping")]
        self._tasks += [
            asyncio.create_task(self._pump(), name=f"push-pump-{i}") for i in range(self.config.concurrency)
        ]

    async def stop(self, grace: float = 10.0) -> None:
        """Let batches in flight finish (their outcomes recorded, their leases renewed), then cancel."""
        self._stopping.set()
        self.wake()
        if self._tasks:
            _done, pending = await asyncio.wait(self._tasks, timeout=grace)
            for task in pending:
                task.cancel()
            for task in self._tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            self._tasks = []
        if self._beat is not None:
            self._beat.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._beat
            self._beat = None

    async def _sleep(self, event: asyncio.Event) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout=self.config.poll_interval)
        event.clear()

    async def _housekeeping(self) -> None:
        while not self._stopping.is_set():
            try:
                busy = await self.housekeeping_once()
            except Exception:
                log.exception("push housekeeping failed; retrying")
                busy = False
            if not busy:
                await self._sleep(self._wake_housekeeping)

    async def housekeeping_once(self) -> bool:
        """Expand one batch of a due message, expire overdue rows, fire fallbacks. True if busy."""
        now = self.clock()
        expanded = await expand_one_batch(self.db, now, self.config.batch_size, self.channels)
        if expanded:
            self._wake_pumps.set()
            if self.on_expanded is not None:
                self.on_expanded()
        expired = await expire_overdue(self.db, now, self.config.sweep_limit)
        fired = await fire_fallbacks(self.db, now, self.config.sweep_limit)
        if fired:
            self._wake_pumps.set()
            if self.on_expanded is not None:
                self.on_expanded()
        return bool(expanded or expired or fired)

    async def _pump(self) -> None:
        while not self._stopping.is_set():
            try:
                sent = await self.run_batch()
            except Exception:
                log.exception("push batch failed; its rows come back after the lease")
                sent = 0
            if not sent:
                await self._sleep(self._wake_pumps)

    async def _heartbeat(self) -> None:
        """Renew the leases of the deliveries in flight while this worker lives (until stop() ends it)."""
        period = self.heartbeat.total_seconds()
        while True:
            await asyncio.sleep(period)
            try:
                await self.renew_leases()
            except Exception:
                log.exception("push lease heartbeat failed; leases may run out and rows be sent again")

    async def renew_leases(self) -> int:
        """One heartbeat: extend the leases of the rows in flight to now + lease."""
        if not self._held:
            return 0
        self.heartbeats += 1
        return await renew(self.db, self.worker_id, set(self._held), self.clock() + self.config.lease)

    async def run_batch(self) -> int:
        """Claim one slice, send it and record each outcome as it arrives; returns how many it handled."""
        now = self.clock()
        claimed = await claim(
            self.db,
            self.worker_id,
            sorted(self.providers),
            now,
            self.claim_size,
            self.config.lease,
        )
        if not claimed:
            return 0
        self.claimed += len(claimed)
        ids = {d.id for d in claimed}
        self._held |= ids
        try:
            undeliverable = [d.id for d in claimed if not d.device_enabled or d.token is None]
            await fail_undeliverable(self.db, self.worker_id, undeliverable, now)
            ready = [d for d in claimed if d.device_enabled and d.token is not None]
            if ready:
                messages = await self.messages.get_many({d.message_id for d in ready})
                await self._send_and_record(ready, messages, now)
        finally:
            self._held -= ids
        return len(claimed)

    async def _send_and_record(
        self, ready: list[Claimed], messages: Mapping[int, PushMessage], now: datetime
    ) -> None:
        """One request per delivery; answers are written in group commits as they come in."""
        arrived: list[SendOutcome] = []
        signal = asyncio.Event()

        async def one(d: Claimed) -> None:
            try:
                note = build_notification(d, messages[d.message_id], now)
                result = await self.providers[d.channel].send(note)
            except Exception as exc:  # a provider bug must not strand the row until its lease ends
                log.warning("push send raised %r; the delivery is retried", exc, extra={"delivery_id": d.id})
                result = SendResult(outcome=Outcome.RETRY, reason="SendError")
            arrived.append(SendOutcome(d, result))
            signal.set()

        tasks = [asyncio.create_task(one(d)) for d in ready]
        remaining = len(ready)
        try:
            while remaining:
                await signal.wait()
                signal.clear()
                done, arrived[:] = list(arrived), []
                remaining -= len(done)
                await record(self.db, self.worker_id, done, self.clock(), self.config.policy, self.rng)
                self._held.difference_update(o.delivery.id for o in done)
        finally:
            for task in tasks:
                task.cancel()

    async def close_providers(self) -> None:
        for provider in self.providers.values():
            with contextlib.suppress(Exception):
                await provider.close()


@contextlib.asynccontextmanager
async def standalone_analytics(db: Database) -> AsyncIterator[None]:
    """For ``mpaas push worker``: its outcomes and sweeps emit the server's analytics events.

    In the server, the analytics start-up attaches the spool to the database; a worker
    process has no server, so it opens the same spool itself (without the loader, which
    runs in a server or ``mpaas analytics load``) for as long as it runs.
    """
    from mpaas.analytics.emit import attached, server_events
    from mpaas.analytics.runtime import AnalyticsRuntime

    if server_events(db) is not None:
        yield
        return
    runtime = AnalyticsRuntime(db.settings, db)
    await runtime.start(loader=False)
    try:
        async with attached(db, runtime):
            yield
    finally:
        await runtime.stop()
