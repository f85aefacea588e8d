"""``/deliveries`` and ``/outbox``: what calnotify planned, sent and would have sent."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query

from calnotify.api.paging import IdFilter, Limit, Skip
from calnotify.auth.deps import require_unversioned
from calnotify.auth.scopes import Scope
from calnotify.auth.tokens import Principal
from calnotify.deliveries import service
from calnotify.deliveries.resend import resend
from calnotify.deliveries.schemas import DeliveriesOut, DeliveryDetailOut, DeliveryOut, OutboxOut
from calnotify.deps import ClockDep, DatabaseDep, PlanningDep, SessionDep

router = APIRouter(tags=["Deliveries"])

Reader = Annotated[Principal, Depends(require_unversioned(Scope.EVENTS_READ))]
#: Resending plans a delivery, as booking does: the appointments' write scope.
Writer = Annotated[Principal, Depends(require_unversioned(Scope.EVENTS_WRITE))]
StatusFilter = Literal["scheduled", "sending", "sent", "failed", "cancelled", "skipped"]
ChannelFilter = Literal["email", "sms", "whatsapp", "inApp", "webhook"]


@router.get("/deliveries", response_model=DeliveriesOut, operation_id="list-deliveries")
async def list_deliveries(
    principal: Reader,
    session: SessionDep,
    appointment_id: Annotated[IdFilter, Query(alias="appointmentId")] = None,
    calendar_id: Annotated[IdFilter, Query(alias="calendarId")] = None,
    notification_id: Annotated[IdFilter, Query(alias="notificationId")] = None,
    status: StatusFilter | None = None,
    channel: ChannelFilter | None = None,
    master_event_id: Annotated[IdFilter, Query(alias="masterEventId")] = None,
    limit: Limit = 100,
    skip: Skip = 0,
) -> DeliveriesOut:
    """Deliveries of the token's location, by due time: every planned send and its outcome.

    ``appointmentId`` takes an occurrence's instance id too (that occurrence's); a series'
    master id lists the whole series' (its sends for the series itself and for every
    occurrence), as ``masterEventId`` does."""
    rows, total = await service.list_deliveries(
        session,
        principal,
        {
            "appointment_id": appointment_id,
            "calendar_id": calendar_id,
            "notification_id": notification_id,
            "status": status,
            "channel": channel,
            "master_event_id": master_event_id,
        },
        limit,
        skip,
    )
    return DeliveriesOut(deliveries=[service.delivery_out(d) for d in rows], total=total)


@router.get(
    "/deliveries/{deliveryId}", response_model=DeliveryDetailOut, operation_id="get-delivery"
)
async def get_delivery(
    deliveryId: str, principal: Reader, session: SessionDep
) -> DeliveryDetailOut:
    """One delivery with every attempt to hand it to its provider, oldest first."""
    delivery = await service.get_delivery(session, principal, deliveryId)
    return await service.delivery_detail(session, delivery)


@router.post(
    "/deliveries/{deliveryId}/resend",
    response_model=DeliveryOut,
    status_code=201,
    operation_id="resend-delivery",
)
async def resend_delivery(
    deliveryId: str,
    principal: Writer,
    db: DatabaseDep,
    clock: ClockDep,
    planning: PlanningDep,
) -> DeliveryOut:
    """Resend a delivery that ended ``failed`` or ``skipped``: a new delivery, due now and
    linked to it (``resendOf``), that the dispatcher sends like any other. The answer is the
    new delivery: ``skipped`` at once, with its ``explanation``, when it would be skipped
    again (do not disturb, no address). A sent delivery is never resent (409)."""
    new_id, due = await resend(db, principal, deliveryId, clock.now())
    planning.planned(due)
    async with db.session() as session:
        return service.delivery_out(await service.get_delivery(session, principal, new_id))


@router.get("/outbox", response_model=OutboxOut, operation_id="list-outbox")
async def list_outbox(
    principal: Reader,
    session: SessionDep,
    appointment_id: Annotated[IdFilter, Query(alias="appointmentId")] = None,
    calendar_id: Annotated[IdFilter, Query(alias="calendarId")] = None,
    delivery_id: Annotated[IdFilter, Query(alias="deliveryId")] = None,
    channel: ChannelFilter | None = None,
    limit: Limit = 100,
    skip: Skip = 0,
) -> OutboxOut:
    """Messages recorded by the outbox adapter (channels with no provider configured)."""
    rows, total = await service.list_outbox(
        session,
        principal,
        {
            "appointment_id": appointment_id,
            "calendar_id": calendar_id,
            "delivery_id": delivery_id,
            "channel": channel,
        },
        limit,
        skip,
    )
    return OutboxOut(messages=[service.outbox_out(m) for m in rows], total=total)
