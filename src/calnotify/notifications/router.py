"""HighLevel's Calendar Notifications operations (tag "Calendar Notifications")."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request
from pydantic import TypeAdapter

from calnotify.api.types import JSONAnswer, QueryBool
from calnotify.auth.deps import EventsRead, EventsWrite
from calnotify.deps import ClockDep, DatabaseDep, ReadSessionDep, SessionDep
from calnotify.errors import BadRequest, FieldError
from calnotify.models import Notification
from calnotify.notifications import service
from calnotify.notifications.preview import PreviewOptions, preview_plan
from calnotify.notifications.schemas import (
    MessageOut,
    NotificationCreate,
    NotificationOut,
    NotificationUpdate,
    PlanningJobOut,
    PlanningOut,
    PreviewOut,
    PreviewRequest,
    schedule_to_wire,
)
from calnotify.planning.jobs import jobs_of_rule

router = APIRouter(prefix="/calendars/{calendarId}/notifications", tags=["Calendar Notifications"])

MANY: TypeAdapter[list[NotificationOut]] = TypeAdapter(list[NotificationOut])
ONE: TypeAdapter[NotificationOut] = TypeAdapter(NotificationOut)
MAX_BATCH = 50
MAX_LIMIT = 100
MAX_SKIP = 1_000_000_000


@router.get("", response_model=list[NotificationOut], operation_id="get-event-notification")
async def get_notifications(
    calendarId: str,
    principal: EventsRead,
    db: DatabaseDep,
    is_active: Annotated[QueryBool, Query(alias="isActive")] = None,
    deleted: Annotated[QueryBool, Query(alias="deleted")] = None,
    limit: Annotated[
        float, Query(description=f"Number of records to return (1..{MAX_LIMIT})")
    ] = MAX_LIMIT,
    skip: Annotated[float, Query(description="Number of records to skip")] = 0,
) -> JSONAnswer:
    """Notifications of the calendar in creation order; soft-deleted ones only with deleted=true."""
    rows = await service.list_notification_columns(
        db,
        principal,
        calendarId,
        is_active=is_active,
        deleted=deleted,
        limit=_whole("limit", limit, 1, MAX_LIMIT),
        skip=_whole("skip", skip, 0, MAX_SKIP),
    )
    return JSONAnswer(MANY, [to_out(r) for r in rows])


@router.post("", response_model=list[NotificationOut], operation_id="create-event-notification")
async def create_notifications(
    calendarId: str,
    body: Annotated[list[NotificationCreate], Body(min_length=1, max_length=MAX_BATCH)],
    principal: EventsWrite,
    session: SessionDep,
    clock: ClockDep,
) -> JSONAnswer:
    """Create 1 to 50 notifications; if any item is invalid, none is created."""
    rows = await service.create_many(session, principal, calendarId, body, clock.now())
    return JSONAnswer(MANY, [to_out(r) for r in rows])


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
    session: ReadSessionDep,
    clock: ClockDep,
    request: Request,
) -> PreviewOut:
    """The deliveries an appointment would get (a calnotify extension): a hypothetical
    appointment (``startTime``, ``endTime``, …) or a stored one (``appointmentId``), under the
    calendar's active rules or draft ``notifications``, each message rendered. Nothing is
    stored and nothing is sent; the token needs ``calendars/events.readonly``."""
    return await preview_plan(
        session, principal, calendarId, body, clock.now(), PreviewOptions.of(request.app)
    )


@router.get(
    "/{notificationId}", response_model=NotificationOut, operation_id="find-event-notification"
)
async def find_notification(
    calendarId: str, notificationId: str, principal: EventsRead, db: DatabaseDep
) -> JSONAnswer:
    row = await service.get_notification_columns(db, principal, calendarId, notificationId)
    return JSONAnswer(ONE, to_out(row))


@router.get(
    "/{notificationId}/planning",
    response_model=PlanningOut,
    operation_id="get-event-notification-planning",
    tags=["calnotify"],
)
async def notification_planning(
    calendarId: str, notificationId: str, principal: EventsRead, session: SessionDep
) -> PlanningOut:
    """Re-planning progress of one rule (a calnotify extension): ``planning`` while a
    background job is still re-planning the calendar's appointments after a change."""
    row = await service.get_notification(session, principal, calendarId, notificationId)
    recent = await jobs_of_rule(session, row.id)
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
    session: SessionDep,
    clock: ClockDep,
) -> MessageOut:
    """Partial update; the merged notification must pass the same rules as a create."""
    await service.update_notification(
        session, principal, calendarId, notificationId, body, clock.now()
    )
    return MessageOut(message="Notification updated successfully")


@router.delete(
    "/{notificationId}", response_model=MessageOut, operation_id="delete-event-notification"
)
async def delete_notification(
    calendarId: str,
    notificationId: str,
    principal: EventsWrite,
    session: SessionDep,
    clock: ClockDep,
) -> MessageOut:
    """Soft delete (idempotent)."""
    await service.delete_notification(session, principal, calendarId, notificationId, clock.now())
    return MessageOut(message="Notification deleted successfully")


def _whole(name: str, value: float, low: int, high: int) -> int:
    if not float(value).is_integer() or not low <= value <= high:
        raise BadRequest([FieldError(name, f"must be a whole number from {low} to {high}")])
    return int(value)


def to_out(row: Notification | Any) -> NotificationOut:
    """The wire form of a rule, from its entity or a row of its columns."""
    return NotificationOut.model_validate(
        {
            "_id": row.id,
            "receiverType": row.receiver_type,
            "additionalEmailIds": row.additional_email_ids,
            "additionalPhoneNumbers": row.additional_phone_numbers,
            "channel": row.channel,
            "notificationType": row.notification_type,
            "isActive": row.is_active,
            "additionalWhatsappNumbers": (
                row.additional_phone_numbers if row.channel == "whatsapp" else []
            ),
            "templateId": row.template_id,
            "body": row.body,
            "subject": row.subject,
            "afterTime": schedule_to_wire(row.after_time),
            "beforeTime": schedule_to_wire(row.before_time),
            "selectedUsers": row.selected_users,
            "deleted": row.deleted,
            "calendarId": row.calendar_id,
            "locationId": row.location_id,
            "fromAddress": row.from_address,
            "fromName": row.from_name,
            "fromNumber": row.from_number,
            "dateAdded": row.date_added,
            "dateUpdated": row.date_updated,
        }
    )
