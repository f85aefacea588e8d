"""Fairness between locations in one dispatching process.

Claims already take each location's earliest rows in turn (:func:`~calnotify.deliveries.
lifecycle.claim`). On top of that, this process keeps track of what each location has in
the works, so that one with a slow provider or hostile templates cannot take every batch
slot or every render process:

* a location with a message in the works for more than a second that already rides half of
  the process's batch slots is *busy*: left out of its claims while that lasts;
* a location one of whose messages took more than 0.25 s to compose (or failed to) is
  *slow* for a minute, unless that message's render process had less than a quarter of
  that time on the CPU (a busy machine, not a slow template: ``STARVED_SHARE``): each
  claim takes at most one of its rows, its composing is capped to one render process, and
  the rest of its rows in a chunk are given back unstarted.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from calnotify.compose.pool import STARVED_SHARE, Composed, ComposePool
from calnotify.deliveries.lifecycle import Outcome, released

# A location whose oldest message in the works is older than this is "busy".
SLOW_AFTER_SECONDS = 1.0
# A location one of whose messages took this long to compose is "slow" for a while.
SLOW_RENDER_SECONDS = 0.25
SLOW_MEMORY_SECONDS = 60.0


class Fairness:
    def __init__(self, pool: ComposePool, slots: int) -> None:
        self.pool = pool
        self.slots = slots  # batches this process may have in flight at once
        # Batches in the works here, by location they carry rows of.
        self._batches_of: Counter[str] = Counter()
        # Deliveries being composed or sent here, by location: when each began.
        self._inflight: dict[str, dict[str, float]] = defaultdict(dict)
        # Locations whose composing was slow lately: until when they count as slow.
        self._slow_until: dict[str, float] = {}

    def batch_started(self, locations: Iterable[str]) -> None:
        self._batches_of.update(locations)

    def batch_ended(self, locations: Iterable[str]) -> None:
        for location in locations:
            self._batches_of[location] -= 1
            if self._batches_of[location] <= 0:
                del self._batches_of[location]

    def started(self, delivery: Any) -> None:
        self._inflight[delivery.location_id][delivery.id] = time.monotonic()

    def settled(self, delivery: Any) -> None:
        work = self._inflight.get(delivery.location_id)
        if work is not None:
            work.pop(delivery.id, None)
            if not work:
                del self._inflight[delivery.location_id]

    def took(self, location_id: str, composed: Composed) -> None:
        """A message of ``location_id`` was composed (see the module for when it counts
        the location slow)."""
        if composed.seconds > SLOW_RENDER_SECONDS and composed.cpu >= (
            SLOW_RENDER_SECONDS * STARVED_SHARE
        ):
            self.mark_slow(location_id)

    def mark_slow(self, location_id: str) -> None:
        self._slow_until[location_id] = time.monotonic() + SLOW_MEMORY_SECONDS
        self.pool.cap(location_id, 1)

    def busy_locations(self, *, slow_ones: bool = False) -> list[str]:
        """The busy locations (see the module); with ``slow_ones``, also the slow ones with
        anything in the works at all: at most one batch at a time carries their rows."""
        cutoff = time.monotonic() - SLOW_AFTER_SECONDS
        half = max(1, self.slots // 2)
        busy = {
            loc
            for loc, work in self._inflight.items()
            if min(work.values()) < cutoff and self._batches_of[loc] >= half
        }
        if slow_ones:
            busy.update(loc for loc in self.slow_locations() if self._inflight.get(loc))
        return sorted(busy)

    def slow_now(self) -> set[str]:
        """The slow locations, and those a message of which has been composing for longer
        than a slow one takes already (without forgetting anything: a read)."""
        now = time.monotonic()
        slow = {loc for loc, until in self._slow_until.items() if until > now}
        return slow | self.pool.overdue(SLOW_RENDER_SECONDS)

    def slow_locations(self) -> list[str]:
        now = time.monotonic()
        for loc in [loc for loc, until in self._slow_until.items() if until <= now]:
            del self._slow_until[loc]
            self.pool.cap(loc, None)
        return sorted(self._slow_until)

    def give_back_excess(
        self, chunk: Sequence[Any], stopping: bool
    ) -> tuple[list[Outcome], list[Any]]:
        """Split off what a chunk should not start: everything when stopping, and of a
        location found slow meanwhile, all but one row."""
        slow = set(self.slow_locations())
        taken: Counter[str] = Counter()
        given_back: list[Outcome] = []
        kept: list[Any] = []
        for delivery in chunk:
            location = delivery.location_id
            if stopping or (location in slow and taken[location] >= 1):
                given_back.append(released(delivery))
            else:
                taken[location] += 1
                kept.append(delivery)
        return given_back, kept
