"""Claiming: batches of due deliveries up to the free slots, with fairness between locations.

Each dispatch loop repeats: take a free batch slot, claim a batch (taking back expired
leases now and then, :mod:`.lifeline`), hand it to a task of its own (:mod:`.executor`), and
when nothing is due sleep until the next due time or a wake-up. A process keeps up to
``BATCHES_PER_LOOP`` batches in flight per loop, so a batch waiting for a slow provider
holds back no other message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from calnotify.clock import Clock
from calnotify.db.engine import DATABASE_ERRORS, Database
from calnotify.deliveries import lifecycle
from calnotify.dispatch.fairness import Fairness
from calnotify.dispatch.lifeline import Lifeline
from calnotify.dispatch.metrics import DispatchMetrics
from calnotify.dispatch.settings import DispatchSettings
from calnotify.dispatch.wakeup import Wakeup

log = logging.getLogger("calnotify.dispatch")

# Batches one dispatch loop may have in flight at once.
BATCHES_PER_LOOP = 4


class Producer:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        settings: DispatchSettings,
        fairness: Fairness,
        metrics: DispatchMetrics,
        wakeup: Wakeup,
    ) -> None:
        self.db = db
        self.clock = clock
        self.settings = settings
        self.fairness = fairness
        self.metrics = metrics
        self.lifeline = Lifeline(db, settings, metrics)
        self.wake = wakeup.waiter()
        self.slots = asyncio.Semaphore(settings.concurrency * BATCHES_PER_LOOP)
        self.batches: set[asyncio.Task[None]] = set()

    async def claim_batch(self) -> list[Any]:
        """Take back expired leases now and then, and claim a batch of due deliveries."""
        now = self.clock.now()
        await self.lifeline.rescue(now)
        batch = await lifecycle.claim(
            self.db,
            now,
            self.settings.batch_size,
            self.settings.lease,
            skip_locations=self.fairness.busy_locations(slow_ones=True),
            capped_locations=self.fairness.slow_locations(),
            cap=1,
        )
        self.metrics.claims += 1
        self.metrics.claimed += len(batch)
        return batch

    async def run(
        self, work: Callable[[Sequence[Any]], Awaitable[None]], stopping: Callable[[], bool]
    ) -> None:
        """One dispatch loop, until ``stopping()``."""
        while not stopping():
            await self.slots.acquire()
            if stopping():
                self.slots.release()
                break
            spawned = False
            try:
                batch = await self.claim_batch()
                if batch:
                    self._spawn(work, batch)
                    spawned = True
            except DATABASE_ERRORS as exc:
                # The database went away or is locked for long: wait and try again.
                log.warning("dispatch: database error, retrying: %s", type(exc).__name__)
                await asyncio.sleep(1.0)
                continue
            except Exception:
                log.exception("dispatch: unexpected error; continuing")
                await asyncio.sleep(1.0)
                continue
            finally:
                if not spawned:
                    self.slots.release()
            if spawned or stopping():
                continue
            await self._idle()

    def _spawn(
        self, work: Callable[[Sequence[Any]], Awaitable[None]], batch: Sequence[Any]
    ) -> None:
        task: asyncio.Task[None] = asyncio.create_task(work(batch), name="dispatch-batch")  # type: ignore[arg-type]
        self.batches.add(task)
        task.add_done_callback(self._batch_done)

    def _batch_done(self, task: asyncio.Task[None]) -> None:
        self.batches.discard(task)
        self.slots.release()
        if not task.cancelled() and (error := task.exception()) is not None:
            # Whatever happened, dispatch goes on; the batch's lease runs out and what it
            # still held is taken back.
            log.error("dispatch: a batch failed", exc_info=error)

    async def _idle(self) -> None:
        timeout = self.settings.poll_interval
        self.wake.clear()  # before looking: a wake-up while it looks is kept
        upcoming = await lifecycle.next_run_at(self.db)
        if upcoming is not None:
            until = (upcoming - self.clock.now()).total_seconds()
            timeout = max(0.0, min(timeout, until))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), timeout=timeout)
