"""Domain events: what changed about an appointment, recorded with the change itself.

Every committed change of an appointment leaves exactly the events that describe it, in
the same transaction, with snapshots of the appointment before and after. Notification
planning reads them; nothing is lost if a process dies right after the commit.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from calnotify.api.types import format_timestamp
from calnotify.db.base import utcnow
from calnotify.models import Appointment, AppointmentEvent
from calnotify.models.appointment import AppointmentEventKind

# Fields whose change is neither a status change nor a reschedule but may change who is
# notified (recipients are planned from them).
_OTHER_FIELDS = (
    "calendarId",
    "assignedUserId",
    "guests",
    "title",
    "address",
    "meetingLocationType",
    "description",
    "notes",
    "rrule",
)


def snapshot(appointment: Appointment) -> dict[str, Any]:
    return {
        "id": appointment.id,
        "version": appointment.version,
        "calendarId": appointment.calendar_id,
        "contactId": appointment.contact_id,
        "assignedUserId": appointment.assigned_user_id or "",
        "startTime": format_timestamp(appointment.start_at),
        "endTime": format_timestamp(appointment.end_at),
        "appointmentStatus": appointment.status,
        "title": appointment.title,
        "address": appointment.address,
        "meetingLocationType": appointment.meeting_location_type,
        "description": appointment.description,
        "notes": appointment.notes,
        "rrule": appointment.rrule,
        "guests": list(appointment.guests or []),
    }


def kinds_of_change(before: dict[str, Any], after: dict[str, Any]) -> list[AppointmentEventKind]:
    """The events one update amounts to (none when nothing changed)."""
    kinds: list[AppointmentEventKind] = []
    if before["appointmentStatus"] != after["appointmentStatus"]:
        kinds.append(AppointmentEventKind.STATUS_CHANGED)
    if before["startTime"] != after["startTime"] or before["endTime"] != after["endTime"]:
        kinds.append(AppointmentEventKind.RESCHEDULED)
    if not kinds and any(before[f] != after[f] for f in _OTHER_FIELDS):
        kinds.append(AppointmentEventKind.UPDATED)
    return kinds


def record(
    session: AsyncSession,
    appointment: Appointment,
    kind: AppointmentEventKind,
    *,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    to_notify: bool,
) -> AppointmentEvent:
    event = AppointmentEvent(
        appointment_id=appointment.id,
        location_id=appointment.location_id,
        kind=kind,
        appointment_version=appointment.version,
        to_notify=to_notify,
        before=before,
        after=after,
        occurred_at=utcnow(),
    )
    session.add(event)
    return event
