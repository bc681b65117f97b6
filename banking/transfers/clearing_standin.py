"""A stand-in clearing system for development and tests: it answers, late, twice or never.

``behaviour`` decides each order's fate: ``accept``, ``reject``, ``twice`` (accepts, then
accepts again), ``never`` (keeps the order in :attr:`held` for a test to answer by hand
with :meth:`answer_now`). ``delay`` seconds pass before an answer. :meth:`settled` waits
until every scheduled answer has been given, so tests decide by events, not sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Literal

from mpaas.banking.transfers.clearing import Answer, ClearingOrder

Behaviour = Literal["accept", "reject", "twice", "never"]
log = logging.getLogger("mpaas.banking.clearing")


class ClearingStandIn:
    def __init__(self, behaviour: Behaviour = "accept", delay: float = 0.0) -> None:
        self.behaviour: Behaviour = behaviour
        self.delay = delay
        self.submitted: list[ClearingOrder] = []
        self.held: list[ClearingOrder] = []
        self.outcomes: list[tuple[str, bool, str]] = []
        self._answer: Answer | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def connect(self, answer: Answer) -> None:
        self._answer = answer

    async def submit(self, order: ClearingOrder) -> None:
        self.submitted.append(order)
        if self.behaviour == "never":
            self.held.append(order)
            return
        times = 2 if self.behaviour == "twice" else 1
        accepted = self.behaviour != "reject"
        task = asyncio.create_task(self._later(order, accepted, times))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _later(self, order: ClearingOrder, accepted: bool, times: int) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)
        for _ in range(times):
            try:
                await self.answer_now(order, accepted)
            except Exception:
                log.exception("clearing stand-in: the answer failed")

    async def answer_now(self, order: ClearingOrder, accepted: bool) -> str:
        """Give an answer now (a test's late or repeated answer); returns what the bank did."""
        if self._answer is None:
            raise RuntimeError("the clearing stand-in is not connected")
        outcome = await self._answer(order.transfer_id, accepted)
        self.outcomes.append((order.transfer_id, accepted, outcome))
        return outcome

    async def settled(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
