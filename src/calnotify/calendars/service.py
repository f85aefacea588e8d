"""Calendars of a location."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, case, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from calnotify.api.types import json_problem
from calnotify.auth.deps import ensure_location
from calnotify.auth.tokens import Principal
from calnotify.calendars import availability
from calnotify.calendars.schemas import (
    MAX_ECHOED_JSON_BYTES,
    CalendarCreate,
    CalendarFieldsIn,
    CalendarOut,
    TeamMemberOut,
)
from calnotify.db.base import utcnow
from calnotify.db.engine import Database
from calnotify.db.scoped import find_in_location, get_in_location
from calnotify.db.statements import Statement, table
from calnotify.errors import BadRequest, FieldError, NotFound
from calnotify.ids import looks_like_id
from calnotify.models import Calendar, Notification, User
from calnotify.planning import store
from calnotify.planning.jobs import cancel_for_calendar

SLOT_UNITS = {"mins": 1, "minutes": 1, "hours": 60}
MAX_SLOT_MINUTES = 7 * 24 * 60


async def find_calendar(
    session: AsyncSession, principal: Principal, calendar_id: str | None
) -> Calendar | None:
    """The calendar if it is of the token's location, deleted or not (what an appointment
    names); None otherwise."""
    return await find_in_location(
        session, Calendar, calendar_id, principal.location_id, include_deleted=True
    )


async def get_calendar(session: AsyncSession, principal: Principal, calendar_id: str) -> Calendar:
    """The calendar, if it exists in the token's location; 404 otherwise (also for others')."""
    return await get_in_location(
        session, Calendar, calendar_id, principal.location_id, what="Calendar"
    )


#: The id of a calendar, if it exists in the location (what :func:`get_calendar` checks):
#: parameters ``calendar_id``, ``location_id``.
CALENDAR_IN_LOCATION = Statement(
    select(Calendar.id).where(
        Calendar.id == bindparam("calendar_id"),
        Calendar.location_id == bindparam("location_id"),
        Calendar.deleted.is_(False),
    )
)


async def list_calendars(
    session: AsyncSession, principal: Principal, location_id: str
) -> Sequence[Calendar]:
    ensure_location(principal, location_id)
    rows = await session.scalars(
        select(Calendar)
        .where(Calendar.location_id == location_id, Calendar.deleted.is_(False))
        .order_by(Calendar.date_added, Calendar.id)
    )
    return rows.all()


@dataclass(frozen=True, slots=True)
class CalendarRow:
    calendar: Calendar
    rules: int
    active: int


async def calendars_with_counts(
    session: AsyncSession, principal: Principal, limit: int
) -> list[CalendarRow]:
    """The location's calendars by name, each with how many rules it has and how many of
    them are active."""
    counts = (
        select(
            Notification.calendar_id,
            func.count().label("rules"),
            func.sum(case((Notification.is_active.is_(True), 1), else_=0)).label("active"),
        )
        .where(Notification.location_id == principal.location_id, Notification.deleted.is_(False))
        .group_by(Notification.calendar_id)
        .subquery()
    )
    rows = await session.execute(
        select(Calendar, counts.c.rules, counts.c.active)
        .outerjoin(counts, counts.c.calendar_id == Calendar.id)
        .where(Calendar.location_id == principal.location_id, Calendar.deleted.is_(False))
        .order_by(Calendar.name, Calendar.id)
        .limit(limit)
    )
    return [CalendarRow(c, int(n or 0), int(a or 0)) for c, n, a in rows]


async def first_calendar(session: AsyncSession, principal: Principal) -> Calendar | None:
    """The location's oldest calendar that is not deleted, if any."""
    found: Calendar | None = await session.scalar(
        select(Calendar)
        .where(Calendar.location_id == principal.location_id, Calendar.deleted.is_(False))
        .order_by(Calendar.date_added)
        .limit(1)
    )
    return found


async def create_calendar(
    session: AsyncSession, principal: Principal, body: CalendarCreate
) -> Calendar:
    ensure_location(principal, body.location_id)
    calendar = Calendar(
        location_id=body.location_id,
        name=body.name,
        description="",
        calendar_type="event",
        slot_duration=30,
        slot_duration_unit="mins",
        is_active=True,
        auto_confirm=True,
        team_members=[],
        extra={},
        **availability.DEFAULTS,
    )
    await _apply(session, principal, calendar, body)
    session.add(calendar)
    await session.flush()
    return calendar


async def update_calendar(
    session: AsyncSession, principal: Principal, calendar_id: str, body: CalendarFieldsIn
) -> Calendar:
    calendar = await get_calendar(session, principal, calendar_id)
    await _apply(session, principal, calendar, body)
    calendar.date_updated = utcnow()
    await session.flush()
    return calendar


async def delete_calendar(
    db: Database, principal: Principal, calendar_id: str, now: datetime
) -> bool:
    """Soft-delete the calendar and its notification rules; nothing of it is sent any more.
    Whether a planning job was left for the dispatcher (its pending deliveries beyond the
    first page)."""
    if not looks_like_id(calendar_id):
        raise NotFound("Calendar not found")
    values = {"calendar_id": calendar_id, "location_id": principal.location_id}
    async with db.transaction() as tx:
        [found] = await tx.fetch((CALENDAR_IN_LOCATION, values))
        if not found:
            raise NotFound("Calendar not found")
        await store.lock_calendar(tx, calendar_id)
        tx.write(_DELETE, {"calendar_id": calendar_id, "now": now})
        tx.write(_DELETE_RULES, {"calendar_id": calendar_id, "now": now})
        return await cancel_for_calendar(tx, principal.location_id, calendar_id, now)


_DELETE = Statement(
    update(table(Calendar))
    .where(Calendar.id == bindparam("calendar_id"))
    .values(deleted=True, date_updated=bindparam("now"))
)
_N = Notification.__table__.c
_DELETE_RULES = Statement(
    update(table(Notification))
    .where(_N.calendar_id == bindparam("calendar_id"), _N.deleted.is_(False))
    .values(deleted=True, version=_N.version + 1, date_updated=bindparam("now"))
)


async def _apply(
    session: AsyncSession, principal: Principal, calendar: Calendar, body: CalendarFieldsIn
) -> None:
    given = body.given()
    errors: list[FieldError] = []
    if "name" in given and not body.name:
        errors.append(FieldError("name", "must not be empty"))
    duration = given.get("slot_duration", calendar.slot_duration)
    unit = given.get("slot_duration_unit", calendar.slot_duration_unit)
    if unit not in SLOT_UNITS:
        errors.append(FieldError("slotDurationUnit", "must be mins or hours"))
    elif not isinstance(duration, int | float) or not (
        0 < duration * SLOT_UNITS[str(unit)] <= MAX_SLOT_MINUTES
    ):
        errors.append(FieldError("slotDuration", "must be more than 0 and at most 7 days"))

    changes = availability.checked_availability(body, calendar, errors)
    echoed = body.echoed()
    for key, value in echoed.items():
        if problem := json_problem(value):
            errors.append(FieldError(key, problem))
    if len(json.dumps(echoed)) > MAX_ECHOED_JSON_BYTES:
        errors.append(FieldError("", "calendar settings are too large"))

    members: list[dict[str, Any]] | None = None
    if body.team_members is not None:
        wanted = {m.user_id for m in body.team_members if looks_like_id(m.user_id)}
        found = (
            set(
                await session.scalars(
                    select(User.id).where(
                        User.location_id == principal.location_id,
                        User.id.in_(wanted),
                        User.deleted.is_(False),
                    )
                )
            )
            if wanted
            else set()
        )
        members = []
        for i, member in enumerate(body.team_members):
            if member.user_id not in found:
                errors.append(
                    FieldError(f"teamMembers[{i}].userId", "is not a user of this location")
                )
            members.append(
                TeamMemberOut(
                    user_id=member.user_id,
                    priority=_number(member.priority if member.priority is not None else 0.5),
                    is_primary=bool(member.is_primary),
                    meeting_location_type=member.meeting_location_type,
                    meeting_location=member.meeting_location,
                ).model_dump(by_alias=True, exclude_none=True)
            )
    if errors:
        raise BadRequest(errors)

    for name in (
        "name",
        "description",
        "calendar_type",
        "slot_duration",
        "slot_duration_unit",
        "is_active",
        "auto_confirm",
    ):
        if name in given:
            setattr(calendar, name, given[name])
    for column, value in changes.items():
        setattr(calendar, column, value)
    if members is not None:
        calendar.team_members = members
    if echoed:
        calendar.extra = {**(calendar.extra or {}), **echoed}


def to_out(calendar: Calendar) -> CalendarOut:
    duration = calendar.slot_duration
    return CalendarOut.model_validate(
        {
            **(calendar.extra or {}),
            "id": calendar.id,
            "locationId": calendar.location_id,
            "name": calendar.name,
            "description": calendar.description,
            "calendarType": calendar.calendar_type,
            "teamMembers": calendar.team_members or [],
            "slotDuration": _number(duration),
            "slotDurationUnit": calendar.slot_duration_unit,
            "isActive": calendar.is_active,
            "autoConfirm": calendar.auto_confirm,
            **availability.availability_out(calendar),
        }
    )


_number = availability.plain_number
