"""SQL for notification rules and the rows their validation looks up."""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Collection
from enum import Enum
from typing import Any, cast

from sqlalchemy import bindparam, insert, select, update

from calnotify.db.statements import Statement, table
from calnotify.db.tx import Reader
from calnotify.ids import new_id
from calnotify.models import Location, Notification, Template, User
from calnotify.notifications.rules import NotificationDraft


def _page_query(*, is_active: bool, convert: bool = False) -> Statement:
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
        convert=convert,
    )


#: :func:`page_of_calendar` as driver rows (see :mod:`calnotify.notifications.wire`):
#: parameters ``calendar_id``, ``deleted``, ``limit``,
#: ``skip`` (and ``is_active`` for the second).
PAGE = _page_query(is_active=False)
PAGE_BY_ACTIVE = _page_query(is_active=True)
#: :data:`PAGE` with its columns converted (for a page of the console).
PAGE_CONVERTED = _page_query(is_active=False, convert=True)
#: One rule of a calendar, as a driver row: parameters ``calendar_id``, ``notification_id``.
ONE = Statement(
    select(*Notification.__table__.c).where(
        Notification.id == bindparam("notification_id"),
        Notification.calendar_id == bindparam("calendar_id"),
    ),
    convert=False,
)


#: One rule of a calendar, its columns converted: ``calendar_id``, ``notification_id``.
RULE = Statement(
    select(*Notification.__table__.c).where(
        Notification.id == bindparam("notification_id"),
        Notification.calendar_id == bindparam("calendar_id"),
    )
)
#: The users of the location among ``ids`` that are not deleted: ``ids``, ``location_id``.
USERS_IN_LOCATION = Statement(
    select(User.id).where(
        User.id.in_(bindparam("ids", expanding=True)),
        User.location_id == bindparam("location_id"),
        User.deleted.is_(False),
    )
)

#: The location's country, which phone numbers without ``+`` are read in: ``location_id``.
LOCATION_COUNTRY = Statement(
    select(Location.country).where(Location.id == bindparam("location_id"))
)


def _templates(*, lock: bool) -> Statement:
    query = select(Template.id, Template.type).where(
        Template.id.in_(bindparam("ids", expanding=True)),
        Template.location_id == bindparam("location_id"),
        Template.deleted.is_(False),
    )
    # Shared lock: a template cannot be deleted or change type while a rule that uses it
    # is being saved (PostgreSQL; SQLite serialises writers anyway).
    return Statement(query.with_for_update(read=True) if lock else query)


#: The templates of the location among ``ids`` that are not deleted, and their types.
TEMPLATES = _templates(lock=False)
TEMPLATES_LOCKED = _templates(lock=True)
_SOURCES = Statement(
    select(Template.id, Template.subject, Template.html, Template.body).where(
        Template.id.in_(bindparam("ids", expanding=True)),
        Template.location_id == bindparam("location_id"),
        Template.deleted.is_(False),
    )
)

_COLUMNS = tuple(c.key for c in Notification.__table__.c)
_ENUM_COLUMNS = ("receiver_type", "channel", "notification_type")
#: A new rule row, every column given (:func:`new_rule`).
INSERT = Statement(insert(Notification))
#: A rule as its columns, as :data:`INSERT` wrote it.
RuleRow: Any = cast(Any, namedtuple("RuleRow", _COLUMNS))


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


#: A rule's columns written back: every column but the id, ``b_id``.
UPDATE = Statement(
    update(table(Notification))
    .where(Notification.id == bindparam("b_id"))
    .values({name: bindparam(name) for name in _COLUMNS if name != "id"})
)


def columns_of(draft: NotificationDraft) -> dict[str, Any]:
    """A draft's columns as stored (enums as their text)."""
    values = draft.as_columns()
    for name in _ENUM_COLUMNS:
        if isinstance(member := values.get(name), Enum):
            values[name] = member.value
    return values


async def template_sources(
    reader: Reader, location_id: str, template_ids: Collection[str]
) -> dict[str, tuple[str, str]]:
    """(subject, html or body) of each template of the location that is not deleted, as
    messages are composed from them."""
    if not template_ids:
        return {}
    [found] = await reader.fetch(
        (_SOURCES, {"ids": sorted(template_ids), "location_id": location_id})
    )
    return {t.id: (t.subject, t.html or t.body) for t in found}
