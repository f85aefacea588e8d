"""Reading the stored replies (``inbound_messages``) of a location: the API's
``GET /replies`` and the console's appointment page alike."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from calnotify.auth.tokens import Principal
from calnotify.models.inbound import InboundMessage


async def list_replies(
    session: AsyncSession,
    principal: Principal,
    filters: dict[str, str | None],
    limit: int,
    skip: int,
) -> tuple[Sequence[InboundMessage], int]:
    """The location's replies matching ``filters`` (``contact_id``, ``appointment_id``),
    newest first, and how many match."""
    conditions: list[Any] = [InboundMessage.location_id == principal.location_id]
    columns = {
        "contact_id": InboundMessage.contact_id,
        "appointment_id": InboundMessage.appointment_id,
    }
    conditions += [columns[k] == v for k, v in filters.items() if v is not None]
    total = await session.scalar(
        select(func.count()).select_from(InboundMessage).where(*conditions)
    )
    rows = await session.scalars(
        select(InboundMessage)
        .where(*conditions)
        .order_by(InboundMessage.received_at.desc(), InboundMessage.id.desc())
        .limit(limit)
        .offset(skip)
    )
    return rows.all(), total or 0
