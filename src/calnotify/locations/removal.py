"""Removing a location and everything of it (``calnotify locations delete``)."""

from __future__ import annotations

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from calnotify.models import (
    AllowedSender,
    ApiToken,
    Appointment,
    AppointmentEvent,
    Calendar,
    ConsoleSession,
    Contact,
    Delivery,
    DeliveryAttempt,
    InboundMessage,
    InboxItem,
    Location,
    Notification,
    OutboxMessage,
    PlanningJob,
    Template,
    User,
    WebhookEndpoint,
)

# What a location holds, by the name shown for it, in the order it is removed (rows before
# the rows they point at). Soft-deleted rows count: they are still stored.
_KINDS: tuple[tuple[str, InstrumentedAttribute[str] | InstrumentedAttribute[str | None]], ...] = (
    ("deliveries", Delivery.location_id),
    ("outboxMessages", OutboxMessage.location_id),
    ("inboxItems", InboxItem.location_id),
    ("inboundMessages", InboundMessage.location_id),
    ("appointments", Appointment.location_id),
    ("notificationRules", Notification.location_id),
    ("calendars", Calendar.location_id),
    ("contacts", Contact.location_id),
    ("templates", Template.location_id),
    ("users", User.location_id),
    ("tokens", ApiToken.location_id),
    ("allowedSenders", AllowedSender.location_id),
    ("webhooks", WebhookEndpoint.location_id),
)

#: A location with any of these is deleted only when forced.
GUARDED = ("calendars", "appointments", "deliveries")


async def location_contents(session: AsyncSession, location_id: str) -> dict[str, int]:
    """How many rows of each kind the location has (every kind, zeros too)."""
    counts: dict[str, int] = {}
    for kind, column in _KINDS:
        counts[kind] = await session.scalar(select(func.count()).where(column == location_id)) or 0
    return counts


async def delete_location(session: AsyncSession, location_id: str) -> None:
    """Remove the location and every row of it, in the session's transaction."""
    deliveries = select(Delivery.id).where(Delivery.location_id == location_id)
    tokens = select(ApiToken.id).where(ApiToken.location_id == location_id)
    await session.execute(
        delete(DeliveryAttempt).where(DeliveryAttempt.delivery_id.in_(deliveries))
    )
    await session.execute(delete(PlanningJob).where(PlanningJob.location_id == location_id))
    await session.execute(
        delete(AppointmentEvent).where(AppointmentEvent.location_id == location_id)
    )
    await session.execute(delete(ConsoleSession).where(ConsoleSession.token_id.in_(tokens)))
    for _, column in _KINDS:
        await session.execute(delete(column.class_).where(column == location_id))
    await session.execute(delete(Location).where(Location.id == location_id))
