"""Working a claimed batch: fence → compose → hand over → send → classify → record.

Never a transaction across the network: the chunk's rows are read in one snapshot, each
message is composed in a render process, the attempts of whatever is ready are counted in
one group-committed transaction (:mod:`calnotify.db.group`), the providers are called
outside any transaction, and the outcomes are recorded in another group commit,
each write guarded by the claim token.

At most ``in_flight`` messages of the process are handed over and not yet recorded at any
moment (:class:`Window`): a worker killed mid-send leaves at most that many to be sent again.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

from calnotify.actions.keys import LinkKeys
from calnotify.actions.links import Signer, base_url
from calnotify.channels.base import (
    ChannelAdapter,
    Message,
    Receipt,
    RetryableSendError,
    SendError,
    WireBuilder,
    unexpected,
)
from calnotify.clock import Clock
from calnotify.compose.pool import Cancelled, Composed, ComposePool, Job, PoolClosed
from calnotify.db.engine import Database
from calnotify.deliveries import lifecycle
from calnotify.deliveries.lifecycle import DeliveryStatus, Outcome, Reason, released
from calnotify.dispatch.answers import classify
from calnotify.dispatch.context import load, prepare
from calnotify.dispatch.fairness import Fairness
from calnotify.dispatch.heartbeat import Heartbeat
from calnotify.dispatch.settings import DispatchSettings
from calnotify.templates.errors import RenderError

log = logging.getLogger("calnotify.dispatch")
# How long the first message composed of a chunk waits for others to go with it.
GROUP_LINGER = 0.002
Record = Callable[[list[Outcome]], Awaitable[None]]


def _into(
    queue: asyncio.Queue[tuple[Any, Composed | BaseException]], delivery: Any
) -> Callable[[Composed | BaseException], None]:
    """What hands ``delivery``'s composed message (or error) to ``queue``."""

    def deliver(result: Composed | BaseException) -> None:
        queue.put_nowait((delivery, result))

    return deliver


class Window:
    """At most ``size`` messages handed over and not yet recorded."""

    def __init__(self, size: int) -> None:
        self.size = max(1, size)
        self._free = self.size
        self._changed = asyncio.Event()

    async def take(self, n: int) -> None:
        while self._free < n:
            self._changed.clear()
            await self._changed.wait()
        self._free -= n

    def give(self, n: int) -> None:
        self._free += n
        self._changed.set()


class Executor:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        channels: dict[str, ChannelAdapter],
        settings: DispatchSettings,
        pool: ComposePool,
        fairness: Fairness,
        stopping: Callable[[], bool],
        links: LinkKeys,
    ) -> None:
        self.db = db
        self.links = links
        self.base_url = base_url(settings.public_url)
        self.clock = clock
        self.channels = channels
        self.settings = settings
        self.pool = pool
        self.fairness = fairness
        self.stopping = stopping
        self.window = Window(settings.in_flight)
        self._wires: dict[str, WireBuilder | None] = {}
        # Each batch being worked, with where its chunk being worked begins and its lease
        # (what it has not recorded): the backlog the process holds in memory.
        self._waiting: dict[int, tuple[Sequence[Any], int, Heartbeat | None]] = {}

    def oldest_waiting(self) -> datetime | None:
        """When the earliest message claimed by this process and not yet sent was due to
        run (None: none waits). Claimed rows leave the queue's ``scheduled`` rows, so how
        far behind the sends are is this as much as the queue's earliest row. Messages of
        a slow location (its templates take long to render, :mod:`.fairness`) do not
        count: they wait for their render processes, not for this process."""
        slow = self.fairness.slow_now()
        oldest = None
        for batch, start, lease in self._waiting.values():  # each is sorted by run_at
            for delivery in itertools.islice(batch, start, None):
                if delivery.location_id in slow or (
                    lease is not None
                    and (delivery.id not in lease.held or delivery.id in lease.settling)
                ):
                    continue  # slow, or sent (being recorded, or recorded)
                if oldest is None or delivery.run_at < oldest:
                    oldest = delivery.run_at
                break
        return oldest

    # --- a batch ---------------------------------------------------------------------------

    async def work(self, batch: Sequence[Any], record: Callable[..., Awaitable[None]]) -> None:
        """Work a claimed batch chunk by chunk, its lease kept alive meanwhile; ``record``
        writes outcomes (patiently: ``record(outcomes, lease)``)."""
        locations = {d.location_id for d in batch}
        self.fairness.batch_started(locations)
        size = self.settings.chunk_size
        key = id(batch)
        self._waiting[key] = (batch, 0, None)
        try:
            async with Heartbeat(self.db, self.clock, self.settings.lease, batch) as lease:
                for start in range(0, len(batch), size):
                    if lease.lost:
                        # Another worker may own these rows now.
                        log.warning("dispatch: lease lost; leaving the rest of the batch")
                        break
                    if self.stopping():
                        # Shutting down: what was not started goes back to the queue at once.
                        rest = [d for d in batch[start:] if d.id in lease.held]
                        await record([released(d) for d in rest], lease)
                        break
                    chunk = [d for d in batch[start : start + size] if d.id in lease.held]
                    self._waiting[key] = (batch, start, lease)
                    if chunk:
                        # Sent messages are recorded as soon as their provider answered.
                        outcomes = await self.process(
                            chunk, lease, record=lambda sent: record(sent, lease)
                        )
                        await record(outcomes, lease)
                    lease.release(d.id for d in batch[start : start + size])
        finally:
            self._waiting.pop(key, None)
            self.fairness.batch_ended(locations)

    # --- a chunk ---------------------------------------------------------------------------

    async def process(
        self, chunk: Sequence[Any], lease: Heartbeat | None = None, *, record: Record | None = None
    ) -> list[Outcome]:
        """Fence, compose and send one chunk; every delivery gets its own outcome
        (``record``: the outcomes of each group of sent messages are handed to it as soon
        as they are known, and left out of the list returned).

        Each message is composed on its own and handed over as soon as it is ready,
        together with whatever else became ready at the same time: one slow or hostile
        message delays no other.
        """
        now = self.clock.now()
        outcomes, chunk = self.fairness.give_back_excess(chunk, self.stopping())
        if not chunk:
            return outcomes
        context = await load(self.db, chunk)
        # The link secret as this process keeps it: read at most once a minute, not per chunk.
        signer = Signer((await self.links.get(self.db, now))[0], self.base_url)
        token = chunk[0].claim_token or ""
        composed: asyncio.Queue[tuple[Any, Composed | BaseException]] = asyncio.Queue()
        jobs: list[tuple[Any, Job]] = []
        ready_made = 0
        for delivery in chunk:
            prepared = prepare(delivery, context, now, self.settings, self._wire, signer)
            if isinstance(prepared, Outcome):
                outcomes.append(prepared)
                continue
            self.fairness.started(delivery)
            if isinstance(prepared, Message):  # a webhook: nothing to compose
                composed.put_nowait((delivery, Composed(prepared, 0.0)))
                ready_made += 1
                continue
            job = self.pool.submit(delivery.location_id, prepared, _into(composed, delivery))
            jobs.append((delivery, job))
        sending: list[asyncio.Task[list[Outcome]]] = []
        try:
            waiting = len(jobs) + ready_made
            while waiting:
                group = await self._ready_group(composed, waiting)
                waiting -= len(group)
                ready: list[tuple[Any, Message]] = []
                for delivery, result in group:
                    if isinstance(result, Composed):
                        self.fairness.took(delivery.location_id, result)
                        ready.append((delivery, result.message))
                    else:
                        outcomes.append(self._not_composed(delivery, result))
                        self.fairness.settled(delivery)
                if ready:
                    sending.append(asyncio.create_task(self._send(ready, token, lease, record)))
                self._give_back_slow(jobs)
            for next_sent in asyncio.as_completed(sending):
                try:
                    outcomes.extend(await next_sent)
                except Exception:
                    # _send turns every failure into outcomes; this is a bug. What it held
                    # is taken back when the lease runs out (attempts recorded as unknown).
                    log.exception("dispatch: sending failed")
        finally:
            for _, job in jobs:
                job.cancel()
            for delivery in chunk:
                self.fairness.settled(delivery)
        return outcomes

    async def _ready_group(
        self, composed: asyncio.Queue[tuple[Any, Composed | BaseException]], waiting: int
    ) -> list[tuple[Any, Composed | BaseException]]:
        """The next messages composed, together: whatever arrives within ``GROUP_LINGER``
        of the first, up to a window's worth (their attempts are then counted in one
        write, and they are sent together)."""
        group = [await composed.get()]
        most = min(waiting, self.window.size)
        give_up = asyncio.get_running_loop().time() + GROUP_LINGER
        while len(group) < most:
            while len(group) < most and not composed.empty():
                group.append(composed.get_nowait())
            left = give_up - asyncio.get_running_loop().time()
            if len(group) >= most or left <= 0:
                break
            try:
                group.append(await asyncio.wait_for(composed.get(), left))
            except TimeoutError:
                break
        return group

    def _not_composed(self, delivery: Any, error: BaseException) -> Outcome:
        """How a delivery whose message could not be composed ends this round."""
        if isinstance(error, Cancelled | PoolClosed):
            return released(delivery)  # given back unsent: another round composes it
        if isinstance(error, RenderError):
            self.fairness.mark_slow(delivery.location_id)
            return Outcome(delivery, DeliveryStatus.FAILED, Reason.RENDER, str(error))
        log.error("dispatch: cannot compose delivery %s", delivery.id, exc_info=error)
        return Outcome(delivery, DeliveryStatus.FAILED, Reason.RENDER, repr(error))

    def _wire(self, channel: str) -> WireBuilder | None:
        if channel not in self._wires:
            adapter = self.channels.get(channel)
            self._wires[channel] = adapter.wire_builder() if adapter is not None else None
        return self._wires[channel]

    def _give_back_slow(self, jobs: Sequence[tuple[Any, Job]]) -> None:
        """Drop the composing still queued of locations found slow (or of everyone when
        stopping): those deliveries are given back unsent instead of holding this chunk."""
        slow = set(self.fairness.slow_locations())
        stopping = self.stopping()
        for delivery, job in jobs:
            if not job.done and (stopping or delivery.location_id in slow):
                job.cancel()

    # --- sending ---------------------------------------------------------------------------

    async def _send(
        self,
        ready: Sequence[tuple[Any, Message]],
        token: str,
        lease: Heartbeat | None,
        record: Record | None,
    ) -> list[Outcome]:
        """Hand the ready messages over (an attempt counted for each, in the database,
        before the provider is called), send them, classify the answers, and record them
        (or return them, without ``record``)."""
        try:
            if lease is not None and lease.lost:
                return []  # another worker may own these rows now; it records them
            await self.window.take(len(ready))
            try:
                outcomes = await self._hand_over_and_send(ready, token)
                if record is None:
                    return outcomes
                await record(outcomes)
                return []
            finally:
                self.window.give(len(ready))
        finally:
            for delivery, _ in ready:
                self.fairness.settled(delivery)

    async def _hand_over_and_send(
        self, ready: Sequence[tuple[Any, Message]], token: str
    ) -> list[Outcome]:
        now = self.clock.now()
        try:
            allowed = await lifecycle.hand_over(
                self.db,
                [d.id for d, _ in ready],
                token,
                now,
                now + self.settings.lease,
                self.settings.max_attempts,
            )
        except Exception as exc:
            # Nothing was handed over: the messages go back to the queue, unsent.
            log.warning("dispatch: cannot count the attempts (%s); not sending", exc)
            return [released(d) for d, _ in ready]
        outcomes: list[Outcome] = []
        by_channel: dict[str, list[tuple[Any, Message]]] = defaultdict(list)
        for delivery, message in ready:
            if delivery.id in allowed:
                counted = delivery._replace(attempts=delivery.attempts + 1)
                by_channel[delivery.channel].append((counted, message))
            elif delivery.attempts >= self.settings.max_attempts:
                error = delivery.last_error or "every attempt was used"
                outcomes.append(
                    Outcome(delivery, DeliveryStatus.FAILED, Reason.RETRIES_EXHAUSTED, error)
                )
            # else: this claim no longer holds it; whoever does records it.
        for sent in await asyncio.gather(
            *(self._send_channel(c, m) for c, m in by_channel.items())
        ):
            outcomes.extend(sent)
        return outcomes

    async def _send_channel(self, channel: str, items: list[tuple[Any, Message]]) -> list[Outcome]:
        adapter = self.channels[channel]
        # A backstop over the adapter's own per-message timeouts: a group never waits
        # longer than its messages could take one connection after another.
        rounds = -(-len(items) // max(1, adapter.concurrency))
        limit = adapter.send_timeout * rounds + 5.0
        results: Sequence[Receipt | SendError]
        try:
            async with asyncio.timeout(limit):
                results = await adapter.send_many([m for _, m in items])
            if len(results) != len(items):
                raise RuntimeError(f"{len(results)} answers for {len(items)} messages")
        except TimeoutError:
            lost = RetryableSendError(
                f"{adapter.provider}: no answer within {limit:g} s", maybe_sent=True
            )
            results = [lost] * len(items)
        except Exception as exc:  # an adapter bug: each message fails on its own
            results = [unexpected(exc)] * len(items)
        answered = self.clock.now()
        return [
            classify(d, m, result, answered, self.settings)
            for (d, m), result in zip(items, results, strict=True)
        ]
