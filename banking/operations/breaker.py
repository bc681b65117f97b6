"""A circuit breaker per upstream operation and process, on an injected clock.

Closed: calls pass; ``failures`` failed calls in a row open it. Open: calls are refused
at once (result code 7000) until ``reset_seconds`` have passed; then it is half-open and
lets one trial call through (others are still refused). The trial's success closes
it; its failure opens it again for another ``reset_seconds``.
"""

from __future__ import annotations

from collections.abc import Callable

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class CircuitBreaker:
    def __init__(self, failures: int, reset_seconds: float, clock: Callable[[], float]) -> None:
        self.threshold, self.reset_seconds, self.clock = failures, reset_seconds, clock
        self.state = CLOSED
        self.failures = 0
        self.opened_at = 0.0
        self._trial = False

    def allow(self) -> bool:
        if self.state == CLOSED:
            return True
        if self.state == OPEN:
            if self.clock() - self.opened_at < self.reset_seconds:
                return False
            self.state, self._trial = HALF_OPEN, False
        if self._trial:
            return False
        self._trial = True
        return True

    def success(self) -> None:
        self.state, self.failures, self._trial = CLOSED, 0, False

    def failure(self) -> None:
        self.failures += 1
        if self.state == HALF_OPEN or self.failures >= self.threshold:
            self.state, self.opened_at, self._trial = OPEN, self.clock(), False

    def snapshot(self) -> dict[str, object]:
        return {"state": self.state, "failures": self.failures}
