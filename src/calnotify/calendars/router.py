"""HighLevel's Calendars operations."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from calnotify.auth.deps import CalendarsRead, CalendarsWrite
from calnotify.calendars import service
from calnotify.calendars.schemas import (
    CalendarCreate,
    CalendarDeleted,
    CalendarEnvelope,
    CalendarsEnvelope,
    CalendarUpdate,
)
from calnotify.deps import ClockDep, DatabaseDep, PlanningDep, SessionDep

router = APIRouter(prefix="/calendars", tags=["Calendars"])


@router.get(
    "",
    response_model=CalendarsEnvelope,
    response_model_exclude_none=True,
    operation_id="get-calendars",
)
async def get_calendars(
    principal: CalendarsRead,
    session: SessionDep,
    location_id: Annotated[str, Query(alias="locationId", max_length=64)],
) -> CalendarsEnvelope:
    rows = await service.list_calendars(session, principal, location_id)
    return CalendarsEnvelope(calendars=[service.to_out(r) for r in rows])


@router.post(
    "",
    response_model=CalendarEnvelope,
    response_model_exclude_none=True,
    operation_id="create-calendar",
)
async def create_calendar(
    body: CalendarCreate, principal: CalendarsWrite, session: SessionDep
) -> CalendarEnvelope:
    calendar = await service.create_calendar(session, principal, body)
    return CalendarEnvelope(calendar=service.to_out(calendar))


@router.get(
    "/{calendarId}",
    response_model=CalendarEnvelope,
    response_model_exclude_none=True,
    operation_id="get-calendar",
)
async def get_calendar(
    calendarId: str, principal: CalendarsRead, session: SessionDep
) -> CalendarEnvelope:
    calendar = await service.get_calendar(session, principal, calendarId)
    return CalendarEnvelope(calendar=service.to_out(calendar))


@router.put(
    "/{calendarId}",
    response_model=CalendarEnvelope,
    response_model_exclude_none=True,
    operation_id="update-calendar",
)
async def update_calendar(
    calendarId: str, body: CalendarUpdate, principal: CalendarsWrite, session: SessionDep
) -> CalendarEnvelope:
    calendar = await service.update_calendar(session, principal, calendarId, body)
    return CalendarEnvelope(calendar=service.to_out(calendar))


@router.delete("/{calendarId}", response_model=CalendarDeleted, operation_id="delete-calendar")
async def delete_calendar(
    calendarId: str,
    principal: CalendarsWrite,
    db: DatabaseDep,
    clock: ClockDep,
    planning: PlanningDep,
) -> CalendarDeleted:
    """Delete the calendar; its notification rules are deleted with it."""
    planning.planned(await service.delete_calendar(db, principal, calendarId, clock.now()))
    return CalendarDeleted()
