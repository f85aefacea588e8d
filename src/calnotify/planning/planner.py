"""The planner: what should be sent for an appointment, as ``deliveries`` rows.

It runs inside the transaction of the change that causes it (an appointment booked or
changed, a notification rule created, edited or deleted), so a committed change always
has its deliveries and a rolled-back one has none.

For one appointment and a set of rules it computes the wanted deliveries, then reconciles
them with the stored ones:

- wanted and stored (still ``scheduled``): kept, and re-stamped with the current version
  of what changed, so the dispatcher's fence lets it through;
- stored but no longer wanted: ``cancelled``, with the cause in ``reason``;
- wanted but not stored: inserted (``skipped`` at once when it is already late, or its
  recipient is on DND or has no address). A dedupe key per (rule, appointment, due instant
  or triggering event, recipient) makes re-planning idempotent: a key that exists is never
  inserted twice, and only a ``cancelled`` row is brought back.

Deliveries already claimed by a worker (``sending``) are left alone: if the change voided
them, their old version stamps make the fence drop them.

Concurrent planning on PostgreSQL is serialised per calendar (``SELECT … FOR UPDATE`` on
the calendar row); SQLite serialises every write transaction anyway.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from calnotify.db.dialect import insert_ignoring_conflicts
from calnotify.deliveries import lifecycle
from calnotify.deliveries.lifecycle import DeliveryStatus, Reason
from calnotify.ids import instance_id, new_id
from calnotify.models import (
    Appointment,
    AppointmentEvent,
    Calendar,
    Contact,
    Delivery,
    Location,
    Notification,
    User,
)
from calnotify.models.appointment import AppointmentEventKind, AppointmentStatus
from calnotify.models.delivery import Trigger
from calnotify.models.notification import NotificationType
from calnotify.notifications.rules import offset_seconds
from calnotify.planning.recipients import People, RecipientRef, Resolved, recipients, resolve

DEADLINE = timedelta(hours=24)
# Appointments a planning page works out between two turns of the event loop.
YIELD_EVERY = 10
MIN_WINDOW = timedelta(seconds=60)
WAKE_CHANNEL = "calnotify_deliveries"

LIVE = (AppointmentStatus.NEW, AppointmentStatus.CONFIRMED)
ENDED = (AppointmentStatus.CANCELLED, AppointmentStatus.NOSHOW, AppointmentStatus.INVALID)
SCHEDULED_TYPES = (NotificationType.REMINDER, NotificationType.FOLLOWUP)


@dataclass(frozen=True, slots=True)
class Wanted:
    """One delivery the planner wants for an appointment (not yet a row)."""

    notification: Notification
    trigger: Trigger
    due_at: datetime
    deadline_at: datetime
    recipient: RecipientRef
    key: str


# --- entry points --------------------------------------------------------------------------


async def plan_appointment_change(
    session: AsyncSession,
    appointment: Appointment,
    events: Sequence[AppointmentEvent],
    now: datetime,
) -> None:
    """Re-plan one appointment after ``events`` (recorded in this transaction)."""
    await lock_calendar(session, appointment.calendar_id)
    rules = await _rules(session, appointment.calendar_id)
    people = await _people(session, appointment.location_id, [appointment.contact_id])
    immediate = [(e.id, t) for e in events if e.to_notify for t in _immediate_types(e)]
    superseding = any(e.kind == AppointmentEventKind.RESCHEDULED for e in events)
    # A new appointment has no deliveries yet: nothing to look up or reconcile.
    fresh = [e.kind for e in events] == [AppointmentEventKind.CREATED]
    await _reconcile(
        session,
        appointment,
        rules,
        people,
        now,
        immediate=immediate,
        superseding_reschedule=superseding,
        stamp="appointment",
        all_rules_of_calendar=True,
        fresh=fresh,
    )


async def lock_calendar(session: AsyncSession, calendar_id: str) -> None:
    """Serialise planning per calendar on PostgreSQL (SQLite serialises all writers)."""
    if session.bind is not None and session.bind.dialect.name == "sqlite":
        return
    # NO KEY UPDATE: it does not conflict with the key-share lock that inserting an
    # appointment (its foreign key to the calendar) takes; FOR UPDATE would, and two
    # bookings would deadlock, each holding a key share and waiting for the other's.
    await session.execute(
        select(Calendar.id).where(Calendar.id == calendar_id).with_for_update(key_share=True)
    )


def wake_dispatchers(session: AsyncSession) -> None:
    """Ask dispatchers to look for due work once this transaction commits."""
    session.info["wake"] = True


# --- reconciliation ------------------------------------------------------------------------


def _immediate_types(event: AppointmentEvent) -> list[NotificationType]:
    return immediate_types(event.kind, (event.after or {}).get("appointmentStatus"))


def immediate_types(kind: str, status: str | None) -> list[NotificationType]:
    """What an appointment event sends at once (semantics §3), given the status after it."""
    if kind == AppointmentEventKind.CREATED:
        if status == AppointmentStatus.NEW:
            return [NotificationType.BOOKED]
        if status == AppointmentStatus.CONFIRMED:
            return [NotificationType.CONFIRMATION]
    elif kind == AppointmentEventKind.STATUS_CHANGED:
        if status == AppointmentStatus.CONFIRMED:
            return [NotificationType.CONFIRMATION]
        if status in ENDED:
            return [NotificationType.CANCELLATION]
    elif kind == AppointmentEventKind.RESCHEDULED and status in LIVE:
        return [NotificationType.RESCHEDULE]
    return []


async def _reconcile(
    session: AsyncSession,
    appointment: Appointment,
    rules: Sequence[Notification],
    people: People,
    now: datetime,
    *,
    immediate: Sequence[tuple[int, NotificationType]],
    superseding_reschedule: bool,
    stamp: str,
    all_rules_of_calendar: bool,
    fresh: bool = False,
) -> None:
    wanted = {w.key: w for w in wanted_deliveries(appointment, rules, people, now, immediate)}
    rule_by_id = {r.id: r for r in rules}
    if fresh:
        if wanted:
            await _insert(session, appointment, list(wanted.values()), people, now, fresh=True)
        return

    # In-flight rows (sending) are looked at too: one that is still wanted is re-stamped, so
    # a retry after a failed send is not taken for stale; one that is not is left to the fence.
    query = select(Delivery).where(
        Delivery.appointment_id == appointment.id,
        Delivery.status.in_([DeliveryStatus.SCHEDULED, DeliveryStatus.SENDING]),
    )
    if not all_rules_of_calendar:
        query = query.where(Delivery.notification_id.in_(list(rule_by_id)))
    stored = (await session.scalars(query)).all()

    keep: list[str] = []
    cancel: dict[str, list[str]] = {}
    new_event_keys = {w.key for w in wanted.values() if w.trigger == Trigger.EVENT}
    for row in stored:
        if row.dedupe_key in new_event_keys:
            wanted.pop(row.dedupe_key)
            keep.append(row.id)
            continue
        reason = _void_reason(
            row, appointment, rule_by_id, wanted, superseding_reschedule, moved_by=stamp
        )
        if reason is None:
            wanted.pop(row.dedupe_key, None)
            keep.append(row.id)
        elif row.status == DeliveryStatus.SCHEDULED:
            cancel.setdefault(reason, []).append(row.id)
        else:
            wanted.pop(row.dedupe_key, None)  # in flight: never a second one

    for reason, ids in cancel.items():
        await lifecycle.cancel(session, reason, now, Delivery.id.in_(ids))
    if keep:
        values: dict[str, Any] = {"updated_at": now}
        if stamp == "appointment":
            values["appointment_version"] = appointment.version
        else:
            # The notification planner only plans one rule at a time.
            [rule] = rules
            values["notification_version"] = rule.version
        await session.execute(update(Delivery).where(Delivery.id.in_(keep)).values(**values))
    if wanted:
        await _insert(session, appointment, list(wanted.values()), people, now)


@dataclass
class PagePlan:
    """What re-planning one rule over a page of appointments writes, by appointment (so
    that an appointment changed meanwhile can be left out: its own change re-planned it)."""

    versions: dict[str, int] = field(default_factory=dict)
    keep: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    cancel: dict[str, list[tuple[str, str]]] = field(default_factory=lambda: defaultdict(list))
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    revive: dict[str, list[tuple[str, dict[str, Any]]]] = field(
        default_factory=lambda: defaultdict(list)
    )

    def without(self, changed: set[str]) -> PagePlan:
        kept = PagePlan()
        for name in ("keep", "cancel", "rows", "revive"):
            mine, theirs = getattr(self, name), getattr(kept, name)
            for appointment_id, items in mine.items():
                if appointment_id not in changed:
                    theirs[appointment_id] = items
        kept.versions = {k: v for k, v in self.versions.items() if k not in changed}
        return kept


async def plan_rule_page(
    session: AsyncSession,
    appointments: Sequence[Appointment],
    rule: Notification,
    people: People,
    now: datetime,
    *,
    fresh: bool = False,
) -> PagePlan:
    """:func:`_reconcile` of one rule over a page of appointments, computed from reads
    only (``fresh``: a new rule, nothing of it stored yet); :func:`write_rule_page` writes
    it, in a handful of statements whatever the page's size."""
    plan = PagePlan(versions={a.id: a.version for a in appointments})
    stored: dict[str, list[Delivery]] = defaultdict(list)
    if not fresh:
        rows = await session.scalars(
            select(Delivery).where(
                Delivery.appointment_id.in_([a.id for a in appointments]),
                Delivery.notification_id == rule.id,
                Delivery.status.in_(lifecycle.PENDING),
            )
        )
        for row in rows:
            stored[row.appointment_id].append(row)
    pairs: list[tuple[Appointment, Sequence[Wanted]]] = []
    for i, appointment in enumerate(appointments):
        if i % YIELD_EVERY == YIELD_EVERY - 1:
            # Plain CPU work on the event loop: let requests (which may hold the write
            # lock meanwhile) take their turn.
            await asyncio.sleep(0)
        wanted = {w.key: w for w in wanted_deliveries(appointment, [rule], people, now, [])}
        for row in stored[appointment.id]:
            reason = _void_reason(
                row, appointment, {rule.id: rule}, wanted, False, moved_by="notification"
            )
            if reason is None:
                wanted.pop(row.dedupe_key, None)
                plan.keep[appointment.id].append(row.id)
            elif row.status == DeliveryStatus.SCHEDULED:
                plan.cancel[appointment.id].append((reason, row.id))
            else:
                wanted.pop(row.dedupe_key, None)  # in flight: never a second one
        if wanted:
            pairs.append((appointment, list(wanted.values())))
    existing = {} if fresh else await _existing(session, pairs)
    for i, (appointment, wanted_rows) in enumerate(pairs):
        if i % YIELD_EVERY == YIELD_EVERY - 1:
            await asyncio.sleep(0)
        rows_, revive = _delivery_rows(appointment, wanted_rows, existing, people, now)
        plan.rows[appointment.id] = rows_
        plan.revive[appointment.id] = revive
    return plan


async def write_rule_page(
    session: AsyncSession, plan: PagePlan, rule: Notification, now: datetime
) -> None:
    cancel: dict[str, list[str]] = defaultdict(list)
    for items in plan.cancel.values():
        for reason, delivery_id in items:
            cancel[reason].append(delivery_id)
    for reason, ids in cancel.items():
        await lifecycle.cancel(session, reason, now, Delivery.id.in_(ids))
    keep = [delivery_id for items in plan.keep.values() for delivery_id in items]
    if keep:
        await session.execute(
            update(Delivery)
            .where(Delivery.id.in_(keep))
            .values(notification_version=rule.version, updated_at=now)
        )
    rows = [row for items in plan.rows.values() for row in items]
    revive = [item for items in plan.revive.values() for item in items]
    await _write_rows(session, rows, revive)


async def reconcile_rule_page(
    session: AsyncSession,
    appointments: Sequence[Appointment],
    rule: Notification,
    people: People,
    now: datetime,
    *,
    fresh: bool = False,
) -> None:
    """Plan and write one page in the same transaction."""
    plan = await plan_rule_page(session, appointments, rule, people, now, fresh=fresh)
    await write_rule_page(session, plan, rule, now)


def _void_reason(
    row: Delivery,
    appointment: Appointment,
    rules: dict[str, Notification],
    wanted: dict[str, Wanted],
    superseding_reschedule: bool,
    moved_by: str,
) -> str | None:
    """Why a stored, still-scheduled delivery must not go out any more (None: keep it)."""
    if appointment.deleted:
        return "appointment_deleted"
    if row.calendar_id != appointment.calendar_id:
        return "calendar_changed"
    rule = rules.get(row.notification_id)
    if rule is None or rule.deleted:
        return "rule_deleted"
    if not rule.is_active:
        return "rule_deactivated"
    if row.trigger == Trigger.SCHEDULE:
        if row.dedupe_key in wanted:
            return None
        if appointment.status not in LIVE and not (
            row.notification_type == NotificationType.FOLLOWUP
            and appointment.status == AppointmentStatus.SHOWED
        ):
            return "appointment_" + str(appointment.status)
        return "rescheduled" if moved_by == "appointment" else "rule_changed"
    if (
        row.channel != rule.channel
        or row.receiver_type != rule.receiver_type
        or row.notification_type != rule.notification_type
    ):
        return "rule_changed"
    if row.notification_type == NotificationType.CANCELLATION:
        return "appointment_restored" if appointment.status in LIVE else None
    if appointment.status not in LIVE:
        return "appointment_" + str(appointment.status)
    if row.notification_type == NotificationType.RESCHEDULE and superseding_reschedule:
        return "superseded"
    return None


def wanted_deliveries(
    appointment: Appointment,
    rules: Iterable[Notification],
    people: People,
    now: datetime,
    immediate: Sequence[tuple[int, NotificationType]],
) -> list[Wanted]:
    """Every delivery ``rules`` want for ``appointment``: those sent at once for the
    ``immediate`` (event id, notification type) pairs, and its reminders and follow-ups.
    Pure: reads only what it is given."""
    if appointment.deleted:
        return []
    out: list[Wanted] = []
    for rule in rules:
        if rule.deleted or not rule.is_active:
            continue
        for event_id, kind in immediate:
            if rule.notification_type != kind:
                continue
            for ref in recipients(rule, appointment, people):
                key = _key(rule, appointment.id, f"event:{event_id}", ref)
                out.append(Wanted(rule, Trigger.EVENT, now, now + DEADLINE, ref, key))
        for due in _scheduled_dues(rule, appointment):
            deadline = due + DEADLINE
            if rule.notification_type == NotificationType.REMINDER:
                # A reminder is never sent once the appointment has started.
                deadline = max(min(deadline, appointment.start_at), due + MIN_WINDOW)
            for ref in recipients(rule, appointment, people):
                key = _key(rule, appointment.id, f"at:{due.isoformat()}", ref)
                out.append(Wanted(rule, Trigger.SCHEDULE, due, deadline, ref, key))
    return out


def _scheduled_dues(rule: Notification, appointment: Appointment) -> list[datetime]:
    if appointment.rrule and appointment.master_id is None:
        return []  # a series: reminders and follow-ups belong to its occurrences
    dues: set[datetime] = set()
    if rule.notification_type == NotificationType.REMINDER and appointment.status in LIVE:
        dues = {
            appointment.start_at - timedelta(seconds=offset_seconds(e)) for e in rule.before_time
        }
    followup_ok = appointment.status in (*LIVE, AppointmentStatus.SHOWED)
    if rule.notification_type == NotificationType.FOLLOWUP and followup_ok:
        dues = {appointment.end_at + timedelta(seconds=offset_seconds(e)) for e in rule.after_time}
    if appointment.master_id is not None and appointment.planned_until is not None:
        # An occurrence: only what is due within its series' horizon exists as rows.
        dues = {due for due in dues if due <= appointment.planned_until}
    return sorted(dues)


def _key(rule: Notification, appointment_id: str, when: str, ref: RecipientRef) -> str:
    # The channel is part of the message: a rule moved from email to SMS plans new ones.
    parts = (rule.id, appointment_id, when, rule.channel, rule.receiver_type, ref.identity)
    raw = "\x1f".join(parts)
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


async def _insert(
    session: AsyncSession,
    appointment: Appointment,
    wanted: list[Wanted],
    people: People,
    now: datetime,
    *,
    fresh: bool = False,
) -> None:
    await insert_many(session, [(appointment, wanted)], people, now, fresh=fresh)


async def insert_many(
    session: AsyncSession,
    pairs: Sequence[tuple[Appointment, Sequence[Wanted]]],
    people: People,
    now: datetime,
    *,
    fresh: bool = False,
) -> None:
    """Write the wanted deliveries of one or more appointments, in one statement.

    ``fresh``: nothing of them can exist yet (a new appointment, a new rule), so nothing
    is looked up first."""
    existing = {} if fresh else await _existing(session, pairs)
    rows: list[dict[str, Any]] = []
    revive: list[tuple[str, dict[str, Any]]] = []
    for appointment, wanted in pairs:
        more, back = _delivery_rows(appointment, wanted, existing, people, now)
        rows += more
        revive += back
    await _write_rows(session, rows, revive)


async def _existing(
    session: AsyncSession, pairs: Sequence[tuple[Appointment, Sequence[Wanted]]]
) -> dict[str, Delivery]:
    keys = [w.key for _, wanted in pairs for w in wanted]
    if not keys:
        return {}
    found = await session.scalars(select(Delivery).where(Delivery.dedupe_key.in_(keys)))
    return {row.dedupe_key: row for row in found}


def _delivery_rows(
    appointment: Appointment,
    wanted: Sequence[Wanted],
    existing: dict[str, Delivery],
    people: People,
    now: datetime,
) -> tuple[list[dict[str, Any]], list[tuple[str, dict[str, Any]]]]:
    """New rows for the wanted deliveries, and the cancelled ones to plan anew (never a
    second message for one key; only a cancelled one comes back)."""
    rows: list[dict[str, Any]] = []
    revive: list[tuple[str, dict[str, Any]]] = []
    for w in wanted:
        resolved, skip = planned_state(w, appointment, people, now)
        values: dict[str, Any] = {
            **lifecycle.planned(skip),
            "recipient": resolved.address,
            "due_at": w.due_at,
            "run_at": w.due_at,
            "deadline_at": w.deadline_at,
            "appointment_version": appointment.version,
            "notification_version": w.notification.version,
            "updated_at": now,
        }
        row = existing.get(w.key)
        if row is not None:
            if row.status == DeliveryStatus.CANCELLED:
                revive.append((row.id, values))
            continue
        rows.append(
            {
                **values,
                "id": new_id(),
                "location_id": appointment.location_id,
                "calendar_id": appointment.calendar_id,
                "appointment_id": appointment.id,
                "instance_id": _instance_id(appointment),
                "master_event_id": appointment.master_id or "",
                "notification_id": w.notification.id,
                "notification_type": w.notification.notification_type,
                "channel": w.notification.channel,
                "receiver_type": w.notification.receiver_type,
                "trigger": w.trigger,
                "recipient_kind": w.recipient.kind,
                "recipient_ref": w.recipient.ref,
                "dedupe_key": w.key,
                "sent_at": None,
                "provider": "",
                "provider_message_id": "",
                "subject": "",
                "body": "",
                "created_at": now,
            }
        )
    return rows, revive


def planned_state(
    wanted: Wanted, appointment: Appointment, people: People, now: datetime
) -> tuple[Resolved, Reason | None]:
    """The recipient's address a wanted delivery is planned with, and why it is skipped at
    once (``None``: it is scheduled)."""
    resolved = resolve(wanted.recipient, wanted.notification.channel, appointment, people)
    skip = resolved.skip
    if skip is None and wanted.trigger == Trigger.SCHEDULE and wanted.due_at < now:
        skip = Reason.LATE
    return resolved, skip


async def _write_rows(
    session: AsyncSession,
    rows: Sequence[dict[str, Any]],
    revive: Sequence[tuple[str, dict[str, Any]]],
) -> None:
    for delivery_id, values in revive:
        await lifecycle.replan(session, delivery_id, values)
    if rows:
        dialect = session.bind.dialect.name if session.bind else "sqlite"
        await session.execute(
            insert_ignoring_conflicts(Delivery.__table__, dialect, "dedupe_key"), list(rows)
        )
    due = [r for r in rows if r["status"] == DeliveryStatus.SCHEDULED]
    if due or any(v["status"] == DeliveryStatus.SCHEDULED for _, v in revive):
        wake_dispatchers(session)
        if session.bind is not None and session.bind.dialect.name == "postgresql":
            await session.execute(text(f"NOTIFY {WAKE_CHANNEL}"))


def _instance_id(appointment: Appointment) -> str:
    if appointment.master_id and appointment.original_start_at:
        return instance_id(appointment.master_id, appointment.original_start_at)
    return ""


async def _rules(session: AsyncSession, calendar_id: str) -> list[Notification]:
    rows = await session.scalars(
        select(Notification).where(
            Notification.calendar_id == calendar_id,
            Notification.deleted.is_(False),
            Notification.is_active.is_(True),
        )
    )
    return list(rows)


async def _people(session: AsyncSession, location_id: str, contact_ids: Iterable[str]) -> People:
    location = await session.get(Location, location_id)
    assert location is not None
    users = await session.scalars(
        select(User).where(User.location_id == location_id, User.deleted.is_(False))
    )
    ids = list(set(contact_ids))
    contacts: list[Contact] = []
    if ids:
        contacts = list(await session.scalars(select(Contact).where(Contact.id.in_(ids))))
    return People(
        location=location,
        users={u.id: u for u in users},
        contacts={c.id: c for c in contacts},
    )
