"""Reading appointments, and their wire shapes.

Reads take anything that can ``fetch`` compiled statements: the database (a read outside
any transaction, that waits for no writer) or a write transaction. An appointment is an
:class:`~calnotify.appointments.rows.AppointmentRow`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, select

from calnotify.appointments import rows, series
from calnotify.appointments.rows import AppointmentRow
from calnotify.appointments.schemas import AppointmentOut, EventOut
from calnotify.auth.deps import ensure_location
from calnotify.auth.tokens import Principal
from calnotify.db.statements import Statement
from calnotify.db.tx import Reader
from calnotify.errors import BadRequest, FieldError, NotFound
from calnotify.ids import looks_like_id, parse_instance_id
from calnotify.models import Appointment
from calnotify.timefmt import from_epoch_ms, show_local

MAX_RANGE = timedelta(days=366)
MAX_EVENTS = 5000

_A = Appointment.__table__.c
_COLUMNS = [_A[name] for name in rows.COLUMNS]
_RULES = Statement(select(_A.id, _A.rrule).where(_A.id.in_(bindparam("ids", expanding=True))))


def _filtered(by_calendar: bool, by_user: bool, *, series_masters: bool) -> Statement:
    where = [
        _A.location_id == bindparam("location_id"),
        _A.deleted.is_(False),
        _A.start_at < bindparam("end"),
    ]
    if series_masters:
        where += [_A.rrule != "", _A.master_id.is_(None)]
    else:
        where += [_A.rrule == "", _A.end_at > bindparam("start")]
    if by_calendar:
        where.append(_A.calendar_id == bindparam("calendar_id"))
    if by_user:
        where.append(_A.assigned_user_id == bindparam("user_id"))
    query = select(*_COLUMNS).where(*where).order_by(_A.start_at, _A.id)
    return Statement(query if series_masters else query.limit(MAX_EVENTS))


# Appointments overlapping a window (and the series that may have occurrences in it), by
# whether the calendar and the user are filtered.
_WINDOWS = {
    (c, u): (_filtered(c, u, series_masters=False), _filtered(c, u, series_masters=True))
    for c in (True, False)
    for u in (True, False)
}


async def find(reader: Reader, location_id: str, appointment_id: str) -> AppointmentRow | None:
    """An appointment of the location (deleted ones too), by its own id."""
    if not looks_like_id(appointment_id):
        return None
    [found] = await reader.fetch(
        (rows.IN_LOCATION, {"id": appointment_id, "location_id": location_id})
    )
    return rows.row_of(found[0]) if found else None


async def master_of(reader: Reader, principal: Principal, master_id: str) -> AppointmentRow:
    master = await find(reader, principal.location_id, master_id)
    if master is None or master.deleted or not series.is_master(master):
        raise NotFound("Appointment not found")
    return master


async def get_appointment(reader: Reader, principal: Principal, event_id: str) -> AppointmentRow:
    """An appointment, a series (its master id) or one occurrence (its instance id; an
    occurrence beyond the planned ones is computed, not stored)."""
    instance = parse_instance_id(event_id)
    if instance is None:
        found = await find(reader, principal.location_id, event_id)
        if found is None or found.deleted:
            raise NotFound("Appointment not found")
        return found
    master = await master_of(reader, principal, instance[0])
    row = await series.find_occurrence(reader, master, instance[1])
    if row is not None:
        return row
    if await series.is_open_occurrence(reader, master, instance[1]):
        return series.occurrence(master, instance[1], master.date_updated)
    raise NotFound("Appointment not found")


async def series_rules(reader: Reader, appointments: Sequence[Any]) -> dict[str, str]:
    """The rule of each series the given occurrences belong to, by master id."""
    ids = sorted({a.master_id for a in appointments if a.master_id})
    if not ids:
        return {}
    [found] = await reader.fetch((_RULES, {"ids": ids}))
    return {row.id: row.rrule for row in found}


async def series_rule(reader: Reader, appointment: Any) -> str:
    """The ``rrule`` an appointment shows: its own, or its series'."""
    if appointment.master_id:
        return (await series_rules(reader, [appointment])).get(appointment.master_id, "")
    return str(appointment.rrule)


async def list_events(
    reader: Reader,
    principal: Principal,
    *,
    location_id: str,
    calendar_id: str | None,
    user_id: str | None,
    group_id: str | None,
    start_ms: int,
    end_ms: int,
) -> list[AppointmentRow]:
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
    single, masters = _WINDOWS[(bool(calendar_id), bool(user_id))]
    values = {
        "location_id": principal.location_id,
        "calendar_id": calendar_id,
        "user_id": user_id,
        "start": start,
        "end": end,
    }
    plain, series_rows = await reader.fetch((single, values), (masters, values))
    found = [rows.row_of(r) for r in plain]
    for master in map(rows.row_of, series_rows):
        found.extend(await series.unplanned_occurrences(reader, master, start, end))
    found.sort(key=lambda a: (a.start_at, series.wire_id(a)))
    return found[:MAX_EVENTS]


def to_out(appointment: Any, where: ZoneInfo, rule: str | None = None) -> AppointmentOut:
    return AppointmentOut.model_validate(_wire(appointment, where, rule))


def to_event(appointment: Any, where: ZoneInfo, rule: str | None = None) -> EventOut:
    users = [appointment.assigned_user_id] if appointment.assigned_user_id else []
    return EventOut.model_validate(
        {
            **_wire(appointment, where, rule),
            "users": users,
            "masterEventId": appointment.master_id or "",
        }
    )


def _wire(appointment: Any, where: ZoneInfo, rule: str | None) -> dict[str, Any]:
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
