"""What providers report after sending, and the attempts history the API shows."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from calnotify.deliveries.states import (
    DeliveryStatus,
    Reason,
    check,
)
from calnotify.models import Delivery, DeliveryAttempt


async def provider_update(
    session: AsyncSession,
    delivery: Delivery,
    provider_status: str,
    now: datetime,
    *,
    failed_error: str = "",
) -> None:
    """A provider's later report on a sent message (Twilio status callbacks)."""
    values: dict[str, Any] = {
        "provider_status": provider_status,
        "provider_status_at": now,
        "updated_at": now,
    }
    if failed_error:
        check("provider_update", delivery.status, DeliveryStatus.FAILED)
        reason = Reason(provider_status)  # undelivered or failed
        values.update(status=DeliveryStatus.FAILED, reason=reason.value, last_error=failed_error)
    await session.execute(update(Delivery).where(Delivery.id == delivery.id).values(**values))


def attempts_of(ids: Iterable[str]) -> Any:
    """The attempts of the given deliveries, in order (for the deliveries API)."""
    return (
        select(DeliveryAttempt)
        .where(DeliveryAttempt.delivery_id.in_(list(ids)))
        .order_by(DeliveryAttempt.delivery_id, DeliveryAttempt.number, DeliveryAttempt.at)
    )
