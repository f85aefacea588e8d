"""SQL for notification rules and the rows their validation looks up."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from sqlalchemy import Select, bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from calnotify.db.reads import Query
from calnotify.models import Notification, Template, User


def page_of_calendar(
    calendar_id: str,
    *,
    is_active: bool | None,
    deleted: bool,
    limit: int,
    skip: int,
) -> Select[Notification]:
    """The rules of a calendar in creation order, one page."""
    query = select(Notification).where(
        Notification.calendar_id == calendar_id, Notification.deleted == deleted
    )
    if is_active is not None:
        query = query.where(Notification.is_active == is_active)
    return (
        query.order_by(Notification.date_added, Notification.batch_index, Notification.id)
        .limit(limit)
        .offset(skip)
    )


def _page_query(*, is_active: bool) -> Query:
    query = select(*Notification.__table__.c).where(
        Notification.calendar_id == bindparam("calendar_id"),
        Notification.deleted == bindparam("deleted"),
    )
    if is_active:
        query = query.where(Notification.is_active == bindparam("is_active"))
    return Query(
        query.order_by(Notification.date_added, Notification.batch_index, Notification.id)
        .limit(bindparam("limit"))
        .offset(bindparam("skip"))
    )


#: :func:`page_of_calendar` as columns: parameters ``calendar_id``, ``deleted``, ``limit``,
#: ``skip`` (and ``is_active`` for the second).
PAGE = _page_query(is_active=False)
PAGE_BY_ACTIVE = _page_query(is_active=True)
#: One rule of a calendar, as columns: parameters ``calendar_id``, ``notification_id``.
ONE = Query(
    select(*Notification.__table__.c).where(
        Notification.id == bindparam("notification_id"),
        Notification.calendar_id == bindparam("calendar_id"),
    )
)


async def list_for_calendar(
    session: AsyncSession,
    calendar_id: str,
    *,
    is_active: bool | None,
    deleted: bool,
    limit: int,
    skip: int,
) -> Sequence[Notification]:
    query = page_of_calendar(
        calendar_id, is_active=is_active, deleted=deleted, limit=limit, skip=skip
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
    session: AsyncSession, location_id: str, template_ids: Collection[str], *, lock: bool = True
) -> dict[str, str]:
    if not template_ids:
        return {}
    query = select(Template.id, Template.type).where(
        Template.location_id == location_id,
        Template.id.in_(template_ids),
        Template.deleted.is_(False),
    )
    if lock:
        # Shared lock: a template cannot be deleted or change type while a rule that uses
        # it is being saved (PostgreSQL; SQLite serialises writers anyway).
        query = query.with_for_update(read=True)
    rows = await session.execute(query)
    return {row.id: row.type for row in rows}


async def template_sources(
    session: AsyncSession, location_id: str, template_ids: Collection[str]
) -> dict[str, tuple[str, str]]:
    """(subject, html or body) of each template of the location that is not deleted, as
    the dispatcher renders them."""
    if not template_ids:
        return {}
    rows = await session.scalars(
        select(Template).where(
            Template.location_id == location_id,
            Template.id.in_(template_ids),
            Template.deleted.is_(False),
        )
    )
    return {t.id: (t.subject, t.html or t.body) for t in rows}
