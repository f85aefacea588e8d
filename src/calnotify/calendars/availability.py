"""HighLevel's availability fields of a calendar (docs/semantics.md §8): checked, stored in their
columns, shown. Names, types, units and defaults are those of ``CalendarCreateDTO``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic.alias_generators import to_camel

from calnotify.availability.settings import NoticeUnit, SlotUnit
from calnotify.calendars.schemas import CalendarFieldsIn, OpenHourIn
from calnotify.errors import FieldError
from calnotify.models import Calendar

WEEK_MINUTES = 7 * 24 * 60
MAX_PER_SLOT = 1000
MAX_PER_DAY = 10_000
# The most each notice may be, in its unit: a year ahead for allowBookingAfter, two for
# allowBookingFor.
AFTER_MAX = {
    NoticeUnit.HOURS: 8784,
    NoticeUnit.DAYS: 366,
    NoticeUnit.WEEKS: 52,
    NoticeUnit.MONTHS: 12,
}
FOR_MAX = {NoticeUnit.DAYS: 731, NoticeUnit.WEEKS: 104, NoticeUnit.MONTHS: 24}
SLOT_UNITS = "must be mins or hours"

Limit = Callable[[float, str], str | None]


def _slot_limit(low_minutes: int, message: str) -> Limit:
    def problem(amount: float, unit: str) -> str | None:
        minutes = amount * SlotUnit(unit).minutes
        return None if low_minutes <= minutes <= WEEK_MINUTES else message

    return problem


def _notice_limit(maxima: dict[NoticeUnit, int]) -> Limit:
    def problem(amount: float, unit: str) -> str | None:
        most = maxima[NoticeUnit(unit)]
        if not 0 <= amount <= most:
            return f"must be from 0 to {most} {unit}"
        if unit == NoticeUnit.MONTHS and not float(amount).is_integer():
            return "must be a whole number of months"
        return None

    return problem


@dataclass(frozen=True, slots=True)
class _Pair:
    """A value and its unit (``slotBuffer``, ``slotBufferUnit``): the body's fields and
    the calendar's columns have the same names, ``<name>`` and ``<name>_unit``."""

    name: str
    units: tuple[str, ...]
    unit_problem: str
    limit: Limit


_PAIRS = (
    _Pair(
        "slot_interval",
        tuple(SlotUnit),
        SLOT_UNITS,
        _slot_limit(1, "must be from 1 minute to 7 days"),
    ),
    _Pair("slot_buffer", tuple(SlotUnit), SLOT_UNITS, _slot_limit(0, "must be from 0 to 7 days")),
    _Pair("pre_buffer", tuple(SlotUnit), SLOT_UNITS, _slot_limit(0, "must be from 0 to 7 days")),
    _Pair(
        "allow_booking_after",
        tuple(AFTER_MAX),
        "must be hours, days, weeks or months",
        _notice_limit(AFTER_MAX),
    ),
    _Pair(
        "allow_booking_for",
        tuple(FOR_MAX),
        "must be days, weeks or months",
        _notice_limit(FOR_MAX),
    ),
)
# Body field → column, with the range of the whole number it must be.
_COUNTS = {
    "appoinment_per_slot": ("appointments_per_slot", 1, MAX_PER_SLOT),
    "appoinment_per_day": ("appointments_per_day", 0, MAX_PER_DAY),
}
_FLAGS = ("allow_reschedule", "allow_cancellation")

#: The columns of a new calendar: HighLevel's defaults (slots every slotDuration, one
#: appointment at a time, no buffers, no limits), and no open hours.
DEFAULTS: dict[str, Any] = {
    "open_hours": None,
    "slot_interval": None,
    "slot_interval_unit": SlotUnit.MINS.value,
    "slot_buffer": 0,
    "slot_buffer_unit": SlotUnit.MINS.value,
    "pre_buffer": 0,
    "pre_buffer_unit": SlotUnit.MINS.value,
    "appointments_per_slot": 1,
    "appointments_per_day": 0,
    "allow_booking_after": 0,
    "allow_booking_after_unit": NoticeUnit.HOURS.value,
    "allow_booking_for": 0,
    "allow_booking_for_unit": NoticeUnit.DAYS.value,
    "allow_reschedule": True,
    "allow_cancellation": True,
}


def checked_availability(
    body: CalendarFieldsIn, calendar: Calendar, errors: list[FieldError]
) -> dict[str, Any]:
    """The calendar's columns the body's availability fields set, each problem added to
    ``errors`` (naming the field). A value is checked with its unit, the one given or else
    the stored one. ``openHours: []`` clears the open hours."""
    given = body.given()
    values: dict[str, Any] = {}
    if body.open_hours is not None:
        values["open_hours"] = open_hours_stored(body.open_hours, errors) or None
    for pair in _PAIRS:
        unit_name = f"{pair.name}_unit"
        if pair.name not in given and unit_name not in given:
            continue
        unit = given.get(unit_name, getattr(calendar, unit_name))
        if unit not in pair.units:
            errors.append(FieldError(to_camel(unit_name), pair.unit_problem))
            continue
        amount = given.get(pair.name, getattr(calendar, pair.name))
        if isinstance(amount, int | float) and (problem := pair.limit(amount, str(unit))):
            errors.append(FieldError(to_camel(pair.name), problem))
            continue
        values[pair.name], values[unit_name] = amount, unit
    for name, (column, low, high) in _COUNTS.items():
        if name not in given:
            continue
        count = given[name]
        if isinstance(count, int | float) and _whole_within(count, low, high):
            values[column] = int(count)
        else:
            errors.append(
                FieldError(to_camel(name), f"must be a whole number from {low} to {high}")
            )
    values.update({name: given[name] for name in _FLAGS if name in given})
    return values


def _whole_within(value: object, low: int, high: int) -> bool:
    return isinstance(value, int | float) and float(value).is_integer() and low <= value <= high


def open_hours_stored(
    entries: Sequence[OpenHourIn], errors: list[FieldError]
) -> list[dict[str, Any]]:
    """``openHours`` as stored (whole numbers), each problem added to ``errors``.

    Minutes go up to 60, as in HighLevel's spec: ``10:60`` is 11:00, and ``23:60``
    closes at midnight (``closeHour`` stops at 23).
    """
    stored: list[dict[str, Any]] = []
    for i, entry in enumerate(entries):
        where = f"openHours[{i}]"
        days: list[int] = []
        for j, day in enumerate(entry.days_of_the_week):
            if _whole_within(day, 0, 6):
                days.append(int(day))
            else:
                errors.append(
                    FieldError(
                        f"{where}.daysOfTheWeek[{j}]",
                        "must be a whole number from 0 (Sunday) to 6 (Saturday)",
                    )
                )
        hours: list[dict[str, int]] = []
        for k, hour in enumerate(entry.hours):
            if (
                checked := _hours(hour.model_dump(by_alias=True), f"{where}.hours[{k}]", errors)
            ) is not None:
                hours.append(checked)
        stored.append({"daysOfTheWeek": days, "hours": hours})
    return stored


def _hours(given: dict[str, Any], where: str, errors: list[FieldError]) -> dict[str, int] | None:
    problems = [
        FieldError(f"{where}.{name}", f"must be a whole number from 0 to {high}")
        for name, high in (
            ("openHour", 23),
            ("openMinute", 60),
            ("closeHour", 23),
            ("closeMinute", 60),
        )
        if not _whole_within(given[name], 0, high)
    ]
    if problems:
        errors.extend(problems)
        return None
    hours = {name: int(value) for name, value in given.items()}
    opens = hours["openHour"] * 60 + hours["openMinute"]
    closes = hours["closeHour"] * 60 + hours["closeMinute"]
    if closes <= opens:
        errors.append(FieldError(f"{where}.closeHour", "must be after the opening time"))
        return None
    return hours


def availability_out(calendar: Calendar) -> dict[str, Any]:
    """The availability fields of a calendar's answer (every one, defaults included).
    Without its own ``slotInterval``, a calendar's slots start every ``slotDuration``,
    and the answer says so."""
    own_interval = calendar.slot_interval is not None
    return {
        "openHours": calendar.open_hours or [],
        "slotInterval": plain_number(
            calendar.slot_interval if calendar.slot_interval is not None else calendar.slot_duration
        ),
        "slotIntervalUnit": (
            calendar.slot_interval_unit if own_interval else calendar.slot_duration_unit
        ),
        "slotBuffer": plain_number(calendar.slot_buffer),
        "slotBufferUnit": calendar.slot_buffer_unit,
        "preBuffer": plain_number(calendar.pre_buffer),
        "preBufferUnit": calendar.pre_buffer_unit,
        "appoinmentPerSlot": calendar.appointments_per_slot,
        "appoinmentPerDay": calendar.appointments_per_day,
        "allowBookingAfter": plain_number(calendar.allow_booking_after),
        "allowBookingAfterUnit": calendar.allow_booking_after_unit,
        "allowBookingFor": plain_number(calendar.allow_booking_for),
        "allowBookingForUnit": calendar.allow_booking_for_unit,
        "allowReschedule": calendar.allow_reschedule,
        "allowCancellation": calendar.allow_cancellation,
    }


def plain_number(value: float) -> float | int:
    """1.0 → 1: JSON clients compare what they sent with what they get back."""
    return int(value) if float(value).is_integer() else value
