"""How long a failed delivery waits before its next attempt."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, never sooner than the provider's Retry-After."""

    base_seconds: float = 1.0
    max_seconds: float = 600.0
    max_attempts: int = 10

    def delay(self, attempts: int, retry_after: float | None, rng: random.Random) -> float:
        ceiling = min(self.max_seconds, self.base_seconds * 2 ** max(attempts - 1, 0))
        jittered = rng.uniform(0.0, ceiling)
        return max(jittered, retry_after or 0.0)
