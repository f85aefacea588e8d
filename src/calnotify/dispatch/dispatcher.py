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
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.exc import DBAPIError, OperationalError

from calnotify.channels.base import (
    Attachment,
    ChannelAdapter,
    Message,
    PermanentSendError,
    Receipt,
    SendError,
)
from calnotify.channels.ics import INVITE_TYPES, invitation
from calnotify.clock import Clock
from calnotify.db.engine import Database
from calnotify.dispatch.claims import (
    claim_due_deliveries,
    next_due_at,
    renew_lease,
    rescue_expired_leases,
)
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
from calnotify.models.delivery import DeliveryStatus, RecipientKind, SkipReason
from calnotify.planning.recipients import People, RecipientRef, for_customer, resolve
from calnotify.templates.render import RenderData, RenderError, render_notification
from calnotify.timefmt import zone

log = logging.getLogger("calnotify.dispatch")


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


@dataclass
class Outcome:
    delivery: Delivery
    status: DeliveryStatus
    reason: str = ""
    error: str = ""
    receipt: Receipt | None = None
    subject: str = ""
    body: str = ""
    recipient: str = ""
    retry_at: datetime | None = None


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
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self._last_rescue: datetime | None = None

    # --- running ---------------------------------------------------------------------------

    def wake(self) -> None:
        """New due work may exist (called after a commit that planned some)."""
        self._wake.set()

    def start(self) -> None:
        for i in range(self.settings.concurrency):
            self._tasks.append(asyncio.create_task(self._loop(), name=f"dispatch-{i}"))

    async def stop(self) -> None:
        """Stop claiming; let in-flight batches finish (drain)."""
        self._stopping = True
        self._wake.set()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def _loop(self) -> None:
        while not self._stopping:
            try:
                done = await self.run_once()
            except (OperationalError, DBAPIError, OSError) as exc:
                # The database went away or is locked for long: wait and try again.
                log.warning("dispatch: database error, retrying: %s", type(exc).__name__)
                await asyncio.sleep(1.0)
                continue
            except Exception:
                # Whatever happened, this loop keeps sending; the batch's lease runs out and
                # its deliveries are taken back.
                log.exception("dispatch: unexpected error; continuing")
                await asyncio.sleep(1.0)
                continue
            if done or self._stopping:
                continue
            await self._idle()

    async def _idle(self) -> None:
        timeout = self.settings.poll_interval
        upcoming = await next_due_at(self.db)
        if upcoming is not None:
            until = (upcoming - self.clock.now()).total_seconds()
            timeout = max(0.0, min(timeout, until))
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=timeout)

    async def run_once(self) -> int:
        """Claim and process one batch of due deliveries; the number processed."""
        now = self.clock.now()
        await self._rescue(now)
        batch = await claim_due_deliveries(
            self.db, now, self.settings.batch_size, self.settings.lease
        )
        self.metrics.claims += 1
        self.metrics.claimed += len(batch)
        if not batch:
            return 0
        size = self.settings.chunk_size
        for start in range(0, len(batch), size):
            chunk = list(batch[start : start + size])
            if start:
                # The lease ran from the claim; extend it for what is left, and drop any row
                # another worker took back meanwhile (our lease had run out).
                held = await renew_lease(
                    self.db,
                    [d.id for d in chunk],
                    chunk[0].claim_token or "",
                    self.clock.now() + self.settings.lease,
                )
                chunk = [d for d in chunk if d.id in held]
            if chunk:
                await self._record_patiently(await self.process(chunk))
        return len(batch)

    async def _record_patiently(self, outcomes: Sequence[Outcome]) -> None:
        """Record outcomes, waiting out a database outage while the lease lasts: messages
        already handed to a provider must not be sent again because a write failed."""
        give_up = self.clock.now() + self.settings.lease / 2
        pause = 0.25
        while True:
            try:
                await self.record(outcomes)
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
        rescued = await rescue_expired_leases(self.db, now)
        if rescued:
            self.metrics.rescued += rescued
            log.warning("dispatch: rescued %d deliveries from expired leases", rescued)

    # --- one batch ---------------------------------------------------------------------

    async def process(self, batch: Sequence[Delivery]) -> list[Outcome]:
        now = self.clock.now()
        outcomes: list[Outcome] = []
        to_send: dict[str, list[tuple[Delivery, Message, str, str]]] = defaultdict(list)
        data = await self._load(batch)
        for delivery in batch:
            try:
                prepared = self._prepare(delivery, data, now)
            except Exception as exc:  # one bad delivery must not stop the others
                log.exception("dispatch: cannot prepare delivery %s", delivery.id)
                prepared = Outcome(delivery, DeliveryStatus.FAILED, "render", error=repr(exc))
            if isinstance(prepared, Outcome):
                outcomes.append(prepared)
            else:
                message, subject, body = prepared
                to_send[delivery.channel].append((delivery, message, subject, body))

        async def send_channel(channel: str) -> list[Outcome]:
            items = to_send[channel]
            adapter = self.channels[channel]
            results = await adapter.send_many([m for _, m, _, _ in items])
            return [
                self._outcome(d, result, subject, body, m.to)
                for (d, m, subject, body), result in zip(items, results, strict=True)
            ]

        for sent in await asyncio.gather(*(send_channel(c) for c in to_send)):
            outcomes.extend(sent)
        return outcomes

    def _prepare(
        self, delivery: Delivery, data: _BatchData, now: datetime
    ) -> Outcome | tuple[Message, str, str]:
        appointment = data.appointments.get(delivery.appointment_id)
        rule = data.rules.get(delivery.notification_id)
        calendar = data.calendars.get(delivery.calendar_id)
        people = data.people.get(delivery.location_id)
        if rule is not None and (not rule.is_active or rule.deleted):
            return Outcome(delivery, DeliveryStatus.SKIPPED, SkipReason.INACTIVE)
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
            return Outcome(delivery, DeliveryStatus.SKIPPED, SkipReason.STALE)
        if now > delivery.deadline_at:
            return Outcome(delivery, DeliveryStatus.SKIPPED, SkipReason.LATE)
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
            return Outcome(delivery, DeliveryStatus.FAILED, "render", error=str(exc))
        attachments: tuple[Attachment, ...] = ()
        method = INVITE_TYPES.get(delivery.notification_type)
        invited = delivery.recipient_kind in (RecipientKind.CONTACT, RecipientKind.GUEST)
        if delivery.channel == "email" and method and invited:
            attachments = (
                invitation(
                    method=method,
                    appointment_id=appointment.id,
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
        message = Message(
            delivery_id=delivery.id,
            location_id=delivery.location_id,
            appointment_id=delivery.appointment_id,
            calendar_id=delivery.calendar_id,
            notification_type=delivery.notification_type,
            channel=delivery.channel,
            to=resolved.address,
            from_name=rule.from_name or people.location.name,
            from_address=rule.from_address or people.location.email,
            from_number=rule.from_number,
            appointment_version=appointment.version,
            attachments=attachments,
            subject=rendered.subject,
            body=rendered.body,
            html=rendered.html,
            user_id=resolved.user.id if resolved.user and delivery.channel == "inApp" else "",
        )
        return message, rendered.subject, rendered.body

    def _outcome(
        self,
        delivery: Delivery,
        result: Receipt | SendError,
        subject: str,
        body: str,
        recipient: str,
    ) -> Outcome:
        if isinstance(result, Receipt):
            return Outcome(
                delivery,
                DeliveryStatus.SENT,
                receipt=result,
                subject=subject,
                body=body,
                recipient=recipient,
            )
        error = str(result)[:2000] or type(result).__name__
        if isinstance(result, PermanentSendError):
            return Outcome(
                delivery,
                DeliveryStatus.FAILED,
                "permanent",
                error,
                subject=subject,
                body=body,
                recipient=recipient,
            )
        retry_at = self.clock.now() + timedelta(seconds=self._backoff(delivery.attempts))
        if delivery.attempts >= self.settings.max_attempts or retry_at > delivery.deadline_at:
            reason = (
                "retries_exhausted"
                if delivery.attempts >= self.settings.max_attempts
                else "deadline"
            )
            return Outcome(
                delivery,
                DeliveryStatus.FAILED,
                reason,
                error,
                subject=subject,
                body=body,
                recipient=recipient,
            )
        return Outcome(
            delivery,
            DeliveryStatus.SCHEDULED,
            "retrying",
            error,
            subject=subject,
            body=body,
            recipient=recipient,
            retry_at=retry_at,
        )

    def _backoff(self, attempts: int) -> float:
        base: float = self.settings.backoff_base * 2.0 ** max(0, attempts - 1)
        return min(self.settings.backoff_cap, base) * random.uniform(0.8, 1.2)

    async def record(self, outcomes: Sequence[Outcome]) -> None:
        if not outcomes:
            return
        now = self.clock.now()
        table: Table = Delivery.__table__  # type: ignore[assignment]
        statement = (
            update(table)
            .where(table.c.id == bindparam("b_id"), table.c.claim_token == bindparam("b_token"))
            .values(
                status=bindparam("b_status"),
                reason=bindparam("b_reason"),
                last_error=bindparam("b_error"),
                sent_at=bindparam("b_sent_at"),
                run_at=bindparam("b_run_at"),
                provider=bindparam("b_provider"),
                provider_message_id=bindparam("b_message_id"),
                subject=bindparam("b_subject"),
                body=bindparam("b_body"),
                recipient=bindparam("b_recipient"),
                claim_token=None,
                lease_until=None,
                updated_at=now,
            )
        )
        rows: list[dict[str, Any]] = []
        for o in outcomes:
            d = o.delivery
            sent = o.status == DeliveryStatus.SENT
            rows.append(
                {
                    "b_id": d.id,
                    "b_token": d.claim_token,
                    "b_status": o.status.value,
                    "b_reason": str(o.reason),
                    "b_error": o.error or d.last_error,
                    "b_sent_at": now if sent else None,
                    "b_run_at": o.retry_at or d.run_at,
                    "b_provider": o.receipt.provider if o.receipt else d.provider,
                    "b_message_id": o.receipt.message_id if o.receipt else d.provider_message_id,
                    "b_subject": o.subject or d.subject,
                    "b_body": o.body or d.body,
                    "b_recipient": o.recipient or d.recipient,
                }
            )
            self.metrics.outcome(d.channel, o.status.value)
            if sent:
                self.metrics.lateness.observe(max(0.0, (now - d.due_at).total_seconds()))
        async with self.db.session() as session:
            await session.execute(statement, rows)

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
        people = {
            loc_id: People(location=loc, users=users[loc_id], contacts=contacts)
            for loc_id, loc in locations.items()
        }
        return _BatchData(appointments, rules, calendars, people, templates)


@dataclass
class _BatchData:
    appointments: dict[str, Appointment]
    rules: dict[str, Notification]
    calendars: dict[str, Calendar]
    people: dict[str, People]
    templates: dict[str, tuple[str, str]]


def _ids_of(batch: Sequence[Delivery]) -> dict[str, set[str]]:
    return {
        "appointment": {d.appointment_id for d in batch},
        "notification": {d.notification_id for d in batch},
        "calendar": {d.calendar_id for d in batch},
        "location": {d.location_id for d in batch},
    }
