"""Sends before requests when the process's CPU is what runs out (architecture principle 16).

On SQLite the write gate (:mod:`calnotify.db.gate`) puts the dispatcher's writes first,
but a write is short: what a process offered more bookings than it can take runs out of
is its event loop, which the dispatcher shares with the requests. :class:`SendPressure`
tells the API to refuse write requests (503 with ``Retry-After``, before their body is
read) while both hold:

* the sends are behind: the earliest delivery not yet sent was due ``behind_after`` seconds
  ago or more: the earliest ``scheduled`` row (read every ``CHECK_EVERY`` seconds, one
  indexed read) or the earliest the dispatcher claimed and has not sent yet (it holds its
  backlog in memory: claimed rows are no longer ``scheduled``), leaving out the locations
  whose templates render slowly;
* the event loop is busy: a timer set for ``interval`` fires ``busy_after`` seconds late
  or more (a moving average).

Sends behind for another reason (a slow provider) leave the loop idle, and no request is
refused for them. Only a process that dispatches sheds this way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Collection
from datetime import datetime

from calnotify.clock import Clock
from calnotify.db.engine import DATABASE_ERRORS, Database
from calnotify.deliveries import lifecycle

log = logging.getLogger("calnotify.dispatch")

#: Seconds between the event loop's timer checks.
INTERVAL = 0.025
#: Seconds between reads of how far behind the sends are.
CHECK_EVERY = 0.1


class SendPressure:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        behind_after: float = 0.2,
        busy_after: float = 0.01,
        interval: float = INTERVAL,
    ) -> None:
        self.db = db
        self.clock = clock
        self.behind_after = behind_after
        self.busy_after = busy_after
        self.interval = interval
        #: How long ago the earliest delivery not yet sent was due to run, seconds (0: none).
        self.behind = 0.0
        #: When the earliest message the dispatcher claimed and still holds was due (set
        #: when the dispatcher starts: :meth:`Executor.oldest_waiting`).
        self.waiting: Callable[[], datetime | None] = lambda: None
        #: The locations whose templates render slowly (:meth:`Fairness.slow_now`): their
        #: messages wait for render processes, and refusing requests would not help them.
        self.slow: Callable[[], Collection[str]] = lambda: ()
        self._queued = 0.0
        #: How late the loop's timer fires, seconds (a moving average).
        self.lag = 0.0
        self._task: asyncio.Task[None] | None = None

    def overloaded(self) -> bool:
        """Whether a write request arriving now should be refused."""
        return self.behind >= self.behind_after and self.lag >= self.busy_after

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
        checked = 0.0
        while True:
            started = time.monotonic()
            await asyncio.sleep(self.interval)
            now = time.monotonic()
            self.lag = 0.7 * self.lag + 0.3 * max(0.0, now - started - self.interval)
            try:
                if now - checked >= CHECK_EVERY:
                    checked = now
                    await self._look()
                else:
                    self._measure()
            except Exception:  # the watch must go on, or what it last saw would stay
                log.exception("send pressure: cannot tell how far behind the sends are")
                self.behind = 0.0

    async def _look(self) -> None:
        try:
            earliest = await lifecycle.next_run_at(self.db, skip=sorted(self.slow()))
        except DATABASE_ERRORS as exc:
            log.warning("send pressure: cannot read the queue: %s", type(exc).__name__)
            return
        self._queued = (self.clock.now() - earliest).total_seconds() if earliest else 0.0
        self._measure()

    def _measure(self) -> None:
        """How far behind: the queue as last read, or the dispatcher's claimed backlog now."""
        held = self.waiting()
        claimed = (self.clock.now() - held).total_seconds() if held else 0.0
        self.behind = max(self._queued, claimed, 0.0)
