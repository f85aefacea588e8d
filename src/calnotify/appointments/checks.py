"""Checking what a booking or a change asks for: each problem a :class:`FieldError` naming
its field, so one 400 names them all."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from calnotify.api.validators import email_problem, phone_problem
from calnotify.appointments.recurrence import RecurrenceError, parse
from calnotify.appointments.schemas import AppointmentCreate, GuestIn
from calnotify.errors import FieldError
from calnotify.planning.recipients import People
from calnotify.timefmt import parse_instant

DEFAULT_SLOT = timedelta(minutes=30)
MAX_DURATION = timedelta(days=31)
_SLOT_UNIT_MINUTES = {"mins": 1, "minutes": 1, "hours": 60}


def default_user(calendar: Any, people: People) -> str | None:
    """Who an appointment of ``calendar`` is assigned to when the booking names no one: its
    primary team member, else its first one (that is still a user of the location)."""
    members = sorted(calendar.team_members or [], key=lambda m: not m.get("isPrimary", False))
    for member in members:
        user_id = member.get("userId")
        if isinstance(user_id, str) and user_id in people.users:
            return user_id
    return None


def existing_user(people: People, user_id: str, errors: list[FieldError]) -> str | None:
    if user_id == "":
        return None
    if user_id not in people.users:
        errors.append(FieldError("assignedUserId", "is not a user of this location"))
        return None
    return user_id


def check_rrule(
    text: str, start: datetime | None, where: ZoneInfo, errors: list[FieldError]
) -> None:
    if not text or start is None:
        return
    try:
        parse(text, start, where)
    except RecurrenceError as exc:
        errors.append(FieldError("rrule", str(exc)))


def end_time(
    body: AppointmentCreate,
    start: datetime | None,
    calendar: Any | None,
    where: ZoneInfo,
    errors: list[FieldError],
) -> datetime | None:
    if body.end_time is not None:
        end = parse_instant(body.end_time, where)
        if end is None:
            errors.append(FieldError("endTime", "must be an ISO 8601 date and time"))
            return None
    elif start is not None:
        end = start + slot_of(calendar)
    else:
        return None
    if start is not None:
        check_span(start, end, errors)
    return end


def slot_of(calendar: Any | None) -> timedelta:
    """How long an appointment of the calendar lasts when the booking gives no end."""
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
