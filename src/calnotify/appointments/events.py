"""Domain events: what changed about an appointment, recorded with the change itself.

Every committed change of an appointment leaves exactly the events that describe it, in
the same transaction, with snapshots of the appointment before and after. Notification
planning reads them; nothing is lost if a process dies right after the commit.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from calnotify.api.types import format_timestamp
from calnotify.appointments import rows
from calnotify.db.statements import Bound
from calnotify.db.tx import Tx
from calnotify.models.appointment import AppointmentEventKind, EventSource
from calnotify.planning.store import Event

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


def snapshot(appointment: Any) -> dict[str, Any]:
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


async def record(
    tx: Tx,
    appointment: Any,
    kind: AppointmentEventKind,
    *,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    to_notify: bool,
    now: datetime,
    past: bool = False,
    source: EventSource = EventSource.API,
    channel: str = "",
    actor: str = "",
    note: str = "",
) -> Event:
    """Write one event of ``appointment`` (as it is now); the event, with its id (``past``:
    a booking of an appointment already started, see :class:`Event`; ``source`` and
    ``channel``: who made the change, and the channel a contact's action came in by;
    ``actor`` and ``note``: the console's token and a cancellation's reason)."""
    insert = written(appointment, kind, before, after, to_notify, now, source, channel, actor, note)
    [[row]] = await tx.fetch(insert)
    return recorded(row, kind, to_notify, after, past)


def recorded(
    row: Any,
    kind: AppointmentEventKind,
    to_notify: bool,
    after: dict[str, Any] | None,
    past: bool = False,
) -> Event:
    """The event :func:`written` wrote, as planning reads it (``row``: what it read back)."""
    return Event(row.id, kind.value, to_notify, (after or {}).get("appointmentStatus"), past)


def written(
    appointment: Any,
    kind: AppointmentEventKind,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    to_notify: bool,
    now: datetime,
    source: EventSource = EventSource.API,
    channel: str = "",
    actor: str = "",
    note: str = "",
) -> Bound:
    """The insert of one event (see :func:`record`), which reads back its id: for a write
    that sends it with reads of its own."""
    values = {
        "appointment_id": appointment.id,
        "location_id": appointment.location_id,
        "kind": kind.value,
        "appointment_version": appointment.version,
        "to_notify": to_notify,
        "before": before,
        "after": after,
        "occurred_at": now,
        "source": source.value,
        "channel": channel,
        "actor": actor,
        "note": note,
    }
    return (rows.INSERT_EVENT, values)
