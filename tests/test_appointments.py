"""Appointments (HighLevel's Calendar Events) and the domain events every change records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from calnotify.db.engine import Database
from calnotify.models import AppointmentEvent
from tests.factories import Tenant, create_notifications, notification
from tests.spec import assert_conforms

BOOK = "/calendars/events/appointments"


def iso(dt: datetime) -> str:
    return dt.isoformat()


START = datetime(2030, 3, 4, 15, 0, tzinfo=UTC)  # 10:00 in New York (EST)


async def book(
    client: httpx.AsyncClient, tenant: Tenant, contact_id: str, **fields: Any
) -> dict[str, Any]:
    body = {
        "calendarId": tenant.calendar_id,
        "locationId": tenant.location_id,
        "contactId": contact_id,
        "startTime": iso(START),
        **fields,
    }
    response = await client.post(BOOK, json=body, headers=tenant.headers())
    assert response.status_code == 200, response.text
    created: dict[str, Any] = response.json()
    return created


async def events_of(db: Database, appointment_id: str) -> list[AppointmentEvent]:
    async with db.session(write=False) as session:
        rows = await session.scalars(
            select(AppointmentEvent)
            .where(AppointmentEvent.appointment_id == appointment_id)
            .order_by(AppointmentEvent.id)
        )
        return list(rows)


async def test_book_with_defaults(client: httpx.AsyncClient, tenant: Tenant) -> None:
    contact = await tenant.add_contact()
    created = await book(client, tenant, contact, title="Cleaning")
    assert created["appointmentStatus"] == "new"
    assert created["toNotify"] is True
    # Shown in the location's zone (America/New_York), with its offset.
    assert created["startTime"] == "2030-03-04T10:00:00-05:00"
    # endTime defaults to start + the calendar's slot duration (30 minutes).
    assert created["endTime"] == "2030-03-04T10:30:00-05:00"
    assert created["assignedUserId"] == ""
    assert created["isRecurring"] is False
    assert_conforms(
        "create-appointment",
        httpx.Response(200, json=created, headers={"content-type": "application/json"}),
    )

    fetched = await client.get(f"{BOOK}/{created['id']}", headers=tenant.headers())
    assert fetched.status_code == 200
    event = fetched.json()["event"]
    assert event["id"] == created["id"]
    assert event["title"] == "Cleaning"
    assert event["startTime"] == created["startTime"]


async def test_times_with_any_offset(client: httpx.AsyncClient, tenant: Tenant) -> None:
    contact = await tenant.add_contact()
    created = await book(
        client,
        tenant,
        contact,
        startTime="2030-03-04T20:30:00+05:30",
        endTime="2030-03-04T15:45:00Z",
    )
    assert created["startTime"] == "2030-03-04T10:00:00-05:00"
    assert created["endTime"] == "2030-03-04T10:45:00-05:00"
    # Without an offset, the time is read in the location's zone.
    local = await book(client, tenant, contact, startTime="2030-07-01T09:00:00")
    assert local["startTime"] == "2030-07-01T09:00:00-04:00"


async def test_slot_duration_and_team_member(client: httpx.AsyncClient, tenant: Tenant) -> None:
    calendar = await client.post(
        "/calendars/",
        json={
            "locationId": tenant.location_id,
            "name": "Long",
            "slotDuration": 2,
            "slotDurationUnit": "hours",
            "teamMembers": [
                {"userId": tenant.admin_id},
                {"userId": tenant.user_id, "isPrimary": True},
            ],
        },
        headers=tenant.headers(),
    )
    calendar_id = calendar.json()["calendar"]["id"]
    contact = await tenant.add_contact()
    created = await book(client, tenant, contact, calendarId=calendar_id)
    assert created["endTime"] == "2030-03-04T12:00:00-05:00"
    assert created["assignedUserId"] == tenant.user_id


async def test_guests_and_extensions(client: httpx.AsyncClient, tenant: Tenant) -> None:
    contact = await tenant.add_contact()
    created = await book(
        client,
        tenant,
        contact,
        appointmentStatus="confirmed",
        toNotify=False,
        assignedUserId=tenant.admin_id,
        guests=[{"email": "g@example.com", "name": "Gina"}, {"phone": "+14155550155"}],
        rrule="RRULE:FREQ=WEEKLY;COUNT=4",
        meetingLocationType="zoom",
        address="https://zoom.example/1",
        ignoreFreeSlotValidation=True,
    )
    assert created["appointmentStatus"] == "confirmed"
    assert created["toNotify"] is False
    assert created["guests"] == [
        {"email": "g@example.com", "name": "Gina", "phone": ""},
        {"email": "", "name": "", "phone": "+14155550155"},
    ]
    assert created["isRecurring"] is True
    assert created["rrule"] == "RRULE:FREQ=WEEKLY;COUNT=4"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"startTime": "tomorrow"}, "startTime"),
        ({"startTime": "2030-02-30T10:00:00Z"}, "startTime"),
        ({"endTime": "2030-03-04T14:00:00Z"}, "endTime"),  # before start
        ({"endTime": "2030-03-04T15:00:00Z"}, "endTime"),  # equal to start
        ({"endTime": "2030-06-04T15:00:00Z"}, "endTime"),  # over 31 days
        ({"calendarId": "AAAAAAAAAAAAAAAAAAAA"}, "calendarId"),
        ({"contactId": "AAAAAAAAAAAAAAAAAAAA"}, "contactId"),
        ({"assignedUserId": "AAAAAAAAAAAAAAAAAAAA"}, "assignedUserId"),
        ({"appointmentStatus": "maybe"}, "appointmentStatus"),
        ({"toNotify": "false"}, "toNotify"),
        ({"guests": [{"email": "bad"}]}, "guests[0].email"),
        ({"guests": [{"name": "nobody"}]}, "guests[0]"),
        ({"meetingLocationType": "teleport"}, "meetingLocationType"),
        ({"startTime": None}, "startTime"),
    ],
)
async def test_invalid_bookings(
    client: httpx.AsyncClient, tenant: Tenant, fields: dict[str, Any], field: str
) -> None:
    contact = await tenant.add_contact()
    body = {
        "calendarId": tenant.calendar_id,
        "locationId": tenant.location_id,
        "contactId": contact,
        "startTime": iso(START),
        **fields,
    }
    response = await client.post(BOOK, json=body, headers=tenant.headers())
    assert response.status_code == 400, response.text
    assert field in [e["field"] for e in response.json()["errors"]]


async def test_bookings_use_only_this_locations_rows(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    mine = await tenant.add_contact()
    theirs = await other_tenant.add_contact()
    base = {
        "calendarId": tenant.calendar_id,
        "locationId": tenant.location_id,
        "contactId": mine,
        "startTime": iso(START),
    }
    for override, field in (
        ({"contactId": theirs}, "contactId"),
        ({"calendarId": other_tenant.calendar_id}, "calendarId"),
        ({"assignedUserId": other_tenant.user_id}, "assignedUserId"),
    ):
        response = await client.post(BOOK, json={**base, **override}, headers=tenant.headers())
        assert response.status_code == 400
        assert response.json()["errors"][0]["field"] == field
    response = await client.post(
        BOOK, json={**base, "locationId": other_tenant.location_id}, headers=tenant.headers()
    )
    assert response.status_code == 403


async def test_appointments_are_isolated(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    theirs = await book(client, other_tenant, await other_tenant.add_contact())
    attempts = [
        ("GET", f"{BOOK}/{theirs['id']}", {}),
        ("PUT", f"{BOOK}/{theirs['id']}", {"json": {"appointmentStatus": "cancelled"}}),
        ("DELETE", f"/calendars/events/{theirs['id']}", {"json": {}}),
    ]
    for method, path, kwargs in attempts:
        response = await client.request(method, path, headers=tenant.headers(), **kwargs)
        assert response.status_code == 404, (method, response.text)
    still = await client.get(f"{BOOK}/{theirs['id']}", headers=other_tenant.headers())
    assert still.json()["event"]["appointmentStatus"] == "new"
    listed = await client.get(
        "/calendars/events",
        params={
            "locationId": other_tenant.location_id,
            "calendarId": other_tenant.calendar_id,
            "startTime": 0,
            "endTime": int(START.timestamp() * 1000) + 86_400_000,
        },
        headers=tenant.headers(),
    )
    assert listed.status_code == 403


# --- changes and their domain events --------------------------------------------------------


async def test_creation_records_one_created_event(
    client: httpx.AsyncClient, tenant: Tenant, db: Database
) -> None:
    created = await book(client, tenant, await tenant.add_contact(), toNotify=False)
    [event] = await events_of(db, created["id"])
    assert event.kind == "created"
    assert event.before is None
    assert event.after is not None
    assert event.after["appointmentStatus"] == "new"
    assert event.after["startTime"] == "2030-03-04T15:00:00.000Z"
    assert event.to_notify is False
    assert event.appointment_version == 1


async def test_each_change_records_exactly_its_events(
    client: httpx.AsyncClient, tenant: Tenant, db: Database
) -> None:
    created = await book(client, tenant, await tenant.add_contact())
    url = f"{BOOK}/{created['id']}"

    async def put(body: dict[str, Any]) -> dict[str, Any]:
        response = await client.put(url, json=body, headers=tenant.headers())
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    await put({"appointmentStatus": "confirmed"})
    await put({"appointmentStatus": "confirmed"})  # no change: no event
    moved = await put({"startTime": iso(START + timedelta(hours=2)), "toNotify": False})
    assert moved["endTime"] == "2030-03-04T12:30:00-05:00"  # duration kept
    await put({"title": "Deep clean"})
    await put({"appointmentStatus": "cancelled", "endTime": iso(START + timedelta(hours=3))})
    response = await client.request(
        "DELETE", f"/calendars/events/{created['id']}", json={}, headers=tenant.headers()
    )
    assert response.status_code == 201
    assert response.json() == {"succeeded": True}

    recorded = await events_of(db, created["id"])
    assert [(e.kind, e.appointment_version, e.to_notify) for e in recorded] == [
        ("created", 1, True),
        ("status_changed", 2, True),
        ("rescheduled", 3, False),
        ("updated", 4, True),
        ("status_changed", 5, True),
        ("rescheduled", 5, True),
        ("deleted", 6, False),
    ]
    confirm = recorded[1]
    assert confirm.before is not None and confirm.after is not None
    assert (confirm.before["appointmentStatus"], confirm.after["appointmentStatus"]) == (
        "new",
        "confirmed",
    )
    reschedule = recorded[2]
    assert reschedule.before is not None and reschedule.after is not None
    assert reschedule.before["startTime"] == "2030-03-04T15:00:00.000Z"
    assert reschedule.after["startTime"] == "2030-03-04T17:00:00.000Z"
    assert recorded[-1].after is None
    assert recorded[-1].before is not None
    assert recorded[-1].before["appointmentStatus"] == "cancelled"

    assert (await client.get(url, headers=tenant.headers())).status_code == 404
    # Deleting again is harmless and records nothing.
    again = await client.delete(f"/calendars/events/{created['id']}", headers=tenant.headers())
    assert again.status_code == 201
    assert len(await events_of(db, created["id"])) == len(recorded)


async def test_rejected_change_records_nothing(
    client: httpx.AsyncClient, tenant: Tenant, db: Database
) -> None:
    created = await book(client, tenant, await tenant.add_contact())
    response = await client.put(
        f"{BOOK}/{created['id']}",
        json={"appointmentStatus": "confirmed", "endTime": iso(START - timedelta(hours=1))},
        headers=tenant.headers(),
    )
    assert response.status_code == 400
    assert [e.kind for e in await events_of(db, created["id"])] == ["created"]
    fetched = await client.get(f"{BOOK}/{created['id']}", headers=tenant.headers())
    assert fetched.json()["event"]["appointmentStatus"] == "new"


async def test_list_events(client: httpx.AsyncClient, tenant: Tenant) -> None:
    contact = await tenant.add_contact()
    first = await book(client, tenant, contact, assignedUserId=tenant.user_id)
    second = await book(client, tenant, contact, startTime=iso(START + timedelta(days=1)))
    await book(client, tenant, contact, startTime=iso(START + timedelta(days=10)))
    ms = int(START.timestamp() * 1000)
    params = {"locationId": tenant.location_id, "startTime": ms - 1, "endTime": ms + 2 * 86_400_000}

    by_calendar = await client.get(
        "/calendars/events",
        params={**params, "calendarId": tenant.calendar_id},
        headers=tenant.headers(),
    )
    assert by_calendar.status_code == 200, by_calendar.text
    assert [e["id"] for e in by_calendar.json()["events"]] == [first["id"], second["id"]]

    by_user = await client.get(
        "/calendars/events", params={**params, "userId": tenant.user_id}, headers=tenant.headers()
    )
    assert [e["id"] for e in by_user.json()["events"]] == [first["id"]]

    for bad, field in (
        ({}, "calendarId"),
        ({"calendarId": tenant.calendar_id, "startTime": "soon"}, "startTime"),
        ({"calendarId": tenant.calendar_id, "endTime": params["startTime"]}, "endTime"),
    ):
        response = await client.get(
            "/calendars/events", params={**params, **bad}, headers=tenant.headers()
        )
        assert response.status_code == 400
        assert response.json()["errors"][0]["field"] == field


async def test_deleting_a_calendar_deletes_its_notifications(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    [rule] = await create_notifications(client, tenant, notification())
    response = await client.delete(f"/calendars/{tenant.calendar_id}", headers=tenant.headers())
    assert response.status_code == 200
    assert response.json() == {"success": True}
    assert (
        await client.get(f"/calendars/{tenant.calendar_id}", headers=tenant.headers())
    ).status_code == 404
    async with tenant.db.session(write=False) as session:
        from calnotify.models import Notification

        stored = await session.get(Notification, rule["_id"])
        assert stored is not None
        assert stored.deleted is True
