"""The push worker: expands due messages, claims deliveries, sends them, records outcomes.

It runs inside the server (``MPAAS_PUSH_WORKER=true``) and as ``mpaas push worker`` for
scale-out; any number of them share the queue in the database. ``concurrency`` pumps
each keep one batch in flight, so sending one batch overlaps claiming the next.
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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from mpaas.push.messages import localize
from mpaas.push.models import PushMessage
from mpaas.push.providers.base import Notification, PushProvider, SendResult
from mpaas.push.queue.claims import Claimed, claim
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
    batch_size: int = 500
    concurrency: int = 2
    lease: timedelta = timedelta(seconds=120)
    poll_interval: float = 1.0
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    #: Rows per housekeeping statement (expiry, fallbacks).
    sweep_limit: int = 1000


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
        self._wake_pumps = asyncio.Event()
        self._wake_housekeeping = asyncio.Event()
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def wake(self) -> None:
        """Something was queued in this process: look now rather than at the next poll."""
        self._wake_pumps.set()
        self._wake_housekeeping.set()

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._housekeeping(), name="push-housekeeping")]
        self._tasks += [
            asyncio.create_task(self._pump(), name=f"push-pump-{i}") for i in range(self.config.concurrency)
        ]

    async def stop(self, grace: float = 10.0) -> None:
        """Let batches in flight finish (their outcomes recorded), then cancel."""
        self._stopping.set()
        self.wake()
        if not self._tasks:
            return
        _done, pending = await asyncio.wait(self._tasks, timeout=grace)
        for task in pending:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []

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
        expanded = await expand_one_batch(self.db, now, self.config.batch_size)
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

    async def run_batch(self) -> int:
        """Claim, send and record one batch; returns how many deliveries it handled."""
        now = self.clock()
        claimed = await claim(
            self.db,
            self.worker_id,
            sorted(self.providers),
            now,
            self.config.batch_size,
            self.config.lease,
        )
        if not claimed:
            return 0
        undeliverable = [d.id for d in claimed if not d.device_enabled or d.token is None]
        await fail_undeliverable(self.db, self.worker_id, undeliverable, now)
        ready = [d for d in claimed if d.device_enabled and d.token is not None]
        messages = await self.messages.get_many({d.message_id for d in ready})
        by_channel: dict[str, list[Claimed]] = {}
        for d in ready:
            by_channel.setdefault(d.channel, []).append(d)
        outcomes: list[SendOutcome] = []
        results = await asyncio.gather(
            *(self._send(channel, items, messages, now) for channel, items in by_channel.items())
        )
        for part in results:
            outcomes.extend(part)
        await record(self.db, self.worker_id, outcomes, self.clock(), self.config.policy, self.rng)
        return len(claimed)

    async def _send(
        self, channel: str, items: list[Claimed], messages: Mapping[int, PushMessage], now: datetime
    ) -> list[SendOutcome]:
        provider = self.providers[channel]
        notes = [build_notification(d, messages[d.message_id], now) for d in items]
        answers: list[SendResult] = await provider.send_many(notes)
        return [SendOutcome(d, r) for d, r in zip(items, answers, strict=True)]

    async def close_providers(self) -> None:
        for provider in self.providers.values():
            with contextlib.suppress(Exception):
                await provider.close()
