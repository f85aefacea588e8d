"""The console in a real browser (the fixtures of tests/test_console_browser.py): the rule
form shows what saving would do to pending sends beside the preview, before Save, and
saving does that; the timeline's Resend button resends a failed delivery."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests import test_console_browser as base
from tests.test_console_browser import (
    CHROMIUM,
    CHROMIUM_SKIP_REASON,
    Site,
    assert_accessible,
    sign_in,
)

# The fixtures of the console's browser tests: a server with two locations, a browser.
site = base.site
browser = base.browser
page = base.page

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason=CHROMIUM_SKIP_REASON)

if CHROMIUM is not None:
    from playwright.sync_api import Page, expect


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def scheduled(api: httpx.Client, calendar: str) -> dict[str, datetime]:
    found = api.get("/deliveries", params={"calendarId": calendar, "status": "scheduled"})
    return {d["appointmentId"]: instant(d["dueAt"]) for d in found.json()["deliveries"]}


def wait_for(api: httpx.Client, params: dict[str, str], status: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for d in api.get("/deliveries", params=params).json()["deliveries"]:
            if d["status"] == status:
                found: dict[str, Any] = d
                return found
        time.sleep(0.1)
    raise AssertionError(f"no {status} delivery for {params}")


def test_the_rule_form_shows_the_impact_before_save_and_saving_does_it(
    page: Page, site: Site
) -> None:
    who = site.acme
    with site.api(who) as api:
        calendar = api.post(
            "/calendars/", json={"locationId": who["location"], "name": "Impact Cleanings"}
        ).json()["calendar"]["id"]
        start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)
        for i in range(3):
            response = api.post(
                "/calendars/events/appointments",
                json={
                    "calendarId": calendar,
                    "locationId": who["location"],
                    "contactId": who["contact"],
                    "startTime": (start + timedelta(hours=i)).isoformat(),
                },
            )
            assert response.status_code == 200, response.text
        (rule,) = api.post(
            f"/calendars/{calendar}/notifications",
            json=[
                {
                    "receiverType": "contact",
                    "channel": "email",
                    "notificationType": "reminder",
                    "beforeTime": [{"timeOffset": 1, "unit": "hours"}],
                }
            ],
        ).json()
        before = scheduled(api, calendar)
    assert len(before) == 3

    sign_in(page, who["token"])
    page.goto(f"/console/calendars/{calendar}/rules/{rule['_id']}/edit")
    impact = page.locator("#impact")
    expect(impact).to_contain_text("re-time 0")
    page.get_by_label("Offset 1").fill("2")
    expect(impact).to_contain_text("re-time 3")
    expect(page.locator("#preview")).to_be_visible()
    table = page.get_by_role("table", name="Re-timed")
    for appointment in before:
        expect(table).to_contain_text(appointment)
    assert_accessible(page)
    with site.api(who) as api:
        assert scheduled(api, calendar) == before  # shown, not saved

    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_contain_text("Rule saved.")
    with site.api(who) as api:
        after = scheduled(api, calendar)
    assert after == {a: due - timedelta(hours=1) for a, due in before.items()}


def test_the_timeline_resends_a_failed_delivery(page: Page, site: Site) -> None:
    who = site.globex
    with site.api(who) as api:
        (rule,) = api.post(
            f"/calendars/{who['calendar']}/notifications",
            json=[
                {
                    "receiverType": "contact",
                    "channel": "email",
                    "notificationType": "booked",
                    "subject": "Booked",
                    "body": "{{ 1 | divided_by: 0 }}",
                }
            ],
        ).json()
    booked = site.book(who, "Globex resend")
    with site.api(who) as api:
        failed = wait_for(api, {"appointmentId": booked["id"]}, "failed")
        fixed = api.put(
            f"/calendars/{who['calendar']}/notifications/{rule['_id']}",
            json={"body": "See you soon."},
        )
        assert fixed.status_code == 200, fixed.text

    sign_in(page, who["token"])
    page.goto(f"/console/appointments/{booked['id']}")
    row = page.locator(f"#delivery-{failed['id']}")
    expect(row).to_contain_text("failed")
    expect(row).to_contain_text("fix the template, then resend")
    assert_accessible(page)
    row.get_by_role("button", name="Resend the booked email message").click()
    with site.api(who) as api:
        sent = wait_for(api, {"appointmentId": booked["id"]}, "sent")
    assert sent["resendOf"] == failed["id"]
    page.reload()
    expect(page.locator(f"#delivery-{sent['id']}")).to_contain_text("sent")
