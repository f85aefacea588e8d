"""Abuse and race cases: hostile templates, channel changes, retries after edits, odd URLs."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import httpx
import pytest

from calnotify.db.urls import DatabaseURLError, async_url
from calnotify.deliveries.lifecycle import claim as claim_due_deliveries
from calnotify.deliveries.lifecycle import renew as renew_lease
from calnotify.deliveries.lifecycle import rescue
from tests.conftest import NOW
from tests.engine import Scenario, ScriptedProvider
from tests.factories import Tenant

START = NOW + timedelta(days=2)


def rule(receiver: str, channel: str, kind: str, **fields: Any) -> dict[str, Any]:
    return {"receiverType": receiver, "channel": channel, "notificationType": kind, **fields}


async def test_a_multiplying_template_fails_alone_and_fast(
    scenario: Scenario, provider: ScriptedProvider
) -> None:
    bomb = '{{ "xxxxxxxxxx"' + ' | replace: "", "xxxxxxxxxx"' * 9 + " }}"
    await scenario.rules(
        rule("contact", "email", "booked", body=bomb),
        rule("contact", "email", "booked", body="Fine"),
    )
    await scenario.book(await scenario.tenant.add_contact(), START)
    started = time.monotonic()
    await scenario.dispatcher.drain()
    assert time.monotonic() - started < 5
    outcomes = sorted((d["status"], d["reason"]) for d in await scenario.deliveries())
    assert outcomes == [("failed", "render"), ("sent", "")]
    assert [m.body for m in provider.sent] == ["Fine"]


async def test_merge_values_are_escaped_in_html(
    scenario: Scenario, provider: ScriptedProvider
) -> None:
    await scenario.rules(
        rule("contact", "email", "booked", body="<p>New booking by {{contact.first_name}}</p>")
    )
    contact = await scenario.tenant.add_contact(first_name='<a href="https://evil.example">x</a>')
    await scenario.book(contact, START)
    await scenario.dispatcher.drain()
    [message] = provider.sent
    assert "<a href" not in message.html
    assert "&lt;a href=" in message.html
    assert message.body == 'New booking by <a href="https://evil.example">x</a>'


async def test_moving_a_reminder_rule_to_another_channel_replans(scenario: Scenario) -> None:
    [reminder] = await scenario.rules(
        rule("contact", "email", "reminder", beforeTime=[{"timeOffset": 1, "unit": "hours"}])
    )
    await scenario.book(await scenario.tenant.add_contact(), START)
    await scenario.update_rule(reminder["_id"], channel="sms")
    found = sorted((d["channel"], d["status"], d["reason"]) for d in await scenario.deliveries())
    assert found == [("email", "cancelled", "rule_changed"), ("sms", "scheduled", "")]
    await scenario.run_at(START - timedelta(hours=1))
    assert [m["channel"] for m in await scenario.outbox()] == ["sms"]


async def test_a_retry_survives_an_unrelated_edit_made_while_sending(
    scenario: Scenario, provider: ScriptedProvider
) -> None:
    await scenario.rules(
        rule("contact", "email", "reminder", beforeTime=[{"timeOffset": 1, "unit": "hours"}])
    )
    appointment = await scenario.book(await scenario.tenant.add_contact(), START)
    scenario.clock.set(START - timedelta(hours=1))
    batch = await claim_due_deliveries(scenario.db, scenario.clock.now(), 10, timedelta(minutes=1))
    provider.script = ["retry"]
    outcomes = await scenario.dispatcher.process(batch)
    # While the first attempt is in flight, the appointment's notes change.
    await scenario.change(appointment["id"], notes="Bring your forms")
    await scenario.dispatcher.record(outcomes)
    [delivery] = await scenario.deliveries()
    assert (delivery["status"], delivery["reason"]) == ("scheduled", "retrying")
    await scenario.run_at(START - timedelta(minutes=59))
    [delivery] = await scenario.deliveries()
    assert (delivery["status"], delivery["attempts"]) == ("sent", 2)
    assert len(provider.sent) == 1


async def test_a_lease_is_renewed_only_while_held(scenario: Scenario) -> None:
    await scenario.rules(rule("contact", "email", "booked"))
    await scenario.book(await scenario.tenant.add_contact(), START)
    [held] = await claim_due_deliveries(scenario.db, NOW, 10, timedelta(seconds=60))
    token = held.claim_token or ""
    assert await renew_lease(scenario.db, [held.id], token, NOW + timedelta(minutes=2)) == {held.id}
    # The lease runs out, another worker takes the delivery back: no more renewing it.
    assert (await rescue(scenario.db, NOW + timedelta(minutes=3), 8)).requeued == 1
    assert await renew_lease(scenario.db, [held.id], token, NOW + timedelta(minutes=5)) == set()


@pytest.mark.parametrize(
    "path",
    [
        "/deliveries?appointmentId=%00",
        "/outbox?calendarId=a%00b",
        "/calendars/events?locationId=x&calendarId=%00&startTime=0&endTime=1",
        "/calendars/%00/notifications",
    ],
)
async def test_nul_in_a_url_is_400(client: httpx.AsyncClient, tenant: Tenant, path: str) -> None:
    response = await client.get(path, headers=tenant.headers())
    assert response.status_code == 400
    assert response.json()["statusCode"] == 400


async def test_mark_read_with_a_nul_id_is_404(client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await client.post(
        f"/users/{tenant.user_id}/inbox/not-an-id/read", headers=tenant.headers()
    )
    assert response.status_code == 404


def test_a_bad_database_url_never_shows_its_password() -> None:
    with pytest.raises(DatabaseURLError) as raised:
        async_url("postgresql://app:hunter2@host:notaport/db")
    assert "hunter2" not in str(raised.value)
    assert "app:***@" in str(raised.value)


LONG = "x" * 256


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/calendars/", {"name": LONG}, "name"),
        ("POST", "/calendars/", {"name": "ok", "calendarType": "x" * 33}, "calendarType"),
        ("POST", "/contacts/", {"city": LONG}, "city"),
        ("POST", "/contacts/", {"firstName": LONG}, "firstName"),
        ("POST", "/contacts/", {"postalCode": "1" * 33}, "postalCode"),
        ("POST", "/contacts/", {"country": "x" * 65}, "country"),
        ("POST", "/contacts/", {"website": "x" * 2049}, "website"),
        ("PUT", "/locations/{location}", {"address": LONG}, "address"),
        ("PUT", "/locations/{location}", {"postalCode": "1" * 33}, "postalCode"),
    ],
)
async def test_values_longer_than_their_columns_are_400(
    client: httpx.AsyncClient,
    tenant: Tenant,
    method: str,
    path: str,
    body: dict[str, Any],
    field: str,
) -> None:
    if method == "POST":
        body = {"locationId": tenant.location_id, **body}
    response = await client.request(
        method, path.format(location=tenant.location_id), json=body, headers=tenant.headers()
    )
    assert response.status_code == 400, response.text
    assert field in [e["field"] for e in response.json()["errors"]]


async def test_concurrent_bookings_on_one_calendar_all_succeed(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    import asyncio

    await client.post(
        f"/calendars/{tenant.calendar_id}/notifications",
        json=[
            rule("contact", "email", "booked"),
            rule("contact", "email", "reminder", beforeTime=[{"timeOffset": 1, "unit": "hours"}]),
        ],
        headers=tenant.headers(),
    )
    contact = await tenant.add_contact()

    async def book(i: int) -> int:
        response = await client.post(
            "/calendars/events/appointments",
            json={
                "calendarId": tenant.calendar_id,
                "locationId": tenant.location_id,
                "contactId": contact,
                "startTime": (START + timedelta(minutes=30 * i)).isoformat(),
            },
            headers=tenant.headers(),
        )
        return response.status_code

    # On PostgreSQL, planning locks the calendar row; with FOR UPDATE two bookings
    # deadlocked against the key-share locks of their own inserts.
    assert await asyncio.gather(*(book(i) for i in range(12))) == [200] * 12


@pytest.mark.parametrize("depth", [5_000, 60_000])
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/calendars/{calendar}/notifications"),
        ("PUT", "/calendars/{calendar}/notifications/some-rule"),
        ("POST", "/calendars/events/appointments"),
        ("POST", "/contacts/"),
    ],
)
async def test_json_nested_to_any_depth_is_400(
    client: httpx.AsyncClient, tenant: Tenant, method: str, path: str, depth: int
) -> None:
    for body in ("[" * depth, "[" * depth + "]" * depth, '{"a":' * depth + "1" + "}" * depth):
        response = await client.request(
            method,
            path.format(calendar=tenant.calendar_id),
            content=body.encode(),
            headers={**tenant.headers(), "Content-Type": "application/json"},
        )
        assert response.status_code == 400, response.text[:200]
        assert response.json()["statusCode"] == 400
