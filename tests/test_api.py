"""Behaviour every route shares: documentation, envelopes, limits."""

from __future__ import annotations

import httpx
import pytest

from calnotify.app import create_app
from calnotify.config import Settings
from calnotify.db.engine import Database
from tests.factories import Tenant, notification


async def test_openapi_describes_every_route(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    operations = {
        op["operationId"]: (method, path)
        for path, ops in schema["paths"].items()
        for method, op in ops.items()
    }
    for operation_id in (
        "get-event-notification",
        "create-event-notification",
        "find-event-notification",
        "update-event-notification",
        "delete-event-notification",
        "create-calendar",
        "get-calendar",
    ):
        assert operation_id in operations
    create = schema["paths"]["/calendars/{calendarId}/notifications"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"]["type"] == "array"
    assert "200" in create["responses"] and "400" in create["responses"]
    assert "422" not in create["responses"]
    version = next(p for p in create["parameters"] if p["name"] == "Version")
    assert version["required"] is True
    assert version["schema"]["enum"] == ["2021-04-15", "2021-07-28", "v3"]
    out = schema["components"]["schemas"]["NotificationOut"]
    assert "_id" in out["properties"]
    assert "bearer" in str(schema["components"]["securitySchemes"]).lower()


async def test_interactive_docs(client: httpx.AsyncClient) -> None:
    response = await client.get("/docs")
    assert response.status_code == 200
    assert "swagger" in response.text.lower()


async def test_unknown_route_is_404_envelope(client: httpx.AsyncClient) -> None:
    response = await client.get("/nowhere")
    assert response.status_code == 404
    assert response.json()["statusCode"] == 404


async def test_wrong_method_is_405_envelope(client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await client.patch(f"/calendars/{tenant.calendar_id}/notifications")
    assert response.status_code == 405
    assert response.json()["statusCode"] == 405


async def test_healthz(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}


@pytest.mark.parametrize("chunked", [False, True])
async def test_bodies_over_the_limit_are_413(
    settings: Settings, db: Database, tenant: Tenant, chunked: bool
) -> None:
    app = create_app(settings.model_copy(update={"max_body_bytes": 2048}), db)
    big = b'[{"receiverType": "contact", "body": "' + b"x" * 4096 + b'"}]'

    async def stream() -> object:
        yield big[:1000]
        yield big[1000:]

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        response = await c.post(
            f"/calendars/{tenant.calendar_id}/notifications",
            content=stream() if chunked else big,  # type: ignore[arg-type]
            headers={**tenant.headers(), "Content-Type": "application/json"},
        )
        assert response.status_code == 413
        assert response.json()["statusCode"] == 413
        ok = await c.post(
            f"/calendars/{tenant.calendar_id}/notifications",
            json=[notification()],
            headers=tenant.headers(),
        )
        assert ok.status_code == 200


async def test_non_json_content_type_is_400(client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await client.post(
        f"/calendars/{tenant.calendar_id}/notifications",
        content=b"receiverType=contact",
        headers={**tenant.headers(), "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 400


async def test_lone_surrogates_and_nul_are_400(client: httpx.AsyncClient, tenant: Tenant) -> None:
    for raw in (
        b'[{"receiverType":"contact","channel":"email","notificationType":"booked",'
        b'"subject":"\\ud800"}]',
        b'[{"receiverType":"contact","channel":"email","notificationType":"booked",'
        b'"fromName":"\\u0000"}]',
        b"\xff\xfe",
    ):
        response = await client.post(
            f"/calendars/{tenant.calendar_id}/notifications",
            content=raw,
            headers={**tenant.headers(), "Content-Type": "application/json"},
        )
        assert response.status_code == 400, raw
