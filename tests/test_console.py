"""The operator console, as a browser without JavaScript sees it: pages, sign-in, forms.

tests/test_console_browser.py drives the same pages in Chromium."""

from __future__ import annotations

import re
from datetime import timedelta
from html import unescape

import httpx
import pytest
from sqlalchemy import func, select

from calnotify.app import create_app
from calnotify.auth.tokens import hash_token, revoke_token
from calnotify.clock import ManualClock
from calnotify.config import Settings
from calnotify.console.web import local
from calnotify.db.engine import Database
from calnotify.models import ApiToken, ConsoleSession, Notification
from tests.conftest import NOW
from tests.engine import Scenario
from tests.factories import Tenant
from tests.test_auth_before_lock import PROMPT, app_write_lock, prompt


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


def text_of(html: str) -> str:
    """What a reader sees: the page without its tags and with single spaces."""
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


async def sign_in(client: httpx.AsyncClient, token: str, next_page: str = "") -> httpx.Response:
    form = await client.get("/console/sign-in", params={"next": next_page} if next_page else None)
    assert form.status_code == 200
    return await client.post(
        "/console/sign-in",
        data={"csrf": csrf_of(form.text), "token": token, "next": next_page},
    )


async def signed_in(client: httpx.AsyncClient, tenant: Tenant) -> str:
    """Signs in with the tenant's token; the CSRF token of the session."""
    response = await sign_in(client, tenant.token)
    assert response.status_code == 303, response.text
    page = await client.get("/console/calendars")
    assert page.status_code == 200
    return csrf_of(page.text)


def rule_form(csrf: str, **fields: str) -> dict[str, str]:
    values = {
        "csrf": csrf,
        "channel": "email",
        "receiverType": "contact",
        "notificationType": "booked",
        "subject": "",
        "body": "",
        "templateId": "",
        "offset0": "",
        "unit0": "hours",
        "when0": "before",
        "additionalEmails": "",
        "additionalPhones": "",
        "fromName": "",
        "fromAddress": "",
        "fromNumber": "",
        "isActive": "true",
    }
    values.update(fields)
    return values


async def rules_in_api(client: httpx.AsyncClient, tenant: Tenant) -> list[dict[str, object]]:
    response = await client.get(
        f"/calendars/{tenant.calendar_id}/notifications", headers=tenant.headers()
    )
    assert response.status_code == 200
    rules: list[dict[str, object]] = response.json()
    return rules


async def booked_and_reminder_rules(scenario: Scenario, reminder_channel: str) -> str:
    """A booked email and a reminder an hour before on the calendar; a contact's id."""
    await scenario.rules(
        {"receiverType": "contact", "channel": "email", "notificationType": "booked"},
        {
            "receiverType": "contact",
            "channel": reminder_channel,
            "notificationType": "reminder",
            "beforeTime": [{"timeOffset": 1, "unit": "hours"}],
        },
    )
    return await scenario.tenant.add_contact()


async def test_a_visitor_without_a_session_gets_the_sign_in_form(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/console/appointments?q=rosa")
    assert response.status_code == 303
    assert (
        response.headers["location"] == "/console/sign-in?next=%2Fconsole%2Fappointments%3Fq%3Drosa"
    )
    form = await client.get(response.headers["location"])
    assert form.status_code == 200
    assert '<label for="token">Access token</label>' in form.text
    assert ">Sign in</button>" in form.text
    assert "Calendars</a>" not in form.text  # no navigation before signing in


async def test_a_wrong_token_is_told_it_is_invalid(client: httpx.AsyncClient) -> None:
    response = await sign_in(client, "cn_not-a-token")
    assert response.status_code == 401
    assert "Invalid token" in response.text
    assert "calnotify_console=" not in response.headers.get("set-cookie", "")


async def test_sign_in_opens_a_server_side_session_and_sign_out_ends_it(
    client: httpx.AsyncClient, tenant: Tenant, db: Database
) -> None:
    response = await sign_in(client, tenant.token, "/console/health")
    assert response.status_code == 303
    assert response.headers["location"] == "/console/health"
    cookie = next(
        c for c in response.headers.get_list("set-cookie") if c.startswith("calnotify_console=")
    )
    attributes = [part.strip().lower() for part in cookie.split(";")]
    assert "httponly" in attributes
    assert "samesite=strict" in attributes
    assert "path=/console" in attributes
    assert "secure" not in attributes  # CALNOTIFY_PUBLIC_URL is not https here
    secret = cookie.split(";", 1)[0].split("=", 1)[1]
    assert tenant.token not in cookie
    async with db.session(write=False) as session:
        stored = (await session.scalars(select(ConsoleSession))).all()
    assert [s.id_hash for s in stored] == [hash_token(secret)]  # only its hash is kept

    page = await client.get("/console/calendars")
    assert page.status_code == 200
    assert "<h1>Calendars</h1>" in page.text
    signed_out = await client.post("/console/sign-out", data={"csrf": csrf_of(page.text)})
    assert signed_out.status_code == 303
    assert (await client.get("/console/calendars")).status_code == 303
    async with db.session(write=False) as session:
        assert await session.scalar(select(func.count()).select_from(ConsoleSession)) == 0


async def test_the_cookie_is_secure_behind_https(
    settings: Settings, db: Database, clock: ManualClock, tenant: Tenant
) -> None:
    app = create_app(settings.model_copy(update={"public_url": "https://cal.example"}), db, clock)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://calnotify.test") as c:
        response = await sign_in(c, tenant.token)
    cookie = next(
        c for c in response.headers.get_list("set-cookie") if c.startswith("calnotify_console=")
    )
    assert "secure" in [part.strip().lower() for part in cookie.split(";")]


async def test_a_revoked_token_ends_its_sessions(
    client: httpx.AsyncClient, tenant: Tenant, db: Database
) -> None:
    await signed_in(client, tenant)
    async with db.session() as session:
        token_id = await session.scalar(
            select(ApiToken.id).where(ApiToken.token_hash == hash_token(tenant.token))
        )
        assert token_id is not None
        await revoke_token(session, token_id)
    response = await client.get("/console/calendars")
    assert response.status_code == 303
    assert response.headers["location"].startswith("/console/sign-in")


async def test_sign_in_goes_only_to_console_pages(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    for target in ("https://evil.example/console", "//evil.example/console", "/docs"):
        response = await sign_in(client, tenant.token, target)
        assert response.headers["location"] == "/console/calendars", target


async def test_a_sign_in_without_its_form_token_is_refused(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    response = await client.post("/console/sign-in", data={"csrf": "forged", "token": tenant.token})
    assert response.status_code == 403
    assert "calnotify_console=" not in response.headers.get("set-cookie", "")


async def test_a_form_without_the_session_csrf_token_changes_nothing(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    await signed_in(client, tenant)
    url = f"/console/calendars/{tenant.calendar_id}/rules"
    for csrf in ("", "forged"):
        response = await client.post(url, data=rule_form(csrf))
        assert response.status_code == 403
        assert "Form expired" in response.text
    assert await rules_in_api(client, tenant) == []


async def test_a_refused_rule_shows_why_beside_its_field_and_keeps_what_was_typed(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    csrf = await signed_in(client, tenant)
    form = await client.get(f"/console/calendars/{tenant.calendar_id}/rules/new")
    assert form.status_code == 200
    for label in ("Channel", "Receiver", "Trigger", "Subject", "Body", "Template", "Offset 1"):
        assert f">{label}</label>" in form.text, label
    response = await client.post(
        f"/console/calendars/{tenant.calendar_id}/rules",
        data=rule_form(csrf, channel="sms", receiverType="guest", body="Hi {{contact.name}}"),
    )
    assert response.status_code == 400
    page = response.text
    error = re.search(r'<p class="error" id="receiverType-error">([^<]+)</p>', page)
    assert error, page
    assert "sms" in error.group(1)
    assert 'aria-describedby="receiverType-error"' in page
    assert '<option value="sms" selected>' in page
    assert "Hi {{contact.name}}</textarea>" in page
    assert await rules_in_api(client, tenant) == []


async def test_a_saved_rule_is_in_the_table_and_in_the_api(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    csrf = await signed_in(client, tenant)
    response = await client.post(
        f"/console/calendars/{tenant.calendar_id}/rules",
        data=rule_form(
            csrf,
            notificationType="reminder",
            subject="See you soon",
            offset0="2",
            unit0="hours",
            additionalEmails="",
        ),
    )
    assert response.status_code == 303, response.text
    page = await client.get(response.headers["location"])
    assert "Rule created." in page.text
    table = text_of(page.text)
    assert "Email Contact Reminder (before the start) 2 hours before See you soon Yes" in table
    rules = await rules_in_api(client, tenant)
    assert len(rules) == 1
    assert rules[0]["beforeTime"] == [{"timeOffset": 2, "unit": "hours"}]
    assert rules[0]["subject"] == "See you soon"

    rule_id = rules[0]["_id"]
    edit = await client.get(f"/console/calendars/{tenant.calendar_id}/rules/{rule_id}/edit")
    assert 'value="See you soon"' in edit.text
    saved = await client.post(
        f"/console/calendars/{tenant.calendar_id}/rules/{rule_id}",
        data=rule_form(
            csrf, notificationType="reminder", subject="Soon!", offset0="1", unit0="days"
        ),
    )
    assert saved.status_code == 303, saved.text
    deactivated = await client.post(
        f"/console/calendars/{tenant.calendar_id}/rules/{rule_id}/active",
        data={"csrf": csrf, "active": "false"},
    )
    assert deactivated.status_code == 303
    (rule,) = await rules_in_api(client, tenant)
    assert (rule["subject"], rule["beforeTime"], rule["isActive"]) == (
        "Soon!",
        [{"timeOffset": 1, "unit": "days"}],
        False,
    )
    deleted = await client.post(
        f"/console/calendars/{tenant.calendar_id}/rules/{rule_id}/delete", data={"csrf": csrf}
    )
    assert deleted.status_code == 303
    assert await rules_in_api(client, tenant) == []


async def test_the_preview_renders_the_rule_being_typed_and_stores_nothing(
    client: httpx.AsyncClient, tenant: Tenant, db: Database
) -> None:
    csrf = await signed_in(client, tenant)
    response = await client.post(
        f"/console/calendars/{tenant.calendar_id}/preview",
        data=rule_form(
            csrf, subject="Booked: {{appointment.title}}", body="Hello {{contact.name}}"
        ),
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200, response.text
    shown = text_of(response.text)
    assert "sample@example.com" in shown
    assert "Hello Sample Contact" in shown
    invalid = await client.post(
        f"/console/calendars/{tenant.calendar_id}/preview",
        data=rule_form(csrf, channel="inApp", receiverType="contact"),
    )
    assert "Nothing to preview yet" in invalid.text
    assert "receiverType" in invalid.text
    async with db.session(write=False) as session:
        assert await session.scalar(select(func.count()).select_from(Notification)) == 0


async def test_an_appointment_page_shows_its_notification_timeline(
    client: httpx.AsyncClient,
    tenant: Tenant,
    clock: ManualClock,
    db: Database,
    settings: Settings,
) -> None:
    scenario = Scenario(client, tenant, clock, db, settings)
    contact = await booked_and_reminder_rules(scenario, "sms")
    booked = await scenario.book(contact, NOW + timedelta(days=1), title="Cleaning")
    await scenario.dispatcher.drain()
    await signed_in(client, tenant)
    page = await client.get(f"/console/appointments/{booked['id']}")
    assert page.status_code == 200
    assert "<h1>Cleaning</h1>" in page.text
    shown = text_of(page.text)
    assert "Booked Email rosa@example.com sent" in shown
    assert "Reminder (before the start) SMS +14155550123 scheduled" in shown
    assert "Message as rendered" in page.text

    found = await client.get("/console/appointments", params={"q": "rosa"})
    assert f'/console/appointments/{booked["id"]}"' in found.text
    nothing = await client.get("/console/appointments", params={"q": "nobody-like-this"})
    assert "No appointment matches." in nothing.text
    bad = await client.get("/console/appointments", params={"from": "yesterday"})
    assert bad.status_code == 400
    assert "must be a date" in bad.text


async def test_another_locations_ids_are_404_pages(
    client: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    clock: ManualClock,
    db: Database,
    settings: Settings,
) -> None:
    theirs = Scenario(client, other_tenant, clock, db, settings)
    contact = await other_tenant.add_contact()
    booked = await theirs.book(contact, NOW + timedelta(days=1))
    await signed_in(client, tenant)
    for path in (
        f"/console/appointments/{booked['id']}",
        f"/console/calendars/{other_tenant.calendar_id}",
        f"/console/calendars/{other_tenant.calendar_id}/rules/new",
        f"/console/inbox?user={other_tenant.user_id}",
        "/console/appointments/not-an-id",
        "/console/templates/AAAAAAAAAAAAAAAAAAAA",
    ):
        response = await client.get(path)
        assert response.status_code == 404, path
        assert "text/html" in response.headers["content-type"]
        assert "<h1>Not found</h1>" in response.text
    mine = await client.get("/console/appointments", params={"q": "rosa"})
    assert booked["id"] not in mine.text


async def test_health_shows_the_queue_and_svg_charts(
    client: httpx.AsyncClient,
    tenant: Tenant,
    clock: ManualClock,
    db: Database,
    settings: Settings,
) -> None:
    scenario = Scenario(client, tenant, clock, db, settings)
    contact = await booked_and_reminder_rules(scenario, "email")
    await scenario.book(contact, NOW + timedelta(days=1))
    await scenario.book(contact, NOW + timedelta(days=2))
    await scenario.dispatcher.drain()
    clock.advance(minutes=5)
    await signed_in(client, tenant)
    page = await client.get("/console/health")
    assert page.status_code == 200
    shown = text_of(page.text)
    assert "Queue depth 2 Due now 0 Being sent 0 Oldest due none waiting" in shown
    assert "< 0.5 s 2 < 1 s 0" in shown  # both booked emails, sent when due
    minute = local(NOW, "America/New_York")[-9:-4]
    assert f"{minute} 2" in shown  # the minute they were sent, in the location's zone
    assert page.text.count("<svg") == 2
    assert 'role="img"' in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'none'")


async def test_a_token_without_the_scope_sees_why(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    token = await tenant.token_with("calendars.readonly")
    assert (await sign_in(client, token)).status_code == 303
    assert (await client.get("/console/calendars")).status_code == 200
    refused = await client.get(f"/console/calendars/{tenant.calendar_id}/rules/new")
    assert refused.status_code == 403
    assert "calendars/events.write" in refused.text


@pytest.mark.parametrize(
    "path", ["/console/outbox", "/console/inbox", "/console/templates", "/console/templates/new"]
)
async def test_every_page_renders(client: httpx.AsyncClient, tenant: Tenant, path: str) -> None:
    await signed_in(client, tenant)
    response = await client.get(path)
    assert response.status_code == 200, response.text
    assert "<h1>" in response.text


async def test_a_series_page_leads_to_each_occurrence_and_its_own_timeline(
    client: httpx.AsyncClient,
    tenant: Tenant,
    clock: ManualClock,
    db: Database,
    settings: Settings,
) -> None:
    scenario = Scenario(client, tenant, clock, db, settings)
    await scenario.rules(
        {
            "receiverType": "contact",
            "channel": "email",
            "notificationType": "reminder",
            "beforeTime": [{"timeOffset": 1, "unit": "hours"}],
        }
    )
    contact = await tenant.add_contact()
    master = await scenario.book(
        contact, NOW + timedelta(days=1), title="Weekly check", rrule="RRULE:FREQ=WEEKLY;COUNT=4"
    )
    await signed_in(client, tenant)
    page = await client.get(f"/console/appointments/{master['id']}")
    assert page.status_code == 200
    links = re.findall(rf'href="/console/appointments/({master["id"]}_\d+)"', page.text)
    assert len(links) == 4
    occurrence = await client.get(f"/console/appointments/{links[1]}")
    assert occurrence.status_code == 200
    assert "<h1>Weekly check</h1>" in occurrence.text
    assert f'href="/console/appointments/{master["id"]}">' in occurrence.text  # back to it
    shown = text_of(occurrence.text)
    assert "Reminder (before the start) Email rosa@example.com scheduled" in shown
    assert shown.count("Reminder (before the start) Email") == 1  # this occurrence's only


async def test_pages_and_refused_sign_ins_do_not_wait_for_the_write_lock(
    client: httpx.AsyncClient, tenant: Tenant, db: Database
) -> None:
    await signed_in(client, tenant)
    form = await client.get("/console/sign-in")
    async with app_write_lock(db):
        for path in ("/console/calendars", "/console/appointments", "/console/health"):
            response, took = await prompt(client.get(path))
            assert response.status_code == 200, path
            assert took < PROMPT, (path, took)
        attempt = client.post(
            "/console/sign-in", data={"csrf": csrf_of(form.text), "token": "cn_wrong"}
        )
        response, took = await prompt(attempt)
        assert response.status_code == 401
        assert took < PROMPT
