"""The reads behind a calendar's free slots, as compiled statements
(:meth:`~calnotify.db.engine.Database.fetch`)."""

from __future__ import annotations

from sqlalchemy import bindparam, or_, select
from sqlalchemy.orm import aliased

from calnotify.availability.slots import FREEING
from calnotify.db.statements import Statement
from calnotify.models import Appointment, Calendar, Location, User

#: Appointments read for one answer, at most: a calendar with more in the range gets the
#: slots up to where they reach (see :mod:`calnotify.availability.service`).
MAX_BOOKINGS = 20_000

#: A calendar of the location with its availability columns, its team and the location's
#: zone: parameters ``calendar_id``, ``location_id``.
CALENDAR = Statement(
    select(
        Calendar.id,
        Calendar.team_members,
        Calendar.open_hours,
        Calendar.slot_duration,
        Calendar.slot_duration_unit,
        Calendar.slot_interval,
        Calendar.slot_interval_unit,
        Calendar.slot_buffer,
        Calendar.slot_buffer_unit,
        Calendar.pre_buffer,
        Calendar.pre_buffer_unit,
        Calendar.appointments_per_slot,
        Calendar.appointments_per_day,
        Calendar.allow_booking_after,
        Calendar.allow_booking_after_unit,
        Calendar.allow_booking_for,
        Calendar.allow_booking_for_unit,
        Location.timezone,
    )
    .join(Location, Location.id == Calendar.location_id)
    .where(
        Calendar.id == bindparam("calendar_id"),
        Calendar.location_id == bindparam("location_id"),
        Calendar.deleted.is_(False),
    )
)

#: The ids among ``user_ids`` of users of the location: parameters ``user_ids``,
#: ``location_id``.
USERS = Statement(
    select(User.id).where(
        User.id.in_(bindparam("user_ids", expanding=True)),
        User.location_id == bindparam("location_id"),
        User.deleted.is_(False),
    )
)

#: The calendar's appointments (occurrences of series included, series themselves not)
#: that start after ``starts_after`` and before ``starts_before`` and either end after
#: ``ends_after`` or start from ``day_starts`` on, by start, at most ``limit``: one range
#: of the (calendar_id, start_at) index. Parameters: those and ``calendar_id``.
BOOKINGS = Statement(
    select(Appointment.id, Appointment.start_at, Appointment.end_at, Appointment.status)
    .where(
        Appointment.calendar_id == bindparam("calendar_id"),
        Appointment.start_at > bindparam("starts_after"),
        Appointment.start_at < bindparam("starts_before"),
        or_(
            Appointment.end_at > bindparam("ends_after"),
            Appointment.start_at >= bindparam("day_starts"),
        ),
        Appointment.deleted.is_(False),
        Appointment.rrule == "",
    )
    .order_by(Appointment.start_at, Appointment.id)
    .limit(bindparam("limit"))
)

#: The calendar's recurring series that take time and start before ``starts_before``:
#: parameters ``calendar_id``, ``starts_before``.
SERIES = Statement(
    select(
        Appointment.id,
        Appointment.rrule,
        Appointment.start_at,
        Appointment.end_at,
        Appointment.status,
    ).where(
        Appointment.calendar_id == bindparam("calendar_id"),
        Appointment.rrule != "",
        Appointment.master_id.is_(None),
        Appointment.deleted.is_(False),
        Appointment.status.not_in(sorted(FREEING)),
        Appointment.start_at < bindparam("starts_before"),
    )
)

_master = aliased(Appointment)
#: The original starts, from ``after`` to before ``before``, of occurrences of the
#: calendar's series that have a row of their own (moved, changed, deleted or planned: not
#: computed from the rule): parameters ``calendar_id``, ``after``, ``before``.
OCCURRENCE_ROWS = Statement(
    select(Appointment.master_id, Appointment.original_start_at).where(
        Appointment.master_id.in_(
            select(_master.id).where(
                _master.calendar_id == bindparam("calendar_id"),
                _master.rrule != "",
                _master.master_id.is_(None),
            )
        ),
        Appointment.original_start_at >= bindparam("after"),
        Appointment.original_start_at < bindparam("before"),
    )
)
