"""What gets planned (semantics §3 and §4), with a clock the tests move."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from calnotify.clock import ManualClock
from calnotify.config import Settings
from calnotify.db.engine import Database
from tests.conftest import NOW
from tests.engine import Scenario, by_status, summary
from tests.factories import Tenant

START = NOW + timedelta(days=2)
END = START + timedelta(minutes=30)


@pytest.fixture
def scenario(
    client: httpx.AsyncClient, tenant: Tenant, clock: ManualClock, db: Database, settings: Settings
) -> Scenario:
    return Scenario(client, tenant, clock, db, settings)


def rule(receiver: str, channel: str, kind: str, **fields: Any) -> dict[str, Any]:
    return {"receiverType": receiver, "channel": channel, "notificationType": kind, **fields}


EVERY_TYPE = [
    rule("contact", "email", kind)
    for kind in ("booked", "confirmation", "cancellation", "reschedule")
]


SUBJECTS = {
    "booked": "Appointment booked",
    "confirmation": "Appointment confirmed",
    "cancellation": "Appointment cancelled",
    "reschedule": "Appointment rescheduled",
}


async def immediate_types(scenario: Scenario, appointment_id: str) -> list[str]:
    found = await scenario.deliveries(appointmentId=appointment_id)
    return [d["notificationType"] for d in sorted(found, key=lambda d: d["createdAt"])]


# --- §3: what is sent at once ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("created", "changes", "expected"),
    [
        ({}, [], ["booked"]),
        ({"appointmentStatus": "confirmed"}, [], ["confirmation"]),
        ({"appointmentStatus": "cancelled"}, [], []),
        ({}, [{"appointmentStatus": "confirmed"}], ["booked", "confirmation"]),
        ({}, [{"appointmentStatus": "cancelled"}], ["booked", "cancellation"]),
        ({}, [{"appointmentStatus": "noshow"}], ["booked", "cancellation"]),
        ({}, [{"appointmentStatus": "invalid"}], ["booked", "cancellation"]),
        ({}, [{"appointmentStatus": "showed"}], ["booked"]),
        ({}, [{"startTime": (START + timedelta(hours=1)).isoformat()}], ["booked", "reschedule"]),
        ({}, [{"endTime": (END + timedelta(hours=1)).isoformat()}], ["booked", "reschedule"]),
        (
            {"appointmentStatus": "confirmed"},
            [{"startTime": (START + timedelta(hours=1)).isoformat()}],
            ["confirmation", "reschedule"],
        ),
        (
            {},
            [
                {"appointmentStatus": "cancelled"},
                {"startTime": (START + timedelta(hours=1)).isoformat()},
            ],
            ["booked", "cancellation"],
        ),
        ({}, [{"title": "Renamed"}], ["booked"]),
        ({"toNotify": False}, [], []),
        ({}, [{"appointmentStatus": "confirmed", "toNotify": False}], ["booked"]),
    ],
)
async def test_trigger_table(
    scenario: Scenario,
    created: dict[str, Any],
    changes: list[dict[str, Any]],
    expected: list[str],
) -> None:
    await scenario.rules(*EVERY_TYPE)
    contact = await scenario.tenant.add_contact()
    appointment = await scenario.book(contact, START, **created)
    await scenario.dispatcher.drain()  # what is sent at once goes out before the next change
    for change in changes:
        await scenario.change(appointment["id"], **change)
        await scenario.dispatcher.drain()
    assert sorted(await immediate_types(scenario, appointment["id"])) == sorted(expected)
    sent = await scenario.outbox(appointmentId=appointment["id"])
    assert sorted(m["subject"].split(":")[0] for m in sent) == sorted(
        SUBJECTS[kind] for kind in expected
    )


async def test_deleting_sends_nothing_and_cancels_what_is_pending(scenario: Scenario) -> None:
    await scenario.rules(
        *EVERY_TYPE,
        rule("contact", "sms", "reminder", beforeTime=[{"timeOffset": 1, "unit": "hours"}]),
    )
    appointment = await scenario.book(await scenario.tenant.add_contact(), START)
    await scenario.delete(appointment["id"])
    found = await scenario.deliveries(appointmentId=appointment["id"])
    assert summary(found) == [
        ("booked", "email", "cancelled", "appointment_deleted", "rosa@example.com"),
        ("reminder", "sms", "cancelled", "appointment_deleted", "+14155550123"),
    ]
    assert await scenario.dispatcher.drain() == 0
    assert await scenario.outbox() == []


# --- §3: reminders and follow-ups ---------------------------------------------------------


async def test_reminders_and_followups_at_their_offsets(scenario: Scenario) -> None:
    await scenario.rules(
        rule(
            "contact",
            "email",
            "reminder",
            beforeTime=[
                {"timeOffset": 1, "unit": "days"},
                {"timeOffset": 90, "unit": "minutes"},
                {"timeOffset": 0.5, "unit": "hour"},
            ],
        ),
        rule(
            "contact",
            "sms",
            "followup",
            afterTime=[
                {"timeOffset": 2, "unit": "hours"},
                {"timeOffset": 1, "unit": "weeks"},
            ],
        ),
    )
    appointment = await scenario.book(await scenario.tenant.add_contact(), START)
    found = await scenario.deliveries(appointmentId=appointment["id"])
    due = sorted((d["notificationType"], d["dueAt"], d["status"]) for d in found)
    assert due == [
        ("followup", "2030-01-03T14:30:00.000Z", "scheduled"),
        ("followup", "2030-01-10T12:30:00.000Z", "scheduled"),
        ("reminder", "2030-01-02T12:00:00.000Z", "scheduled"),
        ("reminder", "2030-01-03T10:30:00.000Z", "scheduled"),
        ("reminder", "2030-01-03T11:30:00.000Z", "scheduled"),
    ]
    # Nothing is sent before it is due, each one when it is.
    assert await scenario.run_at(NOW + timedelta(days=1) - timedelta(seconds=1)) == 0
    assert await scenario.run_at(NOW + timedelta(days=1)) == 1
    assert await scenario.run_at(START - timedelta(minutes=30)) == 2
    assert await scenario.run_at(END + timedelta(hours=2)) == 1
    assert len(await scenario.outbox(appointmentId=appointment["id"])) == 4


async def test_end_time_defaults_from_the_slot(scenario: Scenario) -> None:
    await scenario.rules(
        rule("contact", "email", "followup", afterTime=[{"timeOffset": 0, "unit": "minutes"}])
    )
    appointment = await scenario.book(await scenario.tenant.add_contact(), START)
    [followup] = await scenario.deliveries(appointmentId=appointment["id"])
    assert followup["dueAt"] == "2030-01-03T12:30:00.000Z"


async def test_to_notify_false_still_plans_reminders(scenario: Scenario) -> None:
    await scenario.rules(
        rule("contact", "email", "booked"),
        rule("contact", "email", "reminder", beforeTime=[{"timeOffset": 1, "unit": "hours"}]),
    )
    appointment = await scenario.book(await scenario.tenant.add_contact(), START, toNotify=False)
    assert [d["notificationType"] for d in await scenario.deliveries()] == ["reminder"]
    moved = START + timedelta(hours=3)
    await scenario.change(appointment["id"], startTime=moved.isoformat(), toNotify=False)
    found = await scenario.deliveries(appointmentId=appointment["id"])
    assert summary(found) == [
        ("reminder", "email", "cancelled", "rescheduled", "rosa@example.com"),
        ("reminder", "email", "scheduled", "", "rosa@example.com"),
    ]


async def test_past_due_reminders_are_skipped_late(scenario: Scenario) -> None:
    await scenario.rules(
        rule(
            "contact",
            "email",
            "reminder",
            beforeTime=[
                {"timeOffset": 1, "unit": "days"},
                {"timeOffset": 1, "unit": "hours"},
            ],
        )
    )
    soon = NOW + timedelta(hours=3)
    appointment = await scenario.book(await scenario.tenant.add_contact(), soon)
    found = await scenario.deliveries(appointmentId=appointment["id"])
    assert sorted((d["status"], d["reason"]) for d in found) == [
        ("scheduled", ""),
        ("skipped", "late"),
    ]
    assert await scenario.run_at(soon) == 1
    assert len(await scenario.outbox()) == 1


@pytest.mark.parametrize(
    ("status", "reminder", "followup"),
    [
        ("cancelled", "cancelled", "cancelled"),
        ("noshow", "cancelled", "cancelled"),
        ("invalid", "cancelled", "cancelled"),
        ("showed", "cancelled", "scheduled"),
        ("confirmed", "scheduled", "scheduled"),
    ],
)
async def test_status_changes_cancel_what_no_longer_applies(
    scenario: Scenario, status: str, reminder: str, followup: str
) -> None:
    await scenario.rules(
        rule("contact", "email", "reminder", beforeTime=[{"timeOffset": 1, "unit": "hours"}]),
        rule("contact", "email", "followup", afterTime=[{"timeOffset": 1, "unit": "hours"}]),
    )
    appointment = await scenario.book(await scenario.tenant.add_contact(), START)
    await scenario.change(appointment["id"], appointmentStatus=status)
    found = {d["notificationType"]: d for d in await scenario.deliveries()}
    assert found["reminder"]["status"] == reminder
    assert found["followup"]["status"] == followup
    if reminder == "cancelled":
        assert found["reminder"]["reason"] == f"appointment_{status}"
    await scenario.run_at(START - timedelta(hours=1))
    await scenario.run_at(END + timedelta(hours=1))
    expected = [
        kind
        for kind, state in (("followup", followup), ("reminder", reminder))
        if state == "scheduled"
    ]
    sent = by_status(await scenario.deliveries(), "sent")
    assert sorted(d["notificationType"] for d in sent) == expected


async def test_reschedule_replans_and_never_sends_the_old_reminder(scenario: Scenario) -> None:
    await scenario.rules(
        rule("contact", "email", "reschedule"),
        rule("assignedUser", "sms", "reminder", beforeTime=[{"timeOffset": 1, "unit": "hours"}]),
    )
    contact = await scenario.tenant.add_contact()
    appointment = await scenario.book(contact, START, assignedUserId=scenario.tenant.user_id)
    later = START + timedelta(days=1)
    await scenario.change(appointment["id"], startTime=later.isoformat())
    await scenario.dispatcher.drain()  # the reschedule email goes out at once
    await scenario.run_at(START)  # the old reminder's time passes
    sent = await scenario.outbox()
    assert [m["channel"] for m in sent] == ["email"]  # only the reschedule email
    assert "moved to" in sent[0]["body"]
    await scenario.run_at(later - timedelta(hours=1))
    sms = await scenario.outbox(channel="sms")
    assert len(sms) == 1
    assert sms[0]["to"] == "+14155550100"
    # Moving it again plans one new reminder, however often the same move is sent.
    await scenario.change(appointment["id"], startTime=(later + timedelta(days=1)).isoformat())
    await scenario.change(appointment["id"], startTime=(later + timedelta(days=1)).isoformat())
    reminders = [d for d in await scenario.deliveries() if d["notificationType"] == "reminder"]
    assert sorted(d["status"] for d in reminders) == ["cancelled", "scheduled", "sent"]


async def test_rule_changes_replan_every_future_appointment(scenario: Scenario) -> None:
    [reminder] = await scenario.rules(
        rule("contact", "email", "reminder", beforeTime=[{"timeOffset": 1, "unit": "hours"}])
    )
    contact = await scenario.tenant.add_contact()
    future = [await scenario.book(contact, START + timedelta(days=i)) for i in range(3)]
    past = await scenario.book(contact, NOW + timedelta(minutes=30))  # already started soon
    scenario.clock.set(NOW + timedelta(hours=1))  # `past` has started now
    assert len(by_status(await scenario.deliveries(), "scheduled")) == 3

    await scenario.update_rule(reminder["_id"], beforeTime=[{"timeOffset": 2, "unit": "hours"}])
    scheduled = by_status(await scenario.deliveries(), "scheduled")
    assert sorted(d["dueAt"] for d in scheduled) == [
        "2030-01-03T10:00:00.000Z",
        "2030-01-04T10:00:00.000Z",
        "2030-01-05T10:00:00.000Z",
    ]
    assert len(by_status(await scenario.deliveries(), "cancelled")) == 3
    assert past["id"] not in {d["appointmentId"] for d in scheduled}

    await scenario.update_rule(reminder["_id"], isActive=False)
    assert by_status(await scenario.deliveries(), "scheduled") == []
    cancelled = by_status(await scenario.deliveries(), "cancelled")
    assert {d["reason"] for d in cancelled} == {"rule_changed", "rule_deactivated"}

    await scenario.update_rule(reminder["_id"], isActive=True)
    assert len(by_status(await scenario.deliveries(), "scheduled")) == 3

    response = await scenario.client.delete(
        f"/calendars/{scenario.tenant.calendar_id}/notifications/{reminder['_id']}",
        headers=scenario.headers,
    )
    assert response.status_code == 200
    assert by_status(await scenario.deliveries(), "scheduled") == []
    assert await scenario.run_at(START + timedelta(days=5)) == 0
    assert {a["id"] for a in future} <= {d["appointmentId"] for d in await scenario.deliveries()}


async def test_a_new_rule_plans_existing_appointments(scenario: Scenario) -> None:
    contact = await scenario.tenant.add_contact()
    appointment = await scenario.book(contact, START)
    await scenario.rules(
        rule("contact", "email", "reminder", beforeTime=[{"timeOffset": 1, "unit": "hours"}]),
        rule("contact", "email", "booked"),  # not retroactive: the booking already happened
    )
    found = await scenario.deliveries(appointmentId=appointment["id"])
    assert [(d["notificationType"], d["dueAt"]) for d in found] == [
        ("reminder", "2030-01-03T11:00:00.000Z")
    ]


async def test_deleting_the_calendar_cancels_everything_pending(scenario: Scenario) -> None:
    await scenario.rules(
        rule("contact", "email", "reminder", beforeTime=[{"timeOffset": 1, "unit": "hours"}])
    )
    await scenario.book(await scenario.tenant.add_contact(), START)
    response = await scenario.client.delete(
        f"/calendars/{scenario.tenant.calendar_id}", headers=scenario.headers
    )
    assert response.status_code == 200
    [delivery] = await scenario.deliveries()
    assert (delivery["status"], delivery["reason"]) == ("cancelled", "calendar_deleted")


async def test_replanning_never_duplicates(scenario: Scenario) -> None:
    [reminder] = await scenario.rules(
        rule("contact", "email", "reminder", beforeTime=[{"timeOffset": 1, "unit": "hours"}])
    )
    appointment = await scenario.book(await scenario.tenant.add_contact(), START)
    for _ in range(3):
        await scenario.change(appointment["id"], title=f"t{_}")
        await scenario.update_rule(reminder["_id"], subject=f"s{_}")
    assert len(await scenario.deliveries()) == 1
    await scenario.run_at(START)
    assert len(await scenario.outbox()) == 1


# --- §4: recipients ---------------------------------------------------------------------


async def test_recipients(scenario: Scenario, db: Database) -> None:
    tenant = scenario.tenant
    second_admin = await _user(db, tenant, "boss@example.com", "admin", "+14155550999")
    await scenario.rules(
        rule("contact", "email", "booked"),
        rule("contact", "sms", "booked"),
        rule("contact", "whatsapp", "booked"),
        rule("guest", "email", "booked"),
        rule("assignedUser", "email", "booked"),
        rule("assignedUser", "sms", "booked"),
        rule("assignedUser", "inApp", "booked"),
        rule("emails", "email", "booked", additionalEmailIds=["a@example.com", "b@example.com"]),
        rule("phoneNumbers", "sms", "booked", additionalPhoneNumbers=["+14155550001"]),
        rule("phoneNumbers", "whatsapp", "booked", additionalPhoneNumbers=["+14155550002"]),
        rule("business", "email", "booked", selectedUsers=["sub_account_admin", tenant.user_id]),
        rule("business", "email", "booked"),
        rule("business", "inApp", "booked", selectedUsers=[tenant.user_id, "sub_account_admin"]),
    )
    appointment = await scenario.book(
        await tenant.add_contact(),
        START,
        assignedUserId=tenant.user_id,
        guests=[
            {"email": "g1@example.com"},
            {"email": "g2@example.com", "name": "G"},
            {"phone": "+14155550003"},
        ],
    )
    found = await scenario.deliveries(appointmentId=appointment["id"])
    recipients = sorted(
        (d["receiverType"], d["channel"], d["status"], d["reason"], d["recipient"]) for d in found
    )
    assert recipients == sorted(
        [
            ("contact", "email", "scheduled", "", "rosa@example.com"),
            ("contact", "sms", "scheduled", "", "+14155550123"),
            ("contact", "whatsapp", "scheduled", "", "+14155550123"),
            ("guest", "email", "scheduled", "", "g1@example.com"),
            ("guest", "email", "scheduled", "", "g2@example.com"),
            ("guest", "email", "skipped", "no_address", ""),
            ("assignedUser", "email", "scheduled", "", "user@example.com"),
            ("assignedUser", "sms", "scheduled", "", "+14155550100"),
            ("assignedUser", "inApp", "scheduled", "", tenant.user_id),
            ("emails", "email", "scheduled", "", "a@example.com"),
            ("emails", "email", "scheduled", "", "b@example.com"),
            ("phoneNumbers", "sms", "scheduled", "", "+14155550001"),
            ("phoneNumbers", "whatsapp", "scheduled", "", "+14155550002"),
            # sub_account_admin = every admin; the plain user is named too.
            ("business", "email", "scheduled", "", "admin@example.com"),
            ("business", "email", "scheduled", "", "boss@example.com"),
            ("business", "email", "scheduled", "", "user@example.com"),
            # No selected users: the location's email.
            ("business", "email", "scheduled", "", "front@example.com"),
            ("business", "inApp", "scheduled", "", tenant.user_id),
            ("business", "inApp", "scheduled", "", tenant.admin_id),
            ("business", "inApp", "scheduled", "", second_admin),
        ]
    )
    await scenario.dispatcher.drain()
    assert by_status(await scenario.deliveries(), "scheduled") == []
    inbox = await scenario.client.get(f"/users/{tenant.user_id}/inbox", headers=scenario.headers)
    assert inbox.json()["total"] == 2  # assignedUser inApp + business inApp
    item = inbox.json()["items"][0]
    assert item["notificationType"] == "booked"
    assert item["appointmentId"] == appointment["id"]
    assert "Rosa" in item["body"]


async def test_missing_addresses_and_dnd(scenario: Scenario) -> None:
    tenant = scenario.tenant
    await scenario.rules(
        rule("contact", "email", "booked"),
        rule("contact", "sms", "booked"),
        rule("contact", "whatsapp", "booked"),
        rule("assignedUser", "email", "booked"),
    )
    no_phone = await tenant.add_contact(phone="")
    a = await scenario.book(no_phone, START)  # no assigned user either
    assert summary(await scenario.deliveries(appointmentId=a["id"])) == [
        ("booked", "email", "scheduled", "", "rosa@example.com"),
        ("booked", "email", "skipped", "no_address", ""),
        ("booked", "sms", "skipped", "no_address", ""),
        ("booked", "whatsapp", "skipped", "no_address", ""),
    ]
    dnd_all = await tenant.add_contact(dnd=True)
    b = await scenario.book(dnd_all, START)
    assert {
        (d["channel"], d["reason"])
        for d in await scenario.deliveries(appointmentId=b["id"])
        if d["receiverType"] == "contact"
    } == {("email", "dnd"), ("sms", "dnd"), ("whatsapp", "dnd")}
    dnd_sms = await tenant.add_contact(dnd_settings={"SMS": {"status": "active"}})
    c = await scenario.book(dnd_sms, START)
    assert {
        (d["channel"], d["status"])
        for d in await scenario.deliveries(appointmentId=c["id"])
        if d["receiverType"] == "contact"
    } == {("email", "scheduled"), ("sms", "skipped"), ("whatsapp", "scheduled")}


async def test_dnd_set_after_planning_is_honoured_at_send_time(scenario: Scenario) -> None:
    await scenario.rules(
        rule("contact", "sms", "reminder", beforeTime=[{"timeOffset": 1, "unit": "hours"}])
    )
    contact = await scenario.tenant.add_contact()
    await scenario.book(contact, START)
    response = await scenario.client.put(
        f"/contacts/{contact}",
        json={"dndSettings": {"SMS": {"status": "active"}}},
        headers=scenario.headers,
    )
    assert response.status_code == 200
    await scenario.run_at(START - timedelta(hours=1))
    [delivery] = await scenario.deliveries()
    assert (delivery["status"], delivery["reason"]) == ("skipped", "dnd")
    assert await scenario.outbox() == []


async def test_new_address_is_used_at_send_time(scenario: Scenario) -> None:
    await scenario.rules(
        rule("contact", "email", "reminder", beforeTime=[{"timeOffset": 1, "unit": "hours"}])
    )
    contact = await scenario.tenant.add_contact()
    await scenario.book(contact, START)
    await scenario.client.put(
        f"/contacts/{contact}", json={"email": "rosa.new@example.com"}, headers=scenario.headers
    )
    await scenario.run_at(START - timedelta(hours=1))
    [message] = await scenario.outbox()
    assert message["to"] == "rosa.new@example.com"
    [delivery] = await scenario.deliveries()
    assert delivery["recipient"] == "rosa.new@example.com"


async def _user(db: Database, tenant: Tenant, email: str, role: str, phone: str) -> str:
    from calnotify.users.service import create_user

    async with db.session() as session:
        user = await create_user(
            session, location_id=tenant.location_id, email=email, role=role, phone=phone
        )
        return user.id
