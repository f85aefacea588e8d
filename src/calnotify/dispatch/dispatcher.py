"""The dispatcher: claim → fence → render → send → record, batch by batch.

Never a transaction across the network: the claim is one short write transaction, the
fence and rendering read in one short read transaction, the provider calls happen outside
any transaction, and the outcomes are written in one short transaction, each guarded by
the claim token (a worker whose lease ran out and whose batch was given to another cannot
overwrite what that other worker recorded).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import formataddr

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, OperationalError

from calnotify.appointments.series import DEFAULT_HORIZON, advance_horizons
from calnotify.channels.base import (
    Attachment,
    ChannelAdapter,
    Message,
    Receipt,
    RetryableSendError,
    SendError,
    unexpected,
)
from calnotify.channels.ics import INVITE_TYPES, invitation, series_lines
from calnotify.channels.senders import (
    NOTHING_ALLOWED,
    AllowedSenders,
    choose_sender,
    load_allowed_senders,
)
from calnotify.clock import Clock
from calnotify.db.engine import Database
from calnotify.deliveries import lifecycle
from calnotify.deliveries.lifecycle import DeliveryStatus, Outcome, Reason
from calnotify.dispatch.metrics import DispatchMetrics
from calnotify.models import (
    Appointment,
    Calendar,
    Contact,
    Delivery,
    Location,
    Notification,
    Template,
    User,
)
from calnotify.models.delivery import RecipientKind
from calnotify.planning import jobs
from calnotify.planning.recipients import People, RecipientRef, for_customer, resolve
from calnotify.templates.budget import RenderPool
from calnotify.templates.render import RenderData, RenderError, render_notification
from calnotify.timefmt import zone

log = logging.getLogger("calnotify.dispatch")

# A location whose oldest message in the works is older than this is "busy" (see
# Dispatcher.busy_locations).
SLOW_AFTER_SECONDS = 1.0
# A location one of whose messages took this long to render is "slow" for a while (see
# Dispatcher.slow_locations): its claims are capped, and the rest of its chunk is given back.
SLOW_RENDER_SECONDS = 0.25
SLOW_MEMORY_SECONDS = 60.0
# Batches one dispatch loop may have in flight at once.
BATCHES_PER_LOOP = 4
# How often the planning loop looks for series whose horizon is behind, and how many it
# moves on per look.
HORIZON_EVERY = timedelta(minutes=1)
HORIZON_BATCH = 20
# How long a delivery waits for its rule's re-planning to reach it.
PLANNING_WAIT = timedelta(seconds=1)


@dataclass(frozen=True)
class DispatchSettings:
    batch_size: int = 200
    # A claimed batch is fenced, sent and recorded in chunks of this size, so a worker that
    # dies leaves at most one chunk sent but unrecorded (sent again after the lease).
    chunk_size: int = 100
    concurrency: int = 2
    lease: timedelta = timedelta(seconds=120)
    poll_interval: float = 0.5
    max_attempts: int = 8
    backoff_base: float = 15.0
    backoff_cap: float = 1800.0
    # The operator's senders (semantics §7): CALNOTIFY_EMAIL_FROM and the Twilio numbers.
    email_from: str = "calnotify <notifications@calnotify.invalid>"
    twilio_from_number: str = ""
    twilio_whatsapp_from: str = ""
    # Rendering one message: its wall-clock budget, and the threads it runs in.
    render_budget_seconds: float = 2.0
    # Rendering is CPU work under the interpreter lock: more threads add no throughput,
    # only contention with the event loop. A location found slow renders in one thread.
    render_threads: int = 2
    render_threads_per_location: int = 2
    # Recurring series: deliveries exist as rows when due within this long.
    planning_horizon: timedelta = DEFAULT_HORIZON
    # How long stop() waits for the batches in flight before abandoning them to the lease.
    drain_seconds: float = 30.0


class Dispatcher:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        channels: dict[str, ChannelAdapter],
        settings: DispatchSettings | None = None,
        metrics: DispatchMetrics | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.channels = channels
        self.settings = settings or DispatchSettings()
        self.metrics = metrics or DispatchMetrics()
        self._wake = asyncio.Event()
        self._jobs_wake = asyncio.Event()
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self._batches: set[asyncio.Task[None]] = set()
        # Batches in the works here, by location they carry rows of.
        self._batches_of: Counter[str] = Counter()
        self._slots = asyncio.Semaphore(self.settings.concurrency * BATCHES_PER_LOOP)
        self._last_rescue: datetime | None = None
        self._last_horizon: datetime | None = None
        # Deliveries being rendered or sent by this process, by location: when each began.
        self._inflight: dict[str, dict[str, float]] = defaultdict(dict)
        # Locations whose rendering was slow lately: until when they count as slow.
        self._slow_until: dict[str, float] = {}
        self.render_pool = RenderPool(
            self.settings.render_budget_seconds,
            threads=self.settings.render_threads,
            per_location=self.settings.render_threads_per_location,
        )

    # --- running ---------------------------------------------------------------------------

    def wake(self) -> None:
        """New due work may exist (called after a commit that planned some)."""
        self._wake.set()
        self._jobs_wake.set()

    def start(self) -> None:
        for i in range(self.settings.concurrency):
            self._tasks.append(asyncio.create_task(self._loop(), name=f"dispatch-{i}"))
        self._tasks.append(asyncio.create_task(self._planning_loop(), name="dispatch-planning"))

    async def stop(self) -> None:
        """Stop claiming, give back what was claimed but not started, and let the messages
        being sent finish (drain), for at most ``drain_seconds``; past that the loops are
        cancelled and what they held is taken back when its lease runs out."""
        self._stopping = True
        self._wake.set()
        self._jobs_wake.set()
        give_up = time.monotonic() + self.settings.drain_seconds
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=self.settings.drain_seconds)
        running = [*self._tasks, *self._batches]
        if running:
            timeout = max(0.0, give_up - time.monotonic())
            _, late = await asyncio.wait(running, timeout=timeout)
            for task in late:
                task.cancel()
            if late:
                log.warning("dispatch: %d loops did not drain in time; cancelled", len(late))
                await asyncio.gather(*late, return_exceptions=True)
        self._tasks.clear()
        await self.render_pool.close()

    async def _loop(self) -> None:
        """Claim batches and work on each in a task of its own, up to
        ``BATCHES_PER_LOOP`` per loop at once: a batch waiting for a slow or hanging
        provider holds back no other message."""
        while not self._stopping:
            await self._slots.acquire()
            if self._stopping:
                self._slots.release()
                break
            spawned = False
            try:
                batch = await self.claim_batch()
                if batch:
                    self._spawn(batch)
                    spawned = True
            except (OperationalError, DBAPIError, OSError) as exc:
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
                    self._slots.release()
            if spawned or self._stopping:
                continue
            await self._idle()

    def _spawn(self, batch: Sequence[Delivery]) -> None:
        task = asyncio.create_task(self.work(batch), name="dispatch-batch")
        self._batches.add(task)
        task.add_done_callback(self._batch_done)

    def _batch_done(self, task: asyncio.Task[None]) -> None:
        self._batches.discard(task)
        self._slots.release()
        if not task.cancelled() and (error := task.exception()) is not None:
            # Whatever happened, dispatch goes on; the batch's lease runs out and what it
            # still held is taken back.
            log.error("dispatch: a batch failed", exc_info=error)

    async def _planning_loop(self) -> None:
        """Planning jobs (re-planning a rule over a big calendar, a deleted calendar's
        cancellations) and the recurring horizon, a short transaction per page."""
        while not self._stopping:
            try:
                done = await self.plan_once()
            except (OperationalError, DBAPIError, OSError) as exc:
                log.warning("planning: database error, retrying: %s", type(exc).__name__)
                done = 0
            except Exception:
                log.exception("planning: unexpected error; continuing")
                done = 0
            if done or self._stopping:
                continue
            self._jobs_wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._jobs_wake.wait(), timeout=self.settings.poll_interval)

    async def plan_once(self, pages: int = 20) -> int:
        """Up to ``pages`` pages of planning work, and the recurring horizon moved on for
        series that are behind (looked for once a minute); the work done."""
        done = await jobs.run_jobs(self.db, self.clock, pages=pages)
        now = self.clock.now()
        if self._last_horizon is None or now - self._last_horizon >= HORIZON_EVERY:
            moved = await advance_horizons(
                self.db, self.clock, self.settings.planning_horizon, limit=HORIZON_BATCH
            )
            if moved < HORIZON_BATCH:
                self._last_horizon = now  # caught up: look again in a minute
            done += moved
        return done

    async def _idle(self) -> None:
        timeout = self.settings.poll_interval
        upcoming = await lifecycle.next_run_at(self.db)
        if upcoming is not None:
            until = (upcoming - self.clock.now()).total_seconds()
            timeout = max(0.0, min(timeout, until))
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=timeout)

    async def run_once(self) -> int:
        """Claim and process one batch of due deliveries; the number claimed."""
        batch = await self.claim_batch()
        if batch:
            await self.work(batch)
        return len(batch)

    async def claim_batch(self) -> Sequence[Delivery]:
        """Take back expired leases now and then, and claim a batch of due deliveries."""
        now = self.clock.now()
        await self._rescue(now)
        batch = await lifecycle.claim(
            self.db,
            now,
            self.settings.batch_size,
            self.settings.lease,
            skip_locations=self.busy_locations(slow_ones=True),
            capped_locations=self.slow_locations(),
            cap=1,
        )
        self.metrics.claims += 1
        self.metrics.claimed += len(batch)
        return batch

    async def work(self, batch: Sequence[Delivery]) -> None:
        """Fence, render, send and record a claimed batch, chunk by chunk."""
        locations = {d.location_id for d in batch}
        self._batches_of.update(locations)
        try:
            await self._work(batch)
        finally:
            self._batches_of.subtract(locations)
            for location in locations:
                if self._batches_of[location] <= 0:
                    del self._batches_of[location]

    async def _work(self, batch: Sequence[Delivery]) -> None:
        size = self.settings.chunk_size
        async with _Heartbeat(self, batch) as lease:
            for start in range(0, len(batch), size):
                if lease.lost:
                    # The lease could not be renewed: another worker may own these rows now.
                    log.warning("dispatch: lease lost; leaving the rest of the batch")
                    break
                chunk = [d for d in batch[start : start + size] if d.id in lease.held]
                if self._stopping:
                    # Shutting down: what was not started goes back to the queue at once.
                    rest = [d for d in batch[start:] if d.id in lease.held]
                    await self._record_patiently([lifecycle.released(d) for d in rest], lease)
                    break
                if chunk:
                    # Sent messages are recorded as soon as their provider answered, not
                    # when the chunk's slowest one did: a crash meanwhile leaves fewer
                    # messages whose fate is unknown.
                    outcomes = await self.process(
                        chunk, lease, record=lambda sent: self._record_patiently(sent, lease)
                    )
                    await self._record_patiently(outcomes, lease)
                lease.release(d.id for d in batch[start : start + size])

    async def _record_patiently(
        self, outcomes: Sequence[Outcome], lease: _Heartbeat | None = None
    ) -> None:
        """Record outcomes, waiting out a database outage while the lease lasts: messages
        already handed to a provider must not be sent again because a write failed."""
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
            except (OperationalError, DBAPIError, OSError) as exc:
                if self.clock.now() >= give_up:
                    raise
                log.warning(
                    "dispatch: cannot record outcomes yet (%s); retrying", type(exc).__name__
                )
                await asyncio.sleep(pause)
                pause = min(pause * 2, 2.0)

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

    async def _rescue(self, now: datetime) -> None:
        every = self.settings.lease / 4
        if self._last_rescue is not None and now - self._last_rescue < every:
            return
        self._last_rescue = now
        rescued = await lifecycle.rescue(self.db, now, self.settings.max_attempts)
        if rescued.requeued or rescued.abandoned:
            self.metrics.rescued += rescued.requeued + rescued.abandoned
            log.warning(
                "dispatch: took back %d deliveries from expired leases (%d queued again, "
                "%d failed: attempts used up or past their deadline)",
                rescued.requeued + rescued.abandoned,
                rescued.requeued,
                rescued.abandoned,
            )

    # --- one batch ---------------------------------------------------------------------

    async def process(
        self,
        batch: Sequence[Delivery],
        lease: _Heartbeat | None = None,
        *,
        record: Callable[[list[Outcome]], Awaitable[None]] | None = None,
    ) -> list[Outcome]:
        """Fence, render and send one chunk of a claim; every delivery gets its own outcome
        (``record``: the outcomes of each group of sent messages are handed to it as soon as
        they are known, and left out of the list returned).

        Each message is rendered on its own (off the event loop, within its budget) and
        handed over as soon as it is ready, together with whatever else became ready at the
        same time: one slow or hostile message delays no other.
        """
        now = self.clock.now()
        outcomes, batch = self._give_back_excess(batch)
        if not batch:
            return outcomes
        data = await self._load(batch)
        token = batch[0].claim_token or ""
        sending: list[asyncio.Task[list[Outcome]]] = []
        rendering = {asyncio.create_task(self._prepare_bounded(d, data, now)): d for d in batch}
        for delivery in batch:
            self._inflight[delivery.location_id][delivery.id] = time.monotonic()
        pending: set[asyncio.Task[Outcome | Message]] = set(rendering)
        try:
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                ready: list[tuple[Delivery, Message]] = []
                for task in done:
                    delivery = rendering[task]
                    if task.cancelled():
                        outcomes.append(lifecycle.released(delivery))
                        self._settled(delivery)
                        continue
                    prepared = task.result()
                    if isinstance(prepared, Outcome):
                        outcomes.append(prepared)
                        self._settled(delivery)
                    else:
                        ready.append((delivery, prepared))
                if ready:
                    sending.append(asyncio.create_task(self._send(ready, token, now, lease)))
                self._give_back_slow(pending, rendering)
            for next_sent in asyncio.as_completed(sending):
                try:
                    sent = await next_sent
                except Exception:
                    # _send turns every failure into outcomes; this is a bug. What it held
                    # is taken back when the lease runs out (attempts recorded as unknown).
                    log.exception("dispatch: sending failed")
                    continue
                if record is not None and sent:
                    await record(sent)
                else:
                    outcomes.extend(sent)
        finally:
            for task in pending:
                task.cancel()
            for delivery in batch:
                self._settled(delivery)
        return outcomes

    def _give_back_excess(self, batch: Sequence[Delivery]) -> tuple[list[Outcome], list[Delivery]]:
        """Split off what this chunk should not start: everything when stopping, and of a
        location found slow meanwhile, all but the few rows its claims are capped to."""
        slow = set(self.slow_locations())
        cap = 1  # a slow location renders in one thread: one row of it at a time
        taken: Counter[str] = Counter()
        given_back: list[Outcome] = []
        kept: list[Delivery] = []
        for delivery in batch:
            location = delivery.location_id
            if self._stopping or (location in slow and taken[location] >= cap):
                given_back.append(lifecycle.released(delivery))
            else:
                taken[location] += 1
                kept.append(delivery)
        return given_back, kept

    def _give_back_slow(
        self,
        pending: set[asyncio.Task[Outcome | Message]],
        rendering: dict[asyncio.Task[Outcome | Message], Delivery],
    ) -> None:
        """Cancel the renders still waiting of locations found slow (or of everyone when
        stopping): those deliveries are given back unsent instead of holding this loop, and
        the slow location's next claims are capped."""
        slow = set(self.slow_locations())
        for task in pending:
            if self._stopping or rendering[task].location_id in slow:
                task.cancel()

    async def _prepare_bounded(
        self, delivery: Delivery, data: _BatchData, now: datetime
    ) -> Outcome | Message:
        """:meth:`_prepare` in the render pool, within its budget; never raises (but may be
        cancelled). A render that took long marks its location slow."""
        took: list[float] = []
        try:
            return await self.render_pool.run(
                delivery.location_id, self._prepare_timed, took, delivery, data, now
            )
        except RenderError as exc:
            self._mark_slow(delivery.location_id)
            return Outcome(delivery, DeliveryStatus.FAILED, Reason.RENDER, str(exc))
        except Exception as exc:  # one bad delivery must not stop the others
            log.exception("dispatch: cannot prepare delivery %s", delivery.id)
            return Outcome(delivery, DeliveryStatus.FAILED, Reason.RENDER, repr(exc))
        finally:
            if took and took[0] > SLOW_RENDER_SECONDS:
                self._mark_slow(delivery.location_id)

    def _prepare_timed(
        self, took: list[float], delivery: Delivery, data: _BatchData, now: datetime
    ) -> Outcome | Message:
        began = time.monotonic()
        try:
            return self._prepare(delivery, data, now)
        finally:
            took.append(time.monotonic() - began)

    def _mark_slow(self, location_id: str) -> None:
        self._slow_until[location_id] = time.monotonic() + SLOW_MEMORY_SECONDS
        self.render_pool.cap(location_id, 1)

    async def _send(
        self,
        ready: Sequence[tuple[Delivery, Message]],
        token: str,
        now: datetime,
        lease: _Heartbeat | None,
    ) -> list[Outcome]:
        """Hand the ready messages over (an attempt counted for each, in the database, before
        the provider is called), send them, and classify the answers."""
        if lease is not None and lease.lost:
            return []  # another worker may own these rows now; it records them
        until = self.clock.now() + self.settings.lease
        try:
            allowed = await lifecycle.hand_over(
                self.db, [d.id for d, _ in ready], token, now, until, self.settings.max_attempts
            )
        except Exception as exc:
            # Nothing was handed over: the messages go back to the queue, unsent (recording
            # that waits for the database like any other outcome).
            log.warning("dispatch: cannot count the attempts (%s); not sending", exc)
            for delivery, _ in ready:
                self._settled(delivery)
            return [lifecycle.released(d) for d, _ in ready]
        outcomes: list[Outcome] = []
        by_channel: dict[str, list[tuple[Delivery, Message]]] = defaultdict(list)
        for delivery, message in ready:
            if delivery.id in allowed:
                delivery.attempts += 1
                by_channel[delivery.channel].append((delivery, message))
            elif delivery.attempts >= self.settings.max_attempts:
                error = delivery.last_error or "every attempt was used"
                outcomes.append(
                    Outcome(delivery, DeliveryStatus.FAILED, Reason.RETRIES_EXHAUSTED, error)
                )
            # else: this claim no longer holds it; whoever does records it.

        async def send_channel(channel: str) -> list[Outcome]:
            items = by_channel[channel]
            adapter = self.channels[channel]
            # A backstop over the adapter's own per-message timeouts: a batch never waits
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
                self._outcome_safely(d, m, result, answered)
                for (d, m), result in zip(items, results, strict=True)
            ]

        for sent in await asyncio.gather(*(send_channel(c) for c in by_channel)):
            outcomes.extend(sent)
        for delivery, _ in ready:
            self._settled(delivery)
        return outcomes

    def _settled(self, delivery: Delivery) -> None:
        work = self._inflight.get(delivery.location_id)
        if work is not None:
            work.pop(delivery.id, None)
            if not work:
                del self._inflight[delivery.location_id]

    def busy_locations(self, *, slow_ones: bool = False) -> list[str]:
        """Locations with a message in the works here for longer than a second (a slow
        provider answer, a render near its budget) that already ride half of this
        process's batch slots: left out of its next claims while that lasts, so they cannot
        occupy every slot (and a location alone on the machine keeps the other half). With
        ``slow_ones``, also the slow locations (:meth:`slow_locations`) with anything in
        the works at all: at most one batch at a time carries their few rows."""
        cutoff = time.monotonic() - SLOW_AFTER_SECONDS
        half = max(1, self.settings.concurrency * BATCHES_PER_LOOP // 2)
        busy = {
            loc
            for loc, work in self._inflight.items()
            if min(work.values()) < cutoff and self._batches_of[loc] >= half
        }
        if slow_ones:
            busy.update(loc for loc in self.slow_locations() if self._inflight.get(loc))
        return sorted(busy)

    def slow_locations(self) -> list[str]:
        """Locations one of whose messages took long to render in the last minute: at most
        a few of their rows per claim, so a hostile template cannot fill a batch."""
        now = time.monotonic()
        for loc in [loc for loc, until in self._slow_until.items() if until <= now]:
            del self._slow_until[loc]
            self.render_pool.cap(loc, None)
        return sorted(self._slow_until)

    def _prepare(self, delivery: Delivery, data: _BatchData, now: datetime) -> Outcome | Message:
        appointment = data.appointments.get(delivery.appointment_id)
        rule = data.rules.get(delivery.notification_id)
        calendar = data.calendars.get(delivery.calendar_id)
        people = data.people.get(delivery.location_id)
        if rule is not None and (not rule.is_active or rule.deleted):
            return Outcome(delivery, DeliveryStatus.SKIPPED, Reason.INACTIVE)
        if (
            rule is not None
            and rule.version != delivery.notification_version
            and rule.planned_version < rule.version
        ):
            # The rule is being re-planned and this delivery's page is not done yet: it
            # waits for it (kept and re-stamped, or cancelled) instead of being dropped.
            if now > delivery.deadline_at:
                return Outcome(delivery, DeliveryStatus.SKIPPED, Reason.LATE)
            return Outcome(
                delivery, DeliveryStatus.SCHEDULED, released=True, retry_at=now + PLANNING_WAIT
            )
        if (
            appointment is None
            or rule is None
            or calendar is None
            or people is None
            or appointment.deleted
            or calendar.deleted
            or appointment.calendar_id != delivery.calendar_id
            or appointment.version != delivery.appointment_version
            or rule.version != delivery.notification_version
        ):
            # The fence: what this delivery was planned from has changed since.
            return Outcome(delivery, DeliveryStatus.SKIPPED, Reason.STALE)
        if now > delivery.deadline_at:
            return Outcome(delivery, DeliveryStatus.SKIPPED, Reason.LATE)
        ref = RecipientRef(RecipientKind(delivery.recipient_kind), delivery.recipient_ref)
        resolved = resolve(ref, delivery.channel, appointment, people)
        if resolved.skip is not None:
            return Outcome(
                delivery, DeliveryStatus.SKIPPED, resolved.skip, recipient=resolved.address
            )
        contact = people.contacts.get(appointment.contact_id)
        customer = for_customer(delivery.recipient_kind)
        if customer and contact is not None and contact.timezone:
            where = zone(contact.timezone)
        else:
            where = zone(people.location.timezone)
        template = data.templates.get(rule.template_id) if rule.template_id else None
        try:
            rendered = render_notification(
                rule,
                template,
                RenderData(
                    appointment=appointment,
                    calendar=calendar,
                    location=people.location,
                    contact=contact,
                    user=people.users.get(appointment.assigned_user_id or ""),
                ),
                where,
                for_customer=customer,
            )
        except RenderError as exc:
            return Outcome(delivery, DeliveryStatus.FAILED, Reason.RENDER, str(exc))
        attachments: tuple[Attachment, ...] = ()
        method = INVITE_TYPES.get(delivery.notification_type)
        invited = delivery.recipient_kind in (RecipientKind.CONTACT, RecipientKind.GUEST)
        if delivery.channel == "email" and method and invited:
            uid, recurrence_id = appointment.id, None
            recurrence: tuple[str, ...] = ()
            if appointment.master_id:  # one occurrence of a series changed
                uid, recurrence_id = appointment.master_id, appointment.original_start_at
            elif appointment.rrule:  # the series itself
                recurrence = series_lines(appointment.rrule, data.deleted.get(appointment.id, ()))
            attachments = (
                invitation(
                    method=method,
                    appointment_id=uid,
                    recurrence=recurrence,
                    recurrence_id=recurrence_id,
                    sequence=appointment.version,
                    start=appointment.start_at,
                    end=appointment.end_at,
                    summary=appointment.title or calendar.name,
                    description=appointment.description,
                    location=appointment.address,
                    organizer_name=rule.from_name or people.location.name,
                    organizer_email=rule.from_address or people.location.email,
                    attendee_email=resolved.address,
                    stamp=now,
                ),
            )
        sender = choose_sender(
            delivery.channel,
            rule_from_name=rule.from_name,
            rule_from_address=rule.from_address,
            rule_from_number=rule.from_number,
            location_name=people.location.name,
            location_email=people.location.email,
            allowed=data.allowed.get(delivery.location_id, NOTHING_ALLOWED),
            settings=self.settings,
        )
        message = Message(
            delivery_id=delivery.id,
            location_id=delivery.location_id,
            # The id the appointment goes by on the wire (an occurrence: its instance id).
            appointment_id=delivery.instance_id or delivery.appointment_id,
            calendar_id=delivery.calendar_id,
            notification_type=delivery.notification_type,
            channel=delivery.channel,
            to=resolved.address,
            from_name=sender.from_name,
            from_address=sender.from_address,
            reply_to=sender.reply_to,
            from_number=sender.from_number,
            appointment_version=appointment.version,
            attachments=attachments,
            subject=rendered.subject,
            body=rendered.body,
            html=rendered.html,
            user_id=resolved.user.id if resolved.user and delivery.channel == "inApp" else "",
        )
        adapter = self.channels.get(delivery.channel)
        return message if adapter is None else adapter.finish(message)

    def _outcome_safely(
        self, delivery: Delivery, message: Message, result: Receipt | SendError, answered: datetime
    ) -> Outcome:
        try:
            return self._outcome(delivery, message, result, answered)
        except Exception as exc:  # a bug here must not lose the attempt
            log.exception("dispatch: cannot classify the answer for %s", delivery.id)
            return Outcome(
                delivery,
                DeliveryStatus.FAILED,
                Reason.ERROR,
                f"cannot classify the provider's answer: {exc!r}"[:2000],
                handed_over=True,
                at=answered,
            )

    def _outcome(
        self, delivery: Delivery, message: Message, result: Receipt | SendError, answered: datetime
    ) -> Outcome:
        """Classify what the provider said (docs/engine.md, "Provider answers")."""
        outcome = Outcome(
            delivery,
            DeliveryStatus.SENT,
            handed_over=True,
            subject=message.subject,
            body=message.body,
            recipient=message.to,
            sender=sender_of(message),
            at=answered,
        )
        if isinstance(result, Receipt):
            outcome.provider, outcome.provider_id = result.provider, result.message_id
            return outcome
        outcome.error = str(result)[:2000] or type(result).__name__
        if result.maybe_sent:
            outcome.error += " (the provider may have acted on it)"
        outcome.status = DeliveryStatus.FAILED
        if not isinstance(result, RetryableSendError):
            outcome.reason = Reason.PERMANENT
            return outcome
        wait = self._backoff(delivery.attempts)
        if result.retry_after is not None:
            # Not capped: sending earlier than the provider asked only meets another
            # refusal; a wait past the deadline fails the delivery below.
            wait = max(wait, result.retry_after)
        retry_at = answered + timedelta(seconds=wait)
        if delivery.attempts >= self.settings.max_attempts:
            outcome.reason = Reason.RETRIES_EXHAUSTED
        elif retry_at > delivery.deadline_at:
            outcome.reason = Reason.DEADLINE
        else:
            outcome.status, outcome.reason = DeliveryStatus.SCHEDULED, Reason.RETRYING
            outcome.retry_at = retry_at
        return outcome

    def _backoff(self, attempts: int) -> float:
        base: float = self.settings.backoff_base * 2.0 ** max(0, attempts - 1)
        return min(self.settings.backoff_cap, base) * random.uniform(0.8, 1.2)

    async def record(self, outcomes: Sequence[Outcome]) -> None:
        if not outcomes:
            return
        now = self.clock.now()
        for o in outcomes:
            self.metrics.outcome(o.delivery.channel, o.status.value)
            if o.status == DeliveryStatus.SENT:
                sent_at = o.at or now
                self.metrics.lateness.observe(
                    max(0.0, (sent_at - o.delivery.due_at).total_seconds())
                )
        await lifecycle.record(self.db, outcomes, now)

    # --- loading what a batch needs, in bulk ---------------------------------------------

    async def _load(self, batch: Sequence[Delivery]) -> _BatchData:
        ids = _ids_of(batch)
        async with self.db.session(write=False) as session:
            appointments = {
                a.id: a
                for a in await session.scalars(
                    select(Appointment).where(Appointment.id.in_(ids["appointment"]))
                )
            }
            rules = {
                n.id: n
                for n in await session.scalars(
                    select(Notification).where(Notification.id.in_(ids["notification"]))
                )
            }
            calendars = {
                c.id: c
                for c in await session.scalars(
                    select(Calendar).where(Calendar.id.in_(ids["calendar"]))
                )
            }
            locations = {
                loc.id: loc
                for loc in await session.scalars(
                    select(Location).where(Location.id.in_(ids["location"]))
                )
            }
            users: dict[str, dict[str, User]] = defaultdict(dict)
            for user in await session.scalars(
                select(User).where(User.location_id.in_(ids["location"]), User.deleted.is_(False))
            ):
                users[user.location_id][user.id] = user
            contact_ids = {a.contact_id for a in appointments.values()}
            contacts = {
                c.id: c
                for c in await session.scalars(select(Contact).where(Contact.id.in_(contact_ids)))
            }
            template_ids = {r.template_id for r in rules.values() if r.template_id}
            templates: dict[str, tuple[str, str]] = {}
            if template_ids:
                for t in await session.scalars(
                    select(Template).where(
                        Template.id.in_(template_ids), Template.deleted.is_(False)
                    )
                ):
                    templates[t.id] = (t.subject, t.html or t.body)
            allowed = await load_allowed_senders(session, ids["location"])
            deleted: dict[str, list[datetime]] = defaultdict(list)
            series = [a.id for a in appointments.values() if a.rrule and not a.master_id]
            if series:
                for master_id, start in await session.execute(
                    select(Appointment.master_id, Appointment.original_start_at).where(
                        Appointment.master_id.in_(series),
                        Appointment.deleted.is_(True),
                        Appointment.is_exception.is_(True),
                    )
                ):
                    if master_id and start:
                        deleted[master_id].append(start)
        people = {
            loc_id: People(location=loc, users=users[loc_id], contacts=contacts)
            for loc_id, loc in locations.items()
        }
        return _BatchData(appointments, rules, calendars, people, templates, allowed, deleted)


@dataclass
class _BatchData:
    appointments: dict[str, Appointment]
    rules: dict[str, Notification]
    calendars: dict[str, Calendar]
    people: dict[str, People]
    templates: dict[str, tuple[str, str]]
    allowed: dict[str, AllowedSenders]
    # Series in the batch: the original starts of occurrences deleted on their own.
    deleted: dict[str, list[datetime]]


def _ids_of(batch: Sequence[Delivery]) -> dict[str, set[str]]:
    return {
        "appointment": {d.appointment_id for d in batch},
        "notification": {d.notification_id for d in batch},
        "calendar": {d.calendar_id for d in batch},
        "location": {d.location_id for d in batch},
    }


class _Heartbeat:
    """Keeps a claim's lease alive while its batch is worked on, whatever the batch is
    waiting for (a slow provider, a long render): renewed every third of the lease.

    ``held`` is what the claim still owns and has not recorded; ``lost`` turns true when
    the lease could not be renewed before it ran out, and the batch then stops handing
    messages over (another worker may have taken them back).
    """

    def __init__(self, dispatcher: Dispatcher, batch: Sequence[Delivery]) -> None:
        self.db = dispatcher.db
        self.clock = dispatcher.clock
        self.lease = dispatcher.settings.lease
        self.token = batch[0].claim_token or ""
        self.held = {d.id for d in batch}
        # Rows whose outcome is being written: still renewed until written, but their
        # absence from a renewal is no loss (the write may have committed first).
        self.settling: set[str] = set()
        self.lost = False
        self.expires = min((d.lease_until for d in batch if d.lease_until), default=None)
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> _Heartbeat:
        self._task = asyncio.create_task(self._beat(), name="dispatch-heartbeat")
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def recording(self, ids: Iterable[str]) -> None:
        """The outcomes of these rows are about to be written."""
        self.settling.update(ids)

    def release(self, ids: Iterable[str]) -> None:
        """These rows are recorded: no longer this claim's to keep."""
        ids = set(ids)
        self.held.difference_update(ids)
        self.settling.difference_update(ids)

    async def _beat(self) -> None:
        interval = max(0.05, self.lease.total_seconds() / 3)
        while True:
            await asyncio.sleep(interval)
            try:
                await self.renew()
            except Exception:  # the heartbeat must keep beating
                log.exception("dispatch: lease renewal failed")

    async def renew(self) -> None:
        if not self.held:
            return
        until = self.clock.now() + self.lease
        asked = set(self.held)
        try:
            kept = await lifecycle.renew(self.db, sorted(asked), self.token, until)
        except (OperationalError, DBAPIError, OSError) as exc:
            log.warning("dispatch: cannot renew the lease (%s)", type(exc).__name__)
            if self.expires is not None and self.clock.now() >= self.expires - self.lease / 3:
                self.lost = True
            return
        gone = (asked & self.held) - kept - self.settling
        if gone:
            log.warning("dispatch: %d deliveries of this claim were taken back", len(gone))
            self.held -= gone
            self.lost = True
        self.expires = until


def sender_of(message: Message) -> str:
    """Who the message went out as, for the delivery's record (semantics §7)."""
    if message.channel in ("sms", "whatsapp"):
        return message.from_number
    if message.channel != "email":
        return ""
    sender = formataddr((message.from_name, message.from_address))
    return f"{sender}; Reply-To: {message.reply_to}" if message.reply_to else sender
