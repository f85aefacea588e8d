"""A calendar's availability settings as the slot computation reads them (docs/semantics.md §8).

The wire fields are HighLevel's (``openHours``, ``slotInterval``/``slotIntervalUnit``, …);
:func:`settings_of` turns a calendar's stored columns into plain values: durations as
:class:`~datetime.timedelta`, open hours as minutes after local midnight.
"""

from __future__ import annotations

import calendar as months
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol
from zoneinfo import ZoneInfo

#: Slot times are never closer together than this, whatever the settings say.
MIN_INTERVAL = timedelta(minutes=1)
DEFAULT_DURATION = timedelta(minutes=30)


class SlotUnit(StrEnum):
    """Unit of ``slotDuration``, ``slotInterval``, ``slotBuffer`` and ``preBuffer``."""

    MINS = "mins"
    MINUTES = "minutes"  # taken for slotDurationUnit before HighLevel's enum was enforced
    HOURS = "hours"

    @property
    def minutes(self) -> int:
        return 60 if self is SlotUnit.HOURS else 1


class NoticeUnit(StrEnum):
    """Unit of ``allowBookingAfter`` (all four) and ``allowBookingFor`` (not hours)."""

    HOURS = "hours"
    DAYS = "days"
    WEEKS = "weeks"
    MONTHS = "months"


_NOTICE_HOURS = {NoticeUnit.HOURS: 1, NoticeUnit.DAYS: 24, NoticeUnit.WEEKS: 7 * 24}


def slot_span(amount: float, unit: str) -> timedelta:
    """``amount`` of a slot unit (mins when the unit is unknown) as a duration."""
    try:
        per = SlotUnit(unit).minutes
    except ValueError:
        per = 1
    return timedelta(minutes=amount * per)


@dataclass(frozen=True, slots=True)
class Notice:
    """``allowBookingAfter`` / ``allowBookingFor``: an amount of a unit, counted from now.

    Hours, days and weeks are absolute durations (a day is 24 hours, as everywhere in
    calnotify); months are calendar months in the location's zone (31 January + 1 month is
    the last day of February), at the same wall-clock time.
    """

    amount: float
    unit: NoticeUnit

    def from_now(self, now: datetime, zone: ZoneInfo) -> datetime:
        if self.unit is not NoticeUnit.MONTHS:
            return now + timedelta(hours=self.amount * _NOTICE_HOURS[self.unit])
        local = now.astimezone(zone)
        year, month = divmod(local.month - 1 + int(self.amount), 12)
        year += local.year
        day = min(local.day, months.monthrange(year, month + 1)[1])
        moved = local.replace(tzinfo=None).replace(year=year, month=month + 1, day=day)
        return moved.replace(tzinfo=zone).astimezone(UTC)

    def __str__(self) -> str:
        amount = int(self.amount) if float(self.amount).is_integer() else self.amount
        unit = self.unit.value[:-1] if amount == 1 else self.unit.value
        return f"{amount} {unit}"


@dataclass(frozen=True, slots=True)
class Hours:
    """One opening of a day: from ``opens`` to ``closes``, minutes after local midnight
    (``closes`` may be 1440: midnight at the end of the day)."""

    opens: int
    closes: int


@dataclass(frozen=True, slots=True)
class OpenHours:
    """HighLevel's ``OpenHour``: openings on some days of the week (0 = Sunday … 6)."""

    days: frozenset[int]
    hours: tuple[Hours, ...]


@dataclass(frozen=True, slots=True)
class AvailabilitySettings:
    """What decides a calendar's free slots. Without ``open_hours`` the calendar has no
    slots and bookings are not checked against it."""

    open_hours: tuple[OpenHours, ...] = ()
    slot_duration: timedelta = DEFAULT_DURATION
    slot_interval: timedelta | None = None  # None: every slot_duration
    pre_buffer: timedelta = timedelta(0)
    slot_buffer: timedelta = timedelta(0)
    per_slot: int = 1
    per_day: int = 0  # 0: no limit
    booking_after: Notice = field(default_factory=lambda: Notice(0, NoticeUnit.HOURS))
    booking_for: Notice = field(default_factory=lambda: Notice(0, NoticeUnit.DAYS))  # 0: none

    @property
    def interval(self) -> timedelta:
        """How far apart slots start within an opening (at least a minute)."""
        return max(self.slot_interval or self.slot_duration, MIN_INTERVAL)

    @property
    def gap(self) -> timedelta:
        """The free time two bookings keep between them: the earlier one's ``slotBuffer``
        after it and the later one's ``preBuffer`` before it."""
        return self.pre_buffer + self.slot_buffer


class CalendarColumns(Protocol):
    """The calendar columns :func:`settings_of` reads (an ORM row or a statement's row)."""

    @property
    def open_hours(self) -> Sequence[Mapping[str, Any]] | None: ...
    @property
    def slot_duration(self) -> float: ...
    @property
    def slot_duration_unit(self) -> str: ...
    @property
    def slot_interval(self) -> float | None: ...
    @property
    def slot_interval_unit(self) -> str: ...
    @property
    def slot_buffer(self) -> float: ...
    @property
    def slot_buffer_unit(self) -> str: ...
    @property
    def pre_buffer(self) -> float: ...
    @property
    def pre_buffer_unit(self) -> str: ...
    @property
    def appointments_per_slot(self) -> int: ...
    @property
    def appointments_per_day(self) -> int: ...
    @property
    def allow_booking_after(self) -> float: ...
    @property
    def allow_booking_after_unit(self) -> str: ...
    @property
    def allow_booking_for(self) -> float: ...
    @property
    def allow_booking_for_unit(self) -> str: ...


def settings_of(calendar: CalendarColumns) -> AvailabilitySettings:
    """The availability settings of a stored calendar."""
    duration = slot_span(calendar.slot_duration, calendar.slot_duration_unit)
    interval = calendar.slot_interval
    return AvailabilitySettings(
        open_hours=open_hours_of(calendar.open_hours),
        slot_duration=duration if duration > timedelta(0) else DEFAULT_DURATION,
        slot_interval=(
            slot_span(interval, calendar.slot_interval_unit) if interval is not None else None
        ),
        pre_buffer=slot_span(calendar.pre_buffer, calendar.pre_buffer_unit),
        slot_buffer=slot_span(calendar.slot_buffer, calendar.slot_buffer_unit),
        per_slot=max(1, calendar.appointments_per_slot),
        per_day=max(0, calendar.appointments_per_day),
        booking_after=Notice(
            calendar.allow_booking_after, NoticeUnit(calendar.allow_booking_after_unit)
        ),
        booking_for=Notice(calendar.allow_booking_for, NoticeUnit(calendar.allow_booking_for_unit)),
    )


def open_hours_of(stored: Sequence[Mapping[str, Any]] | None) -> tuple[OpenHours, ...]:
    """HighLevel's ``openHours`` (as validated and stored) as :class:`OpenHours`."""
    return tuple(
        OpenHours(
            days=frozenset(int(d) for d in entry.get("daysOfTheWeek", ())),
            hours=tuple(
                Hours(
                    opens=int(h["openHour"]) * 60 + int(h["openMinute"]),
                    closes=int(h["closeHour"]) * 60 + int(h["closeMinute"]),
                )
                for h in entry.get("hours", ())
            ),
        )
        for entry in stored or ()
    )
