"""Booking, changing, cancelling and deleting appointments.

Every change bumps ``appointment.version`` and records its domain events in the same
transaction (:mod:`calnotify.appointments.events`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from calnotify.api.validators import email_problem, phone_problem
from calnotify.appointments import events, series
from calnotify.appointments.recurrence import RecurrenceError, parse
from calnotify.appointments.schemas import (
    AppointmentCreate,
    AppointmentFieldsIn,
    AppointmentOut,
    EventOut,
    GuestIn,
)
from calnotify.auth.deps import ensure_location
from calnotify.auth.tokens import Principal
from calnotify.db.base import utcnow
from calnotify.db.scoped import find_in_location, get_in_location
from calnotify.errors import BadRequest, FieldError, NotFound
from calnotify.ids import looks_like_id, parse_instance_id
from calnotify.models import Appointment, Calendar, Contact, Location, User
from calnotify.models.appointment import AppointmentEventKind, AppointmentStatus
from calnotify.planning.planner import lock_calendar, plan_appointment_change
from calnotify.timefmt import from_epoch_ms, parse_instant, show_local, zone

DEFAULT_SLOT = timedelta(minutes=30)
MAX_DURATION = timedelta(days=31)
MAX_RANGE = timedelta(days=366)
MAX_EVENTS = 5000
_SLOT_UNIT_MINUTES = {"mins": 1, "minutes": 1, "hours": 60}

# Stored column ← wire field, for the fields copied as given.
_COPIED = {
    "title": "title",
    "address": "address",
    "meeting_location_type": "meeting_location_type",
    "description": "description",
    "notes": "notes",
    "rrule": "rrule",
}


async def get_appointment(
    session: AsyncSession, principal: Principal, event_id: str
) -> Appointment:
    """An appointment, a series (its master id) or one occurrence (its instance id; an
    occurrence beyond the planned ones is computed, not stored)."""
    instance = parse_instance_id(event_id)
    if instance is None:
        return await get_in_location(
            session, Appointment, event_id, principal.location_id, what="Appointment"
        )
    master = await _master(session, principal, instance[0])
    row = await series.find_occurrence(session, master, instance[1])
    if row is not None:
        return row
    if await series.is_open_occurrence(session, master, instance[1]):
        return series.occurrence(master, instance[1], master.date_updated)
    raise NotFound("Appointment not found")


async def _master(session: AsyncSession, principal: Principal, master_id: str) -> Appointment:
    master = await get_in_location(
        session, Appointment, master_id, principal.location_id, what="Appointment"
    )
    if not series.is_master(master):
        raise NotFound("Appointment not found")
    return master


async def series_rule(session: AsyncSession, appointment: Appointment) -> str:
    """The ``rrule`` an appointment shows: its own, or its series'."""
    if appointment.master_id:
        master = await session.get(Appointment, appointment.master_id)
        return master.rrule if master else ""
    return appointment.rrule


async def series_rules(
    session: AsyncSession, appointments: Sequence[Appointment]
) -> dict[str, str]:
    """The rule of each series the given occurrences belong to, by master id."""
    ids = {a.master_id for a in appointments if a.master_id}
    if not ids:
        return {}
    rows = await session.execute(
        select(Appointment.id, Appointment.rrule).where(Appointment.id.in_(ids))
    )
    return {row.id: row.rrule for row in rows}


def _check_rrule(
    text: str, start: datetime | None, where: ZoneInfo, errors: list[FieldError]
) -> None:
    if not text or start is None:
        return
    try:
        parse(text, start, where)
    except RecurrenceError as exc:
        errors.append(FieldError("rrule", str(exc)))


async def _locked(
    session: AsyncSession,
    principal: Principal,
    event_id: str,
    *,
    include_deleted: bool = False,
    also: str | None = None,
) -> Appointment:
    """The appointment, read again under its calendar's planning lock (PostgreSQL).

    ``also``: a calendar it is moving to; both are locked in id order, so two moves in
    opposite directions cannot deadlock.
    """
    appointment = await get_in_location(
        session,
        Appointment,
        event_id,
        principal.location_id,
        what="Appointment",
        include_deleted=include_deleted,
    )
    calendars = {appointment.calendar_id}
    if also and looks_like_id(also):
        calendars.add(also)
    for calendar_id in sorted(calendars):
        await lock_calendar(session, calendar_id)
    await session.refresh(appointment, with_for_update=True)
    return appointment


async def location_zone(session: AsyncSession, location_id: str) -> ZoneInfo:
    # Kept on the session for the request: the planner and the answer need it too, and the
    # identity map alone holds rows only while something references them.
    key = ("location", location_id)
    location = session.info.get(key) or await session.get(Location, location_id)
    session.info[key] = location
    return zone(location.timezone if location else None)


async def create_appointment(
    session: AsyncSession, principal: Principal, body: AppointmentCreate, now: datetime
) -> Appointment:
    ensure_location(principal, body.location_id)
    where = await location_zone(session, principal.location_id)
    errors: list[FieldError] = []

    calendar = await find_in_location(session, Calendar, body.calendar_id, principal.location_id)
    if calendar is None:
        errors.append(FieldError("calendarId", "is not a calendar of this location"))
    contact = await find_in_location(session, Contact, body.contact_id, principal.location_id)
    if contact is None:
        errors.append(FieldError("contactId", "is not a contact of this location"))
    assigned = await _assigned_user(session, principal, body, calendar, errors)

    start = parse_instant(body.start_time, where)
    if start is None:
        errors.append(FieldError("startTime", "must be an ISO 8601 date and time"))
    end = _end_time(body, start, calendar, where, errors)
    guests = checked_guests(body.guests or [], errors)
    _check_rrule((body.rrule or "").strip(), start, where, errors)
    if errors:
        raise BadRequest(errors)
    assert calendar is not None
    assert contact is not None
    assert start is not None
    assert end is not None

    await lock_calendar(session, calendar.id)  # before anything of it is written
    stamped = utcnow()
    appointment = Appointment(
        location_id=principal.location_id,
        calendar_id=calendar.id,
        contact_id=contact.id,
        assigned_user_id=assigned,
        start_at=start,
        end_at=end,
        status=body.appointment_status or AppointmentStatus.NEW,
        to_notify=body.to_notify if body.to_notify is not None else True,
        guests=guests,
        extra={},
        version=1,
        deleted=False,
        date_added=stamped,
        date_updated=stamped,
        **{column: getattr(body, wire) or "" for column, wire in _COPIED.items()},
    )
    appointment.rrule = appointment.rrule.strip()
    session.add(appointment)
    await session.flush()
    created = events.record(
        session,
        appointment,
        AppointmentEventKind.CREATED,
        before=None,
        after=events.snapshot(appointment),
        to_notify=appointment.to_notify,
    )
    await session.flush()
    # A series is booked (and confirmed) once: these go to its master.
    await plan_appointment_change(session, appointment, [created], now)
    if series.is_master(appointment):
        await series.plan_series(session, appointment, now, series.horizon_of(session))
    return appointment


async def update_appointment(
    session: AsyncSession,
    principal: Principal,
    event_id: str,
    body: AppointmentFieldsIn,
    now: datetime,
) -> Appointment:
    given = body.given()
    moving_to = str(given["calendar_id"]) if "calendar_id" in given else None
    instance = parse_instance_id(event_id)
    if instance is not None:
        # One occurrence: from now on an exception, which series edits leave alone.
        master = await _master(session, principal, instance[0])
        await lock_calendar(session, master.calendar_id)
        row = await series.materialize_one(session, master, instance[1], now)
        if row is None:
            raise NotFound("Appointment not found")
        if given.get("rrule"):
            raise BadRequest(
                [
                    FieldError(
                        "rrule", "is changed on the series (its master id), not on one occurrence"
                    )
                ]
            )
        given.pop("rrule", None)
        event_id = row.id
    appointment = await _locked(session, principal, event_id, also=moving_to)
    was_series = series.is_master(appointment)
    where = await location_zone(session, principal.location_id)
    errors: list[FieldError] = []

    calendar_id = appointment.calendar_id
    if "calendar_id" in given:
        calendar = await find_in_location(
            session, Calendar, str(given["calendar_id"]), principal.location_id
        )
        if calendar is None:
            errors.append(FieldError("calendarId", "is not a calendar of this location"))
        else:
            calendar_id = calendar.id
    assigned = appointment.assigned_user_id
    if "assigned_user_id" in given:
        assigned = await _existing_user(session, principal, str(given["assigned_user_id"]), errors)

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
    check_span(start, end, errors)
    guests = checked_guests(body.guests, errors) if body.guests is not None else appointment.guests
    new_rule = str(given.get("rrule", appointment.rrule) or "").strip()
    if was_series and not new_rule:
        errors.append(
            FieldError("rrule", "cannot be removed from a series: end it with UNTIL, or delete it")
        )
    if new_rule and (new_rule != appointment.rrule or start != appointment.start_at):
        _check_rrule(new_rule, start, where, errors)
    if errors:
        raise BadRequest(errors)

    to_notify = body.to_notify if body.to_notify is not None else True
    before = events.snapshot(appointment)
    appointment.calendar_id = calendar_id
    appointment.assigned_user_id = assigned
    appointment.start_at, appointment.end_at = start, end
    appointment.guests = guests
    if body.appointment_status is not None:
        appointment.status = body.appointment_status
    for column, wire in _COPIED.items():
        if wire in given:
            setattr(appointment, column, given[wire])
    appointment.rrule = (appointment.rrule or "").strip()
    after = events.snapshot(appointment)
    kinds = events.kinds_of_change(before, after)
    appointment.to_notify = to_notify
    if kinds:
        appointment.version += 1
        appointment.date_updated = utcnow()
        after["version"] = appointment.version
        recorded = [
            events.record(
                session, appointment, kind, before=before, after=after, to_notify=to_notify
            )
            for kind in kinds
        ]
        await session.flush()
        await plan_appointment_change(session, appointment, recorded, now)
        if instance is not None:
            appointment.is_exception = True
        if series.is_master(appointment):
            horizon = series.horizon_of(session)
            await series.plan_series(session, appointment, now, horizon, resync=True)
    await session.flush()
    return appointment


async def delete_appointment(
    session: AsyncSession, principal: Principal, event_id: str, now: datetime
) -> None:
    """Delete (idempotent): the appointment disappears and its pending notifications with it.

    An instance id removes that occurrence only (it stays as a tombstone, so the series
    never brings it back); a series' master id removes the whole series.
    """
    instance = parse_instance_id(event_id)
    if instance is not None:
        master = await _master(session, principal, instance[0])
        await lock_calendar(session, master.calendar_id)
        if await series.find_occurrence(session, master, instance[1], tombstones=True):
            return  # deleted already
        row = await series.materialize_one(session, master, instance[1], now)
        if row is None:
            raise NotFound("Appointment not found")
        row.is_exception = True
        event_id = row.id
    appointment = await _locked(session, principal, event_id, include_deleted=True)
    if appointment.deleted:
        return
    before = events.snapshot(appointment)
    appointment.deleted = True
    appointment.version += 1
    appointment.date_updated = utcnow()
    deleted = events.record(
        session,
        appointment,
        AppointmentEventKind.DELETED,
        before=before,
        after=None,
        to_notify=False,
    )
    await session.flush()
    await plan_appointment_change(session, appointment, [deleted], now)
    if series.is_master(appointment):
        await series.plan_series(session, appointment, now, series.horizon_of(session))


async def list_events(
    session: AsyncSession,
    principal: Principal,
    *,
    location_id: str,
    calendar_id: str | None,
    user_id: str | None,
    group_id: str | None,
    start_ms: int,
    end_ms: int,
) -> Sequence[Appointment]:
    """Appointments overlapping [startTime, endTime] of one calendar or one user."""
    ensure_location(principal, location_id)
    errors: list[FieldError] = []
    start, end = from_epoch_ms(start_ms), from_epoch_ms(end_ms)
    if start is None:
        errors.append(FieldError("startTime", "must be epoch milliseconds"))
    if end is None:
        errors.append(FieldError("endTime", "must be epoch milliseconds"))
    if start and end and not start < end <= start + MAX_RANGE:
        errors.append(FieldError("endTime", "must be after startTime, within 366 days"))
    if not (calendar_id or user_id or group_id):
        errors.append(FieldError("calendarId", "one of calendarId, userId or groupId is required"))
    if errors:
        raise BadRequest(errors)
    if group_id and not (calendar_id or user_id):
        return []  # calnotify has no calendar groups
    assert start is not None
    assert end is not None
    scope = [Appointment.location_id == principal.location_id, Appointment.deleted.is_(False)]
    if calendar_id:
        scope.append(Appointment.calendar_id == calendar_id)
    if user_id:
        scope.append(Appointment.assigned_user_id == user_id)
    query = (
        select(Appointment)
        .where(
            *scope,
            Appointment.rrule == "",  # series are shown as their occurrences
            Appointment.start_at < end,
            Appointment.end_at > start,
        )
        .order_by(Appointment.start_at, Appointment.id)
        .limit(MAX_EVENTS)
    )
    found = list((await session.scalars(query)).all())
    masters = await session.scalars(
        select(Appointment).where(
            *scope,
            Appointment.rrule != "",
            Appointment.master_id.is_(None),
            Appointment.start_at < end,
        )
    )
    for master in masters:
        found.extend(await series.unplanned_occurrences(session, master, start, end))
    found.sort(key=lambda a: (a.start_at, series.wire_id(a)))
    return found[:MAX_EVENTS]


async def _assigned_user(
    session: AsyncSession,
    principal: Principal,
    body: AppointmentCreate,
    calendar: Calendar | None,
    errors: list[FieldError],
) -> str | None:
    if body.assigned_user_id:
        return await _existing_user(session, principal, body.assigned_user_id, errors)
    if calendar is None:
        return None
    return await calendar_default_user(session, calendar)


async def calendar_default_user(session: AsyncSession, calendar: Calendar) -> str | None:
    """Who an appointment of ``calendar`` is assigned to when the booking names no one: its
    primary team member, else its first one (that is still a user of the location)."""
    members = sorted(calendar.team_members or [], key=lambda m: not m.get("isPrimary", False))
    for member in members:
        user = await find_in_location(session, User, member.get("userId"), calendar.location_id)
        if user is not None:
            return user.id
    return None


async def _existing_user(
    session: AsyncSession, principal: Principal, user_id: str, errors: list[FieldError]
) -> str | None:
    if user_id == "":
        return None
    user = await find_in_location(session, User, user_id, principal.location_id)
    if user is None:
        errors.append(FieldError("assignedUserId", "is not a user of this location"))
        return None
    return user.id


def _end_time(
    body: AppointmentCreate,
    start: datetime | None,
    calendar: Calendar | None,
    where: ZoneInfo,
    errors: list[FieldError],
) -> datetime | None:
    if body.end_time is not None:
        end = parse_instant(body.end_time, where)
        if end is None:
            errors.append(FieldError("endTime", "must be an ISO 8601 date and time"))
            return None
    elif start is not None:
        end = start + _slot(calendar)
    else:
        return None
    if start is not None:
        check_span(start, end, errors)
    return end


def _slot(calendar: Calendar | None) -> timedelta:
    if calendar is None or not calendar.slot_duration:
        return DEFAULT_SLOT
    minutes = calendar.slot_duration * _SLOT_UNIT_MINUTES.get(calendar.slot_duration_unit, 1)
    return timedelta(minutes=minutes)


def check_span(start: datetime, end: datetime, errors: list[FieldError]) -> None:
    """An appointment's ``endTime`` must be after its start, and at most 31 days later."""
    if end <= start:
        errors.append(FieldError("endTime", "must be after startTime"))
    elif end - start > MAX_DURATION:
        errors.append(FieldError("endTime", "must be at most 31 days after startTime"))


def checked_guests(guests: Sequence[GuestIn], errors: list[FieldError]) -> list[dict[str, Any]]:
    """The guests as stored, each problem added to ``errors`` (naming ``guests[i]``)."""
    stored: list[dict[str, Any]] = []
    for i, guest in enumerate(guests):
        email, phone = guest.email or "", guest.phone or ""
        if email and (problem := email_problem(email)):
            errors.append(FieldError(f"guests[{i}].email", problem))
        if phone and (problem := phone_problem(phone)):
            errors.append(FieldError(f"guests[{i}].phone", problem))
        if not email and not phone:
            errors.append(FieldError(f"guests[{i}]", "needs an email or a phone"))
        stored.append({"email": email, "name": guest.name or "", "phone": phone})
    return stored


def to_out(appointment: Appointment, where: ZoneInfo, rule: str | None = None) -> AppointmentOut:
    return AppointmentOut.model_validate(_wire(appointment, where, rule))


def to_event(appointment: Appointment, where: ZoneInfo, rule: str | None = None) -> EventOut:
    users = [appointment.assigned_user_id] if appointment.assigned_user_id else []
    return EventOut.model_validate(
        {
            **_wire(appointment, where, rule),
            "users": users,
            "masterEventId": appointment.master_id or "",
        }
    )


def _wire(appointment: Appointment, where: ZoneInfo, rule: str | None) -> dict[str, Any]:
    rrule = appointment.rrule if rule is None else rule
    return {
        "id": series.wire_id(appointment),
        "calendarId": appointment.calendar_id,
        "locationId": appointment.location_id,
        "contactId": appointment.contact_id,
        "startTime": show_local(appointment.start_at, where),
        "endTime": show_local(appointment.end_at, where),
        "title": appointment.title,
        "meetingLocationType": appointment.meeting_location_type,
        "appointmentStatus": appointment.status,
        "assignedUserId": appointment.assigned_user_id or "",
        "address": appointment.address,
        "isRecurring": bool(rrule),
        "rrule": rrule,
        "description": appointment.description,
        "notes": appointment.notes,
        "toNotify": appointment.to_notify,
        "guests": appointment.guests or [],
        "dateAdded": appointment.date_added,
        "dateUpdated": appointment.date_updated,
    }
