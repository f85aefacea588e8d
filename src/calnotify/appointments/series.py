"""Recurring series as rows: the master carries the rule, each occurrence within reach is
an appointment of its own (semantics §3a, docs/recurring.md).

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

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from calnotify.appointments.recurrence import Recurrence, parse
from calnotify.clock import Clock
from calnotify.db.engine import Database
from calnotify.ids import instance_id, new_id
from calnotify.models import Appointment, Location, Notification
from calnotify.models.notification import NotificationType
from calnotify.notifications.rules import offset_seconds
from calnotify.planning.planner import ENDED, _people, _reconcile, _rules, lock_calendar
from calnotify.timefmt import zone

DEFAULT_HORIZON = timedelta(days=31)
FOREVER = datetime(9999, 1, 1, tzinfo=UTC)
# Where a request's session keeps CALNOTIFY_PLANNING_HORIZON_DAYS (set by calnotify.deps).
PLANNING_HORIZON = "planning_horizon"
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


def horizon_of(session: AsyncSession) -> timedelta:
    horizon = session.info.get(PLANNING_HORIZON)
    return horizon if isinstance(horizon, timedelta) else DEFAULT_HORIZON


def is_master(appointment: Appointment) -> bool:
    return bool(appointment.rrule) and appointment.master_id is None


def wire_id(appointment: Appointment) -> str:
    """The id an appointment goes by on the wire (an occurrence: its instance id)."""
    if appointment.master_id and appointment.original_start_at:
        return instance_id(appointment.master_id, appointment.original_start_at)
    return appointment.id


async def location_zone(session: AsyncSession, location_id: str) -> ZoneInfo:
    location = await session.get(Location, location_id)
    return zone(location.timezone if location else None)


async def recurrence_of(session: AsyncSession, master: Appointment) -> Recurrence:
    return parse(master.rrule, master.start_at, await location_zone(session, master.location_id))


def occurrence(master: Appointment, start: datetime, now: datetime) -> Appointment:
    """A (new, unsaved) occurrence of ``master`` originally at ``start``."""
    row = Appointment(
        id=new_id(),
        master_id=master.id,
        original_start_at=start,
        start_at=start,
        end_at=start + (master.end_at - master.start_at),
        rrule="",
        to_notify=master.to_notify,
        extra={},
        version=1,
        deleted=False,
        is_exception=False,
        date_added=now,
        date_updated=now,
    )
    _follow(row, master)
    return row


def _follow(row: Appointment, master: Appointment) -> bool:
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


async def _lead(session: AsyncSession, calendar_id: str) -> timedelta:
    """The longest reminder offset of the calendar's active rules: occurrences this far
    beyond the horizon have a reminder due within it."""
    rows = await session.scalars(
        select(Notification.before_time).where(
            Notification.calendar_id == calendar_id,
            Notification.deleted.is_(False),
            Notification.is_active.is_(True),
            Notification.notification_type == NotificationType.REMINDER,
        )
    )
    longest = max((offset_seconds(e) for entries in rows for e in entries or []), default=0.0)
    return timedelta(seconds=longest)


async def _occurrences(
    session: AsyncSession, master: Appointment, *, future_of: datetime | None = None
) -> list[Appointment]:
    query = select(Appointment).where(
        Appointment.master_id == master.id, Appointment.deleted.is_(False)
    )
    if future_of is not None:
        query = query.where(Appointment.end_at > future_of)
    return list(await session.scalars(query.order_by(Appointment.original_start_at)))


async def plan_series(
    session: AsyncSession,
    master: Appointment,
    now: datetime,
    horizon: timedelta,
    *,
    resync: bool = False,
) -> None:
    """Bring a series' occurrence rows and their deliveries up to date: after it was
    created (``resync=False``), after the series changed (``resync``: occurrences not yet
    started follow it, exceptions keep their own changes, past ones are history), and
    when its horizon moves on."""
    await lock_calendar(session, master.calendar_id)
    recurrence = await recurrence_of(session, master)
    planned_until = now + horizon
    reach = planned_until + await _lead(session, master.calendar_id)
    rows = await _occurrences(session, master, future_of=now)
    changed: list[Appointment] = []
    if master.deleted:
        for row in rows:
            row.deleted = True
            row.version += 1
            row.date_updated = now
            changed.append(row)
        await _replan(session, master, changed, [], now)
        master.planned_until = master.materialized_until = planned_until
        return

    tombstones = set(
        await session.scalars(
            select(Appointment.original_start_at).where(
                Appointment.master_id == master.id,
                Appointment.deleted.is_(True),
                Appointment.is_exception.is_(True),
            )
        )
    )
    wanted = set(recurrence.starts(now - (master.end_at - master.start_at), reach)) - tombstones
    if recurrence.bounded and not wanted and recurrence.starts(reach, FOREVER) == []:
        planned_until = reach = FOREVER  # the series is over: its horizon never moves again
    have = {row.original_start_at for row in rows}
    for row in rows:
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
    created = [occurrence(master, start, now) for start in sorted(wanted - have)]
    session.add_all(created)
    stale_horizon = [r for r in rows if (r.planned_until or now) < planned_until]
    for row in [*created, *stale_horizon]:
        row.planned_until = planned_until
    await session.flush()
    await _replan(session, master, [*changed, *stale_horizon], created, now)
    master.materialized_until = reach
    master.planned_until = planned_until


async def _replan(
    session: AsyncSession,
    master: Appointment,
    changed: Iterable[Appointment],
    created: Sequence[Appointment],
    now: datetime,
) -> None:
    rows = {row.id: row for row in changed}
    if not rows and not created:
        return
    rules = await _rules(session, master.calendar_id)
    contacts = {master.contact_id, *(r.contact_id for r in rows.values())}
    people = await _people(session, master.location_id, contacts)
    # New rows have nothing stored yet; changed ones are reconciled with what they have.
    work = [(row, True) for row in created] + [(row, False) for row in rows.values()]
    for row, fresh in work:
        await _reconcile(
            session,
            row,
            rules,
            people,
            now,
            immediate=[],
            superseding_reschedule=False,
            stamp="appointment",
            all_rules_of_calendar=True,
            fresh=fresh,
        )


async def find_occurrence(
    session: AsyncSession, master: Appointment, start: datetime, *, tombstones: bool = False
) -> Appointment | None:
    """The row of the occurrence originally at ``start``; with ``tombstones``, the row
    that records its deletion (DELETE on its instance id) instead."""
    query = select(Appointment).where(
        Appointment.master_id == master.id,
        Appointment.original_start_at == start,
        Appointment.deleted.is_(tombstones),
    )
    if tombstones:
        query = query.where(Appointment.is_exception.is_(True))
    found: Appointment | None = await session.scalar(query.limit(1))
    return found


async def is_open_occurrence(session: AsyncSession, master: Appointment, start: datetime) -> bool:
    """Whether the series has an occurrence originally at ``start`` that was not deleted."""
    if master.deleted or not (await recurrence_of(session, master)).is_occurrence(start):
        return False
    return await find_occurrence(session, master, start, tombstones=True) is None


async def unplanned_occurrences(
    session: AsyncSession, master: Appointment, after: datetime, before: datetime
) -> list[Appointment]:
    """The occurrences overlapping ``[after, before)`` that have no row (computed, not
    stored; ``GET /calendars/events``)."""
    duration = master.end_at - master.start_at
    starts = (await recurrence_of(session, master)).starts(after - duration, before)
    if not starts:
        return []
    taken = set(
        await session.scalars(
            select(Appointment.original_start_at).where(
                Appointment.master_id == master.id,
                Appointment.original_start_at.in_(starts),
            )
        )
    )
    return [
        occurrence(master, start, master.date_updated)
        for start in starts
        if start not in taken and start + duration > after
    ]


async def occurrences_between(
    session: AsyncSession, master: Appointment, after: datetime, before: datetime
) -> list[Appointment]:
    """The series' occurrences overlapping ``[after, before)``, by start: its rows (a moved
    one at its own time) and the rest computed from the rule (not stored)."""
    rows = await session.scalars(
        select(Appointment).where(
            Appointment.master_id == master.id,
            Appointment.deleted.is_(False),
            Appointment.start_at < before,
            Appointment.end_at > after,
        )
    )
    found = [*rows, *await unplanned_occurrences(session, master, after, before)]
    found.sort(key=lambda a: (a.start_at, wire_id(a)))
    return found


async def materialize_one(
    session: AsyncSession, master: Appointment, start: datetime, now: datetime
) -> Appointment | None:
    """The row of the occurrence originally at ``start`` (made now when it has none yet);
    None when the series has no such occurrence."""
    found = await find_occurrence(session, master, start)
    if found is not None:
        return found
    if not await is_open_occurrence(session, master, start):
        return None
    row = occurrence(master, start, now)
    row.planned_until = master.planned_until or now
    session.add(row)
    await session.flush()
    await _replan(session, master, [], [row], now)
    return row


async def advance_horizons(
    db: Database, clock: Clock, horizon: timedelta, *, limit: int = 20
) -> int:
    """Move the horizon of series that are behind, one series per transaction; the
    number moved."""
    moved = 0
    for _ in range(limit):
        now = clock.now()
        async with db.session() as session:
            query = (
                select(Appointment)
                .where(
                    Appointment.master_id.is_(None),
                    Appointment.rrule != "",
                    Appointment.deleted.is_(False),
                    Appointment.status.not_in(list(ENDED)),
                    Appointment.planned_until < now + horizon - HORIZON_STEP,
                )
                .order_by(Appointment.planned_until, Appointment.id)
                .limit(1)
            )
            if not db.is_sqlite:
                query = query.with_for_update(skip_locked=True)
            master = await session.scalar(query)
            if master is None:
                break
            await plan_series(session, master, now, horizon)
        moved += 1
    return moved
