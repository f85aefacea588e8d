"""Scopes by construction (docs/semantics.md §9): every route declares the scopes its
answer needs, and each page, and the plan preview, shows a part only to a token whose
scopes allow it, naming the scope that would show the rest."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from sqlalchemy import update

from calnotify.app import ROUTERS
from calnotify.auth.deps import TokenWith
from calnotify.auth.scopes import ALL_SCOPES, grants
from calnotify.console import desk, messages, people, template_pages
from calnotify.console import pages as console_pages
from calnotify.console import rules as console_rules
from calnotify.console.web import ConsoleRoute, SignedIn
from calnotify.db.engine import Database
from calnotify.models import Template
from tests.conftest import NOW
from tests.factories import Tenant, create_notifications, notification
from tests.test_console import sign_in

#: Routes anyone may call: sign-in, the service's own pages and documents, health, the
#: providers' signed reports, /metrics (its own token, docs/ops.md) and the recipients'
#: appointment pages (their signed link is the capability, docs/semantics.md §8).
PUBLIC = {
    "/",
    "/healthz",
    "/metrics",
    "/console",  # a redirect to the calendars page
    "/console/sign-in",
    "/webhooks/twilio/status",
    "/docs",
    "/docs/oauth2-redirect",
    "/redoc",
    "/openapi.json",
    "/a/{token}",
    "/a/{token}/{action}",
}


def dependencies(dependant: Dependant) -> list[Any]:
    found = [dependant.call]
    for sub in dependant.dependencies:
        found += dependencies(sub)
    return found


def routes() -> list[APIRoute]:
    """Every route of the service, as its routers declare them."""
    routers = [
        *ROUTERS,
        console_pages.router,
        console_rules.router,
        template_pages.router,
        desk.router,
        people.router,
        messages.router,
    ]
    return [r for router in routers for r in router.routes if isinstance(r, APIRoute)]


def test_every_console_route_declares_its_session_and_scopes() -> None:
    console = [r for r in routes() if isinstance(r, ConsoleRoute)]
    assert len(console) > 20
    for route in console:
        declared = [c for c in dependencies(route.dependant) if isinstance(c, SignedIn)]
        if route.path in PUBLIC:
            assert declared == [], route.path
        else:
            assert len(declared) == 1, (route.path, route.methods)


def test_every_api_route_declares_its_token_and_scope() -> None:
    api = [r for r in routes() if not isinstance(r, ConsoleRoute)]
    assert len(api) > 30
    for route in api:
        declared = [c for c in dependencies(route.dependant) if isinstance(c, TokenWith)]
        if route.path in PUBLIC or route.path.startswith("/webhooks/"):
            continue
        assert len(declared) >= 1, (route.path, route.methods)


EMAIL, PHONE = "pat.secret@clinic.example", "+14155559876"
USER_EMAIL = "user@example.com"
TEMPLATE = "Secret template"
RULE_SUBJECT = "Rule subject words"


@pytest.fixture
async def clinic(client: httpx.AsyncClient, tenant: Tenant, db: Database) -> dict[str, str]:
    contact = await tenant.add_contact(first_name="Pat", email=EMAIL, phone=PHONE)
    template = await tenant.add_template("email", name=TEMPLATE)
    async with db.session() as session:
        await session.execute(
            update(Template)
            .where(Template.id == template)
            .values(subject="Stored", body="TEMPLATE BODY")
        )
    await create_notifications(
        client,
        tenant,
        notification(subject=RULE_SUBJECT, body="Body"),
        notification(templateId=template, selectedUsers=[tenant.user_id], receiverType="business"),
    )
    booked = await client.post(
        "/calendars/events/appointments",
        json={
            "calendarId": tenant.calendar_id,
            "locationId": tenant.location_id,
            "contactId": contact,
            "assignedUserId": tenant.user_id,
            "startTime": (NOW + timedelta(days=3)).isoformat(),
        },
        headers=tenant.headers(),
    )
    assert booked.status_code == 200, booked.text
    return {"contact": contact, "appointment": booked.json()["id"], "template": template}


def pages(tenant: Tenant, clinic: dict[str, str]) -> list[str]:
    calendar = f"/console/calendars/{tenant.calendar_id}"
    return [
        "/console/calendars",
        calendar,
        f"{calendar}/rules/new",
        "/console/appointments",
        f"/console/appointments/{clinic['appointment']}",
        f"/console/appointments/{clinic['appointment']}/reschedule",
        f"/console/contacts/{clinic['contact']}",
        "/console/messages",
        "/console/outbox",
        "/console/inbox",
        "/console/templates",
        "/console/health",
    ]


@pytest.mark.parametrize("scope", ALL_SCOPES)
async def test_each_single_scope_token_sees_only_what_its_scope_allows(
    client: httpx.AsyncClient, tenant: Tenant, clinic: dict[str, str], scope: str
) -> None:
    token = await tenant.token_with(scope)
    assert (await sign_in(client, token)).status_code == 303
    held = frozenset({scope})
    for path in pages(tenant, clinic):
        page = await client.get(path)
        if page.status_code == 403:
            assert "scope" in page.text, path
            continue
        assert page.status_code == 200, (path, page.status_code)
        text = page.text
        if not grants(held, "contacts.readonly"):
            assert EMAIL not in text and PHONE not in text, (scope, path)
        if not grants(held, "users.readonly"):
            assert USER_EMAIL not in text, (scope, path)
        if not grants(held, "locations/templates.readonly"):
            assert TEMPLATE not in text, (scope, path)
        if not grants(held, "calendars/events.readonly"):
            assert RULE_SUBJECT not in text, (scope, path)
    calendar = await client.get(f"/console/calendars/{tenant.calendar_id}")
    if calendar.status_code == 200 and not grants(held, "calendars/events.readonly"):
        assert "calendars/events.readonly" in calendar.text  # says what would show the rules


async def test_what_each_part_needs_is_named(
    client: httpx.AsyncClient, tenant: Tenant, clinic: dict[str, str]
) -> None:
    token = await tenant.token_with("calendars/events.write", "calendars.readonly")
    assert (await sign_in(client, token)).status_code == 303
    appointment = await client.get(f"/console/appointments/{clinic['appointment']}")
    assert "contacts.readonly" in appointment.text and "users.readonly" in appointment.text
    assert EMAIL not in appointment.text
    form = await client.get(f"/console/calendars/{tenant.calendar_id}/rules/new")
    assert "users.readonly" in form.text and "locations/templates.readonly" in form.text
    calendar = await client.get(f"/console/calendars/{tenant.calendar_id}")
    assert RULE_SUBJECT in calendar.text and TEMPLATE not in calendar.text
    everything = await tenant.token_with(*ALL_SCOPES)
    assert (await sign_in(client, everything)).status_code == 303
    shown = await client.get(f"/console/appointments/{clinic['appointment']}")
    assert EMAIL in shown.text and PHONE in shown.text


PREVIEW_BODY = (
    "{{contact.email}} {{contact.phone}} {{contact.address1}} {{contact.first_name}} {{user.email}}"
)


async def preview(client: httpx.AsyncClient, tenant: Tenant, token: str, **body: Any) -> Any:
    response = await client.post(
        f"/calendars/{tenant.calendar_id}/notifications/preview",
        json=body,
        headers=tenant.headers(token),
    )
    assert response.status_code == 200, response.text
    return response.json()["deliveries"]


async def test_the_preview_renders_only_what_the_token_may_read(
    client: httpx.AsyncClient, tenant: Tenant, clinic: dict[str, str]
) -> None:
    drafts = {
        "notifications": [
            notification(subject="S", body=PREVIEW_BODY),
            notification(templateId=clinic["template"]),
        ]
    }
    events_only = await tenant.token_with("calendars/events.readonly")
    shown = await preview(
        client, tenant, events_only, appointmentId=clinic["appointment"], **drafts
    )
    text = repr(shown)
    assert EMAIL not in text and PHONE not in text and "Pat" not in text
    assert USER_EMAIL not in text and "TEMPLATE BODY" not in text
    assert "[hidden: needs contacts.readonly]" in text
    assert "[hidden: needs users.readonly]" in text
    assert "[hidden: needs locations/templates.readonly]" in text
    everything = await tenant.token_with(*ALL_SCOPES)
    full = repr(
        await preview(client, tenant, everything, appointmentId=clinic["appointment"], **drafts)
    )
    assert EMAIL in full and PHONE in full and "TEMPLATE BODY" in full and USER_EMAIL in full
    # A contact the request gives itself is the caller's own: shown.
    own = await preview(
        client,
        tenant,
        events_only,
        startTime=(NOW + timedelta(days=2)).isoformat(),
        endTime=(NOW + timedelta(days=2, hours=1)).isoformat(),
        contact={"firstName": "Sam", "email": "sam@own.example"},
        **drafts,
    )
    assert "sam@own.example" in repr(own)
