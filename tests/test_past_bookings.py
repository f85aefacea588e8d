"""A booking of an appointment that has already started (docs/engine.md, "What is planned"):
its booked or confirmation message is recorded skipped/past, unless the booking asks for it
(``notifyPast``, a calnotify extension)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from calnotify.clock import ManualClock
from calnotify.config import Settings
from calnotify.db.engine import Database
from tests.conftest import NOW
from tests.engine import Scenario, summary
from tests.factories import Tenant
from tests.test_console import signed_in, text_of

PAST = NOW - timedelta(hours=2)
BOOKED = {"receiverType": "contact", "channel": "email", "notificationType": "booked"}
CONFIRMATION = {**BOOKED, "notificationType": "confirmation"}
REMINDER = {
    "receiverType": "contact",
    "channel": "sms",
    "notificationType": "reminder",
    "beforeTime": [{"timeOffset": 1, "unit": "hours"}],
}


@pytest.fixture
def scenario(
    client: httpx.AsyncClient, tenant: Tenant, clock: ManualClock, db: Database, settings: Settings
) -> Scenario:
    return Scenario(client, tenant, clock, db, settings)


async def book_past(scenario: Scenario, **fields: Any) -> dict[str, Any]:
    return await scenario.book(await scenario.tenant.add_contact(), PAST, **fields)


@pytest.mark.parametrize(("status", "kind"), [("new", "booked"), ("confirmed", "confirmation")])
async def test_a_booking_in_the_past_sends_nothing_and_says_why(
    scenario: Scenario, status: str, kind: str
) -> None:
    await scenario.rules(BOOKED, CONFIRMATION, REMINDER)
    appointment = await book_past(scenario, appointmentStatus=status)
    assert await scenario.dispatcher.drain() == 0
    assert await scenario.outbox() == []
    found = await scenario.deliveries(appointmentId=appointment["id"])
    assert summary(found) == [
        (kind, "email", "skipped", "past", "rosa@example.com"),
        ("reminder", "sms", "skipped", "late", "+14155550123"),
    ]
    skipped = await scenario.deliveries(status="skipped")
    assert {d["reason"] for d in skipped} == {"past", "late"}


async def test_notify_past_sends_it_anyway(scenario: Scenario) -> None:
    await scenario.rules(BOOKED, REMINDER)
    appointment = await book_past(scenario, notifyPast=True)
    assert await scenario.dispatcher.drain() == 1
    [sent] = await scenario.outbox(appointmentId=appointment["id"])
    assert sent["to"] == "rosa@example.com"
    assert sent["subject"].startswith("Appointment booked")
    found = await scenario.deliveries(appointmentId=appointment["id"])
    assert summary(found) == [
        ("booked", "email", "sent", "", "rosa@example.com"),
        ("reminder", "sms", "skipped", "late", "+14155550123"),  # forcing never sends these
    ]


async def test_a_booking_about_to_start_is_still_sent(scenario: Scenario) -> None:
    await scenario.rules(BOOKED)
    await scenario.book(await scenario.tenant.add_contact(), NOW + timedelta(minutes=1))
    assert await scenario.dispatcher.drain() == 1


async def test_notify_past_must_be_a_boolean(scenario: Scenario) -> None:
    response = await scenario.client.post(
        "/calendars/events/appointments",
        json={
            "calendarId": scenario.tenant.calendar_id,
            "locationId": scenario.tenant.location_id,
            "contactId": await scenario.tenant.add_contact(),
            "startTime": PAST.isoformat(),
            "notifyPast": "yes",
        },
        headers=scenario.headers,
    )
    assert response.status_code == 400
    assert "notifyPast" in response.text


@pytest.mark.parametrize(
    ("rrule", "outcome"),
    [
        ("RRULE:FREQ=DAILY;COUNT=2", ("skipped", "past")),  # both days are over
        ("RRULE:FREQ=DAILY;COUNT=5", ("scheduled", "")),  # two are still to come
    ],
)
async def test_a_series_is_past_once_its_last_occurrence_has_started(
    scenario: Scenario, rrule: str, outcome: tuple[str, str]
) -> None:
    await scenario.rules(BOOKED)
    master = await scenario.book(
        await scenario.tenant.add_contact(), NOW - timedelta(days=2, hours=1), rrule=rrule
    )
    found = await scenario.deliveries(appointmentId=master["id"])
    [booked] = [d for d in found if d["notificationType"] == "booked"]
    assert (booked["status"], booked["reason"]) == outcome


async def test_the_console_timeline_shows_why(
    scenario: Scenario, client: httpx.AsyncClient, tenant: Tenant
) -> None:
    await scenario.rules(BOOKED)
    appointment = await book_past(scenario, title="Walk-in")
    await signed_in(client, tenant)
    page = await client.get(f"/console/appointments/{appointment['id']}")
    assert page.status_code == 200
    assert (
        "Booked Email rosa@example.com skipped: booked after the appointment had started"
        in text_of(page.text)
    )


async def test_the_preview_of_a_booking_in_the_past_says_it_is_skipped(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    response = await client.post(
        f"/calendars/{tenant.calendar_id}/notifications/preview",
        json={
            "startTime": PAST.isoformat(),
            "endTime": (PAST + timedelta(minutes=30)).isoformat(),
            "notifications": [BOOKED],
        },
        headers=tenant.headers(),
    )
    assert response.status_code == 200, response.text
    [booked] = response.json()["deliveries"]
    assert (booked["status"], booked["skipReason"]) == ("skipped", "past")
