"""Answers of the contact, user, location and appointment operations match HighLevel's
official specs."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx

from tests.factories import Tenant
from tests.spec import assert_conforms


async def test_contacts_match_the_spec(client: httpx.AsyncClient, tenant: Tenant) -> None:
    headers = tenant.headers(version="2021-07-28")
    created = await client.post(
        "/contacts/",
        json={
            "locationId": tenant.location_id,
            "firstName": "Rosa",
            "email": "r@example.com",
            "dndSettings": {"Email": {"status": "inactive"}},
            "tags": ["a"],
        },
        headers=headers,
    )
    assert_conforms("create-contact", created, "contacts")
    contact_id = created.json()["contact"]["id"]
    assert_conforms(
        "get-contact", await client.get(f"/contacts/{contact_id}", headers=headers), "contacts"
    )
    assert_conforms(
        "update-contact",
        await client.put(f"/contacts/{contact_id}", json={"dnd": True}, headers=headers),
        "contacts",
    )
    bad = await client.post(
        "/contacts/", json={"locationId": tenant.location_id, "email": "x"}, headers=headers
    )
    assert bad.status_code == 400
    assert_conforms("create-contact", bad, "contacts")
    assert_conforms(
        "delete-contact",
        await client.delete(f"/contacts/{contact_id}", headers=headers),
        "contacts",
    )


async def test_users_match_the_spec(client: httpx.AsyncClient, tenant: Tenant) -> None:
    headers = tenant.headers(version="2021-07-28")
    created = await client.post(
        "/users/",
        json={
            "firstName": "Amy",
            "lastName": "S",
            "email": "amy@example.com",
            "role": "user",
            "type": "account",
            "locationIds": [tenant.location_id],
        },
        headers=headers,
    )
    assert_conforms("create-user", created, "users")
    user_id = created.json()["id"]
    assert_conforms("get-user", await client.get(f"/users/{user_id}", headers=headers), "users")
    assert_conforms(
        "get-user-by-location",
        await client.get("/users/", params={"locationId": tenant.location_id}, headers=headers),
        "users",
    )
    assert_conforms(
        "update-user",
        await client.put(f"/users/{user_id}", json={"firstName": "A"}, headers=headers),
        "users",
    )
    assert_conforms(
        "delete-user", await client.delete(f"/users/{user_id}", headers=headers), "users"
    )


async def test_locations_match_the_spec(client: httpx.AsyncClient, tenant: Tenant) -> None:
    headers = tenant.headers(version="2021-07-28")
    assert_conforms(
        "get-location",
        await client.get(f"/locations/{tenant.location_id}", headers=headers),
        "locations",
    )
    assert_conforms(
        "put-location",
        await client.put(f"/locations/{tenant.location_id}", json={"name": "New"}, headers=headers),
        "locations",
    )


async def test_appointments_match_the_spec(client: httpx.AsyncClient, tenant: Tenant) -> None:
    contact = await tenant.add_contact()
    headers = tenant.headers()
    start = datetime(2030, 1, 2, 15, 0, tzinfo=UTC)
    created = await client.post(
        "/calendars/events/appointments",
        json={
            "calendarId": tenant.calendar_id,
            "locationId": tenant.location_id,
            "contactId": contact,
            "startTime": start.isoformat(),
            "title": "Visit",
        },
        headers=headers,
    )
    assert_conforms("create-appointment", created)
    event_id = created.json()["id"]
    assert_conforms(
        "edit-appointment",
        await client.put(
            f"/calendars/events/appointments/{event_id}",
            json={"appointmentStatus": "confirmed"},
            headers=headers,
        ),
    )
    assert_conforms(
        "get-appointment",
        await client.get(f"/calendars/events/appointments/{event_id}", headers=headers),
    )
    ms = int(start.timestamp() * 1000)
    assert_conforms(
        "get-calendar-events",
        await client.get(
            "/calendars/events",
            params={
                "locationId": tenant.location_id,
                "calendarId": tenant.calendar_id,
                "startTime": ms - 1,
                "endTime": ms + 3_600_000,
            },
            headers=headers,
        ),
    )
    deleted = await client.request(
        "DELETE", f"/calendars/events/{event_id}", json={}, headers=headers
    )
    assert deleted.status_code == 201
    assert_conforms("delete-event", deleted)
    assert_conforms(
        "get-calendar", await client.get(f"/calendars/{tenant.calendar_id}", headers=headers)
    )
    assert_conforms(
        "get-calendars",
        await client.get("/calendars/", params={"locationId": tenant.location_id}, headers=headers),
    )
    assert_conforms(
        "update-calendar",
        await client.put(f"/calendars/{tenant.calendar_id}", json={"name": "x"}, headers=headers),
    )
    assert_conforms(
        "delete-calendar", await client.delete(f"/calendars/{tenant.calendar_id}", headers=headers)
    )
