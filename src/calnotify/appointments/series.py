"""Recurring series as rows: the master carries the rule, each occurrence within reach is
an appointment of its own (docs/semantics.md §3a, docs/recurring.md).

An occurrence becomes a row (``master_id``, ``original_start_at``) once its start is within
the planning horizon plus the calendar's longest reminder offset, so that every delivery
due within the horizon exists; its deliveries are planned like any appointment's, up to
its ``planned_until``. The dispatcher's planning loop moves the horizon forward
(:func:`advance_horizons`), a series per short transaction, with the master row locked
(PostgreSQL) and the horizon written in the same transaction as what it planned, so a crash
catches up where it left off and two workers never plan the same occurrence twice (the
dedupe keys would refuse a second row anyway).

Occurrences beyond the rows are computed from the rule when they are read
(``GET /calendars/events``) and become rows when one is changed on its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, select

from calnotify.appointments import rows
from calnotify.appointments.recurrence import Recurrence, parse
from calnotify.appointments.rows import AppointmentRow
from calnotify.clock import Clock
from calnotify.db.engine import Database
from calnotify.db.statements import Statement, by_id
from calnotify.db.tx import Reader, Tx
from calnotify.ids import instance_id, new_id
from calnotify.models import Appointment, Location
from calnotify.models.notification import NotificationType
from calnotify.notifications.rules import offset_seconds
from calnotify.planning import store
from calnotify.planning.planner import ENDED
from calnotify.timefmt import zone

DEFAULT_HORIZON = timedelta(days=31)
FOREVER = datetime(9999, 1, 1, tzinfo=UTC)
# A series' horizon is moved on at most this often.
HORIZON_STEP = timedelta(hours=1)
# Fields an occurrence takes from its series (unless it was changed on its own).
_FOLLOWED = (
    "location_id",
    "calendar_id",
    "contact_id",
    "assigned_user_id",
    "title",
    "status",
    "address",
    "meeting_location_type",
    "description",
    "notes",
    "guests",
)

_A = Appointment.__table__.c
_COLUMNS = [_A[name] for name in rows.COLUMNS]
_OCCURRENCES = Statement(
    select(*_COLUMNS)
    .where(
        _A.master_id == bindparam("master_id"),
        _A.deleted.is_(False),
        _A.end_at > bindparam("after"),
    )
    .order_by(_A.original_start_at)
)
_TOMBSTONES = Statement(
    select(_A.original_start_at).where(
        _A.master_id == bindparam("master_id"),
        _A.deleted.is_(True),
        _A.is_exception.is_(True),
    )
)
_OCCURRENCE = Statement(
    select(*_COLUMNS)
    .where(
        _A.master_id == bindparam("master_id"),
        _A.original_start_at == bindparam("start"),
        _A.deleted == bindparam("deleted"),
    )
    .limit(1)
)
_TAKEN = Statement(
    select(_A.original_start_at).where(
        _A.master_id == bindparam("master_id"),
        _A.original_start_at.in_(bindparam("starts", expanding=True)),
    )
)
_BETWEEN = Statement(
    select(*_COLUMNS).where(
        _A.master_id == bindparam("master_id"),
        _A.deleted.is_(False),
        _A.start_at < bindparam("before"),
        _A.end_at > bindparam("after"),
    )
)
_BEHIND = Statement(
    select(*_COLUMNS)
    .where(
        _A.master_id.is_(None),
        _A.rrule != "",
        _A.deleted.is_(False),
        _A.status.not_in([s.value for s in ENDED]),
        _A.planned_until < bindparam("before"),
    )
    .order_by(_A.planned_until, _A.id)
    .limit(1)
    .with_for_update(skip_locked=True)
)
_ZONE = Statement(select(Location.timezone).where(Location.id == bindparam("location_id")))


def is_master(appointment: Any) -> bool:
    return bool(appointment.rrule) and appointment.master_id is None


def wire_id(appointment: Any) -> str:
    """The id an appointment goes by on the wire (an occurrence: its instance id)."""
    if appointment.master_id and appointment.original_start_at:
        return instance_id(appointment.master_id, appointment.original_start_at)
    return str(appointment.id)


def started(appointment: Any, where: ZoneInfo, now: datetime) -> bool:
    """Whether ``appointment`` has started by ``now``: a series once its last occurrence has
    (a series still running is booked for what is to come)."""
    if appointment.start_at >= now:
        return False
    if not is_master(appointment):
        return True
    return parse(appointment.rrule, appointment.start_at, where).next_start(now) is None


async def location_zone(reader: Reader, location_id: str) -> ZoneInfo:
    [found] = await reader.fetch((_ZONE, {"location_id": location_id}))
    return zone(found[0].timezone if found else None)


async def recurrence_of(reader: Reader, master: Any) -> Recurrence:
    return parse(master.rrule, master.start_at, await location_zone(reader, master.location_id))


def occurrence(master: Any, start: datetime, now: datetime) -> AppointmentRow:
    """A (new, unsaved) occurrence of ``master`` originally at ``start``."""
    row = AppointmentRow(
        id=new_id(),
        location_id=master.location_id,
        calendar_id=master.calendar_id,
        contact_id=master.contact_id,
        assigned_user_id=master.assigned_user_id,
        start_at=start,
        end_at=start + (master.end_at - master.start_at),
        title=master.title,
        status=master.status,
        address=master.address,
        meeting_location_type=master.meeting_location_type,
        description=master.description,
        notes=master.notes,
        to_notify=master.to_notify,
        rrule="",
        guests=list(master.guests or []),
        extra={},
        version=1,
        deleted=False,
        master_id=master.id,
        original_start_at=start,
        is_exception=False,
        materialized_until=None,
        planned_until=None,
        date_added=now,
        date_updated=now,
    )
    return row


def _follow(row: AppointmentRow, master: AppointmentRow) -> bool:
    """Copy the series' fields onto an occurrence; whether anything changed."""
    changed = False
    for name in _FOLLOWED:
        value = getattr(master, name)
        if name == "guests":
            value = list(value or [])
        if getattr(row, name) != value:
            setattr(row, name, value)
            changed = True
    end = row.start_at + (master.end_at - master.start_at)
    if row.end_at != end:
        row.end_at = end
        changed = True
    return changed


def lead(rules: Sequence[Any]) -> timedelta:
    """The longest reminder offset of the calendar's active rules: occurrences this far
    beyond the horizon have a reminder due within it."""
    longest = max(
        (
            offset_seconds(e)
            for rule in rules
            if rule.notification_type == NotificationType.REMINDER
            for e in rule.before_time or []
        ),
        default=0.0,
    )
    return timedelta(seconds=longest)


async def plan_series(
    tx: Tx,
    master: AppointmentRow,
    now: datetime,
    horizon: timedelta,
    *,
    resync: bool = False,
) -> bool:
    """Bring a series' occurrence rows and their deliveries up to date: after it was
    created (``resync=False``), after the series changed (``resync``: occurrences not yet
    started follow it, exceptions keep their own changes, past ones are history), and
    when its horizon moves on. Writes the master's horizon too; whether something due to
    send was planned."""
    await store.lock_calendar(tx, master.calendar_id)
    rules = await store.rules_of(tx, master.calendar_id)
    planned_until = now + horizon
    reach = planned_until + lead(rules)
    [found] = await tx.fetch((_OCCURRENCES, {"master_id": master.id, "after": now}))
    current = [rows.row_of(r) for r in found]
    changed: list[AppointmentRow] = []
    created: list[AppointmentRow] = []
    if master.deleted:
        reach = planned_until
        for row in current:
            row.deleted = True
            row.version += 1
            row.date_updated = now
            changed.append(row)
    else:
        recurrence = await recurrence_of(tx, master)
        [gone] = await tx.fetch((_TOMBSTONES, {"master_id": master.id}))
        tombstones = {r.original_start_at for r in gone}
        earliest = now - (master.end_at - master.start_at)
        wanted = set(recurrence.starts(earliest, reach)) - tombstones
        if recurrence.bounded and not wanted and recurrence.starts(reach, FOREVER) == []:
            planned_until = reach = FOREVER  # the series is over: its horizon never moves
        changed = _resynced(current, master, wanted, now, resync=resync)
        have = {row.original_start_at for row in current}
        created = [occurrence(master, start, now) for start in sorted(wanted - have)]
        stale = [r for r in current if (r.planned_until or now) < planned_until]
        for row in [*created, *stale]:
            row.planned_until = planned_until
        changed = list({row.id: row for row in [*changed, *stale]}.values())
    tx.write_many(rows.INSERT, [row.values() for row in created])
    tx.write_many(rows.UPDATE, [by_id(row.values()) for row in changed])
    master.materialized_until = reach
    master.planned_until = planned_until
    tx.write(rows.UPDATE, by_id(master.values()))
    return await _replan(tx, master, rules, changed, created, now)


def _resynced(
    current: Sequence[AppointmentRow],
    master: AppointmentRow,
    wanted: set[datetime],
    now: datetime,
    *,
    resync: bool,
) -> list[AppointmentRow]:
    """The occurrence rows the series' change touches (changed in place)."""
    changed: list[AppointmentRow] = []
    for row in current:
        if row.is_exception:
            # Its own changes stand; only the end of the whole series reaches it.
            if resync and master.status in ENDED and row.status != master.status:
                row.status = master.status
                row.version += 1
                changed.append(row)
            continue
        if row.original_start_at not in wanted and row.start_at > now:
            row.deleted = True  # the series no longer has it
            row.version += 1
            changed.append(row)
        elif resync and row.start_at > now and _follow(row, master):
            row.version += 1
            changed.append(row)
    for row in changed:
        row.date_updated = now
    return changed


async def _replan(
    tx: Tx,
    master: AppointmentRow,
    rules: Sequence[Any],
    changed: Sequence[AppointmentRow],
    created: Sequence[AppointmentRow],
    now: datetime,
) -> bool:
    if not changed and not created:
        return False
    contacts = {master.contact_id, *(r.contact_id for r in changed)}
    people = await store.people(tx, master.location_id, contacts)
    # New rows have nothing stored yet; changed ones are reconciled with what they have.
    work = [(row, ()) for row in [*created, *changed]]
    fresh = {row.id for row in created}
    return await store.plan_appointments(tx, work, rules, people, now, fresh=fresh)


async def find_occurrence(
    reader: Reader, master: Any, start: datetime, *, tombstones: bool = False
) -> AppointmentRow | None:
    """The row of the occurrence originally at ``start``; with ``tombstones``, the row
    that records its deletion (DELETE on its instance id) instead."""
    values = {"master_id": master.id, "start": start, "deleted": tombstones}
    [found] = await reader.fetch((_OCCURRENCE, values))
    for row in map(rows.row_of, found):
        if not tombstones or row.is_exception:
            return row
    return None


async def is_open_occurrence(reader: Reader, master: Any, start: datetime) -> bool:
    """Whether the series has an occurrence originally at ``start`` that was not deleted."""
    if master.deleted or not (await recurrence_of(reader, master)).is_occurrence(start):
        return False
    return await find_occurrence(reader, master, start, tombstones=True) is None


async def unplanned_occurrences(
    reader: Reader, master: Any, after: datetime, before: datetime
) -> list[AppointmentRow]:
    """The occurrences overlapping ``[after, before)`` that have no row (computed, not
    stored; ``GET /calendars/events``)."""
    duration = master.end_at - master.start_at
    starts = (await recurrence_of(reader, master)).starts(after - duration, before)
    if not starts:
        return []
    [found] = await reader.fetch((_TAKEN, {"master_id": master.id, "starts": starts}))
    taken = {row.original_start_at for row in found}
    return [
        occurrence(master, start, master.date_updated)
        for start in starts
        if start not in taken and start + duration > after
    ]


async def occurrences_between(
    reader: Reader, master: Any, after: datetime, before: datetime
) -> list[AppointmentRow]:
    """The series' occurrences overlapping ``[after, before)``, by start: its rows (a moved
    one at its own time) and the rest computed from the rule (not stored)."""
    values = {"master_id": master.id, "after": after, "before": before}
    [found] = await reader.fetch((_BETWEEN, values))
    result = [*map(rows.row_of, found), *await unplanned_occurrences(reader, master, after, before)]
    result.sort(key=lambda a: (a.start_at, wire_id(a)))
    return result


async def materialize_one(
    tx: Tx, master: AppointmentRow, start: datetime, now: datetime
) -> AppointmentRow | None:
    """The row of the occurrence originally at ``start`` (made now when it has none yet);
    None when the series has no such occurrence."""
    found = await find_occurrence(tx, master, start)
    if found is not None:
        return found
    if not await is_open_occurrence(tx, master, start):
        return None
    row = occurrence(master, start, now)
    row.planned_until = master.planned_until or now
    tx.write(rows.INSERT, row.values())
    rules = await store.rules_of(tx, master.calendar_id)
    await _replan(tx, master, rules, [], [row], now)
    return row


async def advance_horizons(
    db: Database, clock: Clock, horizon: timedelta, *, limit: int = 20
) -> tuple[int, bool]:
    """Move the horizon of series that are behind, one series per transaction; the number
    moved, and whether something due to send was planned."""
    moved = 0
    due = False
    for _ in range(limit):
        now = clock.now()
        async with db.transaction() as tx:
            [found] = await tx.fetch((_BEHIND, {"before": now + horizon - HORIZON_STEP}))
            if not found:
                break
            due |= await plan_series(tx, rows.row_of(found[0]), now, horizon)
        moved += 1
    return moved, due
