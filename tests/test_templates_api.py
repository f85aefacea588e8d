"""HighLevel-shaped stored templates: ``/locations/{locationId}/templates``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from sqlalchemy import select

from calnotify.app import create_app
from calnotify.clock import ManualClock
from calnotify.config import Settings
from calnotify.db.engine import Database
from calnotify.models import Template
from calnotify.templates.router import router as templates_router
from tests.factories import Tenant, create_notifications, notification
from tests.spec import assert_conforms

PREFIX = "/locations/{locationId}/templates"
MISSING_ID = "AAAAAAAAAAAAAAAAAAAA"
SCOPE_MESSAGE = "The token is not authorized for this scope."
# The operations on one template, with a body where they take one.
REQUESTS: list[tuple[str, dict[str, Any]]] = [
    ("GET", {}),
    ("PUT", {"json": {"name": "X"}}),
    ("DELETE", {}),
]

_APP_SERVES_TEMPLATES: dict[str, bool] = {}


@pytest.fixture
async def client(
    settings: Settings, db: Database, clock: ManualClock
) -> AsyncIterator[httpx.AsyncClient]:
    """conftest's client, with the templates router included unless app.py already does."""
    app = create_app(settings, database=db, clock=clock)
    # create_app's routes are the same on every call: probe the first app only.
    if "value" not in _APP_SERVES_TEMPLATES:
        _APP_SERVES_TEMPLATES["value"] = serves_templates(app)
    if not _APP_SERVES_TEMPLATES["value"]:
        app.include_router(templates_router)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://calnotify.test") as c:
        yield c


def serves_templates(app: FastAPI) -> bool:
    """Whether the app has the templates routes (``app.routes`` nests included routers in
    recent FastAPI versions, so the routes are read from a fresh OpenAPI document)."""
    schema = get_openapi(title="probe", version="0", routes=app.routes)
    return PREFIX in schema.get("paths", {})


def url(tenant: Tenant, template_id: str | None = None) -> str:
    base = f"/locations/{tenant.location_id}/templates"
    return base if template_id is None else f"{base}/{template_id}"


def email(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Booked email",
        "type": "email",
        "template": {
            "subject": "See you {{appointment.only_start_date}}",
            "html": "<p>Hi {{contact.first_name}}, see you at {{location.name}}.</p>",
        },
    }
    body.update(fields)
    return body


def text(kind: str = "sms", **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": f"Reminder {kind}",
        "type": kind,
        "template": {"body": "Hi {{contact.first_name}}, see you {{appointment.start_time}}"},
    }
    body.update(fields)
    return body


async def create(client: httpx.AsyncClient, tenant: Tenant, body: dict[str, Any]) -> Any:
    response = await client.post(url(tenant), json=body, headers=tenant.headers())
    assert response.status_code == 201, response.text
    return response.json()


def fields_of(response: httpx.Response) -> list[str]:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["statusCode"] == 400
    assert body["error"] == "Bad Request"
    return [e["field"] for e in body["errors"]]


# --- the operations ------------------------------------------------------------------------


async def test_email_template_lifecycle(client: httpx.AsyncClient, tenant: Tenant) -> None:
    headers = tenant.headers(version="2021-07-28")
    response = await client.post(url(tenant), json=email(), headers=headers)
    assert response.status_code == 201, response.text
    created = response.json()
    assert set(created) == {
        "id",
        "locationId",
        "name",
        "type",
        "template",
        "dateAdded",
        "dateUpdated",
    }
    assert len(created["id"]) == 20
    assert created["locationId"] == tenant.location_id
    assert created["name"] == "Booked email"
    assert created["type"] == "email"
    assert created["template"] == email()["template"]
    assert created["dateAdded"].endswith("Z")
    assert created["dateAdded"] == created["dateUpdated"]

    fetched = await client.get(url(tenant, created["id"]), headers=headers)
    assert fetched.status_code == 200
    assert fetched.json() == created

    listed = await client.get(url(tenant), headers=headers)
    assert listed.json() == {"templates": [created], "total": 1, "totalCount": 1}

    updated = await client.put(
        url(tenant, created["id"]),
        json={"name": "  Renamed  ", "template": {"subject": "New {{calendar.name}}"}},
        headers=headers,
    )
    assert updated.status_code == 200, updated.text
    after = updated.json()
    assert after["name"] == "Renamed"
    assert after["template"] == {
        "subject": "New {{calendar.name}}",
        "html": email()["template"]["html"],
    }
    assert after["dateAdded"] == created["dateAdded"]
    assert after["dateUpdated"] >= created["dateUpdated"]
    assert (await client.get(url(tenant, created["id"]), headers=headers)).json() == after

    deleted = await client.delete(url(tenant, created["id"]), headers=headers)
    assert deleted.status_code == 200
    assert deleted.json() == {"succeded": True}
    for method in ("GET", "PUT", "DELETE"):
        gone = await client.request(
            method, url(tenant, created["id"]), json={"name": "x"}, headers=headers
        )
        assert gone.status_code == 404
        assert gone.json() == {
            "statusCode": 404,
            "message": "Template not found",
            "error": "Not Found",
        }
    listed = await client.get(url(tenant), headers=headers)
    assert listed.json() == {"templates": [], "total": 0, "totalCount": 0}
    only_deleted = await client.get(url(tenant), params={"deleted": "true"}, headers=headers)
    assert [t["id"] for t in only_deleted.json()["templates"]] == [created["id"]]


@pytest.mark.parametrize("kind", ["sms", "whatsapp"])
async def test_text_templates(client: httpx.AsyncClient, tenant: Tenant, kind: str) -> None:
    created = await create(client, tenant, text(kind))
    assert created["type"] == kind
    assert created["template"] == text(kind)["template"]

    updated = await client.put(
        url(tenant, created["id"]),
        json={"template": {"body": "Bye {{contact.name}}"}},
        headers=tenant.headers(),
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["template"] == {"body": "Bye {{contact.name}}"}
    assert updated.json()["name"] == created["name"]


async def test_fields_of_the_other_type_are_not_stored(
    client: httpx.AsyncClient, tenant: Tenant, db: Database
) -> None:
    """The dispatcher reads (subject, html or body): an sms template has no html."""
    sms = await create(
        client, tenant, text(template={"body": "Hi", "html": "<p>x</p>", "subject": "S"})
    )
    assert sms["template"] == {"body": "Hi"}
    mail = await create(
        client, tenant, email(template={"html": "<p>x</p>", "body": "plain", "subject": None})
    )
    assert mail["template"] == {"subject": "", "html": "<p>x</p>"}
    async with db.session(write=False) as session:
        rows = {t.id: t for t in await session.scalars(select(Template))}
    assert (rows[sms["id"]].subject, rows[sms["id"]].html, rows[sms["id"]].body) == ("", "", "Hi")
    assert (rows[mail["id"]].subject, rows[mail["id"]].html, rows[mail["id"]].body) == (
        "",
        "<p>x</p>",
        "",
    )


async def test_nulls_count_as_not_given(client: httpx.AsyncClient, tenant: Tenant) -> None:
    created = await create(client, tenant, email())
    response = await client.put(
        url(tenant, created["id"]),
        json={"name": None, "type": None, "template": {"subject": None, "html": None}},
        headers=tenant.headers(),
    )
    assert response.status_code == 200, response.text
    assert response.json() == created  # nothing changed, not even dateUpdated


async def test_list_filters_pages_and_orders(client: httpx.AsyncClient, tenant: Tenant) -> None:
    made = [
        await create(client, tenant, email(name="e1")),
        await create(client, tenant, text("sms", name="s1")),
        await create(client, tenant, email(name="e2")),
        await create(client, tenant, text("whatsapp", name="w1")),
        await create(client, tenant, text("sms", name="s2")),
    ]
    headers = tenant.headers()

    async def names(**params: Any) -> tuple[list[str], int]:
        response = await client.get(url(tenant), params=params, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["total"] == body["totalCount"]
        return [t["name"] for t in body["templates"]], body["total"]

    assert await names() == ([t["name"] for t in made], 5)
    assert await names(type="sms") == (["s1", "s2"], 2)
    assert await names(type="email") == (["e1", "e2"], 2)
    assert await names(type="whatsapp") == (["w1"], 1)
    assert await names(limit=2) == (["e1", "s1"], 5)
    assert await names(limit="2.0", skip="2") == (["e2", "w1"], 5)
    assert await names(skip=4) == (["s2"], 5)
    assert await names(skip=10) == ([], 5)
    assert await names(type="sms", skip=1) == (["s2"], 2)
    assert await names(originId="ignored", deleted="false") == ([t["name"] for t in made], 5)

    # HighLevel's SDKs call collection routes with a trailing slash.
    slashed = await client.get(url(tenant) + "/", headers=headers)
    assert slashed.status_code == 200
    assert slashed.json()["total"] == 5


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"type": "fax"}, "type"),
        ({"type": "inApp"}, "type"),
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "1.5"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"skip": "-1"}, "skip"),
        ({"skip": "0.5"}, "skip"),
        ({"deleted": "maybe"}, "deleted"),
    ],
)
async def test_invalid_list_queries(
    client: httpx.AsyncClient, tenant: Tenant, params: dict[str, str], field: str
) -> None:
    response = await client.get(url(tenant), params=params, headers=tenant.headers())
    assert fields_of(response) == [field]


# --- validation ----------------------------------------------------------------------------

INVALID_CREATES: list[tuple[str, dict[str, Any], list[str]]] = [
    ("no name", {k: v for k, v in email().items() if k != "name"}, ["name"]),
    ("null name", email(name=None), ["name"]),
    ("empty name", email(name=""), ["name"]),
    ("blank name", email(name="   "), ["name"]),
    ("name over 255", email(name="x" * 256), ["name"]),
    ("name over 4 KiB", email(name="x" * 4097), ["name"]),
    ("name not a string", email(name=3), ["name"]),
    ("name with NUL", email(name="a\x00b"), ["name"]),
    ("no type", {k: v for k, v in email().items() if k != "type"}, ["type"]),
    ("no name, no type", {"template": {"body": "x"}}, ["name", "type"]),
    ("no type, bad name", {"name": "", "template": {"body": "x"}}, ["type", "name"]),
    ("unknown type", email(type="fax"), ["type"]),
    ("inApp type", email(type="inApp"), ["type"]),
    ("type not a string", email(type=1), ["type"]),
    ("email without template", email(template=None), ["template.html"]),
    ("email without html", email(template={"subject": "Hi"}), ["template.html"]),
    ("email with empty html", email(template={"html": ""}), ["template.html"]),
    ("email with blank html", email(template={"html": " \n "}), ["template.html"]),
    ("email with only a body", email(template={"body": "Hi"}), ["template.html"]),
    ("sms without template", text("sms", template=None), ["template.body"]),
    ("sms with only html", text("sms", template={"html": "<p>x</p>"}), ["template.body"]),
    ("whatsapp with empty body", text("whatsapp", template={"body": ""}), ["template.body"]),
    ("template not an object", email(template="<p>x</p>"), ["template"]),
    ("html not a string", email(template={"html": 5}), ["template.html"]),
    ("body not a string", text(template={"body": ["x"]}), ["template.body"]),
    ("subject not a string", email(template={"html": "x", "subject": True}), ["template.subject"]),
    (
        "subject over 255",
        email(template={"html": "x", "subject": "s" * 256}),
        ["template.subject"],
    ),
    (
        "subject over 4 KiB",
        email(template={"html": "x", "subject": "s" * 4097}),
        ["template.subject"],
    ),
    (
        "subject with a line break",
        email(template={"html": "x", "subject": "Hi\r\nBcc: x@example.com"}),
        ["template.subject"],
    ),
    (
        "subject with a newline",
        email(template={"html": "x", "subject": "Hi\nthere"}),
        ["template.subject"],
    ),
    (
        "unknown merge field in subject",
        email(template={"html": "x", "subject": "{{ whatever }}"}),
        ["template.subject"],
    ),
    ("html over 64 KiB", email(template={"html": "x" * (64 * 1024 + 1)}), ["template.html"]),
    (
        "html over 64 KiB in UTF-8",
        email(template={"html": "é" * (32 * 1024 + 1)}),
        ["template.html"],
    ),
    ("body over 64 KiB", text(template={"body": "x" * (64 * 1024 + 1)}), ["template.body"]),
    (
        "unknown merge field in html",
        email(template={"html": "<p>{{contact.nickname}}</p>"}),
        ["template.html"],
    ),
    ("html does not parse", email(template={"html": "Hi {% if %}"}), ["template.html"]),
    (
        "unknown merge field in body",
        text(template={"body": "Hi {{contact.nickname}}"}),
        ["template.body"],
    ),
    ("object as merge field", text(template={"body": "{{contact}}"}), ["template.body"]),
    ("unknown filter", text(template={"body": "{{contact.name | shout}}"}), ["template.body"]),
    ("include tag", text(template={"body": "{% include 'secrets' %}"}), ["template.body"]),
    ("body with NUL", text(template={"body": "a\x00b"}), ["template.body"]),
    (
        "several problems",
        email(name="", template={"subject": "a\nb", "html": "{{nope}}"}),
        ["name", "template.subject", "template.html"],
    ),
]


@pytest.mark.parametrize(
    ("body", "expected"),
    [pytest.param(b, f, id=name) for name, b, f in INVALID_CREATES],
)
async def test_invalid_creates(
    client: httpx.AsyncClient, tenant: Tenant, body: dict[str, Any], expected: list[str]
) -> None:
    response = await client.post(url(tenant), json=body, headers=tenant.headers())
    assert fields_of(response) == expected
    message = response.json()["message"]
    assert all(f"{field}: " in message for field in expected)
    listed = await client.get(url(tenant), headers=tenant.headers())
    assert listed.json()["total"] == 0


async def test_body_must_be_a_json_object(client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await client.post(
        url(tenant),
        content=b"{not json",
        headers={**tenant.headers(), "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    response = await client.post(url(tenant), json=[email()], headers=tenant.headers())
    assert response.status_code == 400


async def test_valid_liquid_is_accepted(client: httpx.AsyncClient, tenant: Tenant) -> None:
    source = (
        "{% assign who = contact.first_name | default: 'there' %}"
        "<p>Hi {{ who }}, {{ contact.first_name.size }}</p>"
        "{% for i in (1..2) %}{{ i }}{% endfor %}"
        "{% if appointment.notes != '' %}{{ appointment.notes | escape }}{% endif %}"
    )
    created = await create(client, tenant, email(template={"html": source, "subject": ""}))
    assert created["template"]["html"] == source
    exact = "é" * (32 * 1024)  # 64 KiB in UTF-8 exactly
    await create(client, tenant, text(template={"body": exact}))
    await create(
        client, tenant, email(name="x" * 255, template={"html": "x", "subject": "s" * 255})
    )


@pytest.mark.parametrize(
    ("kind", "change", "expected"),
    [
        ("email", {"name": ""}, ["name"]),
        ("email", {"name": "x" * 256}, ["name"]),
        ("email", {"type": "fax"}, ["type"]),
        ("email", {"template": {"html": ""}}, ["template.html"]),
        ("email", {"template": {"html": "{{nope}}"}}, ["template.html"]),
        ("email", {"template": {"subject": "a\nb"}}, ["template.subject"]),
        ("email", {"template": {"subject": "{{contact.nickname}}"}}, ["template.subject"]),
        ("email", {"template": {"html": "x" * (64 * 1024 + 1)}}, ["template.html"]),
        # A new type needs that type's content: the other type's content is not kept.
        ("email", {"type": "sms"}, ["template.body"]),
        ("sms", {"type": "email"}, ["template.html"]),
        ("sms", {"type": "email", "template": {"body": "still text"}}, ["template.html"]),
        ("sms", {"template": {"body": ""}}, ["template.body"]),
        ("whatsapp", {"template": {"body": "{% if %}"}}, ["template.body"]),
    ],
)
async def test_invalid_updates(
    client: httpx.AsyncClient,
    tenant: Tenant,
    kind: str,
    change: dict[str, Any],
    expected: list[str],
) -> None:
    created = await create(client, tenant, email() if kind == "email" else text(kind))
    response = await client.put(url(tenant, created["id"]), json=change, headers=tenant.headers())
    assert fields_of(response) == expected
    unchanged = await client.get(url(tenant, created["id"]), headers=tenant.headers())
    assert unchanged.json() == created


async def test_type_change_when_unused(client: httpx.AsyncClient, tenant: Tenant) -> None:
    created = await create(client, tenant, email())
    to_sms = await client.put(
        url(tenant, created["id"]),
        json={"type": "sms", "template": {"body": "Hi {{contact.first_name}}"}},
        headers=tenant.headers(),
    )
    assert to_sms.status_code == 200, to_sms.text
    assert to_sms.json()["type"] == "sms"
    assert to_sms.json()["template"] == {"body": "Hi {{contact.first_name}}"}
    to_whatsapp = await client.put(
        url(tenant, created["id"]), json={"type": "whatsapp"}, headers=tenant.headers()
    )
    assert to_whatsapp.status_code == 200, to_whatsapp.text
    assert to_whatsapp.json()["template"] == {"body": "Hi {{contact.first_name}}"}
    back = await client.put(
        url(tenant, created["id"]),
        json={"type": "email", "template": {"html": "<b>x</b>"}},
        headers=tenant.headers(),
    )
    assert back.status_code == 200, back.text
    assert back.json()["template"] == {"subject": "", "html": "<b>x</b>"}


# --- templates and notification rules ------------------------------------------------------


def notifications_url(tenant: Tenant, calendar_id: str | None = None) -> str:
    return f"/calendars/{calendar_id or tenant.calendar_id}/notifications"


async def test_notifications_use_stored_templates(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    mail = await create(client, tenant, email())
    sms = await create(client, tenant, text("sms"))
    whatsapp = await create(client, tenant, text("whatsapp"))

    [rule] = await create_notifications(client, tenant, notification(templateId=mail["id"]))
    assert rule["templateId"] == mail["id"]
    await create_notifications(
        client,
        tenant,
        notification(channel="sms", templateId=sms["id"]),
        notification(channel="whatsapp", templateId=whatsapp["id"]),
    )

    for bad in (
        notification(templateId=sms["id"]),
        notification(channel="sms", templateId=mail["id"]),
        notification(channel="sms", templateId=whatsapp["id"]),
        notification(channel="whatsapp", templateId=sms["id"]),
        notification(receiverType="assignedUser", channel="inApp", templateId=mail["id"]),
    ):
        response = await client.post(
            notifications_url(tenant), json=[bad], headers=tenant.headers()
        )
        assert fields_of(response) == ["[0].templateId"]


async def test_deleted_template_cannot_be_used(client: httpx.AsyncClient, tenant: Tenant) -> None:
    mail = await create(client, tenant, email())
    deleted = await client.delete(url(tenant, mail["id"]), headers=tenant.headers())
    assert deleted.status_code == 200
    response = await client.post(
        notifications_url(tenant),
        json=[notification(templateId=mail["id"])],
        headers=tenant.headers(),
    )
    assert fields_of(response) == ["[0].templateId"]


async def test_template_in_use_cannot_be_deleted(client: httpx.AsyncClient, tenant: Tenant) -> None:
    mail = await create(client, tenant, email())
    second_calendar = await tenant.add_calendar()
    first, second = await create_notifications(
        client,
        tenant,
        notification(templateId=mail["id"]),
        notification(templateId=mail["id"], isActive=False),  # inactive rules count too
    )
    third = (
        await client.post(
            notifications_url(tenant, second_calendar),
            json=[notification(templateId=mail["id"])],
            headers=tenant.headers(),
        )
    ).json()[0]

    response = await client.delete(url(tenant, mail["id"]), headers=tenant.headers())
    assert fields_of(response) == ["templateId"]
    assert "3 notifications" in response.json()["message"]
    assert (await client.get(url(tenant, mail["id"]), headers=tenant.headers())).status_code == 200

    for rule, calendar in ((first, None), (second, None)):
        gone = await client.delete(
            f"{notifications_url(tenant, calendar)}/{rule['_id']}", headers=tenant.headers()
        )
        assert gone.status_code == 200
    response = await client.delete(url(tenant, mail["id"]), headers=tenant.headers())
    assert fields_of(response) == ["templateId"]
    assert "1 notification;" in response.json()["message"]

    # A rule that stops naming the template releases it.
    moved = await client.put(
        f"{notifications_url(tenant, second_calendar)}/{third['_id']}",
        json={"templateId": ""},
        headers=tenant.headers(),
    )
    assert moved.status_code == 200, moved.text
    response = await client.delete(url(tenant, mail["id"]), headers=tenant.headers())
    assert response.status_code == 200
    assert response.json() == {"succeded": True}

    # A deleted rule cannot be restored to point at the deleted template.
    restored = await client.put(
        f"{notifications_url(tenant)}/{first['_id']}",
        json={"deleted": False},
        headers=tenant.headers(),
    )
    assert fields_of(restored) == ["templateId"]


async def test_template_in_use_cannot_change_type(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    sms = await create(client, tenant, text("sms"))
    [rule] = await create_notifications(
        client, tenant, notification(channel="sms", templateId=sms["id"])
    )
    change = {"type": "whatsapp", "name": "Renamed"}
    response = await client.put(url(tenant, sms["id"]), json=change, headers=tenant.headers())
    assert fields_of(response) == ["type"]
    assert "1 notification" in response.json()["message"]

    # Everything else may change while it is in use.
    renamed = await client.put(
        url(tenant, sms["id"]),
        json={"type": "sms", "name": "Renamed", "template": {"body": "New {{contact.name}}"}},
        headers=tenant.headers(),
    )
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["name"] == "Renamed"

    deleted = await client.delete(
        f"{notifications_url(tenant)}/{rule['_id']}", headers=tenant.headers()
    )
    assert deleted.status_code == 200
    response = await client.put(url(tenant, sms["id"]), json=change, headers=tenant.headers())
    assert response.status_code == 200, response.text
    assert response.json()["type"] == "whatsapp"


async def test_factory_templates_are_served(client: httpx.AsyncClient, tenant: Tenant) -> None:
    """Rows inserted directly (tests/factories.py) have empty content; they are still listed."""
    template_id = await tenant.add_template("email", name="Bare")
    fetched = await client.get(url(tenant, template_id), headers=tenant.headers())
    assert fetched.status_code == 200
    assert fetched.json()["template"] == {"subject": "", "html": ""}
    renamed = await client.put(
        url(tenant, template_id),
        json={"name": "Dressed", "template": {"html": "<p>Hi</p>"}},
        headers=tenant.headers(),
    )
    assert renamed.status_code == 200, renamed.text


# --- isolation, authentication, scopes -----------------------------------------------------


async def test_templates_are_isolated(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    theirs = await create(client, other_tenant, email(name="Theirs"))
    mine = await create(client, tenant, email(name="Mine"))
    headers = tenant.headers()

    # Their template id through my location: as if it did not exist.
    for method, kwargs in REQUESTS:
        response = await client.request(
            method, url(tenant, theirs["id"]), headers=headers, **kwargs
        )
        assert response.status_code == 404
        assert response.json()["message"] == "Template not found"

    # Their location in the path: 403, whatever the template id.
    for template_id in (theirs["id"], mine["id"], MISSING_ID):
        for method, kwargs in REQUESTS:
            response = await client.request(
                method, url(other_tenant, template_id), headers=headers, **kwargs
            )
            assert response.status_code == 403
            assert response.json() == {
                "statusCode": 403,
                "message": "The token does not have access to this location.",
                "error": "Forbidden",
            }
    assert (await client.get(url(other_tenant), headers=headers)).status_code == 403
    response = await client.post(url(other_tenant), json=email(), headers=headers)
    assert response.status_code == 403
    # The location is checked before the body is.
    response = await client.post(url(other_tenant), json={"name": 3}, headers=headers)
    assert response.status_code == 403
    unknown = await client.get("/locations/nope/templates", headers=headers)
    assert unknown.status_code == 403

    listed = await client.get(url(tenant), headers=headers)
    assert [t["id"] for t in listed.json()["templates"]] == [mine["id"]]
    still = await client.get(url(other_tenant, theirs["id"]), headers=other_tenant.headers())
    assert still.json() == theirs

    # Nor can their template be named by my notification rules.
    response = await client.post(
        notifications_url(tenant), json=[notification(templateId=theirs["id"])], headers=headers
    )
    assert fields_of(response) == ["[0].templateId"]


@pytest.mark.parametrize("template_id", [MISSING_ID, "short", "not-an-id-!!!!!!!!!!", "x" * 300])
async def test_unknown_template_ids(
    client: httpx.AsyncClient, tenant: Tenant, template_id: str
) -> None:
    for method, kwargs in REQUESTS:
        response = await client.request(
            method, url(tenant, template_id), headers=tenant.headers(), **kwargs
        )
        assert response.status_code == 404
        assert response.json()["message"] == "Template not found"


async def test_template_scopes(client: httpx.AsyncClient, tenant: Tenant) -> None:
    created = await create(client, tenant, email())
    reader = await tenant.token_with("locations/templates.readonly")
    writer = await tenant.token_with("locations/templates.write")
    other = await tenant.token_with(
        "locations.write", "calendars.write", "calendars/events.write", "contacts.write"
    )

    reads = [("GET", url(tenant), None), ("GET", url(tenant, created["id"]), None)]
    writes = [
        ("POST", url(tenant), email()),
        ("PUT", url(tenant, created["id"]), {"name": "New"}),
        ("DELETE", url(tenant, created["id"]), None),
    ]
    for method, path, body in reads:
        ok = await client.request(method, path, json=body, headers=tenant.headers(reader))
        assert ok.status_code == 200, (method, path, ok.text)
    for token in (reader, other):
        for method, path, body in writes + (reads if token == other else []):
            response = await client.request(method, path, json=body, headers=tenant.headers(token))
            assert response.status_code == 401, (method, path)
            assert response.json() == {
                "statusCode": 401,
                "message": SCOPE_MESSAGE,
                "error": "Unauthorized",
                "scope": "locations/templates." + ("readonly" if method == "GET" else "write"),
            }
    # The write scope implies the read scope.
    for method, path, body in reads + writes:
        response = await client.request(method, path, json=body, headers=tenant.headers(writer))
        assert response.status_code in (200, 201), (method, path, response.text)


async def test_token_and_version_are_required(client: httpx.AsyncClient, tenant: Tenant) -> None:
    for headers in ({}, {"Authorization": "Bearer nope", "Version": "2021-07-28"}):
        response = await client.get(url(tenant), headers=headers)
        assert response.status_code == 401
        assert response.json()["message"] == "Invalid token: access token is invalid"
    missing = await client.post(url(tenant), json=email(), headers=tenant.headers(version=None))
    assert fields_of(missing) == ["Version"]
    wrong = await client.get(url(tenant), headers=tenant.headers(version="2020-01-01"))
    assert fields_of(wrong) == ["Version"]
    for version in ("2021-04-15", "2021-07-28", "v3"):
        ok = await client.get(url(tenant), headers=tenant.headers(version=version))
        assert ok.status_code == 200
    # Token, then scope, then Version, then the location.
    reader = await tenant.token_with("locations/templates.readonly")
    response = await client.post(
        url(tenant), json=email(), headers=tenant.headers(reader, version=None)
    )
    assert response.status_code == 401
    response = await client.get(
        url(tenant).replace(tenant.location_id, MISSING_ID), headers=tenant.headers(version=None)
    )
    assert fields_of(response) == ["Version"]


# --- the published contract ----------------------------------------------------------------


async def test_answers_match_highlevels_spec(client: httpx.AsyncClient, tenant: Tenant) -> None:
    """HighLevel's list schema is a ``oneOf`` whose two branches accept any object, so no
    non-empty list can match it; the empty list and the errors are checked."""
    headers = tenant.headers(version="2021-07-28")
    operation = "GET-all-or-email-sms-templates"
    assert_conforms(operation, await client.get(url(tenant), headers=headers), "locations")
    bad = await client.get(url(tenant), params={"limit": "0"}, headers=headers)
    assert_conforms(operation, bad, "locations")
    unauthorized = await client.get(url(tenant), headers={"Version": "2021-07-28"})
    assert_conforms(operation, unauthorized, "locations")


async def test_openapi_documents_the_routes(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    collection = schema["paths"][PREFIX]
    item = schema["paths"][PREFIX + "/{templateId}"]
    assert set(collection) == {"get", "post"}
    assert set(item) == {"get", "put", "delete"}
    assert collection["get"]["tags"] == ["Templates"]
    version = next(p for p in collection["get"]["parameters"] if p["name"] == "Version")
    assert version["required"] is True
    assert "422" not in collection["post"]["responses"]
