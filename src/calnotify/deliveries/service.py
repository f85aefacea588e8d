"""Reading deliveries and outbox messages of a location."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from calnotify.auth.tokens import Principal
from calnotify.db.scoped import get_in_location
from calnotify.deliveries import lifecycle
from calnotify.deliveries.schemas import (
    AttemptOut,
    DeliveryDetailOut,
    DeliveryOut,
    OutboxMessageOut,
)
from calnotify.deliveries.wording import content_removed, explained, shown_error
from calnotify.ids import parse_instance_id
from calnotify.models import Appointment, Delivery, DeliveryAttempt, OutboxMessage
from calnotify.models.delivery import RecipientKind

#: ``total`` of a list counts up to this many (that value means at least as many).
TOTAL_LIMIT = 10_000


async def list_deliveries(
    session: AsyncSession,
    principal: Principal,
    filters: dict[str, str | None],
    limit: int,
    skip: int,
    *,
    due: tuple[datetime | None, datetime | None] = (None, None),
    changed_since: datetime | None = None,
    newest_first: bool = False,
) -> tuple[Sequence[Delivery], int]:
    """The location's deliveries matching ``filters`` (by column; ``contact_id``: the
    messages to that contact, of their appointments), due in ``[due[0], due[1])`` and last
    changed at or after ``changed_since``, by due time."""
    columns = {
        "calendar_id": Delivery.calendar_id,
        "notification_id": Delivery.notification_id,
        "status": Delivery.status,
        "channel": Delivery.channel,
        "reason": Delivery.reason,
        "notification_type": Delivery.notification_type,
    }
    filters = dict(filters)
    conditions: list[Any] = [Delivery.location_id == principal.location_id]
    if (contact := filters.pop("contact_id", None)) is not None:
        conditions += [
            Delivery.recipient_kind == RecipientKind.CONTACT.value,
            Delivery.appointment_id.in_(
                select(Appointment.id).where(
                    Appointment.contact_id == contact,
                    Appointment.location_id == principal.location_id,
                )
            ),
        ]
    if due[0] is not None:
        conditions.append(Delivery.due_at >= due[0])
    if due[1] is not None:
        conditions.append(Delivery.due_at < due[1])
    if changed_since is not None:
        conditions.append(Delivery.updated_at >= changed_since)
    if (appointment := filters.pop("appointment_id", None)) is not None:
        if (instance := parse_instance_id(appointment)) is not None:
            # The series' index finds its occurrences' deliveries; the instance id picks one.
            conditions += [
                Delivery.master_event_id == instance[0],
                Delivery.instance_id == appointment,
            ]
        else:
            # An appointment's own deliveries and, for a series' master id, its occurrences'
            # (a single appointment is no one's master): both sides indexed.
            conditions.append(_of_appointment_or_series(appointment))
    if (master := filters.pop("master_event_id", None)) is not None:
        conditions.append(_of_appointment_or_series(master))
    conditions += [columns[k] == v for k, v in filters.items() if v is not None]
    total = await session.scalar(_count_up_to(select(Delivery.id).where(*conditions)))
    order = (
        (Delivery.due_at.desc(), Delivery.id.desc())
        if newest_first
        else (Delivery.due_at, Delivery.id)
    )
    rows = await session.scalars(
        select(Delivery).where(*conditions).order_by(*order).limit(limit).offset(skip)
    )
    return rows.all(), int(total or 0)


def _count_up_to(rows: Select[Any]) -> Select[int]:
    """How many ``rows`` there are, counted up to :data:`TOTAL_LIMIT`: a location with ten
    million deliveries is answered as fast as one with ten thousand."""
    return select(func.count()).select_from(rows.limit(TOTAL_LIMIT).subquery("counted"))


async def timeline(
    session: AsyncSession, principal: Principal, appointment_id: str
) -> tuple[Sequence[Delivery], dict[str, list[DeliveryAttempt]]]:
    """Every delivery of an appointment (or of one occurrence), in due order, and attempts."""
    if parse_instance_id(appointment_id) is not None:
        where = Delivery.instance_id == appointment_id
    else:
        where = and_(Delivery.appointment_id == appointment_id, Delivery.instance_id == "")
    rows = (
        await session.scalars(
            select(Delivery)
            .where(Delivery.location_id == principal.location_id, where)
            .order_by(Delivery.due_at, Delivery.id)
            .limit(1000)
        )
    ).all()
    attempts: dict[str, list[DeliveryAttempt]] = {}
    ids = [d.id for d in rows if d.attempts]
    for start in range(0, len(ids), 500):
        for attempt in await session.scalars(lifecycle.attempts_of(ids[start : start + 500])):
            attempts.setdefault(attempt.delivery_id, []).append(attempt)
    return rows, attempts


def _of_appointment_or_series(appointment_id: str) -> Any:
    return or_(
        Delivery.appointment_id == appointment_id, Delivery.master_event_id == appointment_id
    )


async def get_delivery(session: AsyncSession, principal: Principal, delivery_id: str) -> Delivery:
    return await get_in_location(
        session, Delivery, delivery_id, principal.location_id, what="Delivery"
    )


async def list_outbox(
    session: AsyncSession,
    principal: Principal,
    filters: dict[str, str | None],
    limit: int,
    skip: int,
    *,
    newest_first: bool = False,
) -> tuple[Sequence[OutboxMessage], int]:
    columns = {
        "appointment_id": OutboxMessage.appointment_id,
        "calendar_id": OutboxMessage.calendar_id,
        "delivery_id": OutboxMessage.delivery_id,
        "channel": OutboxMessage.channel,
    }
    conditions: list[Any] = [OutboxMessage.location_id == principal.location_id]
    conditions += [columns[k] == v for k, v in filters.items() if v is not None]
    total = await session.scalar(_count_up_to(select(OutboxMessage.id).where(*conditions)))
    rows = await session.scalars(
        select(OutboxMessage)
        .where(*conditions)
        .order_by(
            *(
                (OutboxMessage.created_at.desc(), OutboxMessage.id.desc())
                if newest_first
                else (OutboxMessage.created_at, OutboxMessage.id)
            )
        )
        .limit(limit)
        .offset(skip)
    )
    return rows.all(), int(total or 0)


def delivery_out(d: Delivery) -> DeliveryOut:
    return DeliveryOut(
        id=d.id,
        notificationId=d.notification_id or "",
        appointmentId=d.instance_id or d.appointment_id or "",
        masterEventId=d.master_event_id,
        calendarId=d.calendar_id,
        notificationType=d.notification_type,
        channel=d.channel,
        receiverType=d.receiver_type,
        recipient=d.recipient,
        sender=d.sender,
        status=d.status,
        reason=d.reason,
        dueAt=d.due_at,
        sentAt=d.sent_at,
        attempts=d.attempts,
        lastError=shown_error(d.channel, d.last_error),
        explanation=explained(d.status, d.reason, d.channel, d.last_error),
        provider=d.provider,
        providerMessageId=d.provider_message_id,
        subject=d.subject,
        body=d.body,
        resendOf=d.resend_of,
        requestedBy=d.requested_by,
        requestedAt=d.requested_at,
        contentRemovedAt=d.content_removed_at,
        contentRemoved=content_removed(d),
        createdAt=d.created_at,
        updatedAt=d.updated_at,
    )


async def delivery_detail(session: AsyncSession, d: Delivery) -> DeliveryDetailOut:
    attempts = await session.scalars(lifecycle.attempts_of([d.id]))
    summary = delivery_out(d).model_dump()
    summary.pop("attempts")
    return DeliveryDetailOut(
        **summary,
        attemptCount=d.attempts,
        attempts=[
            AttemptOut(
                number=a.number,
                at=a.at,
                outcome=a.outcome,
                error=shown_error(d.channel, a.error),
                providerId=a.provider_id,
            )
            for a in attempts
        ],
    )


def outbox_out(m: OutboxMessage) -> OutboxMessageOut:
    return OutboxMessageOut(
        id=m.id,
        deliveryId=m.delivery_id,
        appointmentId=m.appointment_id,
        channel=m.channel,
        to=m.to,
        sender=m.sender,
        subject=m.subject,
        body=m.body,
        createdAt=m.created_at,
    )
