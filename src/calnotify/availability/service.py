"""``GET /calendars/{calendarId}/free-slots``: read what the slots depend on, compute them
(:mod:`calnotify.availability.slots`), answer them by day.

Reads go outside any unit of work (:meth:`~calnotify.db.engine.Database.fetch`): the
calendar and the users asked about, then the calendar's appointments near the range (one
range of the ``(calendar_id, start_at)`` index) and its recurring series, whose
occurrences without a row of their own are computed from their rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from calnotify.api.validators import timezone_problem
from calnotify.appointments.recurrence import RecurrenceError, parse
from calnotify.auth.tokens import Principal
from calnotify.availability import repository
from calnotify.availability.schemas import FreeSlotsQuery
from calnotify.availability.settings import AvailabilitySettings, settings_of
from calnotify.availability.slots import booking_problem, free_slots
from calnotify.db.engine import Database
from calnotify.db.statements import Bound
from calnotify.db.tx import Reader
from calnotify.errors import BadRequest, FieldError, NotFound
from calnotify.ids import instance_id, looks_like_id
from calnotify.timefmt import from_epoch_ms, show_local, zone

MAX_RANGE = timedelta(days=31)
# The longest an appointment may last (appointments/service.py): one that started this
# long before the range may still reach into it.
LONGEST_APPOINTMENT = timedelta(days=31)

#: The answer: ``{"2026-03-09": {"slots": ["2026-03-09T09:00:00-04:00", …]}, …}``.
SlotsByDay = dict[str, dict[str, list[str]]]


@dataclass(frozen=True, slots=True)
class Range:
    """What the query asks: slots starting from ``start`` to ``end`` (both included),
    shown in ``zone`` (None: the location's)."""

    start: datetime
    end: datetime
    zone: ZoneInfo | None
    users: tuple[tuple[str, str], ...]  # (the parameter that named it, the user id)

    @property
    def user_ids(self) -> list[str]:
        return list(dict.fromkeys(user for _, user in self.users))


@dataclass(frozen=True, slots=True)
class Booked:
    """An appointment as the computation reads it (:class:`~.slots.BookedTime`)."""

    id: str
    start_at: datetime
    end_at: datetime
    status: str


def checked_range(query: FreeSlotsQuery) -> Range:
    """The query's values, or a 400 naming each that is wrong."""
    errors: list[FieldError] = []
    start, end = from_epoch_ms(int(query.start_date)), from_epoch_ms(int(query.end_date))
    if start is None:
        errors.append(FieldError("startDate", "must be epoch milliseconds"))
    if end is None:
        errors.append(FieldError("endDate", "must be epoch milliseconds"))
    if start and end and end < start:
        errors.append(FieldError("endDate", "must not be before startDate"))
    elif start and end and end - start > MAX_RANGE:
        errors.append(
            FieldError(
                "endDate",
                "must be at most 31 days after startDate (the range cannot be more than 31 days)",
            )
        )
    where: ZoneInfo | None = None
    if query.timezone:
        if problem := timezone_problem(query.timezone):
            errors.append(FieldError("timezone", problem))
        else:
            where = ZoneInfo(query.timezone)
    users = query.named_users()
    errors += [
        FieldError(name, "is not a user of this location")
        for name, user in users
        if not looks_like_id(user)
    ]
    if errors:
        raise BadRequest(errors)
    assert start is not None
    assert end is not None
    return Range(start, end, where, tuple(users))


async def free_slots_by_day(
    db: Database, principal: Principal, calendar_id: str, asked: Range, now: datetime
) -> SlotsByDay:
    """The calendar's free slots in the range, by day of the zone asked for; 404 for a
    calendar that is not the location's. With users asked about, the slots are the
    calendar's when one of them is on its team, else none."""
    if not looks_like_id(calendar_id):
        raise NotFound("Calendar not found")
    reads: list[Bound] = [
        (repository.CALENDAR, {"calendar_id": calendar_id, "location_id": principal.location_id})
    ]
    if asked.user_ids:
        reads.append(
            (
                repository.USERS,
                {"user_ids": asked.user_ids, "location_id": principal.location_id},
            )
        )
    found = await db.fetch(*reads)
    if not found[0]:
        raise NotFound("Calendar not found")
    calendar = found[0][0]
    if asked.users:
        _check_users(asked.users, {row.id for row in found[1]})
        team = {m.get("userId") for m in calendar.team_members or []}
        if team.isdisjoint(asked.user_ids):
            return {}
    settings = settings_of(calendar)
    if not settings.open_hours:
        return {}
    home = zone(calendar.timezone)
    bookings, known_until = await _bookings(db, calendar.id, settings, home, asked)
    slots = free_slots(settings, home, bookings, now, asked.start, min(asked.end, known_until))
    if known_until < asked.end:
        slots = _known(slots, settings, home, known_until)
    shown_in = asked.zone or home
    days: SlotsByDay = {}
    for slot in slots:
        text = show_local(slot, shown_in)
        days.setdefault(text[:10], {"slots": []})["slots"].append(text)
    return days


def _check_users(asked: Sequence[tuple[str, str]], found: set[str]) -> None:
    errors = [
        FieldError(name, "is not a user of this location")
        for name, user in asked
        if user not in found
    ]
    if errors:
        raise BadRequest(errors)


def _day_start(instant: datetime, where: ZoneInfo) -> datetime:
    """The start of ``instant``'s local day."""
    day = instant.astimezone(where).date()
    return datetime.combine(day, time()).replace(tzinfo=where).astimezone(UTC)


def _day_end(instant: datetime, where: ZoneInfo) -> datetime:
    day = instant.astimezone(where).date() + timedelta(days=1)
    return datetime.combine(day, time()).replace(tzinfo=where).astimezone(UTC)


async def booking_problem_of(
    reader: Reader,
    calendar: Any,
    home: ZoneInfo,
    start: datetime,
    end: datetime,
    now: datetime,
    *,
    moving: str | None = None,
) -> str | None:
    """Why ``calendar``'s availability does not allow an appointment at ``[start, end)``
    (words to follow ``startTime:``), or None; ``moving`` is the appointment being moved,
    on a reschedule. Read inside the booking's unit of work, after its calendar lock, so
    two bookings of the last free place cannot both pass."""
    settings = settings_of(calendar)
    if not settings.open_hours:
        return None
    asked = Range(start, end, None, ())
    bookings, _ = await _bookings(reader, calendar.id, settings, home, asked)
    return booking_problem(settings, start, end, bookings, now, home, ignore_appointment_id=moving)


async def _bookings(
    db: Reader, calendar_id: str, settings: AvailabilitySettings, home: ZoneInfo, asked: Range
) -> tuple[list[Any], datetime]:
    """The calendar's appointments the slots of the range depend on: those that reach
    within the buffers of a slot, and those starting on the range's (local) days; and how
    far they are complete (the range's end, unless :data:`~.repository.MAX_BOOKINGS` ran out
    first)."""
    reach = settings.gap
    first_day = _day_start(asked.start, home)
    before = max(asked.end + settings.slot_duration + reach, _day_end(asked.end, home))
    after = asked.start - reach - LONGEST_APPOINTMENT
    rows, series = await db.fetch(
        (
            repository.BOOKINGS,
            {
                "calendar_id": calendar_id,
                "starts_after": after,
                "starts_before": before,
                "ends_after": asked.start - reach,
                "day_starts": first_day,
                "limit": repository.MAX_BOOKINGS,
            },
        ),
        (repository.SERIES, {"calendar_id": calendar_id, "starts_before": before}),
    )
    known_until = asked.end
    if len(rows) >= repository.MAX_BOOKINGS:
        known_until = min(known_until, rows[-1].start_at)
    bookings: list[Any] = list(rows)
    if series:
        bookings.extend(await _occurrences(db, calendar_id, series, home, after, before))
    return bookings, known_until


async def _occurrences(
    db: Reader,
    calendar_id: str,
    series: Sequence[Any],
    home: ZoneInfo,
    after: datetime,
    before: datetime,
) -> list[Booked]:
    """The occurrences of ``series`` from ``after`` to ``before`` that have no row of their
    own (rows are read with the other appointments), computed from their rules."""
    [rows] = await db.fetch(
        (repository.OCCURRENCE_ROWS, {"calendar_id": calendar_id, "after": after, "before": before})
    )
    have = {(row.master_id, row.original_start_at) for row in rows}
    computed: list[Booked] = []
    for master in series:
        try:
            rule = parse(master.rrule, master.start_at, home)
        except RecurrenceError:
            continue  # a rule that no longer parses books nothing
        length = master.end_at - master.start_at
        for start in rule.starts(after, before):
            if (master.id, start) not in have:
                computed.append(
                    Booked(instance_id(master.id, start), start, start + length, master.status)
                )
    return computed


def _known(
    slots: list[datetime], settings: AvailabilitySettings, home: ZoneInfo, known_until: datetime
) -> list[datetime]:
    """The slots the appointments read so far decide: those ending (with buffers) before
    the first appointment not read, and with a limit per day, on days before its."""
    reach = settings.slot_duration + settings.gap
    kept = [s for s in slots if s + reach <= known_until]
    if settings.per_day:
        last_day: date = known_until.astimezone(home).date()
        kept = [s for s in kept if s.astimezone(home).date() < last_day]
    return kept
