"""Calendar invitations (RFC 5545) attached to booking emails.

One UID per appointment, SEQUENCE = the appointment's version, so calendar apps update
the one event they have: REQUEST for booked/confirmed/rescheduled, CANCEL for cancelled.
The event's STATUS is the appointment's: TENTATIVE until it is confirmed, CONFIRMED, or
CANCELLED.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from calnotify.channels.base import Attachment

INVITE_TYPES = {"booked": "REQUEST", "confirmation": "REQUEST", "reschedule": "REQUEST",
                "cancellation": "CANCEL"}  # fmt: skip
# An appointment's status as a VEVENT's STATUS (RFC 5545 §3.8.1.11); the ended ones
# (cancelled, no-show, invalid) are CANCELLED.
_EVENT_STATUS = {"new": "TENTATIVE", "confirmed": "CONFIRMED", "showed": "CONFIRMED"}


def event_status(method: str, appointment_status: str) -> str:
    """The invitation's STATUS: CANCELLED with METHOD:CANCEL (RFC 5546 §3.2.5), else the
    appointment's."""
    if method == "CANCEL":
        return "CANCELLED"
    return _EVENT_STATUS.get(appointment_status, "CANCELLED")


def _escape(text: str) -> str:
    return (
        text.replace("\\", "\\\\")
        .replace(";", "\\;")
        .replace(",", "\\,")
        .replace("\r\n", "\\n")
        .replace("\n", "\\n")
        .replace("\r", "\\n")
    )


def _stamp(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _fold(line: str) -> str:
    """Lines longer than 75 octets continue on the next line after a space (never in the
    middle of a UTF-8 character). Linear, in slices: a description is tenant text."""
    data = line.encode("utf-8")
    if len(data) <= 75:
        return line
    parts: list[bytes] = []
    start, limit = 0, 75
    while len(data) - start > limit:
        end = start + limit
        while data[end] & 0xC0 == 0x80:  # a continuation byte: cut before its character
            end -= 1
        parts.append(data[start:end])
        start, limit = end, 74
    parts.append(data[start:])
    return "\r\n ".join(part.decode("utf-8") for part in parts)


def invitation(
    *,
    method: str,
    status: str,
    appointment_id: str,
    sequence: int,
    start: datetime,
    end: datetime,
    summary: str,
    description: str,
    location: str,
    organizer_name: str,
    organizer_email: str,
    attendee_email: str,
    stamp: datetime,
    domain: str = "calnotify",
    recurrence: Sequence[str] = (),
    recurrence_id: datetime | None = None,
) -> Attachment:
    """``status``: the event's STATUS (:func:`event_status`). ``recurrence``: the RRULE and
    EXDATE lines of a series (its booking); a change of one occurrence has the series' UID
    and the occurrence's ``recurrence_id`` instead."""
    cancelled = method == "CANCEL"
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//calnotify//calnotify//EN",
        "CALSCALE:GREGORIAN",
        f"METHOD:{method}",
        "BEGIN:VEVENT",
        f"UID:{appointment_id}@{domain}",
        f"SEQUENCE:{sequence}",
        f"DTSTAMP:{_stamp(stamp)}",
        f"DTSTART:{_stamp(start)}",
        f"DTEND:{_stamp(end)}",
        *recurrence,
        *([f"RECURRENCE-ID:{_stamp(recurrence_id)}"] if recurrence_id is not None else []),
        f"SUMMARY:{_escape(summary)}",
        f"STATUS:{status}",
    ]
    if description:
        lines.append(f"DESCRIPTION:{_escape(description)}")
    if location:
        lines.append(f"LOCATION:{_escape(location)}")
    if organizer_email:
        # A parameter value is quoted (RFC 5545 §3.2), and may not contain quotes itself.
        name = " ".join(organizer_name.replace('"', "").split())
        lines.append(f'ORGANIZER;CN="{name}":mailto:{organizer_email}')
    if attendee_email:
        lines.append(f"ATTENDEE;ROLE=REQ-PARTICIPANT;RSVP=FALSE:mailto:{attendee_email}")
    lines += ["END:VEVENT", "END:VCALENDAR"]
    body = "\r\n".join(_fold(line) for line in lines) + "\r\n"
    return Attachment(
        filename="cancel.ics" if cancelled else "invite.ics",
        content_type="text/calendar",
        data=body.encode("utf-8"),
        params=(("method", method), ("charset", "UTF-8")),
    )


def series_lines(rrule: str, deleted: Sequence[datetime] = ()) -> tuple[str, ...]:
    """The RRULE and EXDATE lines of a series' ``rrule`` (already checked: only those
    kinds of line), with an EXDATE for each occurrence deleted on its own."""
    lines: list[str] = []
    for raw in rrule.replace("\\n", "\n").splitlines():
        line = raw.strip()
        if not line or line.upper().startswith("DTSTART"):
            continue
        if ":" not in line:
            line = "RRULE:" + line
        lines.append(line)
    lines += [f"EXDATE:{_stamp(start)}" for start in sorted(deleted)]
    return tuple(lines)
