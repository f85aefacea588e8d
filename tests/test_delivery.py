"""Real delivery: the engine with SMTP and Twilio pointed at local servers (semantics §3 to §6)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from email.message import EmailMessage
from typing import Any

import httpx
import pytest

from calnotify.app import create_app
from calnotify.channels.registry import build_channels
from calnotify.channels.twilio import signature
from calnotify.clock import ManualClock
from calnotify.config import Settings
from calnotify.db.engine import Database
from calnotify.dispatch.dispatcher import Dispatcher, DispatchSettings
from tests.conftest import NOW
from tests.engine import Scenario
from tests.factories import Tenant
from tests.providers import SmtpInbox, TwilioRecord, smtp_server, twilio_server

START = NOW + timedelta(days=1)


@pytest.fixture
def providers() -> Iterator[tuple[SmtpInbox, int, TwilioRecord, str]]:
    with smtp_server() as (inbox, port), twilio_server() as (record, base_url):
        yield inbox, port, record, base_url


@pytest.fixture
def live_settings(
    settings: Settings, providers: tuple[SmtpInbox, int, TwilioRecord, str]
) -> Settings:
    _, port, _, base_url = providers
    return Settings(
        **{
            "database_url": settings.database_url,
            "smtp_host": "127.0.0.1",
            "smtp_port": port,
            "smtp_security": "none",
            "email_from": "Bookings <bookings@calnotify.example>",
            "twilio_account_sid": "AC123",
            "twilio_auth_token": "secret",
            "twilio_from_number": "+14155550000",
            "twilio_whatsapp_from": "+14155559999",
            "twilio_base_url": base_url,
            "public_url": "https://cal.example",
        }
    )


@pytest.fixture
async def live(live_settings: Settings, db: Database, clock: ManualClock, tenant: Tenant) -> Any:
    app = create_app(live_settings, database=db, clock=clock)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://calnotify.test") as client:
        scenario = Scenario(client, tenant, clock, db, live_settings)
        channels = build_channels(live_settings, db, clock)
        scenario.dispatcher = Dispatcher(db, clock, channels, DispatchSettings())
        yield scenario
        for adapter in {id(a): a for a in channels.values()}.values():
            await adapter.close()


def rule(receiver: str, channel: str, kind: str, **fields: Any) -> dict[str, Any]:
    return {"receiverType": receiver, "channel": channel, "notificationType": kind, **fields}


async def test_the_whole_story(
    live: Scenario, providers: tuple[SmtpInbox, int, TwilioRecord, str]
) -> None:
    inbox, _, twilio, _ = providers
    tenant = live.tenant

    def texts() -> list[dict[str, str]]:
        return [t for t in twilio.messages() if not t["To"].startswith("whatsapp:")]

    await live.rules(
        rule(
            "contact",
            "email",
            "booked",
            subject="Booked: {{calendar.name}} on {{appointment.only_start_date}}",
            body="Hi {{contact.first_name}}, see you at {{appointment.only_start_time}} "
            "({{appointment.timezone}}).",
        ),
        rule("contact", "email", "reminder", beforeTime=[{"timeOffset": 1, "unit": "minutes"}]),
        rule("assignedUser", "sms", "reminder", beforeTime=[{"timeOffset": 1, "unit": "minutes"}]),
        rule("contact", "email", "reschedule"),
        rule("contact", "sms", "cancellation"),
        rule("assignedUser", "inApp", "confirmation"),
        rule("contact", "whatsapp", "followup", afterTime=[{"timeOffset": 1, "unit": "hours"}]),
    )
    contact = await tenant.add_contact(timezone="Europe/Paris")
    appointment = await live.book(contact, START, assignedUserId=tenant.user_id)

    # The booked email at once, rendered in the contact's zone, from the location.
    await live.dispatcher.drain()
    [booked] = inbox.to("rosa@example.com")
    assert booked["Subject"] == "Booked: Acme Dental calendar on January 2, 2030"
    # From the operator's domain, in the location's name; replies go to the location.
    assert booked["From"] == "Acme Dental <notifications@calnotify.invalid>"
    assert booked["Reply-To"] == "front@example.com"
    body = booked.get_body(preferencelist=("plain",))
    assert body is not None
    assert body.get_content().strip() == "Hi Rosa, see you at 1:00 PM (Europe/Paris)."
    [invite] = list(booked.iter_attachments())
    assert invite.get_param("method") == "REQUEST"

    # Reminders one minute before: email to the contact, SMS to the assigned user.
    await live.run_at(START - timedelta(minutes=1))
    assert len(inbox.to("rosa@example.com")) == 2
    [sms] = texts()
    assert (sms["To"], sms["From"]) == ("+14155550100", "+14155550000")
    assert sms["StatusCallback"] == "https://cal.example/webhooks/twilio/status"
    deliveries = await live.deliveries(appointmentId=appointment["id"], channel="sms")
    assert deliveries[0]["providerMessageId"].startswith("SM")
    assert deliveries[0]["sentAt"] == deliveries[0]["dueAt"]

    # The follow-up goes out on WhatsApp an hour after the end.
    await live.run_at(START + timedelta(minutes=30, hours=1))
    whatsapp = [t for t in twilio.messages() if t["To"].startswith("whatsapp:")]
    assert [(t["To"], t["From"]) for t in whatsapp] == [
        ("whatsapp:+14155550123", "whatsapp:+14155559999")
    ]
    assert "thank you" in whatsapp[0]["Body"].lower()

    # A second appointment is rescheduled: the reschedule email goes, the old reminder never.
    later = START + timedelta(days=1)
    second = await live.book(contact, later, assignedUserId=tenant.user_id)
    await live.dispatcher.drain()
    moved = later + timedelta(hours=3)
    await live.change(second["id"], startTime=moved.isoformat())
    await live.dispatcher.drain()
    subjects = [m["Subject"] for m in inbox.to("rosa@example.com")]
    assert subjects[-1] == "Appointment rescheduled: Acme Dental calendar"
    await live.run_at(later - timedelta(minutes=1))
    assert len(texts()) == 1  # the old SMS reminder did not go out

    # Then it is cancelled: the cancellation SMS goes, no reminder follows.
    await live.change(second["id"], appointmentStatus="cancelled")
    await live.dispatcher.drain()
    sent = texts()
    assert len(sent) == 2
    assert sent[-1]["To"] == "+14155550123"
    assert "cancelled" in sent[-1]["Body"]
    await live.run_at(moved)
    assert len(texts()) == 2

    # A confirmation lands in the assigned user's inbox.
    third = await live.book(contact, moved + timedelta(days=1), assignedUserId=tenant.user_id)
    await live.change(third["id"], appointmentStatus="confirmed")
    await live.dispatcher.drain()
    items = await live.client.get(f"/users/{tenant.user_id}/inbox", headers=live.headers)
    [item] = items.json()["items"]
    assert item["notificationType"] == "confirmation"
    assert item["readAt"] is None
    assert item["appointmentId"] == third["id"]


async def test_dnd_contact_gets_nothing(
    live: Scenario, providers: tuple[SmtpInbox, int, TwilioRecord, str]
) -> None:
    inbox, _, twilio, _ = providers
    await live.rules(rule("contact", "email", "booked"), rule("contact", "sms", "booked"))
    contact = await live.tenant.add_contact(dnd=True)
    await live.book(contact, START)
    await live.dispatcher.drain()
    assert inbox.messages == []
    assert twilio.messages() == []
    assert {(d["status"], d["reason"]) for d in await live.deliveries()} == {("skipped", "dnd")}


def calendar_of(message: EmailMessage) -> dict[str, str]:
    """The properties of the invitation an email carries (unfolded, parameters dropped)."""
    [attachment] = list(message.iter_attachments())
    ics = attachment.get_content()
    text = ics.decode() if isinstance(ics, bytes) else ics
    lines = text.replace("\r\n ", "").splitlines()
    return {line.split(":", 1)[0].split(";", 1)[0]: line.split(":", 1)[1] for line in lines}


async def test_the_invitation_follows_the_appointments_status(
    live: Scenario, providers: tuple[SmtpInbox, int, TwilioRecord, str]
) -> None:
    inbox, _, _, _ = providers
    await live.rules(
        *(rule("contact", "email", kind) for kind in ("booked", "confirmation", "cancellation"))
    )
    appointment = await live.book(await live.tenant.add_contact(), START)
    for change in ({"appointmentStatus": "confirmed"}, {"appointmentStatus": "cancelled"}, None):
        await live.dispatcher.drain()
        if change is not None:
            await live.change(appointment["id"], **change)
    received = inbox.to("rosa@example.com")
    assert [m["Auto-Submitted"] for m in received] == ["auto-generated"] * 3  # RFC 3834
    invites = [calendar_of(m) for m in received]
    assert [(i["METHOD"], i["STATUS"], i["SEQUENCE"]) for i in invites] == [
        ("REQUEST", "TENTATIVE", "1"),  # booked, not yet confirmed
        ("REQUEST", "CONFIRMED", "2"),
        ("CANCEL", "CANCELLED", "3"),
    ]
    assert {i["UID"] for i in invites} == {f"{appointment['id']}@calnotify"}


async def test_an_appointment_booked_confirmed_is_invited_confirmed(
    live: Scenario, providers: tuple[SmtpInbox, int, TwilioRecord, str]
) -> None:
    inbox, _, _, _ = providers
    await live.rules(rule("contact", "email", "confirmation"))
    await live.book(await live.tenant.add_contact(), START, appointmentStatus="confirmed")
    await live.dispatcher.drain()
    [received] = inbox.to("rosa@example.com")
    invite = calendar_of(received)
    assert (invite["METHOD"], invite["STATUS"]) == ("REQUEST", "CONFIRMED")


async def test_retry_on_smtp_4xx_then_permanent_5xx(
    live: Scenario, providers: tuple[SmtpInbox, int, TwilioRecord, str]
) -> None:
    inbox, _, _, _ = providers
    inbox.refuse["rosa@example.com"] = "452 4.2.2 Mailbox full"
    await live.rules(rule("contact", "email", "booked"))
    await live.book(await live.tenant.add_contact(), START)
    await live.dispatcher.drain()
    [delivery] = await live.deliveries()
    assert (delivery["status"], delivery["reason"]) == ("scheduled", "retrying")
    assert "452" in delivery["lastError"]
    inbox.refuse["rosa@example.com"] = "550 5.1.1 User unknown"
    await live.run_at(NOW + timedelta(minutes=1))
    [delivery] = await live.deliveries()
    assert (delivery["status"], delivery["reason"], delivery["attempts"]) == (
        "failed",
        "permanent",
        2,
    )


async def test_channels_without_a_provider_say_so(
    client: httpx.AsyncClient, tenant: Tenant, clock: ManualClock, db: Database, settings: Settings
) -> None:
    scenario = Scenario(client, tenant, clock, db, settings)
    await scenario.rules(rule("contact", "email", "booked"), rule("contact", "sms", "booked"))
    await scenario.book(await tenant.add_contact(), START)
    await scenario.dispatcher.drain()
    assert {d["provider"] for d in await scenario.deliveries()} == {"outbox"}


# --- Twilio status callbacks ----------------------------------------------------------------


async def _sent_sms(live: Scenario) -> dict[str, Any]:
    await live.rules(rule("contact", "sms", "booked"))
    await live.book(await live.tenant.add_contact(), START)
    await live.dispatcher.drain()
    [delivery] = await live.deliveries()
    assert delivery["status"] == "sent"
    return delivery


def signed(form: dict[str, str], token: str = "secret") -> dict[str, str]:
    url = "https://cal.example/webhooks/twilio/status"
    return {"X-Twilio-Signature": signature(token, url, form)}


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("delivered", ("sent", "")),
        ("undelivered", ("failed", "undelivered")),
        ("failed", ("failed", "failed")),
    ],
)
async def test_status_callback_records_the_outcome(
    live: Scenario, status: str, expected: tuple[str, str]
) -> None:
    delivery = await _sent_sms(live)
    form = {
        "MessageSid": delivery["providerMessageId"],
        "MessageStatus": status,
        "AccountSid": "AC123",
        "ErrorCode": "30003" if status != "delivered" else "",
    }
    response = await live.client.post("/webhooks/twilio/status", data=form, headers=signed(form))
    assert response.status_code == 200
    after = (await live.deliveries())[0]
    assert (after["status"], after["reason"]) == expected
    if status != "delivered":
        assert "30003" in after["lastError"]


async def test_a_failed_callback_saying_the_number_opted_out_sets_dnd(live: Scenario) -> None:
    """Twilio's 21610 in a status callback sets DND as the same error on send does
    (docs/semantics.md §8): one opted-out rule for both."""
    contact = await live.tenant.add_contact()
    await live.rules(rule("contact", "sms", "booked"))
    await live.book(contact, START)
    await live.dispatcher.drain()
    [delivery] = await live.deliveries()
    other = {"MessageSid": delivery["providerMessageId"], "MessageStatus": "failed"}
    for form in ({**other, "ErrorCode": "30003"}, {**other, "ErrorCode": "21610"}):
        response = await live.client.post(
            "/webhooks/twilio/status", data=form, headers=signed(form)
        )
        assert response.status_code == 200
        found = await live.client.get(f"/contacts/{contact}", headers=live.headers)
        dnd = found.json()["contact"]["dndSettings"]
        if form["ErrorCode"] == "30003":
            assert dnd == {}  # another failure: no DND
    assert dnd["SMS"] == {
        "status": "active",
        "message": "opted out at the provider",
        "code": "21610",
    }


async def test_status_never_moves_backwards(live: Scenario) -> None:
    delivery = await _sent_sms(live)
    sid = delivery["providerMessageId"]
    for status in ("delivered", "sent"):
        form = {"MessageSid": sid, "MessageStatus": status}
        await live.client.post("/webhooks/twilio/status", data=form, headers=signed(form))
    async with live.db.session(write=False) as session:
        from calnotify.models import Delivery

        row = await session.get(Delivery, delivery["id"])
        assert row is not None
        assert row.provider_status == "delivered"


@pytest.mark.parametrize("bad", ["wrong-token", "tampered", "missing"])
async def test_bad_signature_is_403_and_changes_nothing(live: Scenario, bad: str) -> None:
    delivery = await _sent_sms(live)
    form = {"MessageSid": delivery["providerMessageId"], "MessageStatus": "failed"}
    headers = signed(form, "wrong" if bad == "wrong-token" else "secret")
    if bad == "tampered":
        headers = signed({**form, "MessageStatus": "delivered"})
    if bad == "missing":
        headers = {}
    response = await live.client.post("/webhooks/twilio/status", data=form, headers=headers)
    assert response.status_code == 403
    assert response.json()["statusCode"] == 403
    assert (await live.deliveries())[0]["status"] == "sent"


async def test_status_callback_without_twilio_configured(client: httpx.AsyncClient) -> None:
    form = {"MessageSid": "SM1", "MessageStatus": "failed"}
    response = await client.post("/webhooks/twilio/status", data=form, headers=signed(form))
    assert response.status_code == 403


# --- in-app --------------------------------------------------------------------------------


async def test_mark_read_and_unread_filter(live: Scenario, other_tenant: Tenant) -> None:
    tenant = live.tenant
    await live.rules(rule("assignedUser", "inApp", "booked"))
    contact = await tenant.add_contact()
    for hours in (1, 2):
        await live.book(contact, START + timedelta(hours=hours), assignedUserId=tenant.user_id)
    await live.dispatcher.drain()
    base = f"/users/{tenant.user_id}/inbox"
    items = (await live.client.get(base, headers=live.headers)).json()["items"]
    assert len(items) == 2
    read = await live.client.post(f"{base}/{items[0]['id']}/read", headers=live.headers)
    assert read.status_code == 200
    assert read.json()["readAt"] == "2030-01-01T12:00:00.000Z"
    unread = await live.client.get(base, params={"unread": "true"}, headers=live.headers)
    assert [i["id"] for i in unread.json()["items"]] == [items[1]["id"]]
    # Another location can neither read nor mark it.
    foreign = await live.client.post(
        f"{base}/{items[1]['id']}/read", headers=other_tenant.headers()
    )
    assert foreign.status_code == 404
    reader = await tenant.token_with("users.readonly")
    assert (
        await live.client.post(f"{base}/{items[1]['id']}/read", headers=tenant.headers(reader))
    ).status_code == 401
    missing = await live.client.post(f"{base}/AAAAAAAAAAAAAAAAAAAA/read", headers=live.headers)
    assert missing.status_code == 404


async def test_odd_signatures_are_403_not_500(live: Scenario) -> None:
    form = {"MessageSid": "SM1", "MessageStatus": "failed"}
    response = await live.client.post(
        "/webhooks/twilio/status", data=form, headers={"X-Twilio-Signature": "é".encode("latin-1")}
    )
    assert response.status_code == 403


async def test_repeated_fields_are_signed_value_by_value(live: Scenario) -> None:
    delivery = await _sent_sms(live)
    pairs = [
        ("MessageSid", delivery["providerMessageId"]),
        ("MessageStatus", "delivered"),
        ("Tag", "a"),
        ("Tag", "b"),
    ]
    url = "https://cal.example/webhooks/twilio/status"
    response = await live.client.post(
        "/webhooks/twilio/status",
        content="&".join(f"{k}={v}" for k, v in pairs),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature("secret", url, pairs),
        },
    )
    assert response.status_code == 200
