"""A rule's wire form written straight from its columns, for the answers read most.

:class:`~calnotify.notifications.schemas.NotificationOut` documents the object; building
one per row and validating it cost more than reading the rows. Here a row (an ORM
entity, a converted column row, or the driver's own values: SQLite's JSON text, 0/1 and
``YYYY-MM-DD HH:MM:SS.ffffff`` text) becomes plain JSON values, written by pydantic's own
serialiser, so the bytes are the same. tests/test_wire.py holds the two to each other.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from pydantic import TypeAdapter

from calnotify.api.types import format_timestamp

_dump = TypeAdapter(Any).dump_json


def _list(value: Any) -> Any:
    if isinstance(value, str):
        return [] if value == "[]" else json.loads(value)
    return value


def _timestamp(value: Any) -> str:
    if isinstance(value, str):
        # SQLite, as SQLAlchemy stores a naive UTC datetime: "2026-11-24 10:50:03.123456".
        if len(value) == 26 and value[10] == " " and value[19] == ".":
            return f"{value[:10]}T{value[11:23]}Z"
        value = datetime.fromisoformat(value)
    return format_timestamp(value if value.tzinfo is not None else value.replace(tzinfo=UTC))


def _schedule(value: Any) -> list[dict[str, Any]]:
    return [{"timeOffset": e.get("timeOffset"), "unit": e.get("unit")} for e in _list(value)]


def rule(row: Any) -> dict[str, Any]:
    """The wire object of a rule (NotificationOut's fields, in its order)."""
    phones = _list(row.additional_phone_numbers)
    return {
        "_id": row.id,
        "receiverType": row.receiver_type,
        "additionalEmailIds": _list(row.additional_email_ids),
        "additionalPhoneNumbers": phones,
        "channel": row.channel,
        "notificationType": row.notification_type,
        "isActive": bool(row.is_active),
        "additionalWhatsappNumbers": phones if row.channel == "whatsapp" else [],
        "templateId": row.template_id,
        "body": row.body,
        "subject": row.subject,
        "afterTime": _schedule(row.after_time),
        "beforeTime": _schedule(row.before_time),
        "selectedUsers": _list(row.selected_users),
        "deleted": bool(row.deleted),
        "calendarId": row.calendar_id,
        "locationId": row.location_id,
        "fromAddress": row.from_address,
        "fromName": row.from_name,
        "fromNumber": row.from_number,
        "dateAdded": _timestamp(row.date_added),
        "dateUpdated": _timestamp(row.date_updated),
    }


def rules_json(rows: Iterable[Any]) -> bytes:
    """A JSON array of rules, as ``TypeAdapter(list[NotificationOut]).dump_json`` writes it."""
    return _dump([rule(r) for r in rows])


def rule_json(row: Any) -> bytes:
    return _dump(rule(row))
