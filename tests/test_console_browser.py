"""The operator console in a real browser: Debian's Chromium driven by Playwright, finding
everything by its accessible name, against ``calnotify serve`` running as a process.

Skipped, with the reason in the summary, where no Chromium is installed (``apt-get install
chromium``). With ``CALNOTIFY_CONSOLE_SCREENSHOTS=docs/console`` the pages are saved there
as the README shows them.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.processes import Server, calnotify, start_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_SKIP_REASON = (
    "console browser tests skipped: no Chromium found (install Debian's chromium package)"
)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason=CHROMIUM_SKIP_REASON)

if CHROMIUM is not None:
    from playwright.sync_api import Browser, Page, expect, sync_playwright


def _location(server: Server, name: str, email: str) -> dict[str, str]:
    location = calnotify(
        server.database_url,
        "locations",
        "create",
        "--name",
        name,
        "--email",
        email,
        "--timezone",
        "America/New_York",
    )
    token = calnotify(server.database_url, "tokens", "create", "--location", str(location["id"]))
    api = httpx.Client(
        base_url=server.base_url,
        headers={"Authorization": f"Bearer {token['token']}", "Version": "2021-04-15"},
        timeout=10,
    )
    with api:
        calendar = api.post(
            "/calendars/", json={"locationId": location["id"], "name": f"{name} Cleanings"}
        ).json()["calendar"]
        contact = api.post(
            "/contacts/",
            json={
                "locationId": location["id"],
                "firstName": "Rosa",
                "lastName": "Diaz",
                "email": "rosa@example.com",
                "phone": "+14155550123",
            },
        ).json()["contact"]
    return {
        "location": str(location["id"]),
        "token": str(token["token"]),
        "calendar": calendar["id"],
        "calendar_name": calendar["name"],
        "contact": contact["id"],
    }


class Site:
    def __init__(self, server: Server) -> None:
        self.server = server
        self.acme = _location(server, "Acme Dental", "front@acme.example")
        self.globex = _location(server, "Globex Clinic", "desk@globex.example")

    def api(self, who: dict[str, str]) -> httpx.Client:
        return httpx.Client(
            base_url=self.server.base_url,
            headers={"Authorization": f"Bearer {who['token']}", "Version": "2021-04-15"},
            timeout=10,
        )

    def book(self, who: dict[str, str], title: str) -> dict[str, Any]:
        start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)
        with self.api(who) as api:
            response = api.post(
                "/calendars/events/appointments",
                json={
                    "calendarId": who["calendar"],
                    "locationId": who["location"],
                    "contactId": who["contact"],
                    "startTime": start.isoformat(),
                    "title": title,
                },
            )
        assert response.status_code == 200, response.text
        booked: dict[str, Any] = response.json()
        return booked


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    path = tmp_path_factory.mktemp("console") / "calnotify.db"
    with start_server(f"sqlite+aiosqlite:///{path}") as server:
        yield Site(server)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser, site: Site) -> Iterator[Page]:
    context = browser.new_context(
        base_url=site.server.base_url, viewport={"width": 1280, "height": 900}
    )
    opened = context.new_page()
    opened.set_default_timeout(10_000)
    yield opened
    context.close()


def shot(page: Page, name: str) -> None:
    folder = os.environ.get("CALNOTIFY_CONSOLE_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


UNNAMED = """() => [...document.querySelectorAll('input, select, textarea, button, a[href]')]
  .filter(e => e.type !== 'hidden')
  .filter(e => ['BUTTON', 'A'].includes(e.tagName)
    ? !(e.textContent.trim() || e.getAttribute('aria-label'))
    : !(e.labels.length || e.getAttribute('aria-label') || e.getAttribute('aria-labelledby')))
  .map(e => e.outerHTML.slice(0, 120))"""


def assert_accessible(page: Page) -> None:
    """Every control of the page has a name; every table its header row."""
    assert page.evaluate(UNNAMED) == []
    headless = page.evaluate(
        "() => [...document.querySelectorAll('table')].filter(t => !t.querySelector('th')).length"
    )
    assert headless == 0


def sign_in(page: Page, token: str) -> None:
    page.goto("/console/calendars")
    page.get_by_label("Access token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Calendars", level=1)).to_be_visible()


def test_a_visitor_signs_in_and_out(page: Page, site: Site) -> None:
    page.goto("/console/health")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    shot(page, "sign-in")
    assert_accessible(page)
    page.get_by_label("Access token").fill("cn_this-is-not-a-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text(re.compile("invalid token", re.I))

    page.get_by_label("Access token").fill(site.acme["token"])
    page.get_by_role("button", name="Sign in").click()
    # Back where the visitor was going.
    expect(page.get_by_role("heading", name="Health", level=1)).to_be_visible()
    (cookie,) = [c for c in page.context.cookies() if c["name"] == "calnotify_console"]
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert site.acme["token"] not in cookie["value"]

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.goto("/console/calendars")
    expect(page.get_by_label("Access token")).to_be_visible()


def test_a_rule_is_refused_then_saved_with_a_live_preview(page: Page, site: Site) -> None:
    sign_in(page, site.acme["token"])
    shot(page, "calendars")
    page.get_by_role("link", name=site.acme["calendar_name"]).click()
    expect(page.get_by_role("heading", name=site.acme["calendar_name"])).to_be_visible()
    page.get_by_role("link", name="New rule").click()
    expect(page.get_by_role("heading", name="New rule")).to_be_visible()
    assert_accessible(page)

    # SMS can't go to guests: refused, with the reason beside the field, nothing created.
    page.get_by_label("Channel").select_option(label="SMS")
    page.get_by_label("Receiver").select_option(label="Guests")
    page.get_by_label("Body").fill("Your visit is booked")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("heading", name="Not saved: fix what is marked below")).to_be_visible()
    receiver = page.get_by_label("Receiver")
    expect(receiver).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#receiverType-error")).to_contain_text("sms")
    expect(page.get_by_label("Body")).to_have_value("Your visit is booked")
    with site.api(site.acme) as api:
        assert api.get(f"/calendars/{site.acme['calendar']}/notifications").json() == []

    # A booked email to the contact; the preview follows what is typed.
    page.get_by_label("Channel").select_option(label="Email")
    page.get_by_label("Receiver").select_option(label="Contact")
    page.get_by_label("Trigger").select_option(label="Booked")
    page.get_by_label("Subject").fill("Booked: {{appointment.title}} with {{location.name}}")
    page.get_by_label("Body").fill("Hello {{contact.first_name}}, see you soon.")
    preview = page.locator("#preview")
    expect(preview).to_contain_text("sample@example.com")
    expect(preview).to_contain_text("with Acme Dental")
    expect(preview).to_contain_text("Hello Sample, see you soon.")
    shot(page, "rule-form")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_contain_text("Rule created.")
    row = page.get_by_role("row").filter(has_text="Booked")
    expect(row).to_contain_text("Email")
    expect(row).to_contain_text("Booked: {{appointment.title}}")
    shot(page, "calendar")
    with site.api(site.acme) as api:
        (rule,) = api.get(f"/calendars/{site.acme['calendar']}/notifications").json()
    assert (rule["channel"], rule["receiverType"], rule["notificationType"]) == (
        "email",
        "contact",
        "booked",
    )


def test_an_appointment_shows_what_was_sent_and_why(page: Page, site: Site) -> None:
    with site.api(site.acme) as api:
        rules = api.get(f"/calendars/{site.acme['calendar']}/notifications").json()
        if not any(r["notificationType"] == "booked" for r in rules):
            api.post(
                f"/calendars/{site.acme['calendar']}/notifications",
                json=[
                    {"receiverType": "contact", "channel": "email", "notificationType": "booked"}
                ],
            )
        api.post(
            f"/calendars/{site.acme['calendar']}/notifications",
            json=[
                {
                    "receiverType": "contact",
                    "channel": "sms",
                    "notificationType": "reminder",
                    "beforeTime": [{"timeOffset": 1, "unit": "days"}],
                }
            ],
        )
    booked = site.book(site.acme, "Cleaning with Dr. Lee")
    deadline = time.monotonic() + 20
    with site.api(site.acme) as api:
        while time.monotonic() < deadline:
            found = api.get("/deliveries", params={"appointmentId": booked["id"]}).json()
            if any(d["status"] == "sent" for d in found["deliveries"]):
                break
            time.sleep(0.1)
    sign_in(page, site.acme["token"])
    page.get_by_role("link", name="Appointments").click()
    page.get_by_label("Title, or contact name, email or phone").fill("rosa")
    page.get_by_role("button", name="Search").click()
    page.get_by_role("link", name="Cleaning with Dr. Lee").first.click()
    expect(page.get_by_role("heading", name="Cleaning with Dr. Lee")).to_be_visible()

    page.goto(f"/console/appointments/{booked['id']}")
    booked_row = page.get_by_role("row").filter(has_text="Booked").first
    expect(booked_row).to_contain_text("rosa@example.com")
    expect(booked_row).to_contain_text("sent")
    reminder = page.get_by_role("row").filter(has_text="Reminder").first
    expect(reminder).to_contain_text("scheduled")
    page.get_by_text("Details of the booked email message to rosa@example.com").click()
    expect(page.get_by_role("heading", name="Message as rendered")).to_be_visible()
    shot(page, "appointment")
    assert_accessible(page)

    # Another location's appointment does not exist here.
    theirs = site.book(site.globex, "Globex visit")
    response = page.goto(f"/console/appointments/{theirs['id']}")
    assert response is not None
    assert response.status == 404
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()


def test_health_outbox_and_templates(page: Page, site: Site) -> None:
    sign_in(page, site.acme["token"])
    page.get_by_role("link", name="Health").click()
    expect(page.get_by_role("heading", name="Health", level=1)).to_be_visible()
    expect(page.get_by_text("Queue depth")).to_be_visible()
    expect(page.get_by_role("img", name="Sends per minute, last hour")).to_be_visible()
    assert page.locator("svg").count() >= 1
    shot(page, "health")
    assert_accessible(page)
    page.get_by_role("link", name="Outbox").click()
    expect(page.get_by_role("heading", name="Outbox")).to_be_visible()
    shot(page, "outbox")
    page.get_by_role("link", name="Templates").click()
    page.get_by_role("link", name="New template").click()
    page.get_by_label("Name").fill("Welcome")
    page.get_by_label("Subject").fill("Welcome to {{location.name}}")
    page.get_by_label("HTML").fill("<p>Hello <b>{{contact.first_name}}</b></p>")
    expect(page.locator("#preview")).to_contain_text("Welcome to Acme Dental")
    shot(page, "template")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("link", name="Welcome")).to_be_visible()
    page.get_by_role("link", name="Inbox").click()
    expect(page.get_by_role("heading", name="Inbox")).to_be_visible()


def test_keyboard_and_phone(browser: Browser, site: Site) -> None:
    context = browser.new_context(
        base_url=site.server.base_url, viewport={"width": 390, "height": 844}, is_mobile=True
    )
    page = context.new_page()
    try:
        sign_in(page, site.acme["token"])
        page.keyboard.press("Tab")
        focused = page.evaluate("document.activeElement.textContent.trim()")
        assert focused == "Skip to content"
        page.keyboard.press("Tab")
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent.trim()") == "Calendars"
        # Nothing wider than the phone's screen but what scrolls on its own.
        width = page.evaluate("document.documentElement.scrollWidth")
        wide = page.evaluate(
            "[...document.querySelectorAll('body *')]"
            ".filter(e => e.getBoundingClientRect().right > 391 && !e.closest('.scroll'))"
            ".map(e => e.tagName + '.' + e.className).slice(0, 8)"
        )
        assert width <= 390, (width, wide)
        shot(page, "phone-calendars")
    finally:
        context.close()


def test_an_operator_sees_the_deployment_and_switches_location(page: Page, site: Site) -> None:
    operator = calnotify(site.server.database_url, "tokens", "create", "--operator")
    site.book(site.globex, "Deployment check")
    sign_in(page, str(operator["token"]))
    page.get_by_role("link", name="Deployment · switch location").click()
    expect(page.get_by_role("heading", name="Deployment", level=1)).to_be_visible()
    table = page.get_by_role("table")
    expect(table.get_by_role("rowheader", name="Acme Dental")).to_be_visible()
    expect(table.get_by_role("rowheader", name="Globex Clinic")).to_be_visible()
    assert_accessible(page)
    shot(page, "deployment")
    page.get_by_role("button", name="Open Globex Clinic").click()
    expect(page.get_by_role("heading", name="Calendars", level=1)).to_be_visible()
    expect(page.get_by_role("link", name="Globex Clinic Cleanings")).to_be_visible()
    page.goto("/console/health")
    expect(page.get_by_role("heading", name="Provider checks")).to_be_visible()


def test_a_token_sees_only_what_its_scopes_allow(page: Page, site: Site) -> None:
    token = calnotify(
        site.server.database_url,
        "tokens",
        "create",
        "--location",
        site.acme["location"],
        "--scope",
        "calendars.readonly",
        "--scope",
        "calendars/events.readonly",
    )
    booked = site.book(site.acme, "Scoped look")
    sign_in(page, str(token["token"]))
    page.goto(f"/console/appointments/{booked['id']}")
    expect(page.get_by_text("The contact: shown with the contacts.readonly scope")).to_be_visible()
    assert "rosa@example.com" not in page.content()
    assert_accessible(page)
    shot(page, "scoped-appointment")
    page.goto("/console/health")
    assert page.get_by_role("heading", name="Provider checks").count() == 0
    page.goto("/console/deployment")
    expect(page.get_by_text("sign in with an operator token")).to_be_visible()
