"""The dispatcher: due deliveries claimed, composed, sent and recorded, batch by batch.

Cut the way Oban cuts a queue (docs/engine.md, "The dispatcher"): :mod:`.producer` claims
with fairness between locations (:mod:`.fairness`), :mod:`.executor` works one batch
(fence, compose, hand over, send, classify with :mod:`.answers` and :mod:`.backoff`,
record; the writes are group-committed, :mod:`calnotify.db.group`), :mod:`.heartbeat`
keeps a batch's lease, :mod:`.lifeline` takes back dead workers' rows, and :mod:`.stager`
runs the planning jobs and the recurring horizon. :class:`Dispatcher` puts them together
and runs them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from calnotify.actions.keys import LinkKeys
from calnotify.channels.base import ChannelAdapter
from calnotify.clock import Clock
from calnotify.compose.pool import ComposePool
from calnotify.contacts.dnd import opted_out_at_provider
from calnotify.db.engine import DATABASE_ERRORS, Database
from calnotify.db.gate import Priority
from calnotify.deliveries import lifecycle
from calnotify.deliveries.lifecycle import DeliveryStatus, Outcome
from calnotify.dispatch.executor import Executor, Record
from calnotify.dispatch.fairness import Fairness
from calnotify.dispatch.heartbeat import Heartbeat
from calnotify.dispatch.metrics import DispatchMetrics
from calnotify.dispatch.producer import BATCHES_PER_LOOP, Producer
from calnotify.dispatch.settings import DispatchSettings
from calnotify.dispatch.stager import Stager
from calnotify.dispatch.wakeup import Wakeup

__all__ = ["DispatchSettings", "Dispatcher"]
log = logging.getLogger("calnotify.dispatch")


class Dispatcher:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        channels: dict[str, ChannelAdapter],
        settings: DispatchSettings | None = None,
        metrics: DispatchMetrics | None = None,
        pool: ComposePool | None = None,
        wakeup: Wakeup | None = None,
        links: LinkKeys | None = None,
    ) -> None:
        """``pool``: the render processes to compose in (None: the dispatcher starts its
        own, and ends them when it stops); ``wakeup``: what the writes of this process tell
        when they planned something due (None: only :meth:`wake` wakes it); ``links``: the
        link secrets as the process keeps them (None: its own)."""
        self.db = db
        self.clock = clock
        self.channels = channels
        self.settings = settings = settings or DispatchSettings()
        self.metrics = metrics or DispatchMetrics()
        self._owns_pool = pool is None
        self.pool = pool or ComposePool(
            settings.render_budget_seconds, processes=settings.render_processes
        )
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self.fairness = Fairness(self.pool, settings.concurrency * BATCHES_PER_LOOP)
        self.wakeup = wakeup or Wakeup()
        self.producer = Producer(db, clock, settings, self.fairness, self.metrics, self.wakeup)
        self.executor = Executor(
            db,
            clock,
            channels,
            settings,
            self.pool,
            self.fairness,
            lambda: self._stopping,
            links or LinkKeys(settings.link_secret_grace),
        )
        self.stager = Stager(db, clock, settings, self.wakeup)

    # --- running ---------------------------------------------------------------------------

    def wake(self) -> None:
        """New due work may exist (another process planned some)."""
        self.wakeup.due()

    def start(self) -> None:
        stopping = lambda: self._stopping  # noqa: E731
        for i in range(self.settings.concurrency):
            task = asyncio.create_task(self.producer.run(self.work, stopping), name=f"dispatch-{i}")
            self._tasks.append(task)
        self._tasks.append(asyncio.create_task(self.stager.run(stopping), name="dispatch-planning"))

    async def stop(self) -> None:
        """Stop claiming, give back what was claimed but not started, and let the messages
        being sent finish (drain), for at most ``drain_seconds``; past that the loops are
        cancelled and what they held is taken back when its lease runs out."""
        self._stopping = True
        self.wake()
        give_up = time.monotonic() + self.settings.drain_seconds
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=self.settings.drain_seconds)
        running = [*self._tasks, *self.producer.batches]
        if running:
            timeout = max(0.0, give_up - time.monotonic())
            _, late = await asyncio.wait(running, timeout=timeout)
            for task in late:
                task.cancel()
            if late:
                log.warning("dispatch: %d loops did not drain in time; cancelled", len(late))
                await asyncio.gather(*late, return_exceptions=True)
        self._tasks.clear()
        if self._owns_pool:
            await self.pool.close()

    async def drain(self, rounds: int = 100) -> int:
        """Run until nothing is due (for tests and one-shot use); the number processed."""
        total = 0
        for _ in range(rounds):
            while await self.plan_once():
                pass
            done = await self.run_once()
            total += done
            if not done:
                break
        return total

    async def run_once(self) -> int:
        """Claim and work one batch of due deliveries; the number claimed."""
        batch = await self.producer.claim_batch()
        if batch:
            await self.work(batch)
        return len(batch)

    async def plan_once(self, pages: int = 20) -> int:
        return await self.stager.plan_once(pages)

    async def claim_batch(self) -> list[Any]:
        return await self.producer.claim_batch()

    async def work(self, batch: Sequence[Any]) -> None:
        """Fence, compose, send and record a claimed batch, chunk by chunk."""
        await self.executor.work(batch, self._record_patiently)

    async def process(
        self, batch: Sequence[Any], lease: Heartbeat | None = None, *, record: Record | None = None
    ) -> list[Outcome]:
        """Fence, compose and send one chunk of a claim (see :meth:`Executor.process`)."""
        return await self.executor.process(batch, lease, record=record)

    # --- recording -------------------------------------------------------------------------

    async def record(self, outcomes: Sequence[Outcome]) -> None:
        if not outcomes:
            return
        for o in outcomes:
            self.metrics.outcome(o.delivery.channel, o.status.value)
            if o.status == DeliveryStatus.SENT:
                sent_at = o.at or self.clock.now()
                self.metrics.lateness.observe(
                    max(0.0, (sent_at - o.delivery.due_at).total_seconds())
                )
        await lifecycle.record(self.db, outcomes, self.clock.now())
        await self._opted_out([o for o in outcomes if o.opted_out and o.recipient])

    async def _opted_out(self, outcomes: Sequence[Outcome]) -> None:
        """Recipients who opted out at the provider (Twilio 21610) get the channel's DND,
        so the next message to them is skipped (``dnd``) instead of failing. Their
        deliveries are recorded already: a database error here is only logged."""
        if not outcomes:
            return
        try:
            async with self.db.transaction(Priority.SEND) as tx:
                for o in outcomes:
                    delivery = o.delivery
                    await opted_out_at_provider(
                        tx, delivery.location_id, o.recipient, delivery.channel, self.clock.now()
                    )
        except DATABASE_ERRORS as exc:
            log.warning("dispatch: cannot set DND for opted-out recipients: %s", exc)

    async def _record_patiently(
        self, outcomes: Sequence[Outcome], lease: Heartbeat | None = None
    ) -> None:
        """Record outcomes, waiting out a database outage while the lease lasts: messages
        already handed to a provider must not be sent again because a write failed."""
        if not outcomes:
            return
        give_up = self.clock.now() + self.settings.lease / 2
        pause = 0.25
        ids = [o.delivery.id for o in outcomes]
        if lease is not None:
            lease.recording(ids)
        while True:
            try:
                await self.record(outcomes)
                if lease is not None:
                    lease.release(ids)
                return
            except DATABASE_ERRORS as exc:
                if self.clock.now() >= give_up:
                    raise
                log.warning(
                    "dispatch: cannot record outcomes yet (%s); retrying", type(exc).__name__
                )
                await asyncio.sleep(pause)
                pause = min(pause * 2, 2.0)
