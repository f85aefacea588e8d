"""Wire shapes of deliveries and outbox messages (calnotify extensions)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from calnotify.api.types import Timestamp


class DeliveryOut(BaseModel):
    id: str
    notificationId: str
    appointmentId: str
    calendarId: str
    notificationType: str
    channel: str
    receiverType: str
    recipient: str
    status: str
    reason: str
    dueAt: Timestamp
    sentAt: Timestamp | None
    attempts: int
    lastError: str
    provider: str
    providerMessageId: str
    subject: str
    body: str
    createdAt: Timestamp
    updatedAt: Timestamp


class DeliveriesOut(BaseModel):
    deliveries: list[DeliveryOut]
    total: int


class OutboxMessageOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    id: str
    deliveryId: str
    appointmentId: str
    channel: str
    to: str
    sender: str = Field(alias="from", description="Sender, as the provider would have used it")
    subject: str
    body: str
    createdAt: Timestamp


class OutboxOut(BaseModel):
    messages: list[OutboxMessageOut]
    total: int
