"""Calendar availability (semantics §8): the free-slot computation against hand-computed
cases, across changes of offset, ``booking_problem``, the calendar's availability fields
and ``GET /calendars/{calendarId}/free-slots``."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import sqlalchemy as sa
from alembic import command

from calnotify.availability import (
    AvailabilitySettings,
    Hours,
    Notice,
    NoticeUnit,
    OpenHours,
    booking_problem,
    free_slots,
    repository,
    settings_of,
)
from calnotify.clock import ManualClock
from calnotify.db.base import JSONType, UTCDateTime
from calnotify.db.engine import Database
from calnotify.db.migrate import alembic_config, upgrade
from calnotify.db.urls import sync_url
from calnotify.ids import new_id
from calnotify.models import Appointment, Calendar, Location
from calnotify.timefmt import zone
from tests.conftest import NOW
from tests.factories import Tenant
from tests.spec import assert_conforms

NY = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
WEEKDAYS = frozenset({1, 2, 3, 4, 5})
EVERY_DAY = frozenset(range(7))
# Monday 2026-03-02 (New York is on EST, -05:00, until Sunday 2026-03-08).
MONDAY = date(2026, 3, 2)


@dataclass(frozen=True)
class Appt:
    start_at: datetime
    end_at: datetime
    status: str = "new"
    id: str = "a"


def local(day: date, hour: int, minute: int = 0, zone: ZoneInfo = NY) -> datetime:
    """A wall-clock time of ``zone`` as UTC."""
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone).astimezone(UTC)


def appt(day: date, start: str, end: str, status: str = "new", id: str = "a") -> Appt:
    (h1, m1), (h2, m2) = (map(int, start.split(":")), map(int, end.split(":")))
    return Appt(local(day, h1, m1), local(day, h2, m2), status, id)


def opening(start: str, end: str, days: frozenset[int] = WEEKDAYS) -> OpenHours:
    (h1, m1), (h2, m2) = (map(int, start.split(":")), map(int, end.split(":")))
    return OpenHours(days, (Hours(h1 * 60 + m1, h2 * 60 + m2),))


def rules(
    *openings: OpenHours, duration: int = 30, interval: int | None = None, **fields: Any
) -> AvailabilitySettings:
    return AvailabilitySettings(
        open_hours=openings or (opening("09:00", "12:00"),),
        slot_duration=timedelta(minutes=duration),
        slot_interval=timedelta(minutes=interval) if interval else None,
        **fields,
    )


def minutes(value: int) -> timedelta:
    return timedelta(minutes=value)


def shown(slots: list[datetime], zone: ZoneInfo = NY) -> list[str]:
    """Slots as local ``HH:MM``, or ``MM-DD HH:MM`` when they span days."""
    texts = [s.astimezone(zone).strftime("%m-%d %H:%M") for s in slots]
    return [t[6:] for t in texts] if len({t[:5] for t in texts}) <= 1 else texts


def on_day(
    settings: AvailabilitySettings,
    day: date,
    appointments: list[Appt] | None = None,
    zone: ZoneInfo = NY,
    now: datetime | None = None,
) -> list[str]:
    """The free slots of one local day, as ``HH:MM``."""
    start = local(day, 0, 0, zone)
    end = local(day + timedelta(days=1), 0, 0, zone) - timedelta(milliseconds=1)
    found = free_slots(
        settings, zone, appointments or [], now or start - timedelta(days=1), start, end
    )
    return [s.astimezone(zone).strftime("%H:%M") for s in found]


# --- the computation -----------------------------------------------------------------------


def test_slots_start_every_duration_from_each_opening() -> None:
    settings = rules(
        OpenHours(WEEKDAYS, (Hours(9 * 60, 12 * 60), Hours(13 * 60, 15 * 60))), duration=60
    )
    assert on_day(settings, MONDAY) == ["09:00", "10:00", "11:00", "13:00", "14:00"]
    assert on_day(settings, MONDAY - timedelta(days=1)) == []  # Sunday: closed


def test_days_of_the_week_count_from_sunday() -> None:
    sunday_only = rules(opening("09:00", "10:00", frozenset({0})))
    assert on_day(sunday_only, date(2026, 3, 1)) == ["09:00", "09:30"]
    assert on_day(sunday_only, MONDAY) == []
    saturday = rules(opening("09:00", "09:30", frozenset({6})))
    assert on_day(saturday, date(2026, 3, 7)) == ["09:00"]


def test_interval_other_than_duration() -> None:
    # 60-minute slots every 30 minutes: the last one must end by 11:00.
    assert on_day(rules(opening("09:00", "11:00"), duration=60, interval=30), MONDAY) == [
        "09:00",
        "09:30",
        "10:00",
    ]
    # 30-minute slots every 45 minutes.
    assert on_day(rules(opening("09:00", "11:00"), duration=30, interval=45), MONDAY) == [
        "09:00",
        "09:45",
        "10:30",
    ]


def test_overlapping_openings_give_each_slot_once() -> None:
    settings = rules(opening("09:00", "11:00"), opening("10:00", "12:00", EVERY_DAY), duration=60)
    assert on_day(settings, MONDAY) == ["09:00", "10:00", "11:00"]


def test_an_appointment_takes_its_slot() -> None:
    settings = rules(opening("09:00", "12:00"))
    booked = [appt(MONDAY, "10:00", "10:30")]
    assert on_day(settings, MONDAY, booked) == ["09:00", "09:30", "10:30", "11:00", "11:30"]
    # One that overlaps two slots takes both.
    booked = [appt(MONDAY, "10:15", "10:45")]
    assert on_day(settings, MONDAY, booked) == ["09:00", "09:30", "11:00", "11:30"]


def test_buffer_after_an_appointment() -> None:
    # slotBuffer 15: every booking keeps 15 minutes free after it. With a booking at
    # 10:00-10:30, a slot must end by 9:45 or start from 10:45.
    settings = rules(opening("09:00", "12:00"), interval=15, slot_buffer=minutes(15))
    booked = [appt(MONDAY, "10:00", "10:30")]
    assert on_day(settings, MONDAY, booked) == [
        "09:00",
        "09:15",
        "10:45",
        "11:00",
        "11:15",
        "11:30",
    ]


def test_buffers_before_and_after_add_up() -> None:
    # preBuffer 10 + slotBuffer 15: bookings keep 25 minutes apart. Around 10:00-10:30 a
    # slot must end by 9:35 (start by 9:05) or start from 10:55.
    settings = rules(
        opening("09:00", "12:00"), interval=15, pre_buffer=minutes(10), slot_buffer=minutes(15)
    )
    booked = [appt(MONDAY, "10:00", "10:30")]
    assert on_day(settings, MONDAY, booked) == ["09:00", "11:00", "11:15", "11:30"]
    # preBuffer alone: the slot before a booking must leave it its preparation.
    pre_only = rules(opening("09:00", "12:00"), pre_buffer=minutes(30))
    assert on_day(pre_only, MONDAY, booked) == ["09:00", "11:00", "11:30"]


def test_appointments_per_slot() -> None:
    settings = rules(opening("09:00", "11:00"), interval=15, per_slot=2)
    booked = [appt(MONDAY, "10:00", "10:30", id="x"), appt(MONDAY, "10:15", "10:45", id="y")]
    # 09:45-10:15 and 10:30-11:00 overlap one of them; 10:00 and 10:15 overlap both.
    assert on_day(settings, MONDAY, booked) == [
        "09:00",
        "09:15",
        "09:30",
        "09:45",
        "10:30",
    ]
    one = [appt(MONDAY, "10:00", "10:30")]
    assert "10:00" in on_day(settings, MONDAY, one)


def test_appointments_per_day() -> None:
    settings = rules(opening("09:00", "11:00"), per_day=2)
    tuesday = MONDAY + timedelta(days=1)
    booked = [
        appt(MONDAY, "09:00", "09:30", id="1"),
        appt(MONDAY, "10:30", "11:00", id="2"),
        appt(tuesday, "09:00", "09:30", id="3"),
        appt(tuesday, "10:00", "10:30", "cancelled", id="4"),
    ]
    assert on_day(settings, MONDAY, booked) == []
    assert on_day(settings, tuesday, booked) == ["09:30", "10:00", "10:30"]
    # 0: no limit.
    assert on_day(rules(opening("09:00", "11:00")), MONDAY, booked) == ["09:30", "10:00"]


def test_cancelled_and_invalid_appointments_free_their_slot() -> None:
    settings = rules(opening("09:00", "10:30"))
    for status, free in (
        ("cancelled", ["09:00", "09:30", "10:00"]),
        ("invalid", ["09:00", "09:30", "10:00"]),
        ("noshow", ["09:00", "10:00"]),
        ("showed", ["09:00", "10:00"]),
        ("confirmed", ["09:00", "10:00"]),
    ):
        assert on_day(settings, MONDAY, [appt(MONDAY, "09:30", "10:00", status)]) == free, status


def test_none_before_now_nor_before_the_minimum_notice() -> None:
    settings = rules(opening("09:00", "12:00"), duration=60)
    now = local(MONDAY, 9, 10)
    assert on_day(settings, MONDAY, now=now) == ["10:00", "11:00"]
    notice = rules(
        opening("09:00", "12:00"), duration=60, booking_after=Notice(2, NoticeUnit.HOURS)
    )
    assert on_day(notice, MONDAY, now=local(MONDAY, 8, 0)) == ["10:00", "11:00"]
    assert on_day(notice, MONDAY, now=local(MONDAY, 8, 1)) == ["11:00"]
    a_day = rules(opening("09:00", "12:00"), duration=60, booking_after=Notice(1, NoticeUnit.DAYS))
    now = local(MONDAY, 10, 30)
    found = free_slots(a_day, NY, [], now, now, now + timedelta(days=2))
    # From Tuesday 10:30 to the range's end, Wednesday 10:30.
    assert shown(found) == ["03-03 11:00", "03-04 09:00", "03-04 10:00"]


def test_none_later_than_the_booking_window() -> None:
    settings = rules(opening("09:00", "11:00"), duration=60, booking_for=Notice(2, NoticeUnit.DAYS))
    now = local(MONDAY, 10, 0)
    found = free_slots(settings, NY, [], now, now, now + timedelta(days=7))
    # Up to Wednesday 10:00 included.
    assert shown(found) == [
        "03-02 10:00",
        "03-03 09:00",
        "03-03 10:00",
        "03-04 09:00",
        "03-04 10:00",
    ]
    weeks = rules(opening("09:00", "10:00"), duration=60, booking_for=Notice(1, NoticeUnit.WEEKS))
    found = free_slots(weeks, NY, [], now, now, now + timedelta(days=14))
    assert shown(found)[-1] == "03-09 09:00"


def test_months_are_calendar_months_in_the_location_zone() -> None:
    now = local(date(2026, 1, 31), 10, 0)
    assert Notice(1, NoticeUnit.MONTHS).from_now(now, NY) == local(date(2026, 2, 28), 10, 0)
    # Across the change to summer time the wall-clock time stays.
    assert Notice(2, NoticeUnit.MONTHS).from_now(now, NY) == local(date(2026, 3, 31), 10, 0)
    assert Notice(11, NoticeUnit.MONTHS).from_now(now, NY) == local(date(2026, 12, 31), 10, 0)


def test_closing_at_midnight() -> None:
    # closeHour stops at 23 in HighLevel's spec; 23:60 is midnight.
    settings = rules(OpenHours(EVERY_DAY, (Hours(23 * 60, 24 * 60),)))
    assert on_day(settings, MONDAY) == ["23:00", "23:30"]


def test_range_ends_are_included() -> None:
    settings = rules(opening("09:00", "12:00"), duration=60)
    start, end = local(MONDAY, 10, 0), local(MONDAY, 11, 0)
    assert shown(free_slots(settings, NY, [], start - timedelta(days=1), start, end)) == [
        "10:00",
        "11:00",
    ]


def test_long_appointment_from_before_the_range() -> None:
    settings = rules(opening("09:00", "12:00"), duration=60)
    # Booked from Sunday 18:00 to Monday 10:30.
    booked = [Appt(local(MONDAY - timedelta(days=1), 18), local(MONDAY, 10, 30))]
    assert on_day(settings, MONDAY, booked) == ["11:00"]


def test_no_open_hours_no_slots() -> None:
    settings = AvailabilitySettings()
    now = local(MONDAY, 0)
    assert free_slots(settings, NY, [], now, now, now + timedelta(days=7)) == []


# --- changes of offset ----------------------------------------------------------------------


def test_new_york_spring_forward() -> None:
    sunday = date(2026, 3, 8)  # 02:00 EST becomes 03:00 EDT
    hourly = rules(opening("00:00", "05:00", EVERY_DAY), duration=60)
    found = on_day(hourly, sunday)
    assert found == ["00:00", "01:00", "03:00", "04:00"]  # 02:00 does not exist
    half_hourly = rules(opening("00:00", "05:00", EVERY_DAY), duration=60, interval=30)
    start, end = local(sunday, 0), local(sunday, 23, 59)
    slots = free_slots(half_hourly, NY, [], start - timedelta(days=1), start, end)
    assert [s.astimezone(NY).isoformat() for s in slots] == [
        "2026-03-08T00:00:00-05:00",
        "2026-03-08T00:30:00-05:00",
        "2026-03-08T01:00:00-05:00",
        "2026-03-08T01:30:00-05:00",  # an hour long: to 03:30 EDT
        "2026-03-08T03:00:00-04:00",
        "2026-03-08T03:30:00-04:00",
        "2026-03-08T04:00:00-04:00",
    ]


def test_new_york_fall_back() -> None:
    sunday = date(2026, 11, 1)  # 02:00 EDT becomes 01:00 EST: 01:00-02:00 happens twice
    settings = rules(opening("00:00", "03:00", EVERY_DAY))
    start = local(sunday, 0)
    slots = free_slots(
        settings, NY, [], start - timedelta(days=1), start, start + timedelta(hours=5)
    )
    assert [s.astimezone(NY).isoformat() for s in slots] == [
        "2026-11-01T00:00:00-04:00",
        "2026-11-01T00:30:00-04:00",
        "2026-11-01T01:00:00-04:00",
        "2026-11-01T01:30:00-04:00",  # no second 01:00 or 01:30 (EST)
        "2026-11-01T02:00:00-05:00",
        "2026-11-01T02:30:00-05:00",
    ]
    assert len(set(slots)) == len(slots)


def test_office_hours_stay_local_across_the_change() -> None:
    settings = rules(opening("09:00", "17:00"), duration=60)
    friday, monday = date(2026, 3, 6), date(2026, 3, 9)
    now = local(friday, 0)
    slots = free_slots(settings, NY, [], now, now, local(monday, 23))
    firsts = {s.astimezone(NY).date(): s.astimezone(NY).isoformat() for s in reversed(slots)}
    assert firsts == {friday: "2026-03-06T09:00:00-05:00", monday: "2026-03-09T09:00:00-04:00"}
    assert slots[0].astimezone(UTC).hour == 14  # Friday 09:00 EST
    assert slots[8].astimezone(UTC).hour == 13  # Monday 09:00 EDT
    assert len(slots) == 16
    november = [date(2026, 10, 30), date(2026, 11, 2)]
    now = local(november[0], 0)
    slots = free_slots(settings, NY, [], now, now, local(november[1], 23))
    assert {s.astimezone(NY).strftime("%H:%M") for s in slots} == {
        f"{h:02}:00" for h in range(9, 17)
    }
    assert len(slots) == 16


def test_berlin_changes() -> None:
    night = rules(opening("01:00", "04:00", EVERY_DAY))
    spring, autumn = date(2026, 3, 29), date(2026, 10, 25)
    assert on_day(night, spring, zone=BERLIN) == ["01:00", "01:30", "03:00", "03:30"]
    start = local(autumn, 0, 0, BERLIN)
    slots = free_slots(
        night, BERLIN, [], start - timedelta(days=1), start, start + timedelta(hours=8)
    )
    assert [s.astimezone(BERLIN).isoformat() for s in slots] == [
        "2026-10-25T01:00:00+02:00",
        "2026-10-25T01:30:00+02:00",
        "2026-10-25T02:00:00+02:00",
        "2026-10-25T02:30:00+02:00",
        "2026-10-25T03:00:00+01:00",
        "2026-10-25T03:30:00+01:00",
    ]
    office = rules(opening("09:00", "10:00", EVERY_DAY))
    for day in (date(2026, 3, 28), spring, date(2026, 3, 30), autumn):
        assert on_day(office, day, zone=BERLIN) == ["09:00", "09:30"]
    assert (
        local(spring, 9, 0, BERLIN).hour == 7 and local(date(2026, 3, 28), 9, 0, BERLIN).hour == 8
    )


# --- booking_problem ------------------------------------------------------------------------


def test_booking_problem_without_open_hours_is_none() -> None:
    now = local(MONDAY, 8)
    past = local(MONDAY, 3)
    assert booking_problem(AvailabilitySettings(), past, past + minutes(30), [], now, NY) is None
    booked = [appt(MONDAY, "10:00", "11:00")]
    start = local(MONDAY, 10)
    assert (
        booking_problem(AvailabilitySettings(), start, start + minutes(30), booked, now, NY) is None
    )


@pytest.mark.parametrize(
    ("at", "length", "problem"),
    [
        ("09:00", 30, None),
        ("11:30", 30, None),
        ("09:00", 60, None),  # longer than a slot, within the opening
        ("08:30", 30, "is outside the calendar's open hours"),
        ("12:00", 30, "is outside the calendar's open hours"),
        (
            "09:10",
            30,
            "is not one of the calendar's slot times (every 30 minutes from each opening)",
        ),
        ("11:30", 60, "ends after the calendar closes"),
        (
            "10:00",
            30,
            "is taken: 1 appointment(s) already overlap it (the calendar takes 1 at a time)",
        ),
        ("07:00", 30, "is in the past"),
    ],
)
def test_booking_problem(at: str, length: int, problem: str | None) -> None:
    settings = rules(opening("09:00", "12:00"))
    booked = [appt(MONDAY, "10:00", "10:30", id="other")]
    hour, minute = map(int, at.split(":"))
    start = local(MONDAY, hour, minute)
    now = local(MONDAY, 7, 30)
    assert booking_problem(settings, start, start + minutes(length), booked, now, NY) == problem


def test_booking_problem_window_and_limits() -> None:
    now = local(MONDAY, 8)
    start = local(MONDAY, 9)
    notice = rules(booking_after=Notice(2, NoticeUnit.HOURS))
    assert booking_problem(notice, start, start + minutes(30), [], now, NY) == (
        "is less than 2 hours from now (the calendar's minimum scheduling notice, "
        "allowBookingAfter)"
    )
    window = rules(booking_for=Notice(1, NoticeUnit.DAYS))
    later = local(MONDAY + timedelta(days=1), 9)
    assert booking_problem(window, later, later + minutes(30), [], now, NY) == (
        "is more than 1 day ahead (the calendar takes bookings that far ahead at most, "
        "allowBookingFor)"
    )
    per_day = rules(per_day=1)
    booked = [appt(MONDAY, "11:00", "11:30", id="other")]
    assert booking_problem(per_day, start, start + minutes(30), booked, now, NY) == (
        "falls on a day that already has 1 appointment(s) (the calendar takes at most 1 a day)"
    )
    buffered = rules(slot_buffer=minutes(15))
    booked = [appt(MONDAY, "08:30", "09:00", id="other")]
    assert booking_problem(buffered, start, start + minutes(30), booked, now, NY) == (
        "is taken: 1 appointment(s) already overlap it (the calendar takes 1 at a time, "
        "keeping 15 minutes between appointments)"
    )


def test_booking_problem_ignores_the_appointment_being_moved() -> None:
    settings = rules(per_day=1)
    now = local(MONDAY, 8)
    booked = [appt(MONDAY, "10:00", "10:30", id="moving")]
    start = local(MONDAY, 10, 30)
    assert booking_problem(settings, start, start + minutes(30), booked, now, NY) is not None
    assert (
        booking_problem(
            settings, start, start + minutes(30), booked, now, NY, ignore_appointment_id="moving"
        )
        is None
    )
    cancelled = [appt(MONDAY, "10:00", "10:30", "cancelled")]
    assert booking_problem(settings, start, start + minutes(30), cancelled, now, NY) is None


def test_booking_problem_in_the_gap_and_the_repeated_hour() -> None:
    settings = rules(opening("00:00", "05:00", EVERY_DAY), duration=60)
    now = local(date(2026, 3, 1), 0)
    spring = date(2026, 3, 8)
    one = local(spring, 1)
    assert booking_problem(settings, one, one + minutes(60), [], now, NY) is None
    three = local(spring, 3)
    assert booking_problem(settings, three, three + minutes(60), [], now, NY) is None
    autumn = date(2026, 11, 1)
    first_one = datetime(2026, 11, 1, 1, tzinfo=NY).astimezone(UTC)  # 01:00 EDT
    second_one = datetime(2026, 11, 1, 1, fold=1, tzinfo=NY).astimezone(UTC)  # 01:00 EST
    assert second_one - first_one == timedelta(hours=1)
    assert booking_problem(settings, first_one, first_one + minutes(60), [], now, NY) is None
    assert booking_problem(settings, second_one, second_one + minutes(60), [], now, NY) == (
        "is not one of the calendar's slot times (every 1 hour from each opening)"
    )
    assert local(autumn, 0).hour == 4


def test_a_free_slot_is_exactly_a_booking_without_a_problem() -> None:
    """Over a week of a busy calendar, booking one slot is allowed exactly at the slots
    free_slots lists."""
    settings = rules(
        opening("08:00", "18:00"),
        OpenHours(frozenset({6}), (Hours(10 * 60, 14 * 60),)),
        duration=45,
        interval=15,
        pre_buffer=minutes(5),
        slot_buffer=minutes(10),
        per_slot=2,
        per_day=6,
        booking_after=Notice(3, NoticeUnit.HOURS),
        booking_for=Notice(5, NoticeUnit.DAYS),
    )
    booked = [
        appt(MONDAY + timedelta(days=d), f"{h:02}:{m:02}", f"{h + 1:02}:{m:02}", id=f"{d}{h}{m}")
        for d in range(7)
        for h, m in ((9, 0), (9, 20), (13, 15), (15, 40))
    ] + [appt(MONDAY + timedelta(days=2), "10:00", "10:45", "cancelled", id="c")]
    now = local(MONDAY, 7, 50)
    start, end = now - timedelta(days=1), now + timedelta(days=7)
    free = set(free_slots(settings, NY, booked, now, start, end))
    assert free
    tried = 0
    at = local(MONDAY, 0)
    while at < end:
        allowed = (
            booking_problem(settings, at, at + settings.slot_duration, booked, now, NY) is None
        )
        assert allowed == (at in free), at.astimezone(NY)
        tried += 1
        at += minutes(5)
    assert tried > 2000


# --- the calendar's fields ------------------------------------------------------------------

WEEKDAY_MORNINGS = [
    {
        "daysOfTheWeek": [1, 2, 3, 4, 5],
        "hours": [{"openHour": 9, "openMinute": 0, "closeHour": 12, "closeMinute": 0}],
    }
]
AVAILABILITY = {
    "openHours": [
        {
            "daysOfTheWeek": [1, 3],
            "hours": [
                {"openHour": 8, "openMinute": 30, "closeHour": 12, "closeMinute": 0},
                {"openHour": 13, "openMinute": 0, "closeHour": 23, "closeMinute": 60},
            ],
        },
        {"daysOfTheWeek": [6], "hours": []},
    ],
    "slotDuration": 1,
    "slotDurationUnit": "hours",
    "slotInterval": 20,
    "slotIntervalUnit": "mins",
    "slotBuffer": 10,
    "slotBufferUnit": "mins",
    "preBuffer": 0.5,
    "preBufferUnit": "hours",
    "appoinmentPerSlot": 3,
    "appoinmentPerDay": 12,
    "allowBookingAfter": 2,
    "allowBookingAfterUnit": "days",
    "allowBookingFor": 3,
    "allowBookingForUnit": "months",
    "allowReschedule": False,
    "allowCancellation": False,
}
DEFAULT_AVAILABILITY = {
    "openHours": [],
    "slotInterval": 30,
    "slotIntervalUnit": "mins",
    "slotBuffer": 0,
    "slotBufferUnit": "mins",
    "preBuffer": 0,
    "preBufferUnit": "mins",
    "appoinmentPerSlot": 1,
    "appoinmentPerDay": 0,
    "allowBookingAfter": 0,
    "allowBookingAfterUnit": "hours",
    "allowBookingFor": 0,
    "allowBookingForUnit": "days",
    "allowReschedule": True,
    "allowCancellation": True,
}


async def create_calendar(
    client: httpx.AsyncClient, tenant: Tenant, **fields: Any
) -> dict[str, Any]:
    response = await client.post(
        "/calendars/",
        json={"locationId": tenant.location_id, "name": "Cleanings", **fields},
        headers=tenant.headers(),
    )
    assert response.status_code == 200, response.text
    assert_conforms("create-calendar", response)
    calendar: dict[str, Any] = response.json()["calendar"]
    return calendar


async def update_calendar(
    client: httpx.AsyncClient, tenant: Tenant, calendar_id: str, **fields: Any
) -> httpx.Response:
    return await client.put(f"/calendars/{calendar_id}", json=fields, headers=tenant.headers())


async def test_availability_fields_round_trip(client: httpx.AsyncClient, tenant: Tenant) -> None:
    calendar = await create_calendar(client, tenant, **AVAILABILITY)
    assert {k: calendar[k] for k in AVAILABILITY} == AVAILABILITY
    fetched = await client.get(f"/calendars/{calendar['id']}", headers=tenant.headers())
    assert_conforms("get-calendar", fetched)
    assert fetched.json() == {"calendar": calendar}
    listed = await client.get(
        "/calendars/", params={"locationId": tenant.location_id}, headers=tenant.headers()
    )
    assert calendar in listed.json()["calendars"]
    # HighLevel's SDK sends numbers as floats: 2.0 is 2.
    response = await update_calendar(
        client, tenant, calendar["id"], appoinmentPerSlot=2.0, allowBookingFor=4.0
    )
    assert response.status_code == 200, response.text
    assert_conforms("update-calendar", response)
    updated = response.json()["calendar"]
    assert (updated["appoinmentPerSlot"], updated["allowBookingFor"]) == (2, 4)
    assert updated["allowBookingForUnit"] == "months"  # kept
    assert updated["openHours"] == AVAILABILITY["openHours"]


async def test_availability_defaults(client: httpx.AsyncClient, tenant: Tenant) -> None:
    calendar = await create_calendar(client, tenant)
    assert {k: calendar[k] for k in DEFAULT_AVAILABILITY} == DEFAULT_AVAILABILITY
    # The tenant's calendar was made before these fields: the same defaults.
    existing = await client.get(f"/calendars/{tenant.calendar_id}", headers=tenant.headers())
    assert {k: existing.json()["calendar"][k] for k in DEFAULT_AVAILABILITY} == DEFAULT_AVAILABILITY


async def test_slot_interval_follows_the_duration_until_set(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    calendar = await create_calendar(client, tenant, slotDuration=1, slotDurationUnit="hours")
    assert (calendar["slotInterval"], calendar["slotIntervalUnit"]) == (1, "hours")
    response = await update_calendar(client, tenant, calendar["id"], slotInterval=15)
    assert (
        response.json()["calendar"]["slotInterval"],
        response.json()["calendar"]["slotIntervalUnit"],
    ) == (15, "mins")
    response = await update_calendar(client, tenant, calendar["id"], slotDuration=2)
    assert response.json()["calendar"]["slotInterval"] == 15


async def test_empty_open_hours_clear_them(client: httpx.AsyncClient, tenant: Tenant) -> None:
    calendar = await create_calendar(client, tenant, openHours=WEEKDAY_MORNINGS)
    assert calendar["openHours"] == WEEKDAY_MORNINGS
    response = await update_calendar(client, tenant, calendar["id"], name="Renamed", openHours=None)
    assert response.json()["calendar"]["openHours"] == WEEKDAY_MORNINGS  # null: not given
    response = await update_calendar(client, tenant, calendar["id"], openHours=[])
    assert response.json()["calendar"]["openHours"] == []


def hours(**fields: Any) -> list[dict[str, Any]]:
    hour = {"openHour": 9, "openMinute": 0, "closeHour": 17, "closeMinute": 0, **fields}
    return [{"daysOfTheWeek": [1], "hours": [hour]}]


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        (
            {"openHours": hours(openHour=24)},
            "openHours[0].hours[0].openHour",
            "must be a whole number from 0 to 23",
        ),
        (
            {"openHours": hours(closeHour=-1)},
            "openHours[0].hours[0].closeHour",
            "must be a whole number from 0 to 23",
        ),
        (
            {"openHours": hours(openMinute=61)},
            "openHours[0].hours[0].openMinute",
            "must be a whole number from 0 to 60",
        ),
        (
            {"openHours": hours(closeMinute=7.5)},
            "openHours[0].hours[0].closeMinute",
            "must be a whole number from 0 to 60",
        ),
        (
            {"openHours": hours(openHour=17)},
            "openHours[0].hours[0].closeHour",
            "must be after the opening time",
        ),
        (
            {"openHours": hours(closeHour=8, closeMinute=59)},
            "openHours[0].hours[0].closeHour",
            "must be after the opening time",
        ),
        (
            {"openHours": hours(openHour="9")},
            "openHours[0].hours[0].openHour",
            "Input should be a valid number",
        ),
        (
            {"openHours": [{"daysOfTheWeek": [1, 7], "hours": []}]},
            "openHours[0].daysOfTheWeek[1]",
            "must be a whole number from 0 (Sunday) to 6 (Saturday)",
        ),
        ({"openHours": [{"daysOfTheWeek": [1]}]}, "openHours[0].hours", "is required"),
        ({"openHours": {"daysOfTheWeek": [1]}}, "openHours", "Input should be a valid list"),
        ({"slotInterval": 0}, "slotInterval", "must be from 1 minute to 7 days"),
        (
            {"slotInterval": 169, "slotIntervalUnit": "hours"},
            "slotInterval",
            "must be from 1 minute to 7 days",
        ),
        ({"slotIntervalUnit": "days"}, "slotIntervalUnit", "must be mins or hours"),
        ({"slotBuffer": -5}, "slotBuffer", "must be from 0 to 7 days"),
        ({"slotBufferUnit": "secs"}, "slotBufferUnit", "must be mins or hours"),
        ({"preBuffer": "10"}, "preBuffer", "Input should be a valid number"),
        ({"appoinmentPerSlot": 0}, "appoinmentPerSlot", "must be a whole number from 1 to 1000"),
        ({"appoinmentPerSlot": 1.5}, "appoinmentPerSlot", "must be a whole number from 1 to 1000"),
        ({"appoinmentPerDay": -1}, "appoinmentPerDay", "must be a whole number from 0 to 10000"),
        (
            {"allowBookingAfter": 1.5, "allowBookingAfterUnit": "months"},
            "allowBookingAfter",
            "must be a whole number of months",
        ),
        (
            {"allowBookingAfter": 400, "allowBookingAfterUnit": "days"},
            "allowBookingAfter",
            "must be from 0 to 366 days",
        ),
        (
            {"allowBookingAfterUnit": "minutes"},
            "allowBookingAfterUnit",
            "must be hours, days, weeks or months",
        ),
        (
            {"allowBookingFor": 30, "allowBookingForUnit": "hours"},
            "allowBookingForUnit",
            "must be days, weeks or months",
        ),
        ({"allowBookingFor": -1}, "allowBookingFor", "must be from 0 to 731 days"),
        ({"allowReschedule": "false"}, "allowReschedule", "Input should be a valid boolean"),
        ({"allowCancellation": 0}, "allowCancellation", "Input should be a valid boolean"),
    ],
)
async def test_invalid_availability(
    client: httpx.AsyncClient, tenant: Tenant, body: dict[str, Any], field: str, message: str
) -> None:
    response = await client.post(
        "/calendars/",
        json={"locationId": tenant.location_id, "name": "x", **body},
        headers=tenant.headers(),
    )
    assert response.status_code == 400, response.text
    assert_conforms("create-calendar", response)
    errors = response.json()["errors"]
    assert field in [e["field"] for e in errors], errors
    assert any(e["field"] == field and e["message"].startswith(message) for e in errors), errors
    update = await update_calendar(client, tenant, tenant.calendar_id, **body)
    assert update.status_code == 400
    assert field in [e["field"] for e in update.json()["errors"]]


async def test_a_value_is_checked_with_its_stored_unit(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    calendar = await create_calendar(client, tenant, slotBuffer=600)
    response = await update_calendar(client, tenant, calendar["id"], slotBufferUnit="hours")
    assert response.status_code == 400
    assert response.json()["message"] == "slotBuffer: must be from 0 to 7 days"
    calendar = await create_calendar(
        client, tenant, allowBookingFor=50, allowBookingForUnit="weeks"
    )
    response = await update_calendar(client, tenant, calendar["id"], allowBookingForUnit="months")
    assert response.json()["message"] == "allowBookingFor: must be from 0 to 24 months"


LOCATIONS_AT_0008 = sa.table(
    "locations",
    *(
        sa.column(name)
        for name in (
            "id", "name", "email", "phone", "timezone", "address", "city", "state",
            "country", "postal_code", "website",
        )
    ),
    sa.column("date_added", UTCDateTime()),
    sa.column("date_updated", UTCDateTime()),
)  # fmt: skip


async def test_existing_values_move_out_of_extra(database_url: str) -> None:
    """Migration 0009: availability values calendars echoed from ``extra`` become columns;
    values the API would refuse stay in ``extra``; a downgrade puts them back."""
    engine = sa.create_engine(sync_url(database_url))
    old = sa.table(
        "calendars",
        *(sa.column(c) for c in ("id", "location_id", "name", "description", "calendar_type")),
        *(sa.column(c) for c in ("slot_duration", "slot_duration_unit")),
        *(
            sa.column(c)
            for c in ("is_active", "auto_confirm", "deleted", "date_added", "date_updated")
        ),
        sa.column("team_members", JSONType),
        sa.column("extra", JSONType),
    )
    location, moved, kept = new_id(), new_id(), new_id()
    extra = {
        "slotInterval": 15,
        "slotBuffer": 1,
        "slotBufferUnit": "hours",
        "appoinmentPerSlot": 4,
        "allowBookingFor": 2,
        "allowBookingForUnit": "weeks",
        "allowReschedule": False,
        "eventColor": "#039be5",
    }
    refused = {"slotInterval": "soon", "appoinmentPerDay": -3, "allowCancellation": "no"}
    try:
        command.downgrade(alembic_config(database_url), "0008")
        with engine.begin() as conn:
            # The locations table as migration 0008 left it.
            conn.execute(
                sa.insert(LOCATIONS_AT_0008).values(
                    id=location,
                    name="Old",
                    timezone="UTC",
                    date_added=NOW,
                    date_updated=NOW,
                    **dict.fromkeys(("email", "phone", "address", "city", "state", "country"), ""),
                    **dict.fromkeys(("postal_code", "website"), ""),
                )
            )
            for calendar_id, values in ((moved, extra), (kept, refused)):
                conn.execute(
                    sa.insert(old).values(
                        id=calendar_id,
                        location_id=location,
                        name="Old",
                        description="",
                        calendar_type="event",
                        slot_duration=30,
                        slot_duration_unit="mins",
                        team_members=[],
                        is_active=True,
                        auto_confirm=True,
                        deleted=False,
                        date_added=datetime(2026, 1, 1),
                        date_updated=datetime(2026, 1, 1),
                        extra=values,
                    )
                )
        upgrade(database_url)
        table = Calendar.__table__
        names = ("slot_interval", "slot_interval_unit", "slot_buffer", "slot_buffer_unit")
        names += ("appointments_per_slot", "appointments_per_day", "allow_booking_for")
        names += ("allow_booking_for_unit", "allow_reschedule", "allow_cancellation", "open_hours")
        columns = sa.select(*(table.c[n] for n in names), table.c.id)
        with engine.connect() as conn:
            found = {row.id: tuple(row)[:-1] for row in conn.execute(columns)}
            assert found[moved] == (15, "mins", 1, "hours", 4, 0, 2, "weeks", False, True, None)
            assert found[kept] == (None, "mins", 0, "mins", 1, 0, 0, "days", True, True, None)
            stored = conn.execute(
                sa.select(old.c.id, old.c.extra).where(old.c.id.in_([moved, kept]))
            )
            assert dict(stored.all()) == {moved: {"eventColor": "#039be5"}, kept: refused}
        command.downgrade(alembic_config(database_url), "0008")
        with engine.connect() as conn:
            stored = conn.execute(sa.select(old.c.id, old.c.extra).where(old.c.id == moved))
            assert dict(stored.all())[moved] == {**extra, "slotIntervalUnit": "mins"}
    finally:
        upgrade(database_url)
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM calendars WHERE location_id = :id"), {"id": location})
            conn.execute(sa.text("DELETE FROM locations WHERE id = :id"), {"id": location})
        engine.dispose()


# --- GET /calendars/{calendarId}/free-slots --------------------------------------------------

# The tests' clock says 2030-01-01 12:00 UTC (a Tuesday; 07:00 in New York, the tenant's zone).
WEEK = date(2030, 1, 7)  # a Monday
BOOK = "/calendars/events/appointments"


def ms(instant: datetime) -> int:
    return int(instant.timestamp() * 1000)


def day_range(first: date, days: int = 1, zone: ZoneInfo = NY) -> dict[str, Any]:
    """startDate/endDate covering ``days`` local days from ``first``."""
    start = local(first, 0, 0, zone)
    end = local(first + timedelta(days=days), 0, 0, zone) - timedelta(milliseconds=1)
    return {"startDate": ms(start), "endDate": ms(end)}


async def open_calendar(client: httpx.AsyncClient, tenant: Tenant, **fields: Any) -> str:
    """The tenant's calendar, open weekday mornings 09:00-12:00 with hour-long slots."""
    body = {"openHours": WEEKDAY_MORNINGS, "slotDuration": 60, **fields}
    response = await update_calendar(client, tenant, tenant.calendar_id, **body)
    assert response.status_code == 200, response.text
    return tenant.calendar_id


async def free(
    client: httpx.AsyncClient,
    tenant: Tenant,
    params: dict[str, Any],
    calendar_id: str | None = None,
    **headers: str,
) -> httpx.Response:
    return await client.get(
        f"/calendars/{calendar_id or tenant.calendar_id}/free-slots",
        params=params,
        headers={**tenant.headers(), **headers},
    )


async def test_free_slots_by_day(client: httpx.AsyncClient, tenant: Tenant) -> None:
    await open_calendar(client, tenant)
    response = await free(client, tenant, day_range(WEEK - timedelta(days=1), 3))
    assert response.status_code == 200, response.text
    assert_conforms("get-slots", response)
    assert response.json() == {
        "2030-01-07": {
            "slots": [
                "2030-01-07T09:00:00-05:00",
                "2030-01-07T10:00:00-05:00",
                "2030-01-07T11:00:00-05:00",
            ]
        },
        "2030-01-08": {
            "slots": [
                "2030-01-08T09:00:00-05:00",
                "2030-01-08T10:00:00-05:00",
                "2030-01-08T11:00:00-05:00",
            ]
        },
    }
    assert list(response.json()) == ["2030-01-07", "2030-01-08"]  # Sunday has none
    # The Python SDK's Version, and its floats.
    params = {k: float(v) for k, v in day_range(WEEK).items()}
    v3 = await free(client, tenant, params, Version="v3")
    assert v3.status_code == 200
    assert_conforms("get-slots", v3, "v3")
    assert v3.json() == {"2030-01-07": response.json()["2030-01-07"]}


async def test_free_slots_in_the_zone_asked_for(client: httpx.AsyncClient, tenant: Tenant) -> None:
    await open_calendar(client, tenant)
    params = day_range(WEEK)
    berlin = await free(client, tenant, {**params, "timezone": "Europe/Berlin"})
    assert berlin.json() == {
        "2030-01-07": {
            "slots": [
                "2030-01-07T15:00:00+01:00",
                "2030-01-07T16:00:00+01:00",
                "2030-01-07T17:00:00+01:00",
            ]
        }
    }
    # Days are the zone's: 09:00 in New York is the next morning on Kiritimati (+14:00).
    kiritimati = await free(client, tenant, {**params, "timezone": "Pacific/Kiritimati"})
    assert kiritimati.json() == {
        "2030-01-08": {
            "slots": [
                "2030-01-08T04:00:00+14:00",
                "2030-01-08T05:00:00+14:00",
                "2030-01-08T06:00:00+14:00",
            ]
        }
    }
    utc = await free(client, tenant, {**params, "timezone": "UTC"})
    assert utc.json()["2030-01-07"]["slots"][0] == "2030-01-07T14:00:00+00:00"
    # An empty timezone is the location's.
    assert (await free(client, tenant, {**params, "timezone": ""})).json() == (
        await free(client, tenant, params)
    ).json()


async def test_free_slots_across_a_change_of_offset(
    client: httpx.AsyncClient, tenant: Tenant, clock: ManualClock
) -> None:
    clock.set(datetime(2026, 3, 1, tzinfo=UTC))
    await open_calendar(client, tenant)
    response = await free(client, tenant, day_range(date(2026, 3, 6), 4))
    days = response.json()
    assert list(days) == ["2026-03-06", "2026-03-09"]
    assert days["2026-03-06"]["slots"][0] == "2026-03-06T09:00:00-05:00"
    assert days["2026-03-09"]["slots"][0] == "2026-03-09T09:00:00-04:00"


async def test_no_open_hours_no_free_slots(client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await free(client, tenant, day_range(WEEK, 7))
    assert response.status_code == 200
    assert response.json() == {}


async def test_bookings_take_slots_and_cancelling_frees_them(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    monday = {"openHour": 9, "openMinute": 0, "closeHour": 13, "closeMinute": 0}
    await open_calendar(
        client,
        tenant,
        openHours=[{"daysOfTheWeek": [1], "hours": [monday]}],
        slotInterval=30,
        slotBuffer=15,
    )
    contact = await tenant.add_contact()
    booked = await client.post(
        BOOK,
        json={
            "calendarId": tenant.calendar_id,
            "locationId": tenant.location_id,
            "contactId": contact,
            "startTime": "2030-01-07T10:00:00",  # an hour: the calendar's slot
        },
        headers=tenant.headers(),
    )
    assert booked.status_code == 200, booked.text
    slots = (await free(client, tenant, day_range(WEEK))).json()["2030-01-07"]["slots"]
    # Each keeps 15 minutes free after it: a slot ends by 09:45 or starts from 11:15.
    assert slots == ["2030-01-07T11:30:00-05:00", "2030-01-07T12:00:00-05:00"]
    cancelled = await client.put(
        f"{BOOK}/{booked.json()['id']}",
        json={"appointmentStatus": "cancelled"},
        headers=tenant.headers(),
    )
    assert cancelled.status_code == 200
    slots = (await free(client, tenant, day_range(WEEK))).json()["2030-01-07"]["slots"]
    assert [s[11:16] for s in slots] == [
        "09:00",
        "09:30",
        "10:00",
        "10:30",
        "11:00",
        "11:30",
        "12:00",
    ]


async def test_recurring_series_take_their_occurrences(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    await open_calendar(client, tenant)
    contact = await tenant.add_contact()
    master = await client.post(
        BOOK,
        json={
            "calendarId": tenant.calendar_id,
            "locationId": tenant.location_id,
            "contactId": contact,
            "startTime": "2030-01-07T10:00:00",
            "endTime": "2030-01-07T11:00:00",
            "rrule": "RRULE:FREQ=WEEKLY;BYDAY=MO",
        },
        headers=tenant.headers(),
    )
    assert master.status_code == 200, master.text
    master_id = master.json()["id"]
    # A planned occurrence (a row of its own) and one months ahead (computed from the rule,
    # on summer time: still 10:00 local).
    soon = await free(client, tenant, day_range(WEEK))
    assert "2030-01-07T10:00:00-05:00" not in soon.json()["2030-01-07"]["slots"]
    later = await free(client, tenant, day_range(date(2030, 4, 1)))
    assert later.json()["2030-04-01"]["slots"] == [
        "2030-04-01T09:00:00-04:00",
        "2030-04-01T11:00:00-04:00",
    ]
    # That occurrence cancelled on its own frees its slot; the others stay taken.
    occurrence = f"{master_id}_{ms(local(date(2030, 4, 1), 10))}"
    changed = await client.put(
        f"{BOOK}/{occurrence}", json={"appointmentStatus": "cancelled"}, headers=tenant.headers()
    )
    assert changed.status_code == 200, changed.text
    later = await free(client, tenant, day_range(date(2030, 4, 1), 8))
    assert len(later.json()["2030-04-01"]["slots"]) == 3
    assert len(later.json()["2030-04-08"]["slots"]) == 2
    # The whole series cancelled frees them all.
    await client.put(
        f"{BOOK}/{master_id}", json={"appointmentStatus": "cancelled"}, headers=tenant.headers()
    )
    later = await free(client, tenant, day_range(date(2030, 4, 8)))
    assert len(later.json()["2030-04-08"]["slots"]) == 3


async def test_booking_window_and_notice(
    client: httpx.AsyncClient, tenant: Tenant, clock: ManualClock
) -> None:
    clock.set(local(WEEK, 9, 30))
    await open_calendar(
        client,
        tenant,
        allowBookingAfter=1,
        allowBookingAfterUnit="hours",
        allowBookingFor=1,
        allowBookingForUnit="days",
    )
    days = (await free(client, tenant, day_range(WEEK, 3))).json()
    assert days == {
        "2030-01-07": {"slots": ["2030-01-07T11:00:00-05:00"]},
        "2030-01-08": {"slots": ["2030-01-08T09:00:00-05:00"]},
    }


async def test_free_slots_of_a_team_member(client: httpx.AsyncClient, tenant: Tenant) -> None:
    await open_calendar(client, tenant, teamMembers=[{"userId": tenant.user_id}])
    params = day_range(WEEK)
    member = await free(client, tenant, {**params, "userId": tenant.user_id})
    assert len(member.json()["2030-01-07"]["slots"]) == 3
    # A user of the location who is not on the calendar's team has none.
    outsider = await free(client, tenant, {**params, "userId": tenant.admin_id})
    assert outsider.status_code == 200
    assert outsider.json() == {}
    either = await free(client, tenant, {**params, "userIds": [tenant.admin_id, tenant.user_id]})
    assert either.json() == member.json()


async def test_the_range_is_at_most_31_days(client: httpx.AsyncClient, tenant: Tenant) -> None:
    await open_calendar(client, tenant)
    start = local(WEEK, 0)
    ok = await free(
        client, tenant, {"startDate": ms(start), "endDate": ms(start + timedelta(days=31))}
    )
    assert ok.status_code == 200
    assert len(ok.json()) == 23  # weekdays from 2030-01-07 to 2030-02-06
    too_long = await free(
        client, tenant, {"startDate": ms(start), "endDate": ms(start + timedelta(days=31)) + 1}
    )
    assert too_long.status_code == 400
    assert_conforms("get-slots", too_long)
    problem = "must be at most 31 days after startDate (the range cannot be more than 31 days)"
    assert too_long.json() == {
        "statusCode": 400,
        "message": f"endDate: {problem}",
        "error": "Bad Request",
        "errors": [{"field": "endDate", "message": problem}],
    }


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"endDate": 1893456000000}, "startDate"),
        ({"startDate": 1893456000000}, "endDate"),
        ({"startDate": "monday", "endDate": 1893456000000}, "startDate"),
        ({"startDate": "nan", "endDate": 1893456000000}, "startDate"),
        ({"startDate": 1893456000000, "endDate": "Infinity"}, "endDate"),
        ({"startDate": 1893456000000, "endDate": 1893455999999}, "endDate"),
        ({"startDate": 1e20, "endDate": 1e20}, "startDate"),
        (
            {"startDate": 1893456000000, "endDate": 1893456000000, "timezone": "Mars/Olympus"},
            "timezone",
        ),
        ({"startDate": 1893456000000, "endDate": 1893456000000, "timezone": "America"}, "timezone"),
        ({"startDate": 1893456000000, "endDate": 1893456000000, "userId": "someone"}, "userId"),
        ({"startDate": 1893456000000, "endDate": 1893456000000, "userId": "A" * 20}, "userId"),
        ({"startDate": 1893456000000, "endDate": 1893456000000, "userIds": ["x"]}, "userIds[0]"),
    ],
)
async def test_bad_query_values(
    client: httpx.AsyncClient, tenant: Tenant, params: dict[str, Any], field: str
) -> None:
    await open_calendar(client, tenant)
    response = await free(client, tenant, params)
    assert response.status_code == 400, response.text
    assert_conforms("get-slots", response)
    assert field in [e["field"] for e in response.json()["errors"]], response.json()


async def test_another_locations_calendar_is_not_found(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    await open_calendar(client, other_tenant)
    params = day_range(WEEK)
    theirs = await free(client, tenant, params, calendar_id=other_tenant.calendar_id)
    missing = await free(client, tenant, params, calendar_id="A" * 20)
    assert theirs.status_code == missing.status_code == 404
    assert (
        theirs.json()
        == missing.json()
        == {
            "statusCode": 404,
            "message": "Calendar not found",
            "error": "Not Found",
        }
    )
    assert (await free(client, tenant, params, calendar_id="not-an-id")).json() == missing.json()
    # Their own token sees them.
    assert (await free(client, other_tenant, params)).status_code == 200


async def test_free_slots_need_calendars_readonly(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    await open_calendar(client, tenant)
    params = day_range(WEEK)
    for scopes, status in (
        (("calendars.readonly",), 200),
        (("calendars.write",), 200),
        (("calendars/events.readonly", "contacts.readonly"), 401),
    ):
        token = await tenant.token_with(*scopes)
        response = await client.get(
            f"/calendars/{tenant.calendar_id}/free-slots",
            params=params,
            headers=tenant.headers(token),
        )
        assert response.status_code == status, (scopes, response.text)
    refused = await client.get(
        f"/calendars/{tenant.calendar_id}/free-slots", params=params, headers=tenant.headers(token)
    )
    assert refused.json()["message"] == "The token is not authorized for this scope."
    no_token = await client.get(f"/calendars/{tenant.calendar_id}/free-slots", params=params)
    assert no_token.status_code == 401
    no_version = await free(client, tenant, params, Version="")
    unversioned = await client.get(
        f"/calendars/{tenant.calendar_id}/free-slots",
        params=params,
        headers=tenant.headers(version=None),
    )
    assert no_version.status_code == unversioned.status_code == 400
    assert unversioned.json()["message"] == "Version: header is required"


async def book_at(
    client: httpx.AsyncClient, tenant: Tenant, start: str, end: str | None = None
) -> str:
    contact = await tenant.add_contact()
    body = {
        "calendarId": tenant.calendar_id,
        "locationId": tenant.location_id,
        "contactId": contact,
        "startTime": start,
        **({"endTime": end} if end else {}),
        "ignoreFreeSlotValidation": True,  # the appointments around the range, as they are
    }
    response = await client.post(BOOK, json=body, headers=tenant.headers())
    assert response.status_code == 200, response.text
    booked: str = response.json()["id"]
    return booked


async def test_what_is_read_around_the_range(client: httpx.AsyncClient, tenant: Tenant) -> None:
    await open_calendar(client, tenant, appoinmentPerDay=2)
    # From the day before to 09:30: it takes Monday's 09:00 slot.
    await book_at(client, tenant, "2030-01-06T18:00:00", "2030-01-07T09:30:00")
    monday = (await free(client, tenant, day_range(WEEK))).json()["2030-01-07"]["slots"]
    assert [s[11:16] for s in monday] == ["10:00", "11:00"]
    # A second one on Tuesday at 09:00, then a range from Tuesday 10:00: the day's limit
    # counts the appointment before the range too.
    await book_at(client, tenant, "2030-01-08T09:00:00")
    await book_at(client, tenant, "2030-01-08T11:00:00")
    tuesday = local(WEEK + timedelta(days=1), 10)
    params = {"startDate": ms(tuesday), "endDate": ms(tuesday + timedelta(days=1))}
    assert list((await free(client, tenant, params)).json()) == ["2030-01-09"]


async def test_an_answer_stops_where_the_appointments_read_do(
    client: httpx.AsyncClient, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At most MAX_BOOKINGS appointments are read: the slots after the last one read are
    left out rather than shown free without knowing."""
    await open_calendar(client, tenant)
    for day in (7, 8, 9):
        await book_at(client, tenant, f"2030-01-{day:02}T10:00:00")
    whole = (await free(client, tenant, day_range(WEEK, 5))).json()
    assert list(whole) == ["2030-01-07", "2030-01-08", "2030-01-09", "2030-01-10", "2030-01-11"]
    monkeypatch.setattr(repository, "MAX_BOOKINGS", 2)
    cut = (await free(client, tenant, day_range(WEEK, 5))).json()
    # The second appointment read starts Tuesday 10:00: slots end before it.
    assert cut == {
        "2030-01-07": whole["2030-01-07"],
        "2030-01-08": {"slots": ["2030-01-08T09:00:00-05:00"]},
    }


async def test_booking_problem_with_stored_rows(
    client: httpx.AsyncClient, tenant: Tenant, db: Database
) -> None:
    """What a booking would do: the calendar's settings from its row, the appointments of
    the calendar near the booking, the location's zone."""
    await open_calendar(client, tenant)
    taken = await book_at(client, tenant, "2030-01-07T10:00:00")
    async with db.session(write=False) as session:
        calendar = await session.get(Calendar, tenant.calendar_id)
        location = await session.get(Location, tenant.location_id)
        rows = list(
            await session.scalars(
                sa.select(Appointment).where(Appointment.calendar_id == tenant.calendar_id)
            )
        )
    settings, where = settings_of(calendar), zone(location.timezone)
    now = datetime(2030, 1, 1, 12, tzinfo=UTC)
    at_ten, at_eleven = local(WEEK, 10), local(WEEK, 11)
    hour = timedelta(hours=1)
    assert booking_problem(settings, at_eleven, at_eleven + hour, rows, now, where) is None
    assert booking_problem(settings, at_ten, at_ten + hour, rows, now, where) == (
        "is taken: 1 appointment(s) already overlap it (the calendar takes 1 at a time)"
    )
    # Moving the booked one within its own slot is fine.
    assert (
        booking_problem(
            settings, at_ten, at_ten + hour, rows, now, where, ignore_appointment_id=taken
        )
        is None
    )
    assert booking_problem(settings, local(WEEK, 12), local(WEEK, 13), rows, now, where) == (
        "is outside the calendar's open hours"
    )


# --- bookings held to the calendar's availability -------------------------------------------


async def booked(
    client: httpx.AsyncClient, tenant: Tenant, contact: str, start: datetime, **fields: Any
) -> httpx.Response:
    body = {
        "calendarId": tenant.calendar_id,
        "locationId": tenant.location_id,
        "contactId": contact,
        "startTime": start.isoformat(),
        **fields,
    }
    return await client.post(BOOK, json=body, headers=tenant.headers())


def start_problem(response: httpx.Response) -> str:
    assert response.status_code == 400, response.text
    [error] = [e for e in response.json()["errors"] if e["field"] == "startTime"]
    return str(error["message"])


async def test_a_booking_must_take_a_free_slot(client: httpx.AsyncClient, tenant: Tenant) -> None:
    await open_calendar(client, tenant)
    contact = await tenant.add_contact()
    early = await booked(client, tenant, contact, local(WEEK, 8))
    assert "outside the calendar's open hours" in start_problem(early)
    odd = await booked(client, tenant, contact, local(WEEK, 9, 15))
    assert "slot times" in start_problem(odd)
    first = await booked(client, tenant, contact, local(WEEK, 9))
    assert first.status_code == 200, first.text
    again = await booked(client, tenant, contact, local(WEEK, 9))
    assert "is taken" in start_problem(again)
    slots = (await free(client, tenant, day_range(WEEK))).json()
    assert slots["2030-01-07"]["slots"] == [
        "2030-01-07T10:00:00-05:00",
        "2030-01-07T11:00:00-05:00",
    ]
    # HighLevel's switch books anyway.
    forced = await booked(client, tenant, contact, local(WEEK, 9), ignoreFreeSlotValidation=True)
    assert forced.status_code == 200, forced.text


async def test_without_open_hours_any_time_books(client: httpx.AsyncClient, tenant: Tenant) -> None:
    contact = await tenant.add_contact()
    for _ in range(2):
        response = await booked(client, tenant, contact, local(WEEK, 3, 17))
        assert response.status_code == 200, response.text


async def test_of_bookings_sent_at_once_for_the_last_free_place_one_takes_it(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    """The free-slot check reads under the calendar's lock (PostgreSQL: FOR NO KEY UPDATE,
    taken with those reads), so two bookings cannot both find the place free."""
    await open_calendar(client, tenant)
    contacts = [await tenant.add_contact() for _ in range(6)]
    answers = await asyncio.gather(*(booked(client, tenant, c, local(WEEK, 9)) for c in contacts))
    assert sorted(a.status_code for a in answers) == [200] + [400] * 5
    assert all("is taken" in start_problem(a) for a in answers if a.status_code == 400)


async def test_a_reschedule_must_take_a_free_slot(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    await open_calendar(client, tenant)
    contact = await tenant.add_contact()
    nine = (await booked(client, tenant, contact, local(WEEK, 9))).json()["id"]
    ten = (await booked(client, tenant, contact, local(WEEK, 10))).json()["id"]

    async def move(event_id: str, **fields: Any) -> httpx.Response:
        return await client.put(f"{BOOK}/{event_id}", json=fields, headers=tenant.headers())

    assert "is taken" in start_problem(await move(ten, startTime=local(WEEK, 9).isoformat()))
    late = await move(ten, startTime=local(WEEK, 13).isoformat())
    assert "outside the calendar's open hours" in start_problem(late)
    # Its own slot is not in its way: a longer meeting over its own hour and the free one.
    longer = await move(ten, endTime=local(WEEK, 12).isoformat())
    assert longer.status_code == 200, longer.text
    moved = await move(nine, startTime=local(WEEK + timedelta(days=1), 9).isoformat())
    assert moved.status_code == 200, moved.text
    forced = await move(nine, startTime=local(WEEK, 7).isoformat(), ignoreFreeSlotValidation=True)
    assert forced.status_code == 200, forced.text
    # A change that does not move it is not checked again.
    renamed = await move(nine, title="Early one")
    assert renamed.status_code == 200, renamed.text
