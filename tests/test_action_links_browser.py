"""The appointment page in a real browser (Debian's Chromium driven by Playwright), from the
links of an email a real SMTP server received, against ``calnotify serve`` as a process, on
both databases: confirm, cancel and reschedule, each seen through the API and the email its
rules send."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import httpx
import pytest

from tests import test_console_browser as base
from tests.processes import Server, calnotify, start_server
from tests.providers import SmtpInbox, smtp_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="browser tests skipped: no Chromium found (apt-get install chromium)"
)
if CHROMIUM is not None:
    from playwright.sync_api import Browser, Page, expect

PUBLIC = "https://cal.example"
LINKS = (
    "Confirm: {{appointment.confirmation_link}}\n"
    "Cancel: {{appointment.cancellation_link}}\n"
    "Reschedule: {{appointment.reschedule_link}}\n"
)
EVERY_DAY = [
    {
        "daysOfTheWeek": [0, 1, 2, 3, 4, 5, 6],
        "hours": [{"openHour": 8, "openMinute": 0, "closeHour": 20, "closeMinute": 0}],
    }
]
_LINK = re.compile(re.escape(PUBLIC) + r"/a/[A-Za-z0-9_-]+(?:\?do=\w+)?")


@dataclass
class Booked:
    server: Server
    inbox: SmtpInbox
    api: httpx.Client
    calendar_id: str
    appointment: dict[str, Any]
    links: list[str]  # confirm, cancel, reschedule: on the test server

    def event(self) -> dict[str, Any]:
        response = self.api.get(f"/calendars/events/appointments/{self.appointment['id']}")
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()["event"]
        return found


def body_of(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def wait_for(inbox: SmtpInbox, subject: str, seconds: float = 15) -> EmailMessage:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with inbox.lock:
            found = [m for m in inbox.messages if m["Subject"] == subject]
        if found:
            return found[-1]
        time.sleep(0.1)
    raise AssertionError(f"no email {subject!r} arrived")


@pytest.fixture
def booked(database_url: str) -> Iterator[Booked]:
    """A location whose calendar sends each immediate type by email with the three links,
    an appointment booked in a free slot, and its booked email received."""
    with smtp_server() as (inbox, port):
        env = {
            "CALNOTIFY_SMTP_HOST": "127.0.0.1",
            "CALNOTIFY_SMTP_PORT": str(port),
            "CALNOTIFY_SMTP_SECURITY": "none",
            "CALNOTIFY_PUBLIC_URL": PUBLIC,
        }
        with start_server(database_url, env=env) as server:
            yield _book(server, inbox)


def _book(server: Server, inbox: SmtpInbox) -> Booked:
    location = calnotify(
        server.database_url, "locations", "create", "--name", "Acme Dental",
        "--email", "front@acme.example", "--phone", "+14155550100",
        "--timezone", "America/New_York",
    )  # fmt: skip
    token = calnotify(server.database_url, "tokens", "create", "--location", str(location["id"]))
    api = httpx.Client(
        base_url=server.base_url,
        headers={"Authorization": f"Bearer {token['token']}", "Version": "2021-04-15"},
        timeout=10,
    )
    calendar = api.post(
        "/calendars/",
        json={
            "locationId": location["id"],
            "name": "Cleanings",
            "openHours": EVERY_DAY,
            "slotDuration": 30,
        },
    ).json()["calendar"]
    rules = [
        {
            "receiverType": "contact",
            "channel": "email",
            "notificationType": kind,
            "subject": kind,
            "body": f"{kind}\n{LINKS}",
        }
        for kind in ("booked", "confirmation", "cancellation", "reschedule")
    ]
    created = api.post(f"/calendars/{calendar['id']}/notifications", json=rules)
    assert created.status_code == 200, created.text
    contact = api.post(
        "/contacts/",
        json={
            "locationId": location["id"],
            "firstName": "Rosa",
            "lastName": "Diaz",
            "email": "rosa@example.com",
            "timezone": "America/Chicago",
        },
    ).json()["contact"]
    start = free_slots(api, calendar["id"])[0]
    response = api.post(
        "/calendars/events/appointments",
        json={
            "calendarId": calendar["id"],
            "locationId": location["id"],
            "contactId": contact["id"],
            "startTime": start,
            "title": "Cleaning",
        },
    )
    assert response.status_code == 200, response.text
    links = _LINK.findall(body_of(wait_for(inbox, "booked")))
    assert len(links) == 3
    on_server = [link.replace(PUBLIC, server.base_url) for link in links]
    return Booked(server, inbox, api, calendar["id"], response.json(), on_server)


def free_slots(api: httpx.Client, calendar_id: str, days_ahead: int = 2) -> list[str]:
    """The calendar's free slots for a week from ``days_ahead`` days on, in the contact's
    zone."""
    start = datetime.now(UTC) + timedelta(days=days_ahead)
    response = api.get(
        f"/calendars/{calendar_id}/free-slots",
        params={
            "startDate": int(start.timestamp() * 1000),
            "endDate": int((start + timedelta(days=7)).timestamp() * 1000),
            "timezone": "America/Chicago",
        },
    )
    assert response.status_code == 200, response.text
    return [s for day in response.json().values() for s in day["slots"]]


# The console's browser tests' browser.
browser = base.browser


@pytest.fixture
def phone(browser: Browser) -> Iterator[Page]:
    """A phone-sized page, without JavaScript: the page must work without it."""
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, java_script_enabled=False, is_mobile=True
    )
    opened = context.new_page()
    opened.set_default_timeout(10_000)
    yield opened
    context.close()


def fits(page: Page) -> None:
    """Nothing wider than the phone; every control named; one main heading; a language."""
    with_script = page.context.browser.new_context(viewport={"width": 390, "height": 844})  # type: ignore[union-attr]
    check = with_script.new_page()
    check.goto(page.url)
    assert check.evaluate("document.documentElement.scrollWidth") <= 390
    assert check.evaluate("document.documentElement.lang") == "en"
    unnamed = check.evaluate(
        """() => [...document.querySelectorAll('input, textarea, button, a[href]')]
        .filter(e => e.type !== 'hidden')
        .filter(e => ['BUTTON', 'A'].includes(e.tagName)
          ? !e.textContent.trim()
          : !(e.labels.length || e.getAttribute('aria-label')))
        .map(e => e.outerHTML.slice(0, 120))"""
    )
    assert unnamed == []
    assert check.locator("h1").count() == 1
    with_script.close()


def test_confirm_from_the_email_link(phone: Page, booked: Booked) -> None:
    phone.goto(booked.links[0])
    expect(phone.get_by_role("heading", name="Cleaning", level=1)).to_be_visible()
    expect(phone.get_by_text("Hi Rosa")).to_be_visible()
    fits(phone)
    phone.get_by_role("button", name="Confirm I will come").click()
    expect(phone.get_by_role("status")).to_contain_text("confirmed")
    assert booked.event()["appointmentStatus"] == "confirmed"
    assert len(_LINK.findall(body_of(wait_for(booked.inbox, "confirmation")))) == 3


def test_cancel_from_the_email_link(phone: Page, booked: Booked) -> None:
    phone.goto(booked.links[1])
    phone.get_by_label("Reason (optional)").fill("Out of town")
    fits(phone)
    phone.get_by_role("button", name="Cancel my appointment").click()
    expect(phone.get_by_role("status")).to_contain_text("cancelled")
    expect(phone.get_by_text("This appointment is cancelled.")).to_be_visible()
    assert phone.get_by_role("button").count() == 0
    event = booked.event()
    assert event["appointmentStatus"] == "cancelled"
    assert "Out of town" in event["notes"]
    wait_for(booked.inbox, "cancellation")


def test_reschedule_from_the_email_link_to_a_free_slot(phone: Page, booked: Booked) -> None:
    phone.goto(booked.links[2])
    fits(phone)
    offered = free_slots(booked.api, booked.calendar_id, days_ahead=0)
    choice = phone.get_by_role("radio").nth(3)
    slot = choice.get_attribute("value")
    assert slot in offered
    choice.check()
    phone.get_by_role("button", name="Move my appointment").click()
    expect(phone.get_by_role("status")).to_contain_text("moved")
    event = booked.event()
    assert event["id"] == booked.appointment["id"]
    moved = datetime.fromisoformat(event["startTime"])
    assert moved == datetime.fromisoformat(str(slot))
    assert datetime.fromisoformat(event["endTime"]) - moved == timedelta(minutes=30)
    wait_for(booked.inbox, "reschedule")


def test_a_tampered_link_is_a_404(phone: Page, booked: Booked) -> None:
    link = booked.links[0]
    tampered = link[:-2] + ("AA" if not link.endswith("AA") else "BB")
    response = phone.goto(tampered)
    assert response is not None and response.status == 404
    expect(phone.get_by_role("heading", name="This link does not work")).to_be_visible()
