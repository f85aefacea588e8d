"""Behaviour every route shares: documentation, envelopes, limits."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from calnotify.app import create_app
from calnotify.config import Settings
from calnotify.db.engine import Database
from tests.factories import Tenant, create_notifications, notification


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
    assert version["schema"]["enum"] == ["2021-04-15", "2021-07-28", "2023-02-21", "v3"]
    out = schema["components"]["schemas"]["NotificationOut"]
    assert "_id" in out["properties"]
    assert "bearer" in str(schema["components"]["securitySchemes"]).lower()


async def test_interactive_docs(client: httpx.AsyncClient) -> None:
    response = await client.get("/docs")
    assert response.status_code == 200
    assert "swagger" in response.text.lower()
    assert "2023-02-21" in (await client.get("/openapi.json")).json()["info"]["description"]


ASSET_TYPES = {
    ".css": ("text/css",),
    ".js": ("text/javascript", "application/javascript"),
    ".png": ("image/png",),
    ".json": ("application/json",),
}


@pytest.mark.parametrize(
    ("page", "must_load"),
    [("/docs", ("swagger-ui-bundle.js", "swagger-ui.css")), ("/redoc", ("redoc.standalone.js",))],
)
async def test_docs_load_nothing_from_other_hosts(
    client: httpx.AsyncClient, page: str, must_load: tuple[str, ...]
) -> None:
    response = await client.get(page)  # no token, no Version header
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert re.search(r"https?://", html) is None, "the page names another host"
    assert "//" not in "".join(re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)""", html))
    urls = set(re.findall(r"""(?:src|href|spec-url)\s*=\s*["']([^"']+)["']""", html))
    urls |= set(re.findall(r"""\burl:\s*["']([^"']+)["']""", html))  # Swagger UI's spec
    assert "/openapi.json" in urls
    for name in must_load:
        assert any(u.endswith("/" + name) for u in urls), (name, urls)
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), url
        asset = await client.get(url)
        assert asset.status_code == 200, url
        suffix = url[url.rfind(".") :]
        media_type = asset.headers["content-type"].split(";")[0]
        assert media_type in ASSET_TYPES[suffix], (url, media_type)
        assert len(asset.content) > 1000, url


async def test_unknown_docs_asset_is_404_envelope(client: httpx.AsyncClient) -> None:
    response = await client.get("/docs/assets/nothing.js")
    assert response.status_code == 404
    assert response.json()["statusCode"] == 404


@pytest.mark.parametrize(
    "path", ["/", "/docs", "/redoc", "/openapi.json", "/healthz", "/console/sign-in"]
)
async def test_public_pages_need_no_token_or_version(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 200, response.text


LINKS = {
    "docs": "/docs",
    "redoc": "/redoc",
    "openapi": "/openapi.json",
    "health": "/healthz",
    "console": "/console",
}


@pytest.mark.parametrize("accept", [None, "*/*", "application/json", "text/html;q=0.5, */*"])
async def test_home_answers_json_to_api_clients(
    client: httpx.AsyncClient, accept: str | None
) -> None:
    response = await client.get("/", headers={"Accept": accept} if accept else {})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert "accept" in response.headers["vary"].lower()
    body = response.json()
    assert body["name"] == "calnotify"
    assert {key: body[key] for key in LINKS} == LINKS


@pytest.mark.parametrize(
    "accept",
    [
        "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",  # a browser
        "text/html",
        "application/json;q=0.5, text/*",
    ],
)
async def test_home_answers_html_to_browsers(client: httpx.AsyncClient, accept: str) -> None:
    response = await client.get("/", headers={"Accept": accept})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    links = re.findall(r'<a href="([^"]+)"', response.text)
    assert set(links) == set(LINKS.values())
    assert re.search(r"https?://", response.text) is None
    for link in links:
        # The console's pages lead a visitor to its sign-in form.
        assert (await client.get(link, follow_redirects=True)).status_code == 200, link


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


NOT_JSON = "body: must be JSON sent with Content-Type: application/json"


@pytest.mark.parametrize(
    ("content_type", "content", "given"),
    [
        ("text/plain", b"[]", "Content-Type is text/plain"),
        ("text/plain;charset=UTF-8", b"[{}]", "Content-Type is text/plain"),  # fetch's
        ("application/x-www-form-urlencoded", b"receiverType=contact", "Content-Type is"),
        ("multipart/form-data; boundary=x", b"--x--\r\n", "Content-Type is multipart/form-data"),
        ("application/xml", b"<a/>", "Content-Type is application/xml"),
        (None, b'[{"receiverType": "contact"}]', "no Content-Type was given"),
    ],
)
async def test_a_body_that_is_not_declared_json_is_400(
    client: httpx.AsyncClient,
    tenant: Tenant,
    content_type: str | None,
    content: bytes,
    given: str,
) -> None:
    headers = tenant.headers()
    if content_type is not None:
        headers["Content-Type"] = content_type
    response = await client.post(
        f"/calendars/{tenant.calendar_id}/notifications", content=content, headers=headers
    )
    assert response.status_code == 400
    body = response.json()
    assert body["statusCode"] == 400
    assert body["error"] == "Bad Request"
    assert body["message"].startswith(NOT_JSON)
    assert given in body["message"]
    assert "valid list" not in body["message"]
    assert [e["field"] for e in body["errors"]] == ["body"]
    listed = await client.get(f"/calendars/{tenant.calendar_id}/notifications", headers=headers)
    assert listed.json() == []


async def test_curl_dash_d_without_a_content_type_header_is_told_what_to_send(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    # What `curl -H "Authorization: ..." -H "Version: ..." -d '[...]'` sends.
    response = await client.post(
        f"/calendars/{tenant.calendar_id}/notifications",
        content=b'[{"receiverType":"contact","channel":"email","notificationType":"booked"}]',
        headers={**tenant.headers(), "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 400
    assert response.json()["message"] == (
        f"{NOT_JSON} (Content-Type is application/x-www-form-urlencoded)"
    )


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON;charset=UTF-8",
        "application/vnd.api+json",
        "application/merge-patch+json",
    ],
)
async def test_json_content_types_are_json(
    client: httpx.AsyncClient, tenant: Tenant, content_type: str
) -> None:
    response = await client.post(
        f"/calendars/{tenant.calendar_id}/notifications",
        content=json.dumps([notification()]).encode(),
        headers={**tenant.headers(), "Content-Type": content_type},
    )
    assert response.status_code == 200, response.text
    assert response.json()[0]["receiverType"] == "contact"


async def test_token_and_version_are_checked_before_the_content_type(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    url = f"/calendars/{tenant.calendar_id}/notifications"
    plain = {"Content-Type": "text/plain"}
    no_token = await client.post(url, content=b"[]", headers={**plain, "Version": "v3"})
    assert no_token.status_code == 401
    no_version = await client.post(
        url, content=b"[]", headers={**tenant.headers(version=None), **plain}
    )
    assert no_version.status_code == 400
    assert no_version.json()["errors"][0]["field"] == "Version"


async def test_an_empty_body_needs_no_content_type(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    created = await create_notifications(client, tenant)
    response = await client.delete(
        f"/calendars/{tenant.calendar_id}/notifications/{created[0]['_id']}",
        headers={**tenant.headers(), "Content-Type": "text/plain"},
    )
    assert response.status_code == 200
    assert response.json() == {"message": "Notification deleted successfully"}


async def test_every_json_route_refuses_a_body_that_is_not_json(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    schema = (await client.get("/openapi.json")).json()
    values = {"calendarId": tenant.calendar_id, "locationId": tenant.location_id}
    checked = []
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            if "requestBody" not in operation:
                continue
            assert set(operation["requestBody"]["content"]) == {"application/json"}, path
            url = re.sub(r"{(\w+)}", lambda m: values.get(m.group(1), "A" * 20), path)
            response = await client.request(
                method,
                url,
                content=b"{}",
                headers={**tenant.headers(), "Content-Type": "text/plain"},
            )
            assert response.status_code == 400, (method, path, response.text)
            assert response.json()["message"].startswith(NOT_JSON), (method, path)
            checked.append(f"{method.upper()} {path}")
    assert "POST /calendars/{calendarId}/notifications" in checked
    assert "PUT /calendars/events/appointments/{eventId}" in checked
    assert "DELETE /calendars/events/{eventId}" in checked
    assert len(checked) >= 10, checked


@pytest.mark.parametrize("value", ["yes", "no", "on", "off", "t", "f", "y", "", "2", "truee"])
async def test_every_boolean_query_parameter_takes_only_true_false_1_0(
    client: httpx.AsyncClient, tenant: Tenant, value: str
) -> None:
    schema = (await client.get("/openapi.json")).json()
    values = {
        "calendarId": tenant.calendar_id,
        "locationId": tenant.location_id,
        "userId": tenant.user_id,
    }
    checked = []
    for path, operations in schema["paths"].items():
        get = operations.get("get")
        if get is None:
            continue
        for parameter in get.get("parameters", []):
            types = {s.get("type") for s in parameter["schema"].get("anyOf", [parameter["schema"]])}
            if parameter["in"] != "query" or "boolean" not in types:
                continue
            name = parameter["name"]
            url = re.sub(r"{(\w+)}", lambda m: values[m.group(1)], path)
            for good in ("true", "FALSE", "1", "0"):
                ok = await client.get(url, params={name: good}, headers=tenant.headers())
                assert ok.status_code == 200, (url, name, good, ok.text)
            bad = await client.get(url, params={name: value}, headers=tenant.headers())
            assert bad.status_code == 400, (url, name, value)
            body = bad.json()
            assert body["message"] == f"{name}: must be true or false (or 1 or 0)"
            assert body["errors"] == [
                {"field": name, "message": "must be true or false (or 1 or 0)"}
            ]
            checked.append(f"{path}?{name}")
    assert sorted(checked) == [
        "/calendars/{calendarId}/notifications?deleted",
        "/calendars/{calendarId}/notifications?isActive",
        "/locations/{locationId}/templates?deleted",
        "/users/{userId}/inbox?unread",
    ]


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
