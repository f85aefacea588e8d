"""Free slots of a calendar, and why a booking does not fit them (docs/semantics.md §8).

Pure: the calendar's settings, the location's zone, the calendar's appointments, ``now``
and a range in; instants (UTC) or words out. No database, no clock.

* **Slots.** Open hours are wall-clock times in the location's zone. Within each opening a
  slot starts every ``interval`` from the opening time, as long as the slot
  (``slot_duration`` long) ends by the closing time. A wall-clock time that does not exist
  (a spring-forward gap) has no slot; a time that happens twice (the repeated fall-back
  hour) has one slot, at its first occurrence. So a 09:00 to 17:00 day stays 09:00 to 17:00 local
  across a change of offset.
* **Bookings.** Appointments cancelled or invalid take nothing. Every other appointment
  takes its own time plus ``preBuffer`` before it and ``slotBuffer`` after it, and so does a
  slot: a slot and an appointment conflict when those stretches overlap (they keep
  ``preBuffer + slotBuffer`` apart). A slot is free while fewer than ``appoinmentPerSlot``
  appointments conflict with it, and its day (the location's) has fewer than
  ``appoinmentPerDay`` appointments starting on it (0: no limit).
* **Window.** No slot starts before ``now``, nor before ``allowBookingAfter`` from now, nor
  after ``allowBookingFor`` from now (0: no limit).
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from calnotify.availability.settings import AvailabilitySettings
from calnotify.models.appointment import AppointmentStatus

#: Statuses whose appointments free their slot.
FREEING = frozenset({AppointmentStatus.CANCELLED.value, AppointmentStatus.INVALID.value})


class BookedTime(Protocol):
    """What the computation reads of an appointment (an ORM row or a statement's row)."""

    @property
    def id(self) -> str: ...
    @property
    def start_at(self) -> datetime: ...
    @property
    def end_at(self) -> datetime: ...
    @property
    def status(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Opening:
    """One opening of one local day, as instants, with the slots that start in it."""

    opens: datetime
    closes: datetime
    starts: tuple[datetime, ...]


def day_openings(settings: AvailabilitySettings, zone: ZoneInfo, day: date) -> list[Opening]:
    """The openings of ``day`` (a date in ``zone``), each with its slot starts (UTC)."""
    weekday = day.isoweekday() % 7  # HighLevel's 0 = Sunday
    midnight = datetime.combine(day, time())
    duration, interval = settings.slot_duration, settings.interval
    found: list[Opening] = []
    for entry in settings.open_hours:
        if weekday not in entry.days:
            continue
        for hours in entry.hours:
            first = midnight + timedelta(minutes=hours.opens)
            last = midnight + timedelta(minutes=hours.closes)
            opens, closes = _resolved(first, zone), _resolved(last, zone)
            starts: list[datetime] = []
            steady = closes - opens == last - first  # no change of offset in between
            wall = first
            while wall < last:
                instant = opens + (wall - first) if steady else _existing(wall, zone)
                if instant is not None and instant + duration <= closes:
                    starts.append(instant)
                wall += interval
            found.append(Opening(opens, closes, tuple(starts)))
    return found


def _resolved(wall: datetime, zone: ZoneInfo) -> datetime:
    """A naive wall-clock time of ``zone`` as UTC (its first occurrence when repeated)."""
    return wall.replace(tzinfo=zone).astimezone(UTC)


def _existing(wall: datetime, zone: ZoneInfo) -> datetime | None:
    """:func:`_resolved`, or None when the time does not exist there (a spring-forward gap)."""
    instant = _resolved(wall, zone)
    if instant.astimezone(zone).replace(tzinfo=None) != wall:
        return None
    return instant


def _counted(appointments: Iterable[BookedTime], ignore: str | None) -> list[BookedTime]:
    """The appointments that take time, by start."""
    taken = [a for a in appointments if a.status not in FREEING and a.id != ignore]
    taken.sort(key=lambda a: a.start_at)
    return taken


def _window(
    settings: AvailabilitySettings, zone: ZoneInfo, now: datetime
) -> tuple[datetime, datetime | None]:
    """The earliest and latest (None: no limit) slot start ``now`` allows."""
    earliest = max(now, settings.booking_after.from_now(now, zone))
    if not settings.booking_for.amount:
        return earliest, None
    return earliest, settings.booking_for.from_now(now, zone)


def free_slots(
    settings: AvailabilitySettings,
    zone: ZoneInfo,
    appointments: Iterable[BookedTime],
    now: datetime,
    start: datetime,
    end: datetime,
) -> list[datetime]:
    """The starts (UTC, ascending) of the calendar's free slots from ``start`` to ``end``
    (both included). ``appointments`` are the calendar's: at least those that overlap the
    range with buffers, and for a limit per day all that start on its local days."""
    if not settings.open_hours:
        return []
    earliest, latest = _window(settings, zone, now)
    low = max(start, earliest)
    high = end if latest is None else min(end, latest)
    if low > high:
        return []
    candidates = sorted(
        {
            instant
            for day in _days(low, high, zone)
            for opening in day_openings(settings, zone, day)
            for instant in opening.starts
            if low <= instant <= high
        }
    )
    booked = _counted(appointments, None)
    if settings.per_day:
        per_day = Counter(a.start_at.astimezone(zone).date() for a in booked)
        candidates = [
            s for s in candidates if per_day[s.astimezone(zone).date()] < settings.per_day
        ]
    return _uncrowded(settings, candidates, booked)


def _days(low: datetime, high: datetime, zone: ZoneInfo) -> Iterable[date]:
    day, last = low.astimezone(zone).date(), high.astimezone(zone).date()
    while day <= last:
        yield day
        day += timedelta(days=1)


def _uncrowded(
    settings: AvailabilitySettings, candidates: list[datetime], booked: list[BookedTime]
) -> list[datetime]:
    """The candidates (ascending) that fewer than ``per_slot`` appointments conflict with.

    One sweep: appointments enter when they start early enough to reach a slot, and leave
    (by their end) once slots have moved past them for good.
    """
    duration, gap = settings.slot_duration, settings.gap
    free: list[datetime] = []
    ends: list[datetime] = []  # a heap of the ends of the appointments that entered
    entered = 0
    for slot in candidates:
        while entered < len(booked) and booked[entered].start_at < slot + duration + gap:
            heapq.heappush(ends, booked[entered].end_at)
            entered += 1
        while ends and ends[0] <= slot - gap:
            heapq.heappop(ends)
        if len(ends) < settings.per_slot:
            free.append(slot)
    return free


def booking_problem(
    settings: AvailabilitySettings,
    start: datetime,
    end: datetime,
    appointments: Iterable[BookedTime],
    now: datetime,
    zone: ZoneInfo,
    *,
    ignore_appointment_id: str | None = None,
) -> str | None:
    """Why the calendar's availability does not allow a booking at ``[start, end)``, in
    words fit to follow ``startTime:``; None when it does, and always for a calendar
    without open hours.

    The booking must start at one of the calendar's slot times and end by the close of
    that opening, within the booking window, on a day below its limit, and conflict with
    fewer than ``per_slot`` appointments (buffers included). ``appointments`` are the
    calendar's (as for :func:`free_slots`); ``ignore_appointment_id`` leaves one out: the
    appointment being moved, on a reschedule. A booking of exactly one slot is allowed
    exactly when :func:`free_slots` lists that slot.
    """
    if not settings.open_hours:
        return None
    if problem := _outside_window(settings, start, now, zone):
        return problem
    day = start.astimezone(zone).date()
    openings = [o for o in day_openings(settings, zone, day) if o.opens <= start < o.closes]
    if not openings:
        return "is outside the calendar's open hours"
    at_slot = [o for o in openings if start in o.starts]
    if not at_slot:
        return (
            "is not one of the calendar's slot times "
            f"(every {_spoken(settings.interval)} from each opening)"
        )
    if not any(end <= o.closes for o in at_slot):
        return "ends after the calendar closes"
    booked = _counted(appointments, ignore_appointment_id)
    if settings.per_day:
        that_day = sum(1 for a in booked if a.start_at.astimezone(zone).date() == day)
        if that_day >= settings.per_day:
            return (
                f"falls on a day that already has {that_day} appointment(s) "
                f"(the calendar takes at most {settings.per_day} a day)"
            )
    gap = settings.gap
    conflicts = sum(1 for a in booked if a.start_at < end + gap and a.end_at > start - gap)
    if conflicts >= settings.per_slot:
        kept = f", keeping {_spoken(gap)} between appointments" if gap else ""
        return (
            f"is taken: {conflicts} appointment(s) already overlap it (the calendar takes "
            f"{settings.per_slot} at a time{kept})"
        )
    return None


def _outside_window(
    settings: AvailabilitySettings, start: datetime, now: datetime, zone: ZoneInfo
) -> str | None:
    if start < now:
        return "is in the past"
    earliest, latest = _window(settings, zone, now)
    if start < earliest:
        return (
            f"is less than {settings.booking_after} from now "
            "(the calendar's minimum scheduling notice, allowBookingAfter)"
        )
    if latest is not None and start > latest:
        return (
            f"is more than {settings.booking_for} ahead "
            "(the calendar takes bookings that far ahead at most, allowBookingFor)"
        )
    return None


def _spoken(span: timedelta) -> str:
    """``1 hour 30 minutes``."""
    minutes = span.total_seconds() / 60
    hours, rest = divmod(minutes, 60)
    parts = []
    if hours:
        parts.append(f"{int(hours)} hour{'s' if hours != 1 else ''}")
    if rest or not parts:
        shown = int(rest) if float(rest).is_integer() else round(rest, 2)
        parts.append(f"{shown} minute{'s' if shown != 1 else ''}")
    return " ".join(parts)
