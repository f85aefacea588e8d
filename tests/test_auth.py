"""Tokens, scopes, the Version header and tenant isolation (semantics §1)."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select

from calnotify.app import create_app
from calnotify.auth.tokens import hash_token, revoke_token
from calnotify.config import Settings
from calnotify.db.engine import Database
from calnotify.models import ApiToken
from tests.factories import Tenant, create_notifications, notification

INVALID_TOKEN = {
    "statusCode": 401,
    "message": "Invalid token: access token is invalid",
    "error": "Unauthorized",
}


def missing_scope(scope: str) -> dict[str, object]:
    """HighLevel's answer to a token without a route's scope, naming the scope."""
    return {
        "statusCode": 401,
        "message": "The token is not authorized for this scope.",
        "error": "Unauthorized",
        "scope": scope,
    }


FORBIDDEN = {
    "statusCode": 403,
    "message": "The token does not have access to this location.",
    "error": "Forbidden",
}


def notifications_url(tenant: Tenant) -> str:
    return f"/calendars/{tenant.calendar_id}/notifications"


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer ", "Bearer nope", "Basic dXNlcjpwYXNz", "Bearer " + "x" * 5000],
)
async def test_missing_or_unknown_token_is_401(
    client: httpx.AsyncClient, tenant: Tenant, authorization: str | None
) -> None:
    headers = {"Version": "2021-04-15"}
    if authorization is not None:
        headers["Authorization"] = authorization
    response = await client.get(notifications_url(tenant), headers=headers)
    assert response.status_code == 401
    assert response.json() == INVALID_TOKEN


async def test_revoked_token_is_401(client: httpx.AsyncClient, tenant: Tenant) -> None:
    async with tenant.db.session() as session:
        token_id = await session.scalar(
            select(ApiToken.id).where(ApiToken.token_hash == hash_token(tenant.token))
        )
        assert token_id is not None
        await revoke_token(session, token_id)
    response = await client.get(notifications_url(tenant), headers=tenant.headers())
    assert response.status_code == 401
    assert response.json() == INVALID_TOKEN


async def test_tokens_are_stored_hashed(tenant: Tenant, db: Database) -> None:
    async with db.session() as session:
        stored = (await session.scalars(select(ApiToken.token_hash))).all()
    assert tenant.token not in stored
    assert hash_token(tenant.token) in stored


@pytest.mark.parametrize(
    ("scopes", "method", "allowed"),
    [
        (["calendars/events.readonly"], "GET", True),
        (["calendars/events.readonly"], "POST", False),
        (["calendars/events.write"], "GET", True),
        (["calendars/events.write"], "POST", True),
        (["calendars.write", "calendars.readonly"], "GET", False),
        (["contacts.write"], "POST", False),
    ],
)
async def test_notification_routes_need_event_scopes(
    client: httpx.AsyncClient, tenant: Tenant, scopes: list[str], method: str, allowed: bool
) -> None:
    token = await tenant.token_with(*scopes)
    kwargs = {"json": [notification()]} if method == "POST" else {}
    response = await client.request(
        method, notifications_url(tenant), headers=tenant.headers(token), **kwargs
    )
    if allowed:
        assert response.status_code == 200, response.text
    else:
        assert response.status_code == 401
        needed = "calendars/events.write" if method == "POST" else "calendars/events.readonly"
        assert response.json() == missing_scope(needed)


async def test_every_write_operation_needs_the_write_scope(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    [created] = await create_notifications(client, tenant, notification())
    one = f"{notifications_url(tenant)}/{created['_id']}"
    read_only = await tenant.token_with("calendars/events.readonly", "calendars.readonly")
    headers = tenant.headers(read_only)
    assert (await client.get(one, headers=headers)).status_code == 200
    for method, kwargs in (("PUT", {"json": {"subject": "x"}}), ("DELETE", {})):
        response = await client.request(method, one, headers=headers, **kwargs)
        assert response.status_code == 401
        assert response.json() == missing_scope("calendars/events.write")
    assert (await client.get(one, headers=tenant.headers())).json()["subject"] == ""


async def test_calendar_routes_need_calendar_scopes(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    token = await tenant.token_with("calendars/events.write")
    response = await client.get(f"/calendars/{tenant.calendar_id}", headers=tenant.headers(token))
    assert response.status_code == 401
    assert response.json() == missing_scope("calendars.readonly")
    reader = await tenant.token_with("calendars.readonly")
    response = await client.post(
        "/calendars/",
        json={"locationId": tenant.location_id, "name": "x"},
        headers=tenant.headers(reader),
    )
    assert response.status_code == 401


# 2023-02-21 is what HighLevel's official Node SDK sends, v3 what its Python SDK sends.
@pytest.mark.parametrize("version", ["2021-04-15", "2021-07-28", "2023-02-21", "v3"])
async def test_every_accepted_version_works(
    client: httpx.AsyncClient, tenant: Tenant, version: str
) -> None:
    headers = tenant.headers(version=version)
    created = await client.post(notifications_url(tenant), json=[notification()], headers=headers)
    assert created.status_code == 200, created.text
    listed = await client.get(notifications_url(tenant), headers=headers)
    assert [n["_id"] for n in listed.json()] == [created.json()[0]["_id"]]
    calendar = await client.get(f"/calendars/{tenant.calendar_id}", headers=headers)
    assert calendar.status_code == 200


@pytest.mark.parametrize(
    "version", [None, "", "2020-01-01", "V3", "2021-04-15 ", "2023-02-22", "2023-02-21,v3"]
)
async def test_version_header_is_required(
    client: httpx.AsyncClient, tenant: Tenant, version: str | None
) -> None:
    response = await client.get(notifications_url(tenant), headers=tenant.headers(version=version))
    assert response.status_code == 400
    body = response.json()
    assert body["statusCode"] == 400
    assert body["errors"][0]["field"] == "Version"
    if version:
        assert body["message"] == "Version: must be one of 2021-04-15, 2021-07-28, 2023-02-21, v3"


# --- isolation -----------------------------------------------------------------------------


async def test_another_locations_calendar_is_404_everywhere(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    [theirs] = await create_notifications(client, other_tenant, notification(subject="theirs"))
    their_one = f"{notifications_url(other_tenant)}/{theirs['_id']}"
    mine = tenant.headers()
    attempts = [
        ("GET", f"/calendars/{other_tenant.calendar_id}", {}),
        ("PUT", f"/calendars/{other_tenant.calendar_id}", {"json": {"name": "mine now"}}),
        ("GET", notifications_url(other_tenant), {}),
        ("POST", notifications_url(other_tenant), {"json": [notification()]}),
        ("GET", their_one, {}),
        ("PUT", their_one, {"json": {"subject": "changed"}}),
        ("DELETE", their_one, {}),
        # Their notification id under my calendar.
        ("GET", f"{notifications_url(tenant)}/{theirs['_id']}", {}),
        ("PUT", f"{notifications_url(tenant)}/{theirs['_id']}", {"json": {"subject": "x"}}),
        ("DELETE", f"{notifications_url(tenant)}/{theirs['_id']}", {}),
    ]
    for method, path, kwargs in attempts:
        response = await client.request(method, path, headers=mine, **kwargs)
        assert response.status_code == 404, (method, path, response.text)
        # Indistinguishable from an id that does not exist at all.
        assert response.json()["message"] in ("Calendar not found", "Notification not found")

    unchanged = (await client.get(their_one, headers=other_tenant.headers())).json()
    assert unchanged == theirs
    listed = await client.get(notifications_url(other_tenant), headers=other_tenant.headers())
    assert len(listed.json()) == 1
    calendar = (
        await client.get(f"/calendars/{other_tenant.calendar_id}", headers=other_tenant.headers())
    ).json()["calendar"]
    assert calendar["name"] == "Globex Clinic calendar"


async def test_foreign_location_id_is_403(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    response = await client.post(
        "/calendars/",
        json={"locationId": other_tenant.location_id, "name": "sneaky"},
        headers=tenant.headers(),
    )
    assert response.status_code == 403
    assert response.json() == FORBIDDEN
    response = await client.get(
        f"/calendars/?locationId={other_tenant.location_id}", headers=tenant.headers()
    )
    assert response.status_code == 403
    assert response.json() == FORBIDDEN
    theirs = await client.get(
        f"/calendars/?locationId={other_tenant.location_id}", headers=other_tenant.headers()
    )
    assert [c["name"] for c in theirs.json()["calendars"]] == ["Globex Clinic calendar"]


@pytest.mark.parametrize(
    "rule",
    [
        notification(),  # plans nothing: a transaction of compiled statements
        notification(  # plans reminders: a unit of work
            notificationType="reminder", beforeTime=[{"timeOffset": 1, "unit": "hours"}]
        ),
    ],
    ids=["writer", "unit-of-work"],
)
async def test_a_success_means_the_change_was_committed(
    settings: Settings,
    db: Database,
    tenant: Tenant,
    monkeypatch: pytest.MonkeyPatch,
    rule: dict[str, object],
) -> None:
    from sqlalchemy.ext.asyncio import AsyncSession

    from calnotify.db import tx

    async def failing_commit(self: object) -> None:
        raise RuntimeError("disk full")

    transport = httpx.ASGITransport(app=create_app(settings, db), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        with monkeypatch.context() as patched:
            for unit in (AsyncSession, tx.SQLiteTx, tx.PostgresTx):
                patched.setattr(unit, "commit", failing_commit)
            response = await client.post(
                notifications_url(tenant), json=[rule], headers=tenant.headers()
            )
        # The commit happens before the answer: a failed commit is never reported as a 200.
        assert response.status_code == 500
        assert response.json() == {
            "statusCode": 500,
            "message": "Internal server error",
            "error": "Internal Server Error",
        }
        listed = await client.get(notifications_url(tenant), headers=tenant.headers())
        assert listed.json() == []
