"""The real thing: ``calnotify`` commands and ``calnotify serve`` in processes of their own,
driven by HighLevel's official Python SDK with only its base URL changed."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from highlevel import GHLError, HighLevel

from calnotify.auth.tokens import PRINCIPAL_SECONDS
from tests.processes import Server, calnotify
from tests.spec import assert_conforms


def sdk_client(base_url: str, token: str) -> HighLevel:
    client_class = type("CalnotifyHighLevel", (HighLevel,), {"BASE_URL": base_url})
    client: HighLevel = client_class(private_integration_token=token)
    return client


async def test_highlevel_sdk_against_calnotify_serve(server: Server) -> None:
    location = calnotify(
        server.database_url,
        "locations",
        "create",
        "--name",
        "Acme Dental",
        "--email",
        "front@example.com",
        "--timezone",
        "America/Chicago",
    )
    admin = calnotify(
        server.database_url,
        "users",
        "create",
        "--location",
        str(location["id"]),
        "--email",
        "ann@example.com",
        "--first-name",
        "Ann",
        "--role",
        "admin",
    )
    issued = calnotify(server.database_url, "tokens", "create", "--location", str(location["id"]))
    token = str(issued["token"])
    assert token.startswith("cn_")

    ghl = sdk_client(server.base_url, token)
    try:
        calendar = await ghl.calendars.create_calendar(
            {"locationId": location["id"], "name": "Cleanings", "slotDuration": 45}
        )
        calendar_id = calendar["calendar"]["id"]
        assert calendar["calendar"]["slotDuration"] == 45

        created = await ghl.calendars.create_event_notification(
            calendar_id,
            [
                {
                    "receiverType": "contact",
                    "channel": "email",
                    "notificationType": "booked",
                    "subject": "See you {{contact.first_name}}",
                    "body": None,
                },
                {
                    "receiverType": "assignedUser",
                    "channel": "sms",
                    "notificationType": "reminder",
                    "beforeTime": [{"timeOffset": 1, "unit": "hours"}],
                },
                {
                    "receiverType": "business",
                    "channel": "inApp",
                    "notificationType": "cancellation",
                    "selectedUsers": [admin["id"]],
                },
            ],
        )
        assert [n["notificationType"] for n in created] == ["booked", "reminder", "cancellation"]
        first = created[0]["_id"]

        page = await ghl.calendars.get_event_notification(
            calendar_id, is_active=True, deleted=False, limit=2.0, skip=1.0
        )
        assert [n["_id"] for n in page] == [created[1]["_id"], created[2]["_id"]]

        one = await ghl.calendars.find_event_notification(calendar_id, first)
        assert one == created[0]

        updated = await ghl.calendars.update_event_notification(
            calendar_id, first, {"isActive": False, "subject": "Booked!"}
        )
        assert updated == {"message": "Notification updated successfully"}
        inactive = await ghl.calendars.get_event_notification(calendar_id, is_active=False)
        assert [(n["_id"], n["subject"]) for n in inactive] == [(first, "Booked!")]

        deleted = await ghl.calendars.delete_event_notification(calendar_id, first)
        assert deleted == {"message": "Notification deleted successfully"}
        remaining = await ghl.calendars.get_event_notification(calendar_id)
        assert first not in [n["_id"] for n in remaining]
        gone = await ghl.calendars.get_event_notification(calendar_id, deleted=True)
        assert [n["_id"] for n in gone] == [first]

        with pytest.raises(GHLError) as bad:
            await ghl.calendars.create_event_notification(
                calendar_id,
                [{"receiverType": "guest", "channel": "sms", "notificationType": "booked"}],
            )
        assert bad.value.status_code == 400
        assert "[0].receiverType" in bad.value.message

        with pytest.raises(GHLError) as missing:
            await ghl.calendars.find_event_notification(calendar_id, "AAAAAAAAAAAAAAAAAAAA")
        assert missing.value.status_code == 404
    finally:
        await ghl.close()

    # The raw wire, as the SDK sent it (Version: v3), matches HighLevel's v3 spec.
    async with httpx.AsyncClient(base_url=server.base_url) as raw:
        response = await raw.get(
            f"/calendars/{calendar_id}/notifications",
            headers={"Authorization": f"Bearer {token}", "Version": "v3"},
        )
        assert_conforms("get-event-notification", response, "v3")

    calnotify(server.database_url, "tokens", "revoke", str(issued["id"]))
    # The server trusts a token it resolved for a second (PRINCIPAL_SECONDS); a revocation
    # made by another process is seen once that second is over.
    await asyncio.sleep(PRINCIPAL_SECONDS)
    ghl = sdk_client(server.base_url, token)
    try:
        with pytest.raises(GHLError) as revoked:
            await ghl.calendars.get_event_notification(calendar_id)
        assert revoked.value.status_code == 401
        assert revoked.value.message == "Invalid token: access token is invalid"
    finally:
        await ghl.close()


async def test_highlevel_sdk_books_and_changes_appointments(server: Server) -> None:
    location = calnotify(
        server.database_url,
        "locations",
        "create",
        "--name",
        "Acme Dental",
        "--timezone",
        "America/New_York",
    )
    token = str(
        calnotify(server.database_url, "tokens", "create", "--location", str(location["id"]))[
            "token"
        ]
    )
    ghl = sdk_client(server.base_url, token)
    try:
        user = await ghl.users.create_user(
            {
                "companyId": "none",
                "firstName": "Amy",
                "lastName": "Santiago",
                "email": "amy@example.com",
                "password": "unused",
                "type": "account",
                "role": "user",
                "locationIds": [location["id"]],
                "phone": "+14155550111",
            }
        )
        # HighLevel's SDK sends PUT /users/{userId} without the id; options fix the URL.
        renamed = await ghl.users.update_user(
            {"firstName": "Amelia"}, options={"url": f"/users/{user['id']}"}
        )
        assert renamed["firstName"] == "Amelia"
        contact = (
            await ghl.contacts.create_contact(
                {
                    "locationId": location["id"],
                    "firstName": "Rosa",
                    "email": "rosa@example.com",
                    "phone": "+14155550123",
                    "timezone": "America/Los_Angeles",
                }
            )
        )["contact"]
        fetched = await ghl.contacts.get_contact(contact["id"])
        assert fetched["contact"]["timezone"] == "America/Los_Angeles"
        calendar = (
            await ghl.calendars.create_calendar(
                {
                    "locationId": location["id"],
                    "name": "Cleanings",
                    "teamMembers": [{"userId": user["id"], "isPrimary": True}],
                }
            )
        )["calendar"]

        booked = await ghl.calendars.create_appointment(
            {
                "calendarId": calendar["id"],
                "locationId": location["id"],
                "contactId": contact["id"],
                "startTime": "2030-05-06T14:00:00Z",
                "title": "Cleaning",
            }
        )
        assert booked["startTime"] == "2030-05-06T10:00:00-04:00"
        assert booked["assignedUserId"] == user["id"]
        event_id = booked["id"]

        confirmed = await ghl.calendars.edit_appointment(
            event_id, {"appointmentStatus": "confirmed"}
        )
        assert confirmed["appointmentStatus"] == "confirmed"
        moved = await ghl.calendars.edit_appointment(
            event_id, {"startTime": "2030-05-07T14:00:00Z", "endTime": "2030-05-07T15:00:00Z"}
        )
        assert moved["endTime"] == "2030-05-07T11:00:00-04:00"
        event = (await ghl.calendars.get_appointment(event_id))["event"]
        assert event["appointmentStatus"] == "confirmed"

        events = await ghl.calendars.get_calendar_events(
            location["id"], "1904000000000", "1904999999999", calendar_id=calendar["id"]
        )
        assert [e["id"] for e in events["events"]] == [event_id]

        cancelled = await ghl.calendars.edit_appointment(
            event_id, {"appointmentStatus": "cancelled"}
        )
        assert cancelled["appointmentStatus"] == "cancelled"
        assert await ghl.calendars.delete_event(event_id, {}) == {"succeeded": True}
        with pytest.raises(GHLError) as gone:
            await ghl.calendars.get_appointment(event_id)
        assert gone.value.status_code == 404

        place = await ghl.locations.get_location(location["id"])
        assert place["location"]["timezone"] == "America/New_York"
        await ghl.contacts.delete_contact(contact["id"])
        deleted = await ghl.users.delete_user(options={"url": f"/users/{user['id']}"})
        assert deleted["succeded"] is True
    finally:
        await ghl.close()
