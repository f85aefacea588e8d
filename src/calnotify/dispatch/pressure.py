"""Sends before requests when the process's CPU is what runs out (architecture principle 16).

On SQLite the write gate (:mod:`calnotify.db.gate`) puts the dispatcher's writes first,
but a write is short: what a process offered more bookings than it can take runs out of
is its event loop, which the dispatcher shares with the requests. :class:`SendPressure`
tells the API to refuse write requests (503 with ``Retry-After``, before their body is
read) while both hold:

* the dispatcher is behind: the oldest delivery of its last claim was due at least
  ``behind_after`` seconds before it was claimed (the producer records it in
  :attr:`~calnotify.dispatch.metrics.DispatchMetrics.behind_seconds`);
* the event loop is busy: a timer set for ``interval`` fires ``busy_after`` seconds late
  or more (a moving average).

A dispatcher that is behind for another reason (a slow provider) leaves the loop idle,
and no request is refused for it. Only a process that dispatches sheds this way.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from calnotify.dispatch.metrics import DispatchMetrics

#: Seconds between the event loop's timer checks.
INTERVAL = 0.025


class SendPressure:
    def __init__(
        self,
        metrics: DispatchMetrics,
        *,
        behind_after: float = 0.5,
        busy_after: float = 0.01,
        interval: float = INTERVAL,
    ) -> None:
        self.metrics = metrics
        self.behind_after = behind_after
        self.busy_after = busy_after
        self.interval = interval
        #: How late the loop's timer fires, seconds (a moving average).
        self.lag = 0.0
        self._task: asyncio.Task[None] | None = None

    def overloaded(self) -> bool:
        """Whether a write request arriving now should be refused."""
        return self.metrics.behind_seconds >= self.behind_after and self.lag >= self.busy_after

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._watch(), name="send-pressure")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _watch(self) -> None:
        while True:
            started = time.monotonic()
            await asyncio.sleep(self.interval)
            late = max(0.0, time.monotonic() - started - self.interval)
            self.lag = 0.7 * self.lag + 0.3 * late
