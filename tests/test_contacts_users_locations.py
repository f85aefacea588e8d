"""HighLevel-shaped contacts, users and locations (issue: resources)."""

from __future__ import annotations

import httpx
import pytest

from tests.factories import Tenant


async def test_contact_lifecycle(client: httpx.AsyncClient, tenant: Tenant) -> None:
    headers = tenant.headers(version="2021-07-28")
    created = await client.post(
        "/contacts/",
        json={
            "locationId": tenant.location_id,
            "firstName": "Rosa",
            "lastName": "Diaz",
            "email": "Rosa@Example.com",
            "phone": "+14155550123",
            "timezone": "America/Los_Angeles",
            "dnd": False,
            "dndSettings": {"SMS": {"status": "active", "message": "stop"}},
            "tags": ["vip"],
            "gender": "female",
            "customFields": [{"id": "x", "value": "y"}],
            "unknownField": 1,
        },
        headers=headers,
    )
    assert created.status_code == 201, created.text
    contact = created.json()["contact"]
    assert len(contact["id"]) == 20
    assert contact["name"] == "Rosa Diaz"
    assert contact["emailLowerCase"] == "rosa@example.com"
    assert contact["dndSettings"] == {"SMS": {"status": "active", "message": "stop"}}
    assert contact["gender"] == "female"
    assert "unknownField" not in contact

    fetched = await client.get(f"/contacts/{contact['id']}", headers=headers)
    assert fetched.json() == {"contact": contact}

    updated = await client.put(
        f"/contacts/{contact['id']}", json={"dnd": True, "lastName": "Díaz"}, headers=headers
    )
    assert updated.status_code == 200
    assert updated.json()["succeded"] is True
    assert updated.json()["contact"]["dnd"] is True
    assert updated.json()["contact"]["name"] == "Rosa Díaz"
    assert updated.json()["contact"]["email"] == "Rosa@Example.com"

    deleted = await client.delete(f"/contacts/{contact['id']}", headers=headers)
    assert deleted.json() == {"succeded": True}
    assert (await client.get(f"/contacts/{contact['id']}", headers=headers)).status_code == 404


async def test_contact_name_is_split(client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await client.post(
        "/contacts/",
        json={"locationId": tenant.location_id, "name": "Jake Peralta Jr"},
        headers=tenant.headers(),
    )
    contact = response.json()["contact"]
    assert (contact["firstName"], contact["lastName"]) == ("Jake", "Peralta Jr")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "nope"}, "email"),
        ({"phone": "4155550100"}, "phone"),
        ({"timezone": "Nowhere/City"}, "timezone"),
        ({"timezone": "America"}, "timezone"),  # a folder of zones, not a zone
        ({"dnd": "yes"}, "dnd"),
        ({"dndSettings": {"SMS": {"status": "sometimes"}}}, "dndSettings.SMS.status"),
        ({"tags": "vip"}, "tags"),
        ({"firstName": 3}, "firstName"),
    ],
)
async def test_invalid_contacts(
    client: httpx.AsyncClient, tenant: Tenant, body: dict[str, object], field: str
) -> None:
    response = await client.post(
        "/contacts/", json={"locationId": tenant.location_id, **body}, headers=tenant.headers()
    )
    assert response.status_code == 400, response.text
    assert field in [e["field"] for e in response.json()["errors"]]


async def test_contacts_are_isolated(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    theirs = (
        await client.post(
            "/contacts/",
            json={"locationId": other_tenant.location_id, "firstName": "T"},
            headers=other_tenant.headers(),
        )
    ).json()["contact"]
    for method, kwargs in (("GET", {}), ("PUT", {"json": {"firstName": "X"}}), ("DELETE", {})):
        response = await client.request(
            method, f"/contacts/{theirs['id']}", headers=tenant.headers(), **kwargs
        )
        assert response.status_code == 404
    response = await client.post(
        "/contacts/",
        json={"locationId": other_tenant.location_id, "firstName": "X"},
        headers=tenant.headers(),
    )
    assert response.status_code == 403
    still = await client.get(f"/contacts/{theirs['id']}", headers=other_tenant.headers())
    assert still.json()["contact"]["firstName"] == "T"


async def test_contact_scopes(client: httpx.AsyncClient, tenant: Tenant) -> None:
    reader = await tenant.token_with("contacts.readonly")
    response = await client.post(
        "/contacts/",
        json={"locationId": tenant.location_id, "firstName": "x"},
        headers=tenant.headers(reader),
    )
    assert response.status_code == 401


# --- users ---------------------------------------------------------------------------------


async def test_user_lifecycle(client: httpx.AsyncClient, tenant: Tenant) -> None:
    headers = tenant.headers(version="2021-07-28")
    created = await client.post(
        "/users/",
        json={
            "firstName": "Amy",
            "lastName": "Santiago",
            "email": "amy@example.com",
            "phone": "+14155550111",
            "type": "account",
            "role": "admin",
            "locationIds": [tenant.location_id],
            "companyId": "ignored",
            "password": "never stored",
        },
        headers=headers,
    )
    assert created.status_code == 201, created.text
    user = created.json()
    assert user["name"] == "Amy Santiago"
    assert user["roles"] == {
        "type": "account",
        "role": "admin",
        "locationIds": [tenant.location_id],
        "restrictSubAccount": False,
    }
    assert "password" not in created.text

    listed = await client.get(f"/users/?locationId={tenant.location_id}", headers=headers)
    assert user["id"] in [u["id"] for u in listed.json()["users"]]
    assert (await client.get(f"/users/{user['id']}", headers=headers)).json() == user

    updated = await client.put(
        f"/users/{user['id']}", json={"role": "user", "phone": "+14155550112"}, headers=headers
    )
    assert updated.json()["roles"]["role"] == "user"
    assert updated.json()["phone"] == "+14155550112"

    deleted = await client.delete(f"/users/{user['id']}", headers=headers)
    assert deleted.json()["succeded"] is True
    assert (await client.get(f"/users/{user['id']}", headers=headers)).status_code == 404
    listed = await client.get(f"/users/?locationId={tenant.location_id}", headers=headers)
    assert user["id"] not in [u["id"] for u in listed.json()["users"]]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "email"),
        ({"email": "x"}, "email"),
        ({"email": "admin@example.com"}, "email"),  # taken in this location
        ({"email": "new@example.com", "role": "owner"}, "role"),
        ({"email": "new@example.com", "phone": "12"}, "phone"),
    ],
)
async def test_invalid_users(
    client: httpx.AsyncClient, tenant: Tenant, body: dict[str, object], field: str
) -> None:
    response = await client.post("/users/", json=body, headers=tenant.headers())
    assert response.status_code == 400, response.text
    assert field in [e["field"] for e in response.json()["errors"]]


async def test_users_are_isolated(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    for method, kwargs in (("GET", {}), ("PUT", {"json": {"firstName": "X"}}), ("DELETE", {})):
        response = await client.request(
            method, f"/users/{other_tenant.user_id}", headers=tenant.headers(), **kwargs
        )
        assert response.status_code == 404
    response = await client.get(
        f"/users/?locationId={other_tenant.location_id}", headers=tenant.headers()
    )
    assert response.status_code == 403
    response = await client.post(
        "/users/",
        json={"email": "z@example.com", "locationIds": [other_tenant.location_id]},
        headers=tenant.headers(),
    )
    assert response.status_code == 403


async def test_user_scopes(client: httpx.AsyncClient, tenant: Tenant) -> None:
    reader = await tenant.token_with("users.readonly")
    assert (
        await client.get(f"/users/{tenant.user_id}", headers=tenant.headers(reader))
    ).status_code == 200
    response = await client.post(
        "/users/", json={"email": "q@example.com"}, headers=tenant.headers(reader)
    )
    assert response.status_code == 401


# --- locations -----------------------------------------------------------------------------


async def test_location_get_and_update(client: httpx.AsyncClient, tenant: Tenant) -> None:
    headers = tenant.headers(version="2021-07-28")
    response = await client.get(f"/locations/{tenant.location_id}", headers=headers)
    assert response.status_code == 200
    location = response.json()["location"]
    assert location["id"] == tenant.location_id
    assert location["timezone"] == "America/New_York"

    updated = await client.put(
        f"/locations/{tenant.location_id}",
        json={
            "companyId": "ignored",
            "name": "Acme Dental West",
            "timezone": "America/Los_Angeles",
            "address": "1 Main St",
            "postalCode": "94105",
            "website": "https://acme.example",
        },
        headers=headers,
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["name"] == "Acme Dental West"
    assert updated.json()["postalCode"] == "94105"
    again = (await client.get(f"/locations/{tenant.location_id}", headers=headers)).json()
    assert again["location"]["timezone"] == "America/Los_Angeles"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"timezone": "Mars/Base"}, "timezone"),
        ({"timezone": "Europe"}, "timezone"),
        ({"email": "x@"}, "email"),
        ({"phone": "abc"}, "phone"),
        ({"name": ""}, "name"),
    ],
)
async def test_invalid_location_updates(
    client: httpx.AsyncClient, tenant: Tenant, body: dict[str, object], field: str
) -> None:
    response = await client.put(
        f"/locations/{tenant.location_id}", json=body, headers=tenant.headers()
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == field


async def test_legacy_zone_names_are_zones_and_offsets_say_what_to_give(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    url = f"/locations/{tenant.location_id}"
    legacy = await client.put(url, json={"timezone": "US/Eastern"}, headers=tenant.headers())
    assert legacy.status_code == 200 and legacy.json()["timezone"] == "US/Eastern"
    offset = await client.put(url, json={"timezone": "GMT+2"}, headers=tenant.headers())
    assert offset.status_code == 400
    [error] = offset.json()["errors"]
    assert error["field"] == "timezone"
    assert error["message"] == (
        "'GMT+2' is not an IANA time zone: for UTC+02:00, give the zone of the place "
        "(Area/City, e.g. Europe/Athens) (or Etc/GMT-2: POSIX signs are inverted)"
    )


async def test_other_locations_are_forbidden(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    for method, kwargs in (("GET", {}), ("PUT", {"json": {"name": "mine"}})):
        response = await client.request(
            method, f"/locations/{other_tenant.location_id}", headers=tenant.headers(), **kwargs
        )
        assert response.status_code == 403
    theirs = await client.get(
        f"/locations/{other_tenant.location_id}", headers=other_tenant.headers()
    )
    assert theirs.json()["location"]["name"] == "Globex Clinic"
