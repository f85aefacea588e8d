"""The rule answers written from columns (notifications/wire.py) are, byte for byte, what
pydantic writes from the documented model, on both databases."""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import TypeAdapter
from sqlalchemy import select

from calnotify.models import Notification
from calnotify.notifications import repository, wire
from calnotify.notifications.schemas import NotificationOut, ScheduleOut
from tests.factories import Tenant, create_notifications, notification

MANY = TypeAdapter(list[NotificationOut])


def reference(row: Notification) -> NotificationOut:
    """The documented model, validated from the entity (what the answers were built as)."""
    return NotificationOut.model_validate(
        {
            "_id": row.id,
            "receiverType": row.receiver_type,
            "additionalEmailIds": row.additional_email_ids,
            "additionalPhoneNumbers": row.additional_phone_numbers,
            "channel": row.channel,
            "notificationType": row.notification_type,
            "isActive": row.is_active,
            "additionalWhatsappNumbers": (
                row.additional_phone_numbers if row.channel == "whatsapp" else []
            ),
            "templateId": row.template_id,
            "body": row.body,
            "subject": row.subject,
            "afterTime": [ScheduleOut.model_validate(e) for e in row.after_time],
            "beforeTime": [ScheduleOut.model_validate(e) for e in row.before_time],
            "selectedUsers": row.selected_users,
            "deleted": row.deleted,
            "calendarId": row.calendar_id,
            "locationId": row.location_id,
            "fromAddress": row.from_address,
            "fromName": row.from_name,
            "fromNumber": row.from_number,
            "dateAdded": row.date_added,
            "dateUpdated": row.date_updated,
        }
    )


VARIED: list[dict[str, Any]] = [
    notification(),
    notification(
        subject='Zoë says "hi" \\ {{contact.name}} \t\u2028 ✓ 日本',
        body="<p>line\nbreak</p>\r\n\x1f\x7f",
        fromName="Ünïcode & <b>",
        fromAddress="desk@example.com",
        additionalEmailIds=["a@example.com", "b@example.com"],
    ),
    notification(
        channel="whatsapp",
        receiverType="contact",
        notificationType="reminder",
        additionalPhoneNumbers=["+14155550101"],
        beforeTime=[
            {"timeOffset": 1, "unit": "hours"},
            {"timeOffset": 1.5, "unit": "days"},
            {"timeOffset": 0.00001, "unit": "minutes"},
            {"timeOffset": 2.0, "unit": "minutes"},
        ],
    ),
    notification(
        notificationType="followup",
        channel="sms",
        afterTime=[{"timeOffset": 0.3333333333333333, "unit": "hours"}],
        isActive=False,
    ),
]


async def test_rule_answers_match_the_documented_model_byte_for_byte(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    created = await create_notifications(client, tenant, *VARIED)
    async with tenant.db.session(write=False) as session:
        entities = list(
            (
                await session.scalars(
                    select(Notification)
                    .where(Notification.calendar_id == tenant.calendar_id)
                    .order_by(Notification.date_added, Notification.batch_index)
                )
            ).all()
        )
    [calendar_rows, driver_rows] = await tenant.db.fetch(
        (repository.ONE, {"calendar_id": "none", "notification_id": "none"}),
        (
            repository.PAGE,
            {"calendar_id": tenant.calendar_id, "deleted": False, "limit": 100, "skip": 0},
        ),
    )
    assert calendar_rows == []
    expected = MANY.dump_json([reference(e) for e in entities], by_alias=True)

    assert wire.rules_json(driver_rows) == expected
    assert wire.rules_json(entities) == expected
    assert [wire.rule_json(r) for r in driver_rows] == [
        TypeAdapter(NotificationOut).dump_json(reference(e), by_alias=True) for e in entities
    ]

    listed = await client.get(
        f"/calendars/{tenant.calendar_id}/notifications", headers=tenant.headers()
    )
    assert listed.content == expected
    assert [r["_id"] for r in created] == [e.id for e in entities]
    one = await client.get(
        f"/calendars/{tenant.calendar_id}/notifications/{entities[1].id}",
        headers=tenant.headers(),
    )
    assert one.content == TypeAdapter(NotificationOut).dump_json(
        reference(entities[1]), by_alias=True
    )
