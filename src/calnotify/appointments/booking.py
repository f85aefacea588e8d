"""Booking an appointment: one transaction, its calendar locked for as short a time as it
can be.

A booking reads what it needs in one trip, without a lock: the calendar, its rules, the
contact, the location and its users. On PostgreSQL the calendar's planning lock (``FOR NO
KEY UPDATE``, see :data:`calnotify.planning.store.LOCK_CALENDAR`) goes with the first
statement that needs it, the free-slot check's reads or else the event's insert, and is
held to the commit: the bookings of one calendar wait on each other for one trip and a
commit each, not three trips. Under the lock, the calendar and its rules are read again:
the booking is planned with the rules as they are (a rule saved since the first read had
its re-planning done without this appointment); a calendar changed since (its hours, its
slot length, its team) makes the booking start over, with the lock taken in its first trip.
On SQLite the one writer's transaction is the lock already.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from calnotify.appointments import checks, events, rows, series
from calnotify.appointments.rows import AppointmentRow
from calnotify.appointments.schemas import AppointmentCreate
from calnotify.appointments.service import CALENDAR, COPIED, Context, Written, read_context
from calnotify.auth.deps import ensure_location
from calnotify.auth.tokens import Principal
from calnotify.db.base import utcnow
from calnotify.db.engine import Database
from calnotify.db.tx import Tx
from calnotify.errors import BadRequest, FieldError
from calnotify.hooks.events import WebhookEvent, announce_appointment
from calnotify.ids import new_id
from calnotify.models.appointment import AppointmentEventKind, AppointmentStatus
from calnotify.planning import store
from calnotify.timefmt import parse_instant

NOT_A_CALENDAR = FieldError("calendarId", "is not a calendar of this location")


class _CalendarChanged(Exception):
    """The calendar changed between the booking's first read and its lock."""


async def create_appointment(
    db: Database, principal: Principal, body: AppointmentCreate, now: datetime, horizon: timedelta
) -> Written:
    ensure_location(principal, body.location_id)
    try:
        async with db.transaction() as tx:
            return await _book(tx, principal, body, now, horizon, lock_first=False)
    except _CalendarChanged:
        async with db.transaction() as tx:
            return await _book(tx, principal, body, now, horizon, lock_first=True)


async def _book(
    tx: Tx,
    principal: Principal,
    body: AppointmentCreate,
    now: datetime,
    horizon: timedelta,
    *,
    lock_first: bool,
) -> Written:
    # What the first read found holds to the commit: it was locked, or SQLite's one writer
    # made it.
    settled = lock_first or tx.dialect.name == "sqlite"
    context = await read_context(
        tx, principal, [body.calendar_id], [body.contact_id], lock=lock_first
    )
    where = context.zone
    calendar, appointment = _validated(principal, body, context)
    if not settled:
        tx.write(store.LOCK_CALENDAR, {"calendar_id": calendar.id})
    if not body.ignore_free_slot_validation:
        await checks.check_free(tx, calendar, where, appointment.start_at, appointment.end_at, now)
    stamped = appointment.date_added
    tx.write(rows.INSERT, appointment.values())
    kind, after = AppointmentEventKind.CREATED, events.snapshot(appointment)
    insert = events.written(appointment, kind, None, after, appointment.to_notify, stamped)
    if settled:
        [[row]] = await tx.fetch(insert)
        rules = context.rules[calendar.id]
    else:
        [[row], again, rules] = await tx.fetch(
            insert,
            (CALENDAR, {"calendar_id": calendar.id, "location_id": principal.location_id}),
            (store.RULES, {"calendar_id": calendar.id}),
        )
        if not again:
            raise BadRequest([NOT_A_CALENDAR])
        if tuple(again[0]) != tuple(calendar):
            raise _CalendarChanged()
    past = not body.notify_past and series.started(appointment, where, now)
    created = events.recorded(row, kind, appointment.to_notify, after, past)
    # A series is booked (and confirmed) once: these go to its master.
    due = await store.plan_appointments(
        tx, [(appointment, [created])], rules, context.people, now, fresh={appointment.id}
    )
    if series.is_master(appointment):
        due |= await series.plan_series(tx, appointment, now, horizon)
    created_event = WebhookEvent.APPOINTMENT_CREATE
    due |= announce_appointment(tx, context.endpoints, created_event, appointment, where, now)
    return Written(appointment, where, appointment.rrule, due)


def _validated(
    principal: Principal, body: AppointmentCreate, context: Context
) -> tuple[Any, AppointmentRow]:
    """The calendar and the new appointment's row; 400 with every problem found."""
    where = context.zone
    errors: list[FieldError] = []
    calendar = context.calendars.get(body.calendar_id)
    if calendar is None:
        errors.append(NOT_A_CALENDAR)
    contact = context.people.contacts.get(body.contact_id)
    if contact is None:
        errors.append(FieldError("contactId", "is not a contact of this location"))
    if body.assigned_user_id:
        assigned = checks.existing_user(context.people, body.assigned_user_id, errors)
    else:
        assigned = checks.default_user(calendar, context.people) if calendar else None
    start = parse_instant(body.start_time, where)
    if start is None:
        errors.append(FieldError("startTime", "must be an ISO 8601 date and time"))
    end = checks.end_time(body, start, calendar, where, errors)
    guests = checks.checked_guests(body.guests or [], errors)
    checks.check_rrule((body.rrule or "").strip(), start, where, errors)
    if errors:
        raise BadRequest(errors)
    assert calendar is not None
    assert contact is not None
    assert start is not None
    assert end is not None
    stamped = utcnow()
    appointment = AppointmentRow.new(
        stamped=stamped,
        id=new_id(),
        location_id=principal.location_id,
        calendar_id=calendar.id,
        contact_id=contact.id,
        assigned_user_id=assigned,
        start_at=start,
        end_at=end,
        status=body.appointment_status or AppointmentStatus.NEW.value,
        to_notify=body.to_notify if body.to_notify is not None else True,
        guests=guests,
        **{column: getattr(body, wire) or "" for column, wire in COPIED.items()},
    )
    appointment.rrule = appointment.rrule.strip()
    return calendar, appointment
