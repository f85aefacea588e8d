"""How long a retryable failure waits before its next attempt."""

from __future__ import annotations

import random


def backoff_seconds(attempts: int, base: float, cap: float) -> float:
    """Exponential from ``base`` (attempt 1 waits ``base``, attempt 2 twice that, …) up to
    ``cap``, with ±20 % jitter so that retries of one outage do not come back together."""
    delay: float = base * 2.0 ** max(0, attempts - 1)
    return min(cap, delay) * random.uniform(0.8, 1.2)
