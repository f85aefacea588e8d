"""HighLevel's Calendar Events operations for appointments."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query

from calnotify.appointments import booking, reads, service
from calnotify.appointments.schemas import (
    AppointmentCreate,
    AppointmentOut,
    AppointmentUpdate,
    EventEnvelope,
    EventsEnvelope,
    Succeeded,
)
from calnotify.appointments.series import location_zone
from calnotify.auth.deps import EventsRead, EventsWrite
from calnotify.deps import ClockDep, DatabaseDep, PlanningDep

router = APIRouter(prefix="/calendars/events", tags=["Calendar Events"])


@router.get("", response_model=EventsEnvelope, operation_id="get-calendar-events")
async def get_calendar_events(
    principal: EventsRead,
    db: DatabaseDep,
    location_id: Annotated[str, Query(alias="locationId", max_length=64)],
    start_time: Annotated[int, Query(alias="startTime", description="Epoch milliseconds")],
    end_time: Annotated[int, Query(alias="endTime", description="Epoch milliseconds")],
    calendar_id: Annotated[str | None, Query(alias="calendarId", max_length=64)] = None,
    user_id: Annotated[str | None, Query(alias="userId", max_length=64)] = None,
    group_id: Annotated[str | None, Query(alias="groupId", max_length=64)] = None,
) -> EventsEnvelope:
    """Appointments of a calendar or a user that overlap [startTime, endTime]."""
    rows = await reads.list_events(
        db,
        principal,
        location_id=location_id,
        calendar_id=calendar_id,
        user_id=user_id,
        group_id=group_id,
        start_ms=start_time,
        end_ms=end_time,
    )
    where = await location_zone(db, principal.location_id)
    rules = await reads.series_rules(db, rows)
    return EventsEnvelope(
        events=[reads.to_event(r, where, rules.get(r.master_id or "")) for r in rows]
    )


@router.post("/appointments", response_model=AppointmentOut, operation_id="create-appointment")
async def create_appointment(
    body: AppointmentCreate,
    principal: EventsWrite,
    db: DatabaseDep,
    clock: ClockDep,
    planning: PlanningDep,
) -> AppointmentOut:
    written = await booking.create_appointment(db, principal, body, clock.now(), planning.horizon)
    planning.planned(written.due)
    return reads.to_out(written.appointment, written.zone, written.rrule)


@router.put(
    "/appointments/{eventId}", response_model=AppointmentOut, operation_id="edit-appointment"
)
async def edit_appointment(
    eventId: str,
    body: AppointmentUpdate,
    principal: EventsWrite,
    db: DatabaseDep,
    clock: ClockDep,
    planning: PlanningDep,
) -> AppointmentOut:
    written = await service.update_appointment(
        db, principal, eventId, body, clock.now(), planning.horizon
    )
    planning.planned(written.due)
    return reads.to_out(written.appointment, written.zone, written.rrule)


@router.get("/appointments/{eventId}", response_model=EventEnvelope, operation_id="get-appointment")
async def get_appointment(eventId: str, principal: EventsRead, db: DatabaseDep) -> EventEnvelope:
    appointment = await reads.get_appointment(db, principal, eventId)
    where = await location_zone(db, principal.location_id)
    rule = await reads.series_rule(db, appointment)
    return EventEnvelope(event=reads.to_event(appointment, where, rule))


@router.delete("/{eventId}", response_model=Succeeded, status_code=201, operation_id="delete-event")
async def delete_event(
    eventId: str,
    principal: EventsWrite,
    db: DatabaseDep,
    clock: ClockDep,
    planning: PlanningDep,
    _body: Annotated[dict[str, object] | None, Body()] = None,
) -> Succeeded:
    """Delete an appointment. HighLevel's clients send a JSON body here; it is ignored."""
    planning.planned(
        await service.delete_appointment(db, principal, eventId, clock.now(), planning.horizon)
    )
    return Succeeded()
