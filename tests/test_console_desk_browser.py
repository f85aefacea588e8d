"""The front desk in Chromium (Playwright, Debian's chromium), against ``calnotify serve``:
acting on an appointment, the contact page, the Messages page, and the console's open list.
Screenshots go where tests/test_console_browser.py puts them."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from tests import test_console_browser as base
from tests.processes import start_server
from tests.test_console_browser import (
    CHROMIUM,
    CHROMIUM_SKIP_REASON,
    Site,
    assert_accessible,
    shot,
    sign_in,
)

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason=CHROMIUM_SKIP_REASON)

if CHROMIUM is not None:
    from playwright.sync_api import Browser, Dialog, Page, expect


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    path = tmp_path_factory.mktemp("desk") / "calnotify.db"
    with start_server(f"sqlite+aiosqlite:///{path}") as server:
        yield Site(server)


# The console's browser tests' browser and page (each test module has its own site).
browser = base.browser
page = base.page


def rules(site: Site, *types: str) -> None:
    with site.api(site.acme) as api:
        response = api.post(
            f"/calendars/{site.acme['calendar']}/notifications",
            json=[
                {"receiverType": "contact", "channel": "email", "notificationType": t}
                for t in types
            ],
        )
        assert response.status_code in (200, 201), response.text


def test_the_front_desk_cancels_an_appointment_and_the_api_shows_it(page: Page, site: Site) -> None:
    rules(site, "cancellation")
    booked = site.book(site.acme, "Filling with Dr. Lee")
    sign_in(page, site.acme["token"])
    page.goto(f"/console/appointments/{booked['id']}")
    expect(page.get_by_role("heading", name="Front desk")).to_be_visible()
    page.get_by_label("Reason for cancelling (optional)").fill("Called in sick")
    shot(page, "appointment-desk")
    page.get_by_role("button", name="Cancel appointment").click()
    expect(page.get_by_role("status")).to_contain_text("Appointment cancelled.")
    history = page.get_by_role("table").filter(has_text="Called in sick")
    expect(history).to_contain_text("Status changed to cancelled")
    expect(history).to_contain_text("in the console (token")
    assert_accessible(page)
    with site.api(site.acme) as api:
        event = api.get(f"/calendars/events/appointments/{booked['id']}").json()["event"]
        sent = api.get("/deliveries", params={"appointmentId": booked["id"]}).json()
    assert event["appointmentStatus"] == "cancelled"
    assert any(d["notificationType"] == "cancellation" for d in sent["deliveries"])


def test_the_front_desk_confirms_and_reschedules(page: Page, site: Site) -> None:
    booked = site.book(site.acme, "Check-up")
    sign_in(page, site.acme["token"])
    page.goto(f"/console/appointments/{booked['id']}")
    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_role("status")).to_contain_text("Appointment confirmed.")
    page.get_by_role("button", name="Mark showed").wait_for()

    page.get_by_role("link", name="Reschedule").click()
    expect(page.get_by_role("heading", name="Reschedule Check-up")).to_be_visible()
    assert_accessible(page)
    later = (datetime.now(UTC) + timedelta(days=5)).astimezone().strftime("%Y-%m-%d")
    page.get_by_label("Or a new start").fill(f"{later}T10:30")
    shot(page, "reschedule")
    page.get_by_role("button", name="Reschedule").click()
    expect(page.get_by_role("status")).to_contain_text("Appointment rescheduled.")
    with site.api(site.acme) as api:
        event = api.get(f"/calendars/events/appointments/{booked['id']}").json()["event"]
    assert event["appointmentStatus"] == "confirmed"
    assert event["startTime"].startswith(f"{later}T10:30")


def test_the_contact_page_turns_dnd_on_and_lists_messages(page: Page, site: Site) -> None:
    rules(site, "booked")
    booked = site.book(site.acme, "Whitening")
    sign_in(page, site.acme["token"])
    page.goto(f"/console/appointments/{booked['id']}")
    page.get_by_role("link", name="Rosa Diaz").click()
    expect(page.get_by_role("heading", name="Rosa Diaz", level=1)).to_be_visible()
    expect(page.get_by_role("link", name="Whitening").first).to_be_visible()
    page.get_by_role("button", name="Stop SMS messages").click()
    expect(page.get_by_role("status")).to_contain_text("Do not disturb turned on.")
    expect(page.get_by_role("row", name=re.compile("^SMS on"))).to_be_visible()
    assert_accessible(page)
    shot(page, "contact")
    with site.api(site.acme) as api:
        contact = api.get(f"/contacts/{site.acme['contact']}").json()["contact"]
    assert contact["dndSettings"]["SMS"]["status"] == "active"
    page.get_by_role("button", name="Allow SMS messages").click()
    expect(page.get_by_role("status")).to_contain_text("Do not disturb turned off.")


def test_health_links_to_the_messages_page_filtered(page: Page, site: Site) -> None:
    rules(site, "booked")
    site.book(site.acme, "Polish")
    sign_in(page, site.acme["token"])
    page.get_by_role("link", name="Health").click()
    page.get_by_role("link", name=re.compile("scheduled: show them")).click()
    expect(page.get_by_role("heading", name="Messages", level=1)).to_be_visible()
    expect(page.get_by_label("Status")).to_have_value("scheduled")
    page.get_by_label("Status").select_option(label="Any")
    page.get_by_label("Channel").select_option(label="Email")
    page.get_by_label("Type").select_option(label="Booked")
    page.get_by_role("button", name="Show").click()
    expect(page.get_by_role("table")).to_contain_text("Booked")
    assert_accessible(page)
    shot(page, "messages")


def test_delete_asks_first_and_names_the_rule(page: Page, site: Site) -> None:
    rules(site, "confirmation")
    sign_in(page, site.acme["token"])
    page.get_by_role("link", name=site.acme["calendar_name"]).click()
    asked: list[str] = []

    def dismiss(dialog: Dialog) -> None:
        asked.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", dismiss)
    page.get_by_role("button", name="Delete Confirmed Email rule").first.click()
    expect(page.get_by_role("button", name="Delete Confirmed Email rule").first).to_be_visible()
    assert asked == ["Delete the Confirmed Email rule? Its planned messages are cancelled."]
    expect(page.get_by_role("button", name="Deactivate Confirmed Email rule").first).to_be_visible()
    before = page.get_by_role("button", name="Delete Confirmed Email rule").count()
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete Confirmed Email rule").first.click()
    expect(page.get_by_role("status")).to_contain_text("Rule deleted.")
    assert page.get_by_role("button", name="Delete Confirmed Email rule").count() == before - 1


def test_the_preview_tells_a_bad_offset_and_unknown_pages_say_so(page: Page, site: Site) -> None:
    sign_in(page, site.acme["token"])
    page.goto(f"/console/calendars/{site.acme['calendar']}/rules/new")
    page.get_by_label("Trigger").select_option(label="Reminder (before the start)")
    page.get_by_label("Offset 1").fill("soon")
    expect(page.locator("#preview")).to_contain_text("Schedule: row 1: the offset must be a number")
    expect(page.locator("#preview-status")).to_contain_text("Preview: nothing to preview yet")
    response = page.goto("/console/no-such-page")
    assert response is not None and response.status == 404
    expect(page.get_by_role("heading", name="Page not found")).to_be_visible()
    response = page.goto("/console/messages?page=40")
    assert response is not None and response.status == 404
    expect(page.get_by_text("Page 40 is past the last")).to_be_visible()


def test_on_a_phone_the_timeline_status_stays_in_sight(browser: Browser, site: Site) -> None:
    rules(site, "booked")
    booked = site.book(site.acme, "Phone look")
    context = browser.new_context(
        base_url=site.server.base_url, viewport={"width": 390, "height": 844}, is_mobile=True
    )
    phone = context.new_page()
    try:
        sign_in(phone, site.acme["token"])
        phone.goto(f"/console/appointments/{booked['id']}")
        status = phone.locator("table.timeline tbody tr:not(.detail) td:nth-child(5)").first
        expect(status).to_be_visible()
        box = status.bounding_box()
        assert box is not None and box["x"] + box["width"] <= 390, box
        shot(phone, "phone-appointment")
    finally:
        context.close()


def test_series_navigation_health_minutes_and_a_second_sign_in(
    browser: Browser, page: Page, site: Site
) -> None:
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    with site.api(site.acme) as api:
        response = api.post(
            "/calendars/events/appointments",
            json={
                "calendarId": site.acme["calendar"],
                "locationId": site.acme["location"],
                "contactId": site.acme["contact"],
                "startTime": start.isoformat(),
                "title": "Weekly physio",
                "rrule": "RRULE:FREQ=WEEKLY;COUNT=4",
            },
        )
        assert response.status_code == 200, response.text
        master = response.json()["id"]
    sign_in(page, site.acme["token"])
    page.goto(f"/console/appointments/{master}")
    # Each click waits for the page it opens, so the next click is on that page.
    with page.expect_navigation():
        page.get_by_role("navigation", name="Occurrences").get_by_role("link").nth(1).click()
    expect(page.get_by_role("link", name="Previous occurrence")).to_be_visible()
    for link in ("Next occurrence", "Previous occurrence", "Previous occurrence"):
        # Wait for the very page the link names: a navigation of the page before it (still
        # settling) must not count as this click's.
        target = page.get_by_role("link", name=link).get_attribute("href")
        assert target is not None
        page.get_by_role("link", name=link).click()
        page.wait_for_url(f"**{target}")
    expect(page.get_by_role("link", name="Next occurrence")).to_be_visible()
    expect(page.get_by_role("link", name="Previous occurrence")).to_have_count(0)

    page.goto("/console/health")
    page.get_by_text("Sends per minute as a table").click()
    minutes = page.locator("section[aria-labelledby=sends-heading] tbody th").all_inner_texts()
    assert len(minutes) == 60 and all(re.fullmatch(r"\d\d:\d\d", m) for m in minutes), minutes

    (old,) = [c for c in page.context.cookies() if c["name"] == "calnotify_console"]
    page.goto("/console/sign-in")
    page.get_by_label("Access token").fill(site.acme["token"])
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Calendars", level=1)).to_be_visible()
    elsewhere = browser.new_context(base_url=site.server.base_url)
    try:
        elsewhere.add_cookies([old])
        stale = elsewhere.new_page()
        stale.goto("/console/calendars")
        expect(stale.get_by_label("Access token")).to_be_visible()  # that session has ended
    finally:
        elsewhere.close()


def test_an_error_in_the_preview_is_a_fragment(page: Page, site: Site) -> None:
    sign_in(page, site.acme["token"])
    page.goto(f"/console/calendars/{site.acme['calendar']}/rules/new")
    expect(page.locator("#preview-status")).to_contain_text("Preview:")
    page.evaluate("document.querySelector('#rule-form input[name=csrf]').value = 'stale'")
    page.get_by_label("Body").fill("Hello")
    expect(page.locator("#preview")).to_contain_text("Form expired")
    assert page.locator("#preview header, #preview nav, #preview main").count() == 0
    assert page.locator("header.top").count() == 1
