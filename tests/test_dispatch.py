"""Sending: end states, retries, the fence, leases and concurrent dispatchers."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from calnotify.channels.base import ChannelAdapter, Message, Receipt
from calnotify.channels.registry import build_channels
from calnotify.config import Settings
from calnotify.db.engine import Database
from calnotify.deliveries.lifecycle import claim as claim_due_deliveries
from calnotify.dispatch.dispatcher import Dispatcher, DispatchSettings
from calnotify.models import Delivery, OutboxMessage
from tests.conftest import NOW
from tests.engine import Scenario, ScriptedProvider, by_status
from tests.factories import Tenant

START = NOW + timedelta(days=2)
REMINDER = {
    "receiverType": "contact",
    "channel": "email",
    "notificationType": "reminder",
    "beforeTime": [{"timeOffset": 1, "unit": "hours"}],
}
BOOKED = {"receiverType": "contact", "channel": "email", "notificationType": "booked"}


async def one(scenario: Scenario) -> dict[str, Any]:
    [delivery] = await scenario.deliveries()
    return delivery


# --- end states -------------------------------------------------------------------------


async def test_sent(scenario: Scenario, provider: ScriptedProvider) -> None:
    await scenario.rules(
        {
            **BOOKED,
            "subject": "Hi {{contact.first_name}}",
            "body": "See you {{appointment.only_start_time}}",
            "fromAddress": "desk@example.com",
            "fromName": "Desk",
        }
    )
    contact = await scenario.tenant.add_contact(timezone="Europe/Paris")
    await scenario.book(contact, START)
    assert await scenario.dispatcher.drain() == 1
    delivery = await one(scenario)
    assert delivery["status"] == "sent"
    assert delivery["sentAt"] == "2030-01-01T12:00:00.000Z"
    assert delivery["attempts"] == 1
    assert delivery["provider"] == "scripted"
    assert delivery["providerMessageId"] == "msg-1"
    assert delivery["subject"] == "Hi Rosa"
    # Rendered in the contact's zone: 12:00 UTC is 1:00 PM in Paris.
    assert delivery["body"] == "See you 1:00 PM"
    [message] = provider.sent
    # From the operator's domain; the rule's fromAddress (not an allowed sender of the
    # location) is where replies go (semantics §7).
    assert (message.to, message.from_address, message.from_name, message.reply_to) == (
        "rosa@example.com",
        "notifications@calnotify.invalid",
        "Desk",
        "desk@example.com",
    )
    assert delivery["sender"] == (
        "Desk <notifications@calnotify.invalid>; Reply-To: desk@example.com"
    )


async def test_permanent_error_fails_at_once(
    scenario: Scenario, provider: ScriptedProvider
) -> None:
    provider.script = ["permanent"]
    await scenario.rules(BOOKED)
    await scenario.book(await scenario.tenant.add_contact(), START)
    await scenario.dispatcher.drain()
    delivery = await one(scenario)
    assert (delivery["status"], delivery["reason"], delivery["attempts"]) == (
        "failed",
        "permanent",
        1,
    )
    assert delivery["lastError"] == "550 no such mailbox"
    assert delivery["sentAt"] is None


async def test_retryable_error_backs_off_then_sends(
    scenario: Scenario, provider: ScriptedProvider
) -> None:
    provider.script = ["retry", "retry"]
    await scenario.rules(BOOKED)
    await scenario.book(await scenario.tenant.add_contact(), START)
    await scenario.dispatcher.drain()
    delivery = await one(scenario)
    assert (delivery["status"], delivery["attempts"]) == ("scheduled", 1)
    assert delivery["lastError"] == "421 try again later"
    assert await scenario.dispatcher.drain() == 0  # not before the backoff
    await scenario.run_at(NOW + timedelta(seconds=13))  # first backoff: 10 s ± 20 %
    assert (await one(scenario))["attempts"] == 2
    await scenario.run_at(NOW + timedelta(seconds=13 + 25))  # second: 20 s ± 20 %
    delivery = await one(scenario)
    assert (delivery["status"], delivery["attempts"]) == ("sent", 3)
    assert delivery["dueAt"] == "2030-01-01T12:00:00.000Z"  # lateness counts from here


async def test_retries_exhausted(scenario: Scenario, provider: ScriptedProvider) -> None:
    provider.script = ["retry"] * 5
    await scenario.rules(BOOKED)
    await scenario.book(await scenario.tenant.add_contact(), START)
    for minutes in range(6):
        await scenario.run_at(NOW + timedelta(minutes=minutes))
    delivery = await one(scenario)
    assert (delivery["status"], delivery["reason"], delivery["attempts"]) == (
        "failed",
        "retries_exhausted",
        3,
    )


async def test_a_reminder_is_never_sent_after_the_start(
    scenario: Scenario, provider: ScriptedProvider
) -> None:
    await scenario.rules(REMINDER)
    await scenario.book(await scenario.tenant.add_contact(), START)
    await scenario.run_at(START + timedelta(seconds=61))  # the service was down until now
    delivery = await one(scenario)
    assert (delivery["status"], delivery["reason"]) == ("skipped", "late")
    assert provider.sent == []


async def test_nothing_is_sent_a_day_after_its_due_time(
    scenario: Scenario, provider: ScriptedProvider
) -> None:
    await scenario.rules(BOOKED)
    await scenario.book(await scenario.tenant.add_contact(), START)
    await scenario.run_at(NOW + timedelta(hours=24, seconds=1))
    assert ((await one(scenario))["status"], (await one(scenario))["reason"]) == ("skipped", "late")
    assert provider.sent == []


# --- the fence --------------------------------------------------------------------------


async def _claimed(scenario: Scenario) -> list[Delivery]:
    """A worker has claimed the due reminder and is about to send it."""
    scenario.clock.set(START - timedelta(hours=1))
    batch = list(
        await claim_due_deliveries(scenario.db, scenario.clock.now(), 10, timedelta(minutes=1))
    )
    assert len(batch) == 1
    return batch


@pytest.mark.parametrize(
    ("race", "reason"),
    [
        ("reschedule", "stale"),
        ("cancel", "stale"),
        ("delete", "stale"),
        ("edit_rule", "stale"),
        ("deactivate_rule", "inactive"),
        ("delete_rule", "inactive"),
        ("delete_calendar", "inactive"),
    ],
)
async def test_changes_racing_a_claimed_delivery_never_let_it_out(
    scenario: Scenario, provider: ScriptedProvider, race: str, reason: str
) -> None:
    [rule] = await scenario.rules(REMINDER)
    appointment = await scenario.book(await scenario.tenant.add_contact(), START)
    batch = await _claimed(scenario)
    base = f"/calendars/{scenario.tenant.calendar_id}/notifications/{rule['_id']}"
    if race == "reschedule":
        await scenario.change(appointment["id"], startTime=(START + timedelta(days=1)).isoformat())
    elif race == "cancel":
        await scenario.change(appointment["id"], appointmentStatus="cancelled")
    elif race == "delete":
        await scenario.delete(appointment["id"])
    elif race == "edit_rule":
        await scenario.update_rule(rule["_id"], beforeTime=[{"timeOffset": 2, "unit": "hours"}])
    elif race == "deactivate_rule":
        await scenario.update_rule(rule["_id"], isActive=False)
    elif race == "delete_rule":
        await scenario.client.delete(base, headers=scenario.headers)
    elif race == "delete_calendar":
        await scenario.client.delete(
            f"/calendars/{scenario.tenant.calendar_id}", headers=scenario.headers
        )
    outcomes = await scenario.dispatcher.process(batch)
    await scenario.dispatcher.record(outcomes)
    assert provider.sent == []
    claimed = next(d for d in await scenario.deliveries() if d["id"] == batch[0].id)
    assert (claimed["status"], claimed["reason"]) == ("skipped", reason)


async def test_new_wording_racing_a_claimed_delivery_goes_out_in_the_new_words(
    scenario: Scenario, provider: ScriptedProvider
) -> None:
    """The wording is rendered at send time; changing it voids nothing."""
    [rule] = await scenario.rules(REMINDER)
    await scenario.book(await scenario.tenant.add_contact(), START)
    batch = await _claimed(scenario)
    await scenario.update_rule(rule["_id"], subject="New words")
    await scenario.dispatcher.record(await scenario.dispatcher.process(batch))
    assert [m.subject for m in provider.sent] == ["New words"]


async def test_a_harmless_change_keeps_a_claimed_delivery_valid(
    scenario: Scenario, provider: ScriptedProvider
) -> None:
    await scenario.rules(REMINDER)
    appointment = await scenario.book(await scenario.tenant.add_contact(), START)
    # The appointment changes in a way that keeps the reminder (a new title) before the
    # claim; the planner re-stamps the delivery, so the fence lets it through.
    await scenario.change(appointment["id"], title="Deep clean")
    batch = await _claimed(scenario)
    await scenario.dispatcher.record(await scenario.dispatcher.process(batch))
    assert len(provider.sent) == 1
    assert "Deep clean" not in provider.sent[0].subject  # default subject uses the calendar


# --- leases ------------------------------------------------------------------------------


async def test_a_dead_workers_deliveries_are_rescued_after_the_lease(
    scenario: Scenario, provider: ScriptedProvider
) -> None:
    await scenario.rules(BOOKED)
    contact = await scenario.tenant.add_contact()
    for i in range(5):
        await scenario.book(contact, START + timedelta(hours=i))
    # A worker claims the batch and dies before sending.
    dead = await claim_due_deliveries(scenario.db, NOW, 100, timedelta(seconds=60))
    assert len(dead) == 5
    assert await scenario.dispatcher.drain() == 0  # leased: nobody else may take them
    scenario.clock.set(NOW + timedelta(seconds=61))
    assert await scenario.dispatcher.drain() == 5
    deliveries = await scenario.deliveries()
    # The dead worker never handed them over: one attempt each, the one that was sent.
    assert {(d["status"], d["attempts"]) for d in deliveries} == {("sent", 1)}
    assert len(provider.sent) == 5
    # The dead worker's late write is a no-op: its claim token is no longer valid.
    late = await Dispatcher(scenario.db, scenario.clock, {"email": provider}).process(dead)
    for outcome in late:
        outcome.error = "should not be recorded"
    await scenario.dispatcher.record(late)
    assert {d["lastError"] for d in await scenario.deliveries()} == {""}


# --- concurrent dispatchers -------------------------------------------------------------


class Recorder(ChannelAdapter):
    """Counts every message handed over, across dispatchers."""

    provider = "recorder"

    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()

    async def send(self, message: Message) -> Receipt:
        await asyncio.sleep(0)
        self.seen[message.delivery_id] += 1
        return Receipt(self.provider, message.delivery_id)


async def test_two_dispatchers_never_send_one_delivery_twice(
    scenario: Scenario, settings: Settings
) -> None:
    await scenario.rules(BOOKED, {**BOOKED, "channel": "sms"})
    contact = await scenario.tenant.add_contact()
    for i in range(150):
        await scenario.book(contact, START + timedelta(minutes=i))
    recorder = Recorder()
    databases = [Database(settings.database_url) for _ in range(2)]
    try:
        dispatchers = [
            Dispatcher(
                db,
                scenario.clock,
                {**build_channels(settings, db, scenario.clock), "email": recorder},
                DispatchSettings(batch_size=7),
            )
            for db in databases
        ]
        counts = await asyncio.gather(*(d.drain(rounds=1000) for d in dispatchers))
    finally:
        for db in databases:
            await db.dispose()
    assert sum(counts) == 300
    assert all(counts), counts  # both took part
    assert len(recorder.seen) == 150
    assert set(recorder.seen.values()) == {1}
    async with scenario.db.session(write=False) as session:
        outbox = await session.scalar(select(func.count()).select_from(OutboxMessage))
        sent = await session.scalar(
            select(func.count()).select_from(Delivery).where(Delivery.status == "sent")
        )
    assert (outbox, sent) == (150, 300)


async def test_outbox_records_each_delivery_once(scenario: Scenario, settings: Settings) -> None:
    await scenario.rules({**BOOKED, "channel": "sms"})
    await scenario.book(await scenario.tenant.add_contact(), START)
    batch = await claim_due_deliveries(scenario.db, NOW, 10, timedelta(seconds=60))
    # The same messages handed to the outbox twice (a retry after a crash): one row each.
    outcomes = await scenario.dispatcher.process(batch)
    outcomes_again = await scenario.dispatcher.process(batch)
    assert outcomes[0].provider_id == outcomes_again[0].provider_id != ""
    assert len(await scenario.outbox()) == 1


# --- the API over deliveries ---------------------------------------------------------------


async def test_delivery_routes(scenario: Scenario, other_tenant: Tenant) -> None:
    await scenario.rules(BOOKED, REMINDER)
    appointment = await scenario.book(await scenario.tenant.add_contact(), START)
    await scenario.dispatcher.drain()
    listed = await scenario.client.get(
        "/deliveries", params={"status": "sent"}, headers=scenario.headers
    )
    assert listed.json()["total"] == 1
    [sent] = listed.json()["deliveries"]
    assert set(sent) >= {
        "id",
        "notificationId",
        "appointmentId",
        "calendarId",
        "notificationType",
        "channel",
        "receiverType",
        "recipient",
        "status",
        "reason",
        "dueAt",
        "sentAt",
        "attempts",
        "lastError",
        "providerMessageId",
        "subject",
        "body",
    }
    one = (await scenario.client.get(f"/deliveries/{sent['id']}", headers=scenario.headers)).json()
    # The detail lists every attempt; the list gives their number.
    [attempt] = one.pop("attempts")
    assert one.pop("attemptCount") == sent.pop("attempts") == 1
    assert one == sent
    assert attempt["outcome"] == "sent" and attempt["error"] == "" and attempt["number"] == 1
    assert attempt["providerId"] == sent["providerMessageId"]
    assert attempt["at"] == sent["sentAt"]
    page = await scenario.client.get(
        "/deliveries",
        params={"appointmentId": appointment["id"], "limit": 1, "skip": 1},
        headers=scenario.headers,
    )
    assert page.json()["total"] == 2
    assert len(page.json()["deliveries"]) == 1
    for bad in ({"status": "lost"}, {"channel": "fax"}, {"limit": 0}, {"skip": -1}):
        response = await scenario.client.get("/deliveries", params=bad, headers=scenario.headers)
        assert response.status_code == 400
    # Another location sees none of it.
    theirs = await scenario.client.get("/deliveries", headers=other_tenant.headers())
    assert theirs.json() == {"deliveries": [], "total": 0}
    hidden = await scenario.client.get(f"/deliveries/{sent['id']}", headers=other_tenant.headers())
    assert hidden.status_code == 404
    outbox = await scenario.client.get("/outbox", headers=other_tenant.headers())
    assert outbox.json() == {"messages": [], "total": 0}
    inbox = await scenario.client.get(
        f"/users/{scenario.tenant.user_id}/inbox", headers=other_tenant.headers()
    )
    assert inbox.status_code == 404
    # No Version header needed on calnotify's own routes; a token still is.
    assert (await scenario.client.get("/deliveries")).status_code == 401


async def test_metrics(scenario: Scenario) -> None:
    await scenario.rules(BOOKED, REMINDER)
    await scenario.book(await scenario.tenant.add_contact(), START)
    response = await scenario.client.get("/metrics")
    assert response.status_code == 200
    text = response.text
    assert 'calnotify_deliveries{status="scheduled"} 2' in text
    assert "calnotify_queue_depth 1" in text
    assert "calnotify_oldest_due_age_seconds 0.000" in text
    for name in ("sends_total", "send_lateness_seconds", "claims_total", "rescued_total"):
        assert f"# TYPE calnotify_{name}" in text
    scenario.clock.advance(seconds=30)
    assert "calnotify_oldest_due_age_seconds 30.000" in (await scenario.client.get("/metrics")).text
    assert by_status(await scenario.deliveries(), "sent") == []
