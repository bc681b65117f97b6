"""The clearing system that carries transfers to other banks: the seam and its answer.

A transfer to another bank goes pending in the ledger, then is submitted here. The
clearing system answers later, through the :data:`Answer` callback the transfers service
gives it, with the transfer id and whether the money went. The answer may come late,
twice or never: the service posts or voids only a pending transfer (a second answer
changes nothing), and a sweep voids what stayed pending past its timeout.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

#: ``answer(transfer_id, accepted)`` → what it did: ``posted``, ``voided``, ``ignored``, ``suspense``.
Answer = Callable[[str, bool], Awaitable[str]]


@dataclass(frozen=True)
class ClearingOrder:
    transfer_id: str
    amount: int
    currency: str
    bank: str
    account: str
    name: str


class ClearingSystem(Protocol):
    def connect(self, answer: Answer) -> None:
        """Where answers go; called once at start-up."""

    async def submit(self, order: ClearingOrder) -> None:
        """Hand the order over; the answer comes later through the callback."""

    async def close(self) -> None:
        """Stop; answers not yet given are dropped (the sweep voids their transfers)."""
