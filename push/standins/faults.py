"""Fault injection shared by the APNs and FCM stand-ins."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Fault:
    """An error answer: HTTP status, provider reason, and an optional raw Retry-After value."""

    status: int
    reason: str
    retry_after: str | None = None


class FaultPlan:
    """Which requests fail: first the next-N queue, then each rate rule in order (seeded)."""

    def __init__(self, seed: int = 0) -> None:
        self._random = random.Random(seed)
        self._next: list[tuple[Fault, int]] = []
        self._rates: list[tuple[float, Fault]] = []

    def fail_next(self, count: int, fault: Fault) -> None:
        if count < 0:
            raise ValueError("count must be >= 0")
        if count:
            self._next.append((fault, count))

    def add_rate(self, rate: float, fault: Fault) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError("rate must be within [0, 1]")
        self._rates.append((rate, fault))

    def inject(self, fault: Fault, *, count: int | None, rate: float | None) -> None:
        """Fail the next ``count`` requests, or a ``rate`` share of them, with ``fault``."""
        if count is None and rate is None:
            raise ValueError("give count or rate")
        if count is not None:
            self.fail_next(count, fault)
        if rate is not None:
            self.add_rate(rate, fault)

    def clear(self) -> None:
        self._next.clear()
        self._rates.clear()

    def pick(self) -> Fault | None:
        if self._next:
            fault, left = self._next[0]
            if left <= 1:
                self._next.pop(0)
            else:
                self._next[0] = (fault, left - 1)
            return fault
        for rate, fault in self._rates:
            if self._random.random() < rate:
                return fault
        return None
