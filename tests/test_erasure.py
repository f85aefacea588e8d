"""Erasing a contact (semantics §10): DELETE /contacts/{contactId} and
`calnotify contacts erase`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, inspect, select, table, text

from calnotify.cli import main
from calnotify.clock import ManualClock
from calnotify.config import Settings, get_settings
from calnotify.contacts import erasure
from calnotify.contacts.scrub import Scrubber
from calnotify.db.engine import Database
from calnotify.db.urls import sync_url
from calnotify.models import Contact
from calnotify.replies.service import Inbound, handle_reply
from tests.conftest import NOW
from tests.engine import Scenario, by_status
from tests.factories import Tenant

EMAIL = "rosa.diaz@example.com"
PHONE = "+14155550123"
START = NOW + timedelta(days=2)
TELLS_ALL = "{{contact.name}} <{{contact.email}}> {{contact.phone}}"


def rule(receiver: str, channel: str, kind: str = "booked", **fields: Any) -> dict[str, Any]:
    return {
        "receiverType": receiver,
        "channel": channel,
        "notificationType": kind,
        "subject": "For {{contact.name}}",
        "body": TELLS_ALL,
        **fields,
    }


REMINDERS = {"beforeTime": [{"timeOffset": 1, "unit": "hours"}, {"timeOffset": 1, "unit": "days"}]}


@pytest.fixture
def scenario(
    client: httpx.AsyncClient, tenant: Tenant, clock: ManualClock, db: Database, settings: Settings
) -> Scenario:
    return Scenario(client, tenant, clock, db, settings)


async def booked_and_sent(scenario: Scenario) -> tuple[str, str]:
    """A contact with a booking whose immediate messages went out (to the outbox and the
    assigned user's inbox) and whose reminders wait; (contact id, appointment id)."""
    await scenario.rules(
        rule("contact", "email"),
        rule("contact", "sms"),
        rule("assignedUser", "email"),
        rule("assignedUser", "inApp"),
        rule("contact", "email", "reminder", **REMINDERS),
        rule("contact", "sms", "reminder", **REMINDERS),
        rule("assignedUser", "email", "reminder", **REMINDERS),
    )
    contact = await scenario.tenant.add_contact(email=EMAIL, phone=PHONE, company_name="Nine-Nine")
    appointment = await scenario.book(
        contact,
        START,
        assignedUserId=scenario.tenant.user_id,
        title=f"Rosa Diaz ({EMAIL})",
        notes=f"call {PHONE} first",
    )
    await scenario.change(appointment["id"], notes=f"call {PHONE} or write to {EMAIL}")
    assert await scenario.dispatcher.drain() == 4
    return contact, appointment["id"]


def found_anywhere(database_url: str, *needles: str) -> list[str]:
    """Every (table.column) of the whole database holding one of ``needles`` in its text."""
    engine = create_engine(sync_url(database_url))
    hits = []
    try:
        with engine.connect() as connection:
            for name in inspect(connection).get_table_names():
                columns = [c["name"] for c in inspect(connection).get_columns(name)]
                query = select(*(text(f'"{c}"') for c in columns)).select_from(table(name))
                for row in connection.execute(query):
                    for column, value in zip(columns, row, strict=True):
                        shown = value if isinstance(value, str) else json.dumps(value, default=str)
                        if any(n.lower() in shown.lower() for n in needles):
                            hits.append(f"{name}.{column}")
    finally:
        engine.dispose()
    return sorted(set(hits))


async def test_delete_erases_the_contact_everywhere(
    scenario: Scenario, database_url: str, db: Database
) -> None:
    contact, appointment = await booked_and_sent(scenario)
    assert found_anywhere(database_url, EMAIL, PHONE)  # the search does find them
    headers = scenario.headers

    answer = await scenario.client.delete(f"/contacts/{contact}", headers=headers)
    assert answer.status_code == 200 and answer.json() == {"succeded": True}

    assert found_anywhere(database_url, EMAIL, PHONE, PHONE.lstrip("+"), "Rosa", "Nine-Nine") == []
    deliveries = await scenario.deliveries()
    cancelled = by_status(deliveries, "cancelled")
    assert sorted((d["channel"], d["reason"]) for d in cancelled) == [
        ("email", "contact_deleted"),
        ("email", "contact_deleted"),
        ("sms", "contact_deleted"),
        ("sms", "contact_deleted"),
    ]
    # The team's reminders are the appointment's, not the contact's: they stay.
    assert [d["receiverType"] for d in by_status(deliveries, "scheduled")] == ["assignedUser"] * 2
    sent = by_status(deliveries, "sent")
    to_contact = [d for d in sent if d["receiverType"] == "contact"]
    assert [(d["recipient"], d["subject"], d["body"]) for d in to_contact] == [
        ("erased", "", ""),
        ("erased", "", ""),
    ]
    [to_user] = [d for d in sent if d["channel"] == "email" and d["receiverType"] != "contact"]
    assert to_user["body"] == "erased <erased> erased"
    outbox = await scenario.outbox()
    assert sorted(m["to"] for m in outbox) == ["erased", "erased", "user@example.com"]

    assert (await scenario.client.get(f"/contacts/{contact}", headers=headers)).status_code == 404
    async with db.session() as session:
        row = await session.get(Contact, contact)
        assert row is not None and row.deleted
        assert (row.email, row.phone, row.name, row.company_name, row.extra) == ("", "", "", "", {})
    event = await scenario.client.get(
        f"/calendars/events/appointments/{appointment}", headers=headers
    )
    assert event.json()["event"]["startTime"].startswith("2030-01-03T")  # kept, for history
    assert event.json()["event"]["title"] == "erased (erased)"

    # Asking again changes nothing and still succeeds; another location's token gets a 404.
    again = await scenario.client.delete(f"/contacts/{contact}", headers=headers)
    assert again.status_code == 200


async def test_another_locations_contact_is_not_found(
    scenario: Scenario, other_tenant: Tenant
) -> None:
    contact = await other_tenant.add_contact(email=EMAIL)
    answer = await scenario.client.delete(f"/contacts/{contact}", headers=scenario.headers)
    assert answer.status_code == 404
    async with other_tenant.db.session() as session:
        row = await session.get(Contact, contact)
        assert row is not None and row.email == EMAIL and not row.deleted


async def test_erasure_works_in_pages(
    scenario: Scenario, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(erasure, "PAGE", 2)
    monkeypatch.setattr(erasure, "APPOINTMENT_PAGE", 1)
    await scenario.rules(rule("contact", "email", "reminder", **REMINDERS))
    contact = await scenario.tenant.add_contact(email=EMAIL, phone=PHONE)
    for day in range(3):
        await scenario.book(contact, START + timedelta(days=day), title=EMAIL)
    erased = await erasure.erase_contact(scenario.db, contact, scenario.clock.now())
    assert erased.counts() == {
        "cancelled": 6,
        "deliveries": 6,  # their recipient, written when they were planned
        "attempts": 0,
        "outboxMessages": 0,
        "inboxItems": 0,
        "appointments": 3,
        "appointmentEvents": 3,
        "replies": 0,
    }
    assert found_anywhere(database_url, EMAIL, PHONE) == []


@pytest.fixture
def use_database(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("CALNOTIFY_DATABASE_URL", database_url)
    get_settings.cache_clear()
    yield database_url
    get_settings.cache_clear()


async def test_the_command_erases_and_prints_the_counts(
    scenario: Scenario, use_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    contact, _ = await booked_and_sent(scenario)
    await scenario.db.dispose()  # the command works on the database alone
    assert await asyncio.to_thread(main, ["contacts", "erase", contact]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["id"] == contact and printed["deleted"] is True
    assert printed["erased"]["cancelled"] == 4
    assert printed["erased"]["outboxMessages"] == 3
    assert printed["erased"]["inboxItems"] == 1
    assert printed["erased"]["appointments"] == 1
    assert found_anywhere(use_database, EMAIL, PHONE) == []

    assert await asyncio.to_thread(main, ["contacts", "erase", "nosuchcontact0000000"]) == 1
    assert "no contact nosuchcontact0000000" in capsys.readouterr().err


def test_the_scrubber_replaces_addresses_and_names() -> None:
    scrub = Scrubber(email="Rosa@Example.com", phone=PHONE, first_name="Rosa", last_name="Diaz")
    assert scrub.text("Dear Rosa Diaz, rosa@example.com / 14155550123") == (
        "Dear erased, erased / erased"
    )
    assert scrub.text("Rosalind and Diazepam") == "Rosalind and Diazepam"
    assert scrub.value({"guests": [{"email": "ROSA@example.com"}], "n": 1}) == {
        "guests": [{"email": "erased"}],
        "n": 1,
    }


async def test_erasure_reaches_other_appointments_webhooks_and_replies(
    scenario: Scenario, database_url: str, db: Database
) -> None:
    """Messages to the erased address in others' appointments (as a guest, as a rule's
    additional recipient), webhooks whose body carries them, and their replies (§10)."""
    contact, _ = await booked_and_sent(scenario)
    await scenario.rules(
        rule("guest", "email"),
        rule("phoneNumbers", "sms", additionalPhoneNumbers=[PHONE]),
        rule("emails", "email", additionalEmailIds=[EMAIL.upper()]),
    )
    other = await scenario.tenant.add_contact(
        email="amy@example.com", phone="+14155550999", first_name="Amy", last_name="Santiago"
    )
    theirs = await scenario.book(other, START + timedelta(days=1), guests=[{"email": EMAIL}])
    assert await scenario.dispatcher.drain() >= 3
    path = f"/locations/{scenario.tenant.location_id}/webhooks"
    hook = {"url": "https://hooks.example/calendar"}
    added = await scenario.client.post(path, json=hook, headers=scenario.headers)
    assert added.status_code == 201, added.text
    await scenario.change(theirs["id"], notes="moved")  # a pending webhook naming the guest
    inbound = Inbound("sms", PHONE, "+14155550000", "who is this?", "SM9")
    await handle_reply(db, inbound, scenario.clock.now(), timedelta(days=30))
    pending = by_status(await scenario.deliveries(channel="webhook"), "scheduled")
    assert pending and all(EMAIL in d["body"] or PHONE in d["body"] for d in pending)

    answer = await scenario.client.delete(f"/contacts/{contact}", headers=scenario.headers)
    assert answer.status_code == 200

    left = found_anywhere(database_url, EMAIL, PHONE, PHONE.lstrip("+"))
    # A rule's additional recipients are the location's settings: changed by the location.
    assert left == ["notifications.additional_email_ids", "notifications.additional_phone_numbers"]
    webhooks = await scenario.deliveries(channel="webhook")
    assert {(d["status"], d["reason"]) for d in webhooks} == {("cancelled", "contact_deleted")}
    to_them = [d for d in await scenario.deliveries() if d["recipient"] == "erased"]
    assert len(to_them) >= 5  # their own 2 sent, and the 3 to them in Amy's appointment
    assert all((d["subject"], d["body"]) == ("", "") for d in to_them)
    amy = await scenario.client.get(
        f"/calendars/events/appointments/{theirs['id']}", headers=scenario.headers
    )
    assert amy.json()["event"]["guests"][0]["email"] == "erased"
    assert amy.json()["event"]["title"] == theirs["title"]  # Amy's own text is hers
    replies = (await scenario.client.get("/replies", headers=scenario.headers)).json()
    assert [(r["from"], r["body"]) for r in replies["replies"]] == [("erased", "")]
