"""The calendar routes the notification API builds on."""

from __future__ import annotations

import httpx
import pytest

from tests.factories import Tenant


async def test_create_and_get(client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await client.post(
        "/calendars/",
        json={
            "locationId": tenant.location_id,
            "name": "Consultations",
            "description": "First visit",
            "slotDuration": 1,
            "slotDurationUnit": "hours",
            "teamMembers": [{"userId": tenant.user_id, "priority": 1, "isPrimary": True}],
            "eventColor": "#039be5",
            "notAField": "dropped",
        },
        headers=tenant.headers(),
    )
    assert response.status_code == 200, response.text
    calendar = response.json()["calendar"]
    assert len(calendar["id"]) == 20
    assert calendar["locationId"] == tenant.location_id
    assert calendar["slotDuration"] == 1 and calendar["slotDurationUnit"] == "hours"
    assert calendar["teamMembers"] == [{"userId": tenant.user_id, "priority": 1, "isPrimary": True}]
    assert calendar["eventColor"] == "#039be5"
    assert "notAField" not in calendar
    assert calendar["isActive"] is True

    fetched = await client.get(f"/calendars/{calendar['id']}", headers=tenant.headers())
    assert fetched.json() == {"calendar": calendar}

    listed = await client.get(
        "/calendars/", params={"locationId": tenant.location_id}, headers=tenant.headers()
    )
    assert calendar["id"] in [c["id"] for c in listed.json()["calendars"]]


async def test_defaults(client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await client.post(
        "/calendars", json={"locationId": tenant.location_id, "name": "x"}, headers=tenant.headers()
    )
    calendar = response.json()["calendar"]
    assert calendar["slotDuration"] == 30 and calendar["slotDurationUnit"] == "mins"
    assert calendar["teamMembers"] == [] and calendar["description"] == ""


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x"}, "locationId"),
        ({"locationId": "L"}, "name"),
        ({"name": ""}, "name"),
        ({"name": 5}, "name"),
        ({"name": "x", "slotDuration": 0}, "slotDuration"),
        ({"name": "x", "slotDuration": "30"}, "slotDuration"),
        ({"name": "x", "slotDurationUnit": "days"}, "slotDurationUnit"),
        (
            {"name": "x", "teamMembers": [{"userId": "AAAAAAAAAAAAAAAAAAAA"}]},
            "teamMembers[0].userId",
        ),
        ({"name": "x", "teamMembers": [{}]}, "teamMembers[0].userId"),
        ({"name": "x", "eventColor": "a\u0000b"}, "eventColor"),
        ({"name": "x", "isActive": "yes"}, "isActive"),
    ],
)
async def test_invalid_calendars(
    client: httpx.AsyncClient, tenant: Tenant, body: dict[str, object], field: str
) -> None:
    body = (
        {"locationId": tenant.location_id, **body}
        if "locationId" not in body and field != "locationId"
        else body
    )
    response = await client.post("/calendars/", json=body, headers=tenant.headers())
    assert response.status_code == 400, response.text
    assert field in [e["field"] for e in response.json()["errors"]]


async def test_update(client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await client.put(
        f"/calendars/{tenant.calendar_id}",
        json={"name": "Renamed", "autoConfirm": False},
        headers=tenant.headers(),
    )
    assert response.status_code == 200
    assert response.json()["calendar"]["name"] == "Renamed"
    assert response.json()["calendar"]["autoConfirm"] is False


async def test_unknown_calendar(client: httpx.AsyncClient, tenant: Tenant) -> None:
    for path in ("/calendars/AAAAAAAAAAAAAAAAAAAA", "/calendars/x"):
        response = await client.get(path, headers=tenant.headers())
        assert response.status_code == 404
        assert response.json()["message"] == "Calendar not found"
