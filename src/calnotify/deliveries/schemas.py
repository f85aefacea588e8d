"""Wire shapes of deliveries and outbox messages (calnotify extensions)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from calnotify.api.types import Timestamp


class DeliveryOut(BaseModel):
    id: str
    notificationId: str
    appointmentId: str = Field(description="an occurrence of a series: its instance id")
    masterEventId: str = Field(description="the series it belongs to; empty otherwise")
    calendarId: str
    notificationType: str
    channel: str
    receiverType: str
    recipient: str
    sender: str = Field(description="who it went out as: From (and Reply-To), or the number")
    status: str
    reason: str
    dueAt: Timestamp
    sentAt: Timestamp | None
    attempts: int
    lastError: str
    explanation: str = Field(
        description="a failed or skipped one: what happened in words, and what to do"
    )
    provider: str
    providerMessageId: str
    subject: str
    body: str
    resendOf: str = Field(description="a resend: the delivery it resends; empty otherwise")
    requestedBy: str = Field(description="a resend: who asked for it (token:<id>)")
    requestedAt: Timestamp | None = Field(description="a resend: when it was asked for")
    contentRemovedAt: Timestamp | None = Field(
        description="when retention removed the subject, body and provider answers (null: kept)"
    )
    contentRemoved: str = Field(
        description='"content removed after N days" once retention removed it; empty otherwise'
    )
    createdAt: Timestamp
    updatedAt: Timestamp


class AttemptOut(BaseModel):
    number: int
    at: Timestamp
    outcome: str = Field(description="sent, retry, failed or unknown (the worker lost it)")
    error: str
    providerId: str


class DeliveryDetailOut(DeliveryOut):
    """One delivery with every attempt: ``attempts`` is the list here (its length is
    ``attemptCount``), the count in lists."""

    attempts: list[AttemptOut]  # type: ignore[assignment]
    attemptCount: int


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
