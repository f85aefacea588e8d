"""SQL for notification rules and the rows their validation looks up."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from calnotify.models import Notification, Template, User


async def list_for_calendar(
    session: AsyncSession,
    calendar_id: str,
    *,
    is_active: bool | None,
    deleted: bool,
    limit: int,
    skip: int,
) -> Sequence[Notification]:
    query = select(Notification).where(
        Notification.calendar_id == calendar_id, Notification.deleted == deleted
    )
    if is_active is not None:
        query = query.where(Notification.is_active == is_active)
    query = (
        query.order_by(Notification.date_added, Notification.batch_index, Notification.id)
        .limit(limit)
        .offset(skip)
    )
    return (await session.scalars(query)).all()


async def get_for_calendar(
    session: AsyncSession, calendar_id: str, notification_id: str
) -> Notification | None:
    return await session.scalar(
        select(Notification).where(
            Notification.id == notification_id, Notification.calendar_id == calendar_id
        )
    )


async def existing_user_ids(
    session: AsyncSession, location_id: str, user_ids: Collection[str]
) -> set[str]:
    if not user_ids:
        return set()
    rows = await session.scalars(
        select(User.id).where(
            User.location_id == location_id, User.id.in_(user_ids), User.deleted.is_(False)
        )
    )
    return set(rows)


async def template_types(
    session: AsyncSession, location_id: str, template_ids: Collection[str]
) -> dict[str, str]:
    if not template_ids:
        return {}
    rows = await session.execute(
        select(Template.id, Template.type)
        .where(
            Template.location_id == location_id,
            Template.id.in_(template_ids),
            Template.deleted.is_(False),
        )
        # Shared lock: a template cannot be deleted or change type while a rule that uses
        # it is being saved (PostgreSQL; SQLite serialises writers anyway).
        .with_for_update(read=True)
    )
    return {row.id: row.type for row in rows}
