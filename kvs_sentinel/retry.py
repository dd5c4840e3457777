"""The one backoff policy every sink retries with (Slack, SNS, Security Hub)."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter: attempt n waits between half and all of base · 2^(n-1), capped."""

    max_attempts: int = 5
    base_seconds: float = 0.5
    max_seconds: float = 20.0

    def backoff(self, attempt: int, rng: random.Random) -> float:
        delay = min(self.max_seconds, self.base_seconds * 2.0 ** (attempt - 1))
        return delay / 2 + rng.uniform(0, delay / 2)
