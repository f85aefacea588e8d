"""HighLevel's Calendar Notifications operations (tag "Calendar Notifications")."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query, Request, Response
from pydantic import BaseModel, Field

from calnotify.api.types import JSONBytes, QueryBool
from calnotify.auth.deps import EventsRead, EventsWrite
from calnotify.deps import ClockDep, DatabaseDep, PlanningDep
from calnotify.errors import BadRequest, FieldError
from calnotify.notifications import impact, service, wire
from calnotify.notifications.preview import PreviewOptions, preview_plan
from calnotify.notifications.schemas import (
    ImpactOut,
    MessageOut,
    NotificationCreate,
    NotificationOut,
    NotificationUpdate,
    PlanningJobOut,
    PlanningOut,
    PreviewOut,
    PreviewRequest,
)
from calnotify.planning.jobs import jobs_of_rule

router = APIRouter(
    prefix="/calendars/{calendarId}/notifications",
    tags=["Calendar Notifications"],
)

MAX_BATCH = 50
MAX_LIMIT = 100
MAX_SKIP = 1_000_000_000


class RulesPage(BaseModel):
    """The list's query string, read as one parameter: FastAPI solves each parameter anew
    on every request, and this is the most requested list."""

    is_active: QueryBool = Field(None, alias="isActive", title="Isactive")
    deleted: QueryBool = Field(None, title="Deleted")
    limit: float = Field(
        MAX_LIMIT, description=f"Number of records to return (1..{MAX_LIMIT})", title="Limit"
    )
    skip: float = Field(0, description="Number of records to skip", title="Skip")


@router.get("", response_model=list[NotificationOut], operation_id="get-event-notification")
async def get_notifications(
    calendarId: str,
    principal: EventsRead,
    db: DatabaseDep,
    page: Annotated[RulesPage, Query()],
) -> JSONBytes:
    """Notifications of the calendar in creation order; soft-deleted ones only with deleted=true."""
    rows = await service.list_notification_columns(
        db,
        principal,
        calendarId,
        is_active=page.is_active,
        deleted=page.deleted,
        limit=_whole("limit", page.limit, 1, MAX_LIMIT),
        skip=_whole("skip", page.skip, 0, MAX_SKIP),
    )
    return JSONBytes(wire.rules_json(rows))


@router.post("", response_model=list[NotificationOut], operation_id="create-event-notification")
async def create_notifications(
    calendarId: str,
    body: Annotated[list[NotificationCreate], Body(min_length=1, max_length=MAX_BATCH)],
    principal: EventsWrite,
    db: DatabaseDep,
    clock: ClockDep,
    planning: PlanningDep,
) -> JSONBytes:
    """Create 1 to 50 notifications; if any item is invalid, none is created."""
    rows, due = await service.create_many(db, principal, calendarId, body, clock.now())
    planning.planned(due)
    return JSONBytes(wire.rules_json(rows))


@router.post(
    "/preview",
    response_model=PreviewOut,
    operation_id="preview-event-notifications",
    tags=["calnotify"],
)
async def preview_notifications(
    calendarId: str,
    body: PreviewRequest,
    principal: EventsRead,
    db: DatabaseDep,
    clock: ClockDep,
    request: Request,
) -> PreviewOut:
    """The deliveries an appointment would get (a calnotify extension): a hypothetical
    appointment (``startTime``, ``endTime``, …) or a stored one (``appointmentId``), under the
    calendar's active rules or draft ``notifications``, each message rendered. Nothing is
    stored and nothing is sent; the token needs ``calendars/events.readonly``."""
    return await preview_plan(
        db, principal, calendarId, body, clock.now(), PreviewOptions.of(request.app)
    )


@router.post(
    "/impact",
    response_model=ImpactOut,
    operation_id="impact-create-event-notifications",
    tags=["calnotify"],
)
async def create_impact(
    calendarId: str,
    body: Annotated[list[NotificationCreate], Body(min_length=1, max_length=MAX_BATCH)],
    principal: EventsRead,
    db: DatabaseDep,
    clock: ClockDep,
) -> ImpactOut:
    """What creating these notifications would do to pending sends (a calnotify
    extension): the deliveries newly planned, counted, the first 20 shown. Nothing is
    stored; the body is a create's, judged the same way."""
    found = await impact.create_impact(db, principal, calendarId, body, clock.now())
    return impact.impact_out(principal, found)


@router.post(
    "/{notificationId}/impact",
    response_model=ImpactOut,
    operation_id="impact-update-event-notification",
    tags=["calnotify"],
)
async def update_impact(
    calendarId: str,
    notificationId: str,
    body: NotificationUpdate,
    principal: EventsRead,
    db: DatabaseDep,
    clock: ClockDep,
) -> ImpactOut:
    """What this update (a PUT's body) would do to pending sends (a calnotify extension):
    deliveries cancelled, re-timed (old → new due time) and newly planned. Nothing is
    stored."""
    found = await impact.update_impact(db, principal, calendarId, notificationId, body, clock.now())
    return impact.impact_out(principal, found)


@router.get(
    "/{notificationId}", response_model=NotificationOut, operation_id="find-event-notification"
)
async def find_notification(
    calendarId: str, notificationId: str, principal: EventsRead, db: DatabaseDep
) -> JSONBytes:
    row = await service.get_notification_columns(db, principal, calendarId, notificationId)
    return JSONBytes(wire.rule_json(row))


@router.get(
    "/{notificationId}/planning",
    response_model=PlanningOut,
    operation_id="get-event-notification-planning",
    tags=["calnotify"],
)
async def notification_planning(
    calendarId: str, notificationId: str, principal: EventsRead, db: DatabaseDep
) -> PlanningOut:
    """Re-planning progress of one rule (a calnotify extension): ``planning`` while a
    background job is still re-planning the calendar's appointments after a change."""
    row = await service.get_notification(db, principal, calendarId, notificationId)
    recent = await jobs_of_rule(db, row.id)
    return PlanningOut(
        notification_id=row.id,
        state="planned" if row.planned_version >= row.version else "planning",
        version=row.version,
        planned_version=row.planned_version,
        jobs=[PlanningJobOut.model_validate(j, from_attributes=True) for j in recent],
    )


@router.put(
    "/{notificationId}", response_model=MessageOut, operation_id="update-event-notification"
)
async def update_notification(
    calendarId: str,
    notificationId: str,
    body: NotificationUpdate,
    principal: EventsWrite,
    db: DatabaseDep,
    clock: ClockDep,
    planning: PlanningDep,
) -> MessageOut:
    """Partial update; the merged notification must pass the same rules as a create."""
    planning.planned(
        await service.update_notification(
            db, principal, calendarId, notificationId, body, clock.now()
        )
    )
    return MessageOut(message="Notification updated successfully")


@router.delete(
    "/{notificationId}", response_model=MessageOut, operation_id="delete-event-notification"
)
async def delete_notification(
    calendarId: str,
    notificationId: str,
    principal: EventsWrite,
    db: DatabaseDep,
    clock: ClockDep,
    planning: PlanningDep,
    dry_run: Annotated[QueryBool, Query(alias="dryRun")] = None,
) -> MessageOut | Response:
    """Soft delete (idempotent). With ``dryRun=true`` (a calnotify extension) nothing is
    deleted: the answer is what deleting would do to pending sends (as ``…/impact``)."""
    if dry_run:
        found = await impact.delete_impact(db, principal, calendarId, notificationId, clock.now())
        out = impact.impact_out(principal, found)
        return Response(out.model_dump_json(by_alias=True), media_type="application/json")
    planning.planned(
        await service.delete_notification(db, principal, calendarId, notificationId, clock.now())
    )
    return MessageOut(message="Notification deleted successfully")


def _whole(name: str, value: float, low: int, high: int) -> int:
    if not float(value).is_integer() or not low <= value <= high:
        raise BadRequest([FieldError(name, f"must be a whole number from {low} to {high}")])
    return int(value)
