"""Changing, cancelling and deleting appointments (booking: :mod:`.booking`): one write
path each.

A write is one transaction of compiled statements (:mod:`calnotify.db.tx`): one read of
what it needs (the calendar, the contact, the location and its users, the calendar's
rules), the change and its domain events (:mod:`calnotify.appointments.events`), and the
planner's rows (:mod:`calnotify.planning.store`). Every change bumps
``appointment.version``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, select

from calnotify.appointments import checks, events, reads, rows, series
from calnotify.appointments.rows import AppointmentRow
from calnotify.appointments.schemas import AppointmentFieldsIn
from calnotify.auth.tokens import Principal
from calnotify.db.base import utcnow
from calnotify.db.engine import Database
from calnotify.db.statements import Bound, Statement, by_id
from calnotify.db.tx import Reader, Tx
from calnotify.errors import BadRequest, FieldError, NotFound
from calnotify.hooks.events import ENDPOINTS, WebhookEvent, announce_appointment
from calnotify.ids import looks_like_id, parse_instance_id
from calnotify.models import Calendar, Contact
from calnotify.models.appointment import AppointmentEventKind, AppointmentStatus, EventSource
from calnotify.planning import store
from calnotify.planning.recipients import People
from calnotify.planning.store import Event
from calnotify.timefmt import parse_instant, zone

# Stored column ← wire field, for the fields copied as given.
COPIED = {
    "title": "title",
    "address": "address",
    "meeting_location_type": "meeting_location_type",
    "description": "description",
    "notes": "notes",
    "rrule": "rrule",
}
_C = Calendar.__table__.c
#: A calendar of the location that is not deleted, locked against concurrent planning on
#: PostgreSQL (see calnotify.planning.store.LOCK_CALENDAR).
_CALENDAR_QUERY = select(*_C).where(
    _C.id == bindparam("calendar_id"),
    _C.location_id == bindparam("location_id"),
    _C.deleted.is_(False),
)
CALENDAR = Statement(_CALENDAR_QUERY)
_CALENDAR_LOCKED = Statement(_CALENDAR_QUERY.with_for_update(key_share=True))
_CONTACT = Statement(
    select(*Contact.__table__.c).where(
        Contact.id == bindparam("contact_id"),
        Contact.location_id == bindparam("location_id"),
        Contact.deleted.is_(False),
    )
)


@dataclass(frozen=True)
class Written:
    """An appointment as a write left it, with what its answer shows."""

    appointment: AppointmentRow
    zone: ZoneInfo
    rrule: str  # the rule it shows: its own, or its series'
    due: bool  # something due to send was planned: wake the dispatcher


@dataclass
class Context:
    """What a write (or a preview of one) reads, in one trip."""

    calendars: dict[str, Any]
    people: People
    rules: dict[str, list[Any]]
    endpoints: list[Any]  # the location's webhook endpoints (calnotify.hooks)

    @property
    def zone(self) -> ZoneInfo:
        return zone(self.people.location.timezone)


async def read_context(
    reader: Reader,
    principal: Principal,
    calendar_ids: Sequence[str],
    contact_ids: Sequence[str],
    *,
    lock: bool = True,
) -> Context:
    """The calendars of the location among ``calendar_ids`` (``lock``: locked against
    concurrent planning, on PostgreSQL) with their active rules, the location's contacts
    among ``contact_ids``, the location and its users."""
    location_id = principal.location_id
    calendar_ids = sorted({c for c in calendar_ids if looks_like_id(c)})
    contact_ids = sorted({c for c in contact_ids if looks_like_id(c)})
    calendar = _CALENDAR_LOCKED if lock else CALENDAR
    found = await reader.fetch(
        *[(calendar, {"calendar_id": c, "location_id": location_id}) for c in calendar_ids],
        *[(store.RULES, {"calendar_id": c}) for c in calendar_ids],
        *[(_CONTACT, {"contact_id": c, "location_id": location_id}) for c in contact_ids],
        (store.LOCATION, {"location_id": location_id}),
        (store.USERS, {"location_id": location_id}),
        (ENDPOINTS, {"location_id": location_id}),
    )
    n = len(calendar_ids)
    calendars = {r[0].id: r[0] for r in found[:n] if r}
    rules = {c: found[n + i] for i, c in enumerate(calendar_ids) if c in calendars}
    contacts = {r[0].id: r[0] for r in found[2 * n : 2 * n + len(contact_ids)] if r}
    location, users, endpoints = found[-3:]
    people = People(location[0], {u.id: u for u in users}, contacts)
    return Context(calendars, people, rules, endpoints)


# --- changing ------------------------------------------------------------------------------


async def update_appointment(
    db: Database,
    principal: Principal,
    event_id: str,
    body: AppointmentFieldsIn,
    now: datetime,
    horizon: timedelta,
) -> Written:
    async with db.transaction() as tx:
        return await update_in(tx, principal, event_id, body, now, horizon)


async def update_in(
    tx: Tx,
    principal: Principal,
    event_id: str,
    body: AppointmentFieldsIn,
    now: datetime,
    horizon: timedelta,
    *,
    source: EventSource = EventSource.API,
    channel: str = "",
    actor: str = "",
    note: str = "",
) -> Written:
    """Change an appointment in the caller's transaction (``source`` and ``channel``: who
    asked, recorded on its events; a contact's action by reply or link; ``actor`` and
    ``note``: the console's token and a cancellation's reason, docs/semantics.md §8)."""
    given = body.given()
    moving_to = str(given["calendar_id"]) if "calendar_id" in given else None
    appointment, instance, due = await _target(tx, principal, event_id, given, now)
    context = await read_context(
        tx,
        principal,
        [appointment.calendar_id, *([moving_to] if moving_to else [])],
        [appointment.contact_id],
    )
    before = events.snapshot(appointment)
    was_series = series.is_master(appointment)
    moved = (appointment.calendar_id, appointment.start_at, appointment.end_at)
    _apply(appointment, body, given, context, was_series)
    if (
        moved != (appointment.calendar_id, appointment.start_at, appointment.end_at)
        and appointment.status != AppointmentStatus.CANCELLED.value
        and not body.ignore_free_slot_validation
    ):
        await checks.check_free(
            tx,
            context.calendars[appointment.calendar_id],
            context.zone,
            appointment.start_at,
            appointment.end_at,
            now,
            moving=appointment.id,
        )
    after = events.snapshot(appointment)
    kinds = events.kinds_of_change(before, after)
    to_notify = body.to_notify if body.to_notify is not None else True
    appointment.to_notify = to_notify
    recorded: list[Event] = []
    if kinds:
        appointment.version += 1
        appointment.date_updated = utcnow()
        after["version"] = appointment.version
        if instance:
            appointment.is_exception = True
    tx.write(rows.UPDATE, by_id(appointment.values()))
    for kind in kinds:
        recorded.append(
            await events.record(
                tx,
                appointment,
                kind,
                before=before,
                after=after,
                to_notify=to_notify,
                now=appointment.date_updated,
                source=source,
                channel=channel,
                actor=actor,
                note=note,
            )
        )
    if kinds:
        due |= await store.plan_appointments(
            tx,
            [(appointment, recorded)],
            context.rules[appointment.calendar_id],
            context.people,
            now,
        )
        if series.is_master(appointment):
            due |= await series.plan_series(tx, appointment, now, horizon, resync=True)
    rule = await reads.series_rule(tx, appointment)
    if kinds:
        updated = WebhookEvent.APPOINTMENT_UPDATE
        due |= announce_appointment(
            tx, context.endpoints, updated, appointment, context.zone, now, rule
        )
    return Written(appointment, context.zone, rule, due)


async def _target(
    tx: Tx, principal: Principal, event_id: str, given: dict[str, Any], now: datetime
) -> tuple[AppointmentRow, bool, bool]:
    """The appointment a change is for (an occurrence's row, made when it has none yet),
    read under its calendars' planning locks; whether it is one occurrence; whether making
    its row planned something due."""
    moving_to = str(given["calendar_id"]) if "calendar_id" in given else None
    instance = parse_instance_id(event_id)
    if instance is None:
        found = await _locked(tx, principal, event_id, moving_to)
        if found is None or found.deleted:
            raise NotFound("Appointment not found")
        return found, False, False
    # One occurrence: from now on an exception, which series edits leave alone.
    master = await reads.master_of(tx, principal, instance[0])
    await _lock(tx, master.calendar_id, moving_to)
    if given.get("rrule"):
        raise BadRequest(
            [FieldError("rrule", "is changed on the series (its master id), not on one occurrence")]
        )
    given.pop("rrule", None)
    row = await series.materialize_one(tx, master, instance[1], now)
    if row is None:
        raise NotFound("Appointment not found")
    # A row made now may have planned reminders: the dispatcher is woken to look.
    return row, True, True


async def _lock(tx: Tx, *calendar_ids: str | None, then: Sequence[Bound] = ()) -> list[list[Any]]:
    """Take the calendars' planning locks (PostgreSQL), in id order: two moves in opposite
    directions cannot deadlock. The rows of the reads ``then``, made in the same trip once
    the locks are held."""
    ids = sorted({c for c in calendar_ids if c and looks_like_id(c)})
    postgres = tx.dialect.name != "sqlite"
    locks = [(store.LOCK_CALENDAR, {"calendar_id": c}) for c in ids] if postgres else []
    if not locks and not then:
        return []
    return (await tx.fetch(*locks, *then))[len(locks) :]


async def _locked(
    tx: Tx, principal: Principal, event_id: str, moving_to: str | None = None
) -> AppointmentRow | None:
    """The appointment, read again once its calendars are locked (PostgreSQL: a change
    committed meanwhile is seen, never overwritten)."""
    found = await reads.find(tx, principal.location_id, event_id)
    if found is None or tx.dialect.name == "sqlite":  # one writer: nothing can have changed it
        return found
    again = (rows.IN_LOCATION, {"id": event_id, "location_id": principal.location_id})
    [locked] = await _lock(tx, found.calendar_id, moving_to, then=[again])
    return rows.row_of(locked[0]) if locked else None


def _apply(
    appointment: AppointmentRow,
    body: AppointmentFieldsIn,
    given: dict[str, Any],
    context: Context,
    was_series: bool,
) -> None:
    """The request's changes on ``appointment``; 400 naming every problem."""
    where = context.zone
    errors: list[FieldError] = []
    calendar_id = appointment.calendar_id
    if "calendar_id" in given:
        calendar = context.calendars.get(str(given["calendar_id"]))
        if calendar is None:
            errors.append(FieldError("calendarId", "is not a calendar of this location"))
        else:
            calendar_id = calendar.id
    assigned = appointment.assigned_user_id
    if "assigned_user_id" in given:
        assigned = checks.existing_user(context.people, str(given["assigned_user_id"]), errors)
    start, end = appointment.start_at, appointment.end_at
    if "start_time" in given:
        parsed = parse_instant(str(given["start_time"]), where)
        if parsed is None:
            errors.append(FieldError("startTime", "must be an ISO 8601 date and time"))
        else:
            # Moving the start alone keeps the duration.
            start, end = parsed, parsed + (end - start)
    if "end_time" in given:
        parsed = parse_instant(str(given["end_time"]), where)
        if parsed is None:
            errors.append(FieldError("endTime", "must be an ISO 8601 date and time"))
        else:
            end = parsed
    checks.check_span(start, end, errors)
    guests = (
        checks.checked_guests(body.guests, errors)
        if body.guests is not None
        else appointment.guests
    )
    new_rule = str(given.get("rrule", appointment.rrule) or "").strip()
    if was_series and not new_rule:
        errors.append(
            FieldError("rrule", "cannot be removed from a series: end it with UNTIL, or delete it")
        )
    if new_rule and (new_rule != appointment.rrule or start != appointment.start_at):
        checks.check_rrule(new_rule, start, where, errors)
    if errors:
        raise BadRequest(errors)
    appointment.calendar_id = calendar_id
    appointment.assigned_user_id = assigned
    appointment.start_at, appointment.end_at = start, end
    appointment.guests = guests
    if body.appointment_status is not None:
        appointment.status = body.appointment_status
    for column, wire in COPIED.items():
        if wire in given:
            setattr(appointment, column, given[wire])
    appointment.rrule = (appointment.rrule or "").strip()


# --- deleting ------------------------------------------------------------------------------


async def delete_appointment(
    db: Database, principal: Principal, event_id: str, now: datetime, horizon: timedelta
) -> bool:
    """Delete (idempotent): the appointment disappears and its pending notifications with it.

    An instance id removes that occurrence only (it stays as a tombstone, so the series
    never brings it back); a series' master id removes the whole series. Whether something
    due to send was planned."""
    async with db.transaction() as tx:
        instance = parse_instance_id(event_id)
        if instance is not None:
            master = await reads.master_of(tx, principal, instance[0])
            await store.lock_calendar(tx, master.calendar_id)
            if await series.find_occurrence(tx, master, instance[1], tombstones=True):
                return False  # deleted already
            found = await series.materialize_one(tx, master, instance[1], now)
            if found is None:
                raise NotFound("Appointment not found")
            found.is_exception = True
        else:
            found = await _locked(tx, principal, event_id)
            if found is None:
                raise NotFound("Appointment not found")
        if found.deleted:
            return False
        before = events.snapshot(found)
        found.deleted = True
        found.version += 1
        found.date_updated = utcnow()
        tx.write(rows.UPDATE, by_id(found.values()))
        deleted = await events.record(
            tx,
            found,
            AppointmentEventKind.DELETED,
            before=before,
            after=None,
            to_notify=False,
            now=found.date_updated,
        )
        context = await read_context(tx, principal, [found.calendar_id], [found.contact_id])
        rules = context.rules.get(found.calendar_id, [])
        due = await store.plan_appointments(tx, [(found, [deleted])], rules, context.people, now)
        if series.is_master(found):
            due |= await series.plan_series(tx, found, now, horizon)
        gone = WebhookEvent.APPOINTMENT_DELETE
        due |= announce_appointment(tx, context.endpoints, gone, found, context.zone, now)
    return due
