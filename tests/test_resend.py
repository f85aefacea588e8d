"""Resending a failed or skipped delivery by hand: a new delivery linked to the old one,
through the dispatcher, with do-not-disturb still applying; a sent one is never resent;
every failure says what happened and what to do (docs/semantics.md §6)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from calnotify.deliveries.wording import explained
from tests.conftest import NOW
from tests.engine import Scenario, ScriptedProvider
from tests.factories import Tenant

START = NOW + timedelta(days=2)
BOOKED = {"receiverType": "contact", "channel": "email", "notificationType": "booked"}


async def resend(scenario: Scenario, delivery_id: str, **headers: str) -> httpx.Response:
    return await scenario.client.post(
        f"/deliveries/{delivery_id}/resend", headers=headers or scenario.headers
    )


async def booked_delivery(scenario: Scenario, contact: str) -> dict[str, Any]:
    await scenario.rules(BOOKED)
    appointment = await scenario.book(contact, START)
    [delivery] = await scenario.deliveries(appointmentId=appointment["id"])
    return delivery


async def test_a_skipped_delivery_is_resent_once_dnd_is_cleared_and_a_sent_one_never(
    scenario: Scenario,
) -> None:
    contact = await scenario.tenant.add_contact(dnd=True)
    skipped = await booked_delivery(scenario, contact)
    assert (skipped["status"], skipped["reason"]) == ("skipped", "dnd")
    assert "do-not-disturb" in skipped["explanation"]

    again = await resend(scenario, skipped["id"])
    assert again.status_code == 201, again.text
    assert (again.json()["status"], again.json()["reason"]) == ("skipped", "dnd")
    assert "clear it on the contact" in again.json()["explanation"]

    cleared = await scenario.client.put(
        f"/contacts/{contact}", json={"dnd": False}, headers=scenario.headers
    )
    assert cleared.status_code == 200, cleared.text
    response = await resend(scenario, skipped["id"])
    assert response.status_code == 201, response.text
    new = response.json()
    assert new["id"] != skipped["id"]
    assert (new["status"], new["resendOf"]) == ("scheduled", skipped["id"])
    assert new["requestedBy"].startswith("token:") and new["requestedAt"]
    assert await scenario.run_at(NOW + timedelta(seconds=1)) == 1
    [sent] = [d for d in await scenario.deliveries() if d["id"] == new["id"]]
    assert sent["status"] == "sent"

    refused = await resend(scenario, sent["id"])
    assert refused.status_code == 409, refused.text
    assert "a sent delivery is never resent" in refused.json()["message"]
    twice = await resend(scenario, skipped["id"])
    assert twice.status_code == 409, twice.text
    assert f"resent already as {new['id']}" in twice.json()["message"]


async def test_a_failed_delivery_explains_itself_and_is_resent(
    scenario: Scenario, provider: ScriptedProvider
) -> None:
    provider.script = ["permanent"]
    contact = await scenario.tenant.add_contact()
    await booked_delivery(scenario, contact)
    await scenario.run_at(NOW + timedelta(seconds=1))
    [failed] = await scenario.deliveries(status="failed")
    assert failed["explanation"] == (
        "the recipient's mail server refused the address: check the contact's email"
    )
    response = await resend(scenario, failed["id"])
    assert response.status_code == 201, response.text
    await scenario.run_at(NOW + timedelta(seconds=2))
    [sent] = await scenario.deliveries(status="sent")
    assert sent["resendOf"] == failed["id"]
    assert len(provider.sent) == 1


async def test_resend_needs_the_write_scope_and_stays_in_its_location(
    scenario: Scenario, other_tenant: Tenant
) -> None:
    contact = await scenario.tenant.add_contact(dnd=True)
    skipped = await booked_delivery(scenario, contact)
    other = await resend(scenario, skipped["id"], **other_tenant.headers(version=None))
    assert other.status_code == 404, other.text
    token = await scenario.tenant.token_with("calendars/events.readonly")
    read_only = await resend(scenario, skipped["id"], **scenario.tenant.headers(token))
    assert read_only.status_code == 401, read_only.text
    assert read_only.json()["scope"] == "calendars/events.write"
    unknown = await resend(scenario, "x" * 20)
    assert unknown.status_code == 404, unknown.text
    assert len(await scenario.deliveries()) == 1


@pytest.mark.parametrize(
    ("channel", "error", "words"),
    [
        ("sms", "21211 Invalid 'To' Phone Number", "check the contact's phone"),
        ("sms", "21610 Attempt to send to unsubscribed recipient", "reply START"),
        ("email", "552 5.2.2 mailbox full", "mailbox is full"),
        ("email", "connection refused by smtp.example.com port 587", "resend"),
    ],
)
def test_provider_answers_in_words(channel: str, error: str, words: str) -> None:
    said = explained("failed", "permanent", channel, error)
    assert words in said
    assert "smtp.example.com" not in said
