"""Rate limits of the appointment page: requests per minute per link and per client address.

Kept in the memory of each process (documented as such in the README): a deployment of N
API processes allows up to N times the limit. Memory is bounded: the counts of at most
:data:`MAX_KEYS` keys are kept, and all are dropped when the minute turns.
"""

from __future__ import annotations

import time

MAX_KEYS = 100_000
WINDOW = 60.0  # seconds


class RateLimit:
    """At most ``per_minute`` hits per key in each fixed minute window."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._window = 0
        self._counts: dict[str, int] = {}

    def allow(self, *keys: str) -> bool:
        """Count a hit on each of ``keys``; False when one of them is over the limit."""
        window = int(time.monotonic() // WINDOW)
        if window != self._window or len(self._counts) > MAX_KEYS:
            self._window, self._counts = window, {}
        allowed = True
        for key in keys:
            count = self._counts.get(key, 0) + 1
            self._counts[key] = count
            allowed = allowed and count <= self.per_minute
        return allowed
