"""Replies by SMS and WhatsApp (docs/semantics.md §8, "Replies"), and Twilio's own word that a
number opted out (error 21610): the engine with Twilio pointed at a local server."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from calnotify.app import create_app
from calnotify.channels.registry import build_channels
from calnotify.channels.twilio import signature
from calnotify.clock import ManualClock
from calnotify.config import Settings
from calnotify.db.engine import Database
from calnotify.dispatch.dispatcher import Dispatcher, DispatchSettings
from calnotify.models import AllowedSender, AppointmentEvent, InboundMessage, Location
from calnotify.replies.keywords import KeywordError, intent, keyword, parse_keywords
from tests.conftest import NOW
from tests.engine import Scenario
from tests.factories import Tenant, make_tenant
from tests.providers import TwilioRecord, twilio_server
from tests.test_console import signed_in, text_of

START = NOW + timedelta(days=1)
FROM_NUMBER = "+14155550000"  # the deployment's Twilio number
PHONE = "+14155550123"  # the contact's (tests.factories)
INBOUND_URL = "https://cal.example/webhooks/twilio/inbound"
EMPTY = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
SOON = [{"timeOffset": 1, "unit": "minutes"}]


@pytest.fixture
def twilio() -> Iterator[tuple[TwilioRecord, str]]:
    with twilio_server() as server:
        yield server


@pytest.fixture
async def live(
    settings: Settings,
    twilio: tuple[TwilioRecord, str],
    db: Database,
    clock: ManualClock,
    tenant: Tenant,
) -> Any:
    configured = Settings(
        **{
            "database_url": settings.database_url,
            "twilio_account_sid": "AC123",
            "twilio_auth_token": "secret",
            "twilio_from_number": FROM_NUMBER,
            "twilio_whatsapp_from": "+14155559999",
            "twilio_base_url": twilio[1],
            "public_url": "https://cal.example",
        }
    )
    app = create_app(configured, database=db, clock=clock)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://calnotify.test") as client:
        scenario = Scenario(client, tenant, clock, db, configured)
        channels = build_channels(configured, db, clock)
        scenario.dispatcher = Dispatcher(db, clock, channels, DispatchSettings())
        yield scenario
        for adapter in {id(a): a for a in channels.values()}.values():
            await adapter.close()


def rule(channel: str, kind: str, **fields: Any) -> dict[str, Any]:
    return {"receiverType": "contact", "channel": channel, "notificationType": kind, **fields}


def signed(form: dict[str, str], token: str = "secret") -> dict[str, str]:
    return {"X-Twilio-Signature": signature(token, INBOUND_URL, form)}


async def reply(
    live: Scenario, body: str, sender: str = PHONE, to: str = FROM_NUMBER, sid: str = "SM1"
) -> httpx.Response:
    form = {"From": sender, "To": to, "Body": body, "MessageSid": sid, "AccountSid": "AC123"}
    response = await live.client.post("/webhooks/twilio/inbound", data=form, headers=signed(form))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/xml")
    return response


async def replies(db: Database) -> list[InboundMessage]:
    async with db.session(write=False) as session:
        rows = await session.scalars(select(InboundMessage).order_by(InboundMessage.received_at))
        return list(rows)


async def contact_dnd(live: Scenario, contact_id: str) -> dict[str, Any]:
    response = await live.client.get(f"/contacts/{contact_id}", headers=live.headers)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()["contact"]["dndSettings"]
    return found


async def status_of(live: Scenario, appointment_id: str) -> str:
    response = await live.client.get(
        f"/calendars/events/appointments/{appointment_id}", headers=live.headers
    )
    assert response.status_code == 200, response.text
    status: str = response.json()["event"]["appointmentStatus"]
    return status


async def of_type(live: Scenario, kind: str) -> list[dict[str, Any]]:
    return [d for d in await live.deliveries() if d["notificationType"] == kind]


async def messaged(live: Scenario, channel: str = "sms") -> tuple[str, dict[str, Any]]:
    """A contact booked, with the booked message sent to them on ``channel``."""
    contact = await live.tenant.add_contact()
    booked = await live.book(contact, START)
    await live.dispatcher.drain()
    return contact, booked


# --- the signature ---------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["wrong-token", "tampered", "missing"])
async def test_a_reply_without_a_good_signature_is_403_and_stored_nowhere(
    live: Scenario, bad: str
) -> None:
    form = {"From": PHONE, "To": FROM_NUMBER, "Body": "STOP", "MessageSid": "SM1"}
    headers = signed(form, "wrong" if bad == "wrong-token" else "secret")
    if bad == "tampered":
        headers = signed({**form, "Body": "HELP"})
    if bad == "missing":
        headers = {}
    response = await live.client.post("/webhooks/twilio/inbound", data=form, headers=headers)
    assert response.status_code == 403
    assert response.json()["message"] == "Invalid Twilio signature"
    assert await replies(live.db) == []


# --- keywords --------------------------------------------------------------------------------


async def test_a_confirm_keyword_confirms_and_fires_the_confirmation_rule(
    live: Scenario, twilio: tuple[TwilioRecord, str]
) -> None:
    await live.rules(rule("sms", "booked"), rule("sms", "confirmation", body="Confirmed, see you!"))
    contact, booked = await messaged(live)
    response = await reply(live, "  yes ")
    assert response.text == EMPTY  # the confirmation rule answers, nothing else
    assert await status_of(live, booked["id"]) == "confirmed"
    await live.dispatcher.drain()
    bodies = [m["Body"] for m in twilio[0].messages()]
    assert bodies[-1] == "Confirmed, see you!"
    async with live.db.session(write=False) as session:
        event = await session.scalar(
            select(AppointmentEvent)
            .where(AppointmentEvent.appointment_id == booked["id"])
            .order_by(AppointmentEvent.id.desc())
        )
    assert event is not None
    assert (event.kind, event.source, event.channel) == ("status_changed", "contact", "sms")
    [stored] = await replies(live.db)
    assert (stored.action, stored.contact_id, stored.appointment_id) == (
        "confirmed",
        contact,
        booked["id"],
    )
    assert (stored.location_id, stored.body, stored.provider_message_id) == (
        live.tenant.location_id,
        "  yes ",
        "SM1",
    )


async def test_a_location_sets_its_own_confirm_keywords(live: Scenario) -> None:
    await live.rules(rule("sms", "booked"))
    _, booked = await messaged(live)
    async with live.db.session() as session:
        location = await session.get(Location, live.tenant.location_id)
        assert location is not None
        location.reply_confirm_keywords = "OK,SI"
    await reply(live, "yes")
    assert await status_of(live, booked["id"]) == "new"
    await reply(live, "Si!")
    assert await status_of(live, booked["id"]) == "confirmed"


async def test_stop_then_the_next_sms_is_skipped_dnd_and_start_clears_it(
    live: Scenario, twilio: tuple[TwilioRecord, str]
) -> None:
    await live.rules(rule("sms", "booked"), rule("sms", "reminder", beforeTime=SOON))
    contact, booked = await messaged(live)
    assert (await reply(live, "Stop")).text == EMPTY
    assert (await contact_dnd(live, contact))["SMS"] == {
        "status": "active",
        "message": "opted out by reply",
        "code": "",
    }
    await live.run_at(START - timedelta(minutes=1))
    [reminder] = await of_type(live, "reminder")
    assert (reminder["status"], reminder["reason"]) == ("skipped", "dnd")
    assert len(twilio[0].messages()) == 1
    assert await status_of(live, booked["id"]) == "new"  # CANCEL-like words never cancel

    await reply(live, "UNSTOP")
    assert (await contact_dnd(live, contact))["SMS"]["status"] == "inactive"
    await live.book(contact, START + timedelta(days=2))
    await live.dispatcher.drain()
    assert len(twilio[0].messages()) == 2
    assert [r.action for r in await replies(live.db)] == ["opted_out", "opted_in"]


async def test_cancel_is_an_opt_out_and_never_cancels(live: Scenario) -> None:
    await live.rules(rule("sms", "booked"))
    contact, booked = await messaged(live)
    await reply(live, "cancel")
    assert await status_of(live, booked["id"]) == "new"
    assert (await contact_dnd(live, contact))["SMS"]["status"] == "active"


async def test_a_whatsapp_stop_sets_the_whatsapp_dnd_only(live: Scenario) -> None:
    await live.rules(rule("whatsapp", "booked"))
    contact, _ = await messaged(live, "whatsapp")
    await reply(live, "STOP", sender=f"whatsapp:{PHONE}", to="whatsapp:+14155559999")
    dnd = await contact_dnd(live, contact)
    assert dnd["WhatsApp"]["status"] == "active"
    assert "SMS" not in dnd
    [stored] = await replies(live.db)
    assert (stored.channel, stored.from_number, stored.contact_id) == ("whatsapp", PHONE, contact)


async def test_help_answers_with_the_location_help_text(live: Scenario) -> None:
    await live.tenant.add_contact()
    answer = (await reply(live, "help")).text
    assert answer == (
        '<?xml version="1.0" encoding="UTF-8"?><Response><Message>Acme Dental: appointment '
        "messages. Reply STOP to opt out.</Message></Response>"
    )
    async with live.db.session() as session:
        location = await session.get(Location, live.tenant.location_id)
        assert location is not None
        location.reply_help = "Acme <Dental> & co: call +1 415 555 0100"
    answer = (await reply(live, "HELP")).text
    assert "<Message>Acme &lt;Dental&gt; &amp; co: call +1 415 555 0100</Message>" in answer
    assert [r.action for r in await replies(live.db)] == ["help", "help"]


async def test_an_unknown_number_is_recorded_and_answered_with_nothing(live: Scenario) -> None:
    await live.rules(rule("sms", "booked"))
    _, booked = await messaged(live)
    assert (await reply(live, "YES", sender="+19995550100")).text == EMPTY
    assert await status_of(live, booked["id"]) == "new"
    [stored] = await replies(live.db)
    assert (stored.location_id, stored.contact_id, stored.appointment_id, stored.action) == (
        live.tenant.location_id,  # the deployment's only location
        None,
        None,
        "none",
    )


async def test_a_reply_without_a_messaged_appointment_changes_nothing(live: Scenario) -> None:
    await live.rules(rule("email", "booked"))  # messaged by email, not by SMS
    contact, booked = await messaged(live)
    assert (await reply(live, "C")).text == EMPTY
    assert await status_of(live, booked["id"]) == "new"
    [stored] = await replies(live.db)
    assert (stored.contact_id, stored.appointment_id, stored.action) == (contact, None, "none")


async def test_other_text_is_stored_and_changes_nothing(live: Scenario) -> None:
    await live.rules(rule("sms", "booked"))
    _, booked = await messaged(live)
    long = "Can we move it to Friday?\x00 " * 100
    assert (await reply(live, long)).text == EMPTY
    assert await status_of(live, booked["id"]) == "new"
    [stored] = await replies(live.db)
    assert (stored.action, stored.appointment_id) == ("none", booked["id"])
    assert stored.body == long.replace("\x00", "")[:1600]


async def test_the_number_replied_to_names_the_location(live: Scenario, db: Database) -> None:
    other = await make_tenant(db, "Other Clinic")
    await live.rules(rule("sms", "booked"))
    contact, booked = await messaged(live)
    theirs = await other.add_contact()  # the same phone, at another location
    async with db.session() as session:
        session.add(AllowedSender(location_id=other.location_id, kind="number", value="+15550001"))
    await reply(live, "STOP", to="+1 555 0001")
    assert await contact_dnd(live, contact) == {}
    [stored] = await replies(db)
    assert (stored.location_id, stored.contact_id) == (other.location_id, theirs)

    # To the shared number: the location that messaged the number last.
    await reply(live, "Y", sid="SM2")
    assert await status_of(live, booked["id"]) == "confirmed"


async def test_the_console_shows_an_appointments_replies(live: Scenario) -> None:
    await live.rules(rule("sms", "booked"))
    _, booked = await messaged(live)
    await reply(live, "When is it again?")
    await reply(live, "Y", sid="SM2")
    live.client.base_url = httpx.URL("https://calnotify.test")  # Secure cookies, as behind https
    await signed_in(live.client, live.tenant)
    page = await live.client.get(f"/console/appointments/{booked['id']}")
    assert page.status_code == 200
    shown = text_of(page.text)
    assert f"SMS {PHONE} When is it again? Nothing (stored only)" in shown
    assert f"SMS {PHONE} Y Confirmed the appointment" in shown


# --- reading replies through the API ---------------------------------------------------------


async def test_replies_are_read_through_the_api_by_their_location_only(
    live: Scenario, db: Database
) -> None:
    await live.rules(rule("sms", "booked"))
    contact, booked = await messaged(live)
    await reply(live, "When is it again?")
    live.clock.advance(seconds=1)
    await reply(live, "Y", sid="SM2")
    live.clock.advance(seconds=1)
    await reply(live, "who?", sender="+14155550777", sid="SM3")  # nobody's number

    listed = await live.client.get("/replies", headers=live.headers)
    assert listed.status_code == 200, listed.text
    page = listed.json()
    assert page["total"] == 3
    newest = page["replies"][1]
    assert {k: newest[k] for k in ("messageType", "direction", "from", "body", "action")} == {
        "messageType": "SMS",
        "direction": "inbound",
        "from": PHONE,
        "body": "Y",
        "action": "confirmed",
    }
    assert (newest["contactId"], newest["appointmentId"]) == (contact, booked["id"])
    mine = await live.client.get(
        "/replies", params={"contactId": contact, "limit": 1, "skip": 1}, headers=live.headers
    )
    assert mine.json()["total"] == 2
    assert [r["body"] for r in mine.json()["replies"]] == ["When is it again?"]
    by_appointment = await live.client.get(
        "/replies", params={"appointmentId": booked["id"]}, headers=live.headers
    )
    assert [r["body"] for r in by_appointment.json()["replies"]] == ["Y", "When is it again?"]

    other = await make_tenant(db, "Other Clinic")
    theirs = await live.client.get(
        "/replies", params={"contactId": contact}, headers=other.headers()
    )
    assert theirs.status_code == 200 and theirs.json() == {"replies": [], "total": 0}
    token = await live.tenant.token_with("calendars/events.readonly")
    refused = await live.client.get("/replies", headers=live.tenant.headers(token))
    assert refused.status_code == 401  # the scope is missing, as on every route
    assert (await live.client.get("/replies?limit=501", headers=live.headers)).status_code == 400
    reader = await live.tenant.token_with("contacts.readonly")
    allowed = await live.client.get("/replies", headers=live.tenant.headers(reader))
    assert allowed.status_code == 200


# --- Twilio's 21610 --------------------------------------------------------------------------


async def test_twilio_saying_the_number_opted_out_sets_dnd(
    live: Scenario, twilio: tuple[TwilioRecord, str]
) -> None:
    record, _ = twilio
    record.answers[PHONE] = (
        400,
        {"code": 21610, "message": "Attempt to send to unsubscribed recipient", "status": 400},
    )
    await live.rules(rule("sms", "booked"), rule("sms", "reminder", beforeTime=SOON))
    contact, _ = await messaged(live)
    [booked] = await of_type(live, "booked")
    assert (booked["status"], booked["reason"]) == ("failed", "permanent")
    assert "21610" in booked["lastError"]
    assert (await contact_dnd(live, contact))["SMS"] == {
        "status": "active",
        "message": "opted out at the provider",
        "code": "21610",
    }
    await live.run_at(START - timedelta(minutes=1))
    [reminder] = await of_type(live, "reminder")
    assert (reminder["status"], reminder["reason"]) == ("skipped", "dnd")
    assert len(record.messages()) == 1


async def test_other_permanent_twilio_errors_set_no_dnd(
    live: Scenario, twilio: tuple[TwilioRecord, str]
) -> None:
    twilio[0].answers[PHONE] = (400, {"code": 21211, "message": "Invalid 'To' Phone Number"})
    await live.rules(rule("sms", "booked"))
    contact, _ = await messaged(live)
    assert await contact_dnd(live, contact) == {}


# --- reading keywords ------------------------------------------------------------------------


def test_keywords_are_read_whatever_their_case_and_spacing() -> None:
    confirm = parse_keywords("")
    assert confirm == ("C", "CONFIRM", "Y", "YES")
    assert keyword(" y E s! ") == "YES"
    cases = {
        "stop": "opted_out",
        " StopAll ": "opted_out",
        "Unsubscribe.": "opted_out",
        "end": "opted_out",
        "quit": "opted_out",
        "cancel": "opted_out",
        "start": "opted_in",
        "unstop": "opted_in",
        "Help": "help",
        "c": "confirmed",
        "Confirm": "confirmed",
        "yes please": "none",
        "": "none",
    }
    assert {text: intent(text, confirm).value for text in cases} == cases


def test_carrier_keywords_cannot_confirm() -> None:
    assert parse_keywords(" ok, Sí ,ok") == ("OK", "SÍ")
    with pytest.raises(KeywordError, match="CANCEL is a carrier keyword"):
        parse_keywords("yes,cancel")
