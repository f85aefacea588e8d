"""Counters this process keeps about its own sends (Prometheus text on ``/metrics``)."""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass, field

LATENESS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)


@dataclass
class Histogram:
    buckets: tuple[float, ...] = LATENESS_BUCKETS
    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENESS_BUCKETS) + 1))
    total: float = 0.0
    n: int = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.buckets, value)] += 1
        self.total += value
        self.n += 1


@dataclass
class DispatchMetrics:
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)  # (channel, status)
    lateness: Histogram = field(default_factory=Histogram)
    claims: int = 0
    claimed: int = 0
    rescued: int = 0

    def outcome(self, channel: str, status: str) -> None:
        self.outcomes[(channel, status)] += 1
