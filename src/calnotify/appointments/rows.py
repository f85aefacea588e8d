"""Appointments as rows: what the booking path reads, changes and writes, with no ORM.

:class:`AppointmentRow` holds every column of ``appointments``; the statements here read,
insert and update it, and record its events (:mod:`calnotify.appointments.events`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, select, update

from calnotify.db.statements import Statement, table
from calnotify.models import Appointment, AppointmentEvent


@dataclass(slots=True)
class AppointmentRow:
    id: str
    location_id: str
    calendar_id: str
    contact_id: str
    assigned_user_id: str | None
    start_at: datetime
    end_at: datetime
    title: str
    status: str
    address: str
    meeting_location_type: str
    description: str
    notes: str
    to_notify: bool
    rrule: str
    guests: list[dict[str, Any]]
    extra: dict[str, Any]
    version: int
    deleted: bool
    master_id: str | None
    original_start_at: datetime | None
    is_exception: bool
    materialized_until: datetime | None
    planned_until: datetime | None
    date_added: datetime
    date_updated: datetime

    @classmethod
    def new(cls, *, stamped: datetime, **given: Any) -> AppointmentRow:
        """A new appointment made at ``stamped``, outside any series, with nothing
        materialised or planned yet; ``given``: the rest of its columns."""
        return cls(
            extra={},
            version=1,
            deleted=False,
            master_id=None,
            original_start_at=None,
            is_exception=False,
            materialized_until=None,
            planned_until=None,
            date_added=stamped,
            date_updated=stamped,
            **given,
        )

    def values(self) -> dict[str, Any]:
        """The columns by name (the values themselves, not copies: a statement's parameters)."""
        return {name: getattr(self, name) for name in COLUMNS}

    def copy(self) -> AppointmentRow:
        """A copy whose columns can be set apart from this row's (guests and extra are
        replaced, never changed in place)."""
        return AppointmentRow(*(getattr(self, name) for name in COLUMNS))


COLUMNS = tuple(f.name for f in fields(AppointmentRow))
_T = Appointment.__table__.c
_SELECTED = [_T[name] for name in COLUMNS]


def row_of(found: Any) -> AppointmentRow:
    """A statement's row (the columns of :data:`COLUMNS`, in order) as an appointment."""
    return AppointmentRow(*found)


#: One appointment of a location (deleted ones too): ``id``, ``location_id``.
IN_LOCATION = Statement(
    select(*_SELECTED).where(_T.id == bindparam("id"), _T.location_id == bindparam("location_id"))
)
INSERT = Statement(insert(table(Appointment)))
UPDATE = Statement(
    update(table(Appointment))
    .where(_T.id == bindparam("b_id"))
    .values({name: bindparam(name) for name in COLUMNS if name != "id"})
)
_EVENT = AppointmentEvent.__table__.c
_EVENT_COLUMNS = (
    "appointment_id", "location_id", "kind", "appointment_version", "to_notify", "before",
    "after", "occurred_at", "source", "channel", "actor", "note",
)  # fmt: skip
#: An event, its id returned (the dedupe keys of what it sends at once name it).
INSERT_EVENT = Statement(
    insert(table(AppointmentEvent))
    .values({name: bindparam(name) for name in _EVENT_COLUMNS})
    .returning(_EVENT.id)
)
