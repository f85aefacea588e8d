"""SQL for notification rules and the rows their validation looks up."""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Collection, Sequence
from enum import Enum
from typing import Any

from sqlalchemy import Select, bindparam, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from calnotify.db.statements import Statement
from calnotify.ids import new_id
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


def _page_query(*, is_active: bool) -> Statement:
    query = select(*Notification.__table__.c).where(
        Notification.calendar_id == bindparam("calendar_id"),
        Notification.deleted == bindparam("deleted"),
    )
    if is_active:
        query = query.where(Notification.is_active == bindparam("is_active"))
    return Statement(
        query.order_by(Notification.date_added, Notification.batch_index, Notification.id)
        .limit(bindparam("limit"))
        .offset(bindparam("skip")),
        convert=False,
    )


#: :func:`page_of_calendar` as driver rows (see :mod:`calnotify.notifications.wire`):
#: parameters ``calendar_id``, ``deleted``, ``limit``,
#: ``skip`` (and ``is_active`` for the second).
PAGE = _page_query(is_active=False)
PAGE_BY_ACTIVE = _page_query(is_active=True)
#: One rule of a calendar, as a driver row: parameters ``calendar_id``, ``notification_id``.
ONE = Statement(
    select(*Notification.__table__.c).where(
        Notification.id == bindparam("notification_id"),
        Notification.calendar_id == bindparam("calendar_id"),
    ),
    convert=False,
)


#: A user of the location that is not deleted: parameters ``user_id``, ``location_id``.
USER_IN_LOCATION = Statement(
    select(User.id).where(
        User.id == bindparam("user_id"),
        User.location_id == bindparam("location_id"),
        User.deleted.is_(False),
    )
)
#: A template of the location that is not deleted, and its type, locked against a delete or
#: a change of type until the rule that uses it is saved (PostgreSQL; SQLite serialises
#: writers anyway): parameters ``template_id``, ``location_id``.
TEMPLATE_IN_LOCATION = Statement(
    select(Template.id, Template.type)
    .where(
        Template.id == bindparam("template_id"),
        Template.location_id == bindparam("location_id"),
        Template.deleted.is_(False),
    )
    .with_for_update(read=True)
)

_COLUMNS = tuple(c.key for c in Notification.__table__.c)
_ENUM_COLUMNS = ("receiver_type", "channel", "notification_type")
#: A new rule row, every column given (:func:`new_rule`).
INSERT = Statement(insert(Notification))
#: A rule as its columns, as :data:`INSERT` wrote it.
RuleRow = namedtuple("RuleRow", _COLUMNS)  # type: ignore[misc]


def new_rule(values: dict[str, Any]) -> dict[str, Any]:
    """The values of a new rule row: ``values`` (plain values) and, for the columns they
    leave out, a new id and the first version."""
    row = {"id": new_id(), "version": 1, "planned_version": 1, **values}
    for name in _ENUM_COLUMNS:  # as their text: what the driver stores and a read gives
        if isinstance(member := row.get(name), Enum):
            row[name] = member.value
    if len(row) != len(_COLUMNS):
        missing = sorted(set(_COLUMNS) - set(row))
        raise ValueError(f"a new rule needs {missing}; unknown: {sorted(set(row) - set(_COLUMNS))}")
    return row


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
