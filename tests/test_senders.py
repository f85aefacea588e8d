"""Who messages are from (semantics §7): the choice, the allowed senders of a location, and
the headers and envelope an SMTP server actually receives."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import delete

from calnotify.channels.addresses import (
    AddressError,
    email_sender,
    normalise_email,
    normalise_number,
    wire_address,
)
from calnotify.channels.base import Message, PermanentSendError
from calnotify.channels.senders import (
    NOTHING_ALLOWED,
    AllowedSenders,
    SenderChoice,
    allowed_senders,
    choose_sender,
)
from calnotify.channels.smtp import SmtpAdapter
from calnotify.config import Settings
from calnotify.db.engine import Database
from calnotify.models import AllowedSender, Location
from tests.factories import Tenant, create_notifications, notification
from tests.providers import SmtpInbox, smtp_server

SETTINGS = Settings(
    email_from="Acme Notifications <notify@operator.example>",
    twilio_from_number="+14155550000",
    twilio_whatsapp_from="+14155559999",
)
ALLOWED = AllowedSenders.of(
    [
        ("email", "desk@acme.example"),
        ("email", "info@xn--bcher-kva.example"),
        ("number", "+14155551111"),
    ]
)


def choose(
    channel: str = "email",
    *,
    name: str = "",
    address: str = "",
    number: str = "",
    location_name: str = "Acme Dental",
    location_email: str = "office@acme.example",
    allowed: AllowedSenders = ALLOWED,
    settings: Settings = SETTINGS,
) -> SenderChoice:
    return choose_sender(
        channel,
        rule_from_name=name,
        rule_from_address=address,
        rule_from_number=number,
        location_name=location_name,
        location_email=location_email,
        allowed=allowed,
        settings=settings,
    )


# --- the choice ---------------------------------------------------------------------------


def test_email_without_a_rule_sender_is_from_the_operator_with_the_location_as_reply_to() -> None:
    choice = choose()
    assert choice == SenderChoice(
        from_name="Acme Dental",
        from_address="notify@operator.example",
        reply_to="office@acme.example",
    )
    assert choice.sender == "Acme Dental <notify@operator.example>"


def test_the_rule_name_wins_over_the_location_name() -> None:
    assert choose(name="Dr. Lee's desk").from_name == "Dr. Lee's desk"
    assert choose(name="  Two\r\n  lines ").from_name == "Two lines"


def test_without_any_name_the_operator_name_is_used() -> None:
    assert choose(location_name="").from_name == "Acme Notifications"


def test_an_allowed_from_address_is_the_from() -> None:
    choice = choose(name="Front desk", address="desk@ACME.example")
    assert (choice.from_name, choice.from_address, choice.reply_to, choice.note) == (
        "Front desk",
        "desk@acme.example",
        "office@acme.example",
        "",
    )


@pytest.mark.parametrize(
    "address", ["DESK@acme.example", "Desk@ACME.EXAMPLE", " desk@acme.example"]
)
def test_an_allowed_address_matches_whatever_its_case(address: str) -> None:
    stored_in_capitals = AllowedSenders.of([("email", "Desk@acme.example")])
    for allowed in (ALLOWED, stored_in_capitals):
        choice = choose(address=address, allowed=allowed)
        assert choice.from_address.lower() == "desk@acme.example"
        assert (choice.reply_to, choice.note) == ("office@acme.example", "")


def test_an_allowed_idn_address_is_matched_and_sent_in_its_ascii_form() -> None:
    choice = choose(address="info@Bücher.example")
    assert choice.from_address == "info@xn--bcher-kva.example"
    assert choice.note == ""


def test_a_from_address_not_allowed_becomes_the_reply_to() -> None:
    choice = choose(address="boss@customer.example")
    assert choice.from_address == "notify@operator.example"
    assert choice.reply_to == "boss@customer.example"
    assert "boss@customer.example is not an allowed sender" in choice.note
    assert "notify@operator.example" in choice.note


def test_an_address_allowed_for_another_location_only_is_not_allowed() -> None:
    choice = choose(address="desk@acme.example", allowed=NOTHING_ALLOWED)
    assert (choice.from_address, choice.reply_to) == (
        "notify@operator.example",
        "desk@acme.example",
    )
    assert choice.note


def test_an_invalid_from_address_is_not_used_at_all() -> None:
    choice = choose(address="desk@acme.example\r\nBcc: victim@example.com")
    assert (choice.from_address, choice.reply_to) == (
        "notify@operator.example",
        "office@acme.example",
    )
    assert "is not a valid email address" in choice.note


def test_no_reply_to_when_it_would_be_the_from_or_is_unknown() -> None:
    assert choose(address="desk@acme.example", location_email="Desk@acme.example").reply_to == ""
    assert choose(location_email="").reply_to == ""


def test_sms_from_the_configured_number_unless_the_rule_number_is_allowed() -> None:
    assert choose("sms") == SenderChoice(from_number="+14155550000")
    assert choose("sms", number="+14155551111") == SenderChoice(from_number="+14155551111")
    refused = choose("sms", number="+14155552222")
    assert refused.from_number == "+14155550000"
    assert "+14155552222 is not an allowed sender" in refused.note
    assert refused.sender == "+14155550000"
    # Email fields stay empty: nothing for an SMS adapter to misuse.
    assert (refused.from_name, refused.from_address, refused.reply_to) == ("", "", "")


@pytest.mark.parametrize("number", ["+1 (415) 555-1111", "+1.415.555.1111", "+1 415 555 1111"])
def test_an_allowed_number_matches_in_any_common_form(number: str) -> None:
    choice = choose("sms", number=number)
    assert choice == SenderChoice(from_number="+14155551111")


def test_whatsapp_from_its_own_number_unless_the_rule_number_is_allowed() -> None:
    assert choose("whatsapp").from_number == "+14155559999"
    assert choose("whatsapp", number="+14155551111").from_number == "+14155551111"
    refused = choose("whatsapp", number="+14155552222")
    assert refused.from_number == "+14155559999" and refused.note
    # Without a WhatsApp sender, the SMS number (what the adapter falls back to).
    only_sms = Settings(twilio_from_number="+14155550000")
    assert choose("whatsapp", settings=only_sms).from_number == "+14155550000"


def test_a_refused_number_without_a_configured_one_says_so() -> None:
    choice = choose("sms", number="+14155552222", settings=Settings())
    assert choice.from_number == ""
    assert "CALNOTIFY_TWILIO_FROM_NUMBER is not set" in choice.note


def test_in_app_messages_have_no_sender() -> None:
    assert choose("inApp", name="x", address="desk@acme.example") == SenderChoice()


@pytest.mark.parametrize(
    ("given", "normalised"),
    [
        ("Desk@ACME.Example", "Desk@acme.example"),
        (" user@bücher.example ", "user@xn--bcher-kva.example"),
        ("user@xn--bcher-kva.example", "user@xn--bcher-kva.example"),
        ("üser@Bücher.example", "üser@xn--bcher-kva.example"),
    ],
)
def test_email_normalisation(given: str, normalised: str) -> None:
    assert normalise_email(given) == normalised


@pytest.mark.parametrize("given", ["nope", "a@b", "a@b.example\r\nBcc: x@y.example", ""])
def test_bad_addresses(given: str) -> None:
    with pytest.raises(AddressError, match="not a valid email address"):
        normalise_email(given)


def test_number_normalisation() -> None:
    assert normalise_number("+1 (415) 555-0100") == "+14155550100"
    for bad in ("14155550100", "+0123456789", "+1415", "+1415555010012345", "call me"):
        with pytest.raises(AddressError, match=r"E\.164"):
            normalise_number(bad)
    with pytest.raises(AddressError, match="set the location's country"):
        normalise_number("1-555-010-2000")


@pytest.mark.parametrize(
    ("given", "country", "e164"),
    [
        ("+1 (555) 010-2000", "", "+15550102000"),
        ("+15550102000", "", "+15550102000"),
        ("+1 (555) 010-2000", "GB", "+15550102000"),
        ("1-555-010-2000", "US", "+15550102000"),
        ("(555) 010-2000", "US", "+15550102000"),
        ("555.010.2000", "us", "+15550102000"),
        ("020 7946 0000", "GB", "+442079460000"),
        ("00 49 30 1234567", "DE", "+49301234567"),
    ],
)
def test_numbers_in_a_country(given: str, country: str, e164: str) -> None:
    assert normalise_number(given, country) == e164


@pytest.mark.parametrize("bad", ["555", "1-800-FLOWERS", "2000", "+1-phone"])
def test_numbers_that_are_not_numbers_of_the_country(bad: str) -> None:
    with pytest.raises(AddressError, match=r"E\.164"):
        normalise_number(bad, "US")


# --- loading the allowed senders ----------------------------------------------------------


async def test_allowed_senders(db: Database, tenant: Tenant, other_tenant: Tenant) -> None:
    async with db.session() as session:
        session.add_all(
            [
                AllowedSender(location_id=tenant.location_id, kind="email", value="a@x.example"),
                AllowedSender(location_id=tenant.location_id, kind="number", value="+14155551111"),
                AllowedSender(
                    location_id=other_tenant.location_id, kind="email", value="b@y.example"
                ),
            ]
        )
    loaded = await allowed_senders(db, {tenant.location_id, other_tenant.location_id, "nowhere"})
    assert await allowed_senders(db, set()) == {}
    assert loaded[tenant.location_id] == AllowedSenders(
        frozenset({"a@x.example"}), frozenset({"+14155551111"})
    )
    # The domain is case-insensitive, and so is the local part, as mail servers treat it.
    assert loaded[other_tenant.location_id].allows_email("b@Y.Example")
    assert loaded[other_tenant.location_id].allows_email("B@y.example")
    assert not loaded[other_tenant.location_id].allows_email("a@x.example")
    assert loaded["nowhere"] == NOTHING_ALLOWED


async def test_allowed_senders_go_with_their_location(db: Database, tenant: Tenant) -> None:
    async with db.session() as session:
        session.add(AllowedSender(location_id=tenant.location_id, kind="email", value="a@x.ex"))
    async with db.session() as session:
        await session.execute(delete(Location).where(Location.id == tenant.location_id))
    loaded = await allowed_senders(db, {tenant.location_id})
    assert loaded[tenant.location_id] == NOTHING_ALLOWED


# --- a rule's fromNumber ------------------------------------------------------------------


async def test_from_number_is_stored_in_e164_as_its_location_reads_it(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    rules_url = f"/calendars/{tenant.calendar_id}/notifications"
    [written] = await create_notifications(
        client, tenant, notification(channel="sms", fromNumber="+1 (415) 555-0100")
    )
    assert written["fromNumber"] == "+14155550100"
    # Without a country, a number without + cannot be read.
    national = notification(channel="sms", fromNumber="1-415-555-0100")
    refused = await client.post(rules_url, json=[national], headers=tenant.headers())
    assert refused.status_code == 400
    [error] = refused.json()["errors"]
    assert error["field"] == "[0].fromNumber"
    assert "set the location's country" in error["message"]

    located = await client.put(
        f"/locations/{tenant.location_id}", json={"country": "US"}, headers=tenant.headers()
    )
    assert located.status_code == 200, located.text
    [national_rule] = await create_notifications(client, tenant, national)
    assert national_rule["fromNumber"] == "+14155550100"
    changed = await client.put(
        f"{rules_url}/{national_rule['_id']}",
        json={"fromNumber": "(415) 555-0199"},
        headers=tenant.headers(),
    )
    assert changed.status_code == 200, changed.text
    stored = await client.get(f"{rules_url}/{national_rule['_id']}", headers=tenant.headers())
    assert stored.json()["fromNumber"] == "+14155550199"
    unreadable = await client.put(
        f"{rules_url}/{national_rule['_id']}",
        json={"fromNumber": "555"},
        headers=tenant.headers(),
    )
    assert unreadable.status_code == 400
    assert "nor a phone number of US" in unreadable.text


# --- what the SMTP server receives --------------------------------------------------------


@pytest.fixture
def smtp() -> Iterator[tuple[SmtpInbox, int]]:
    with smtp_server() as running:
        yield running


@pytest.fixture
def smtp_utf8() -> Iterator[tuple[SmtpInbox, int]]:
    with smtp_server(smtputf8=True) as running:
        yield running


def smtp_settings(
    port: int, email_from: str = "Acme Notifications <notify@operator.example>"
) -> Settings:
    return Settings(
        smtp_host="127.0.0.1", smtp_port=port, smtp_security="none", email_from=email_from
    )


def message(choice: SenderChoice | None = None, **fields: object) -> Message:
    values: dict[str, object] = {
        "delivery_id": "D" * 20,
        "location_id": "L" * 20,
        "appointment_id": "A" * 20,
        "calendar_id": "C" * 20,
        "notification_type": "booked",
        "channel": "email",
        "to": "rosa@example.com",
        "subject": "Booked",
        "body": "See you soon",
    }
    if choice is not None:
        # What the dispatcher puts into a message.
        values.update(
            from_name=choice.from_name,
            from_address=choice.from_address,
            reply_to=choice.reply_to,
            from_number=choice.from_number,
        )
    values.update(fields)
    return Message(**values)  # type: ignore[arg-type]


async def send(port: int, *messages: Message, **settings: str) -> None:
    adapter = SmtpAdapter(smtp_settings(port, **settings))
    try:
        for each in messages:
            await adapter.send(each)
    finally:
        await adapter.close()


async def test_received_from_and_reply_to_as_chosen(smtp: tuple[SmtpInbox, int]) -> None:
    inbox, port = smtp
    await send(
        port,
        message(choose(address="boss@customer.example"), delivery_id="1" * 20),
        message(choose(name="Front desk", address="desk@acme.example"), delivery_id="2" * 20),
        message(choose(location_email="", location_name="Acme, Inc."), delivery_id="3" * 20),
    )
    refused, allowed, plain = inbox.messages
    assert refused["From"] == "Acme Dental <notify@operator.example>"
    assert refused["Reply-To"] == "boss@customer.example"
    assert allowed["From"] == "Front desk <desk@acme.example>"
    assert allowed["Reply-To"] == "office@acme.example"
    assert plain["From"] == '"Acme, Inc." <notify@operator.example>'
    assert plain["Reply-To"] is None
    # The envelope sender is the From's address.
    assert [e[0] for e in inbox.envelopes] == [
        "notify@operator.example",
        "desk@acme.example",
        "notify@operator.example",
    ]


async def test_a_non_ascii_name_is_encoded(smtp: tuple[SmtpInbox, int]) -> None:
    inbox, port = smtp
    await send(port, message(choose(location_name="Zahnärztin Müller")))
    [received] = inbox.messages
    assert received["From"] == "Zahnärztin Müller <notify@operator.example>"
    raw = inbox.envelopes[0][3]
    assert raw.isascii() and b"=?utf-8?" in raw


async def test_idn_domains_are_idna_encoded_in_envelope_and_headers(
    smtp: tuple[SmtpInbox, int],
) -> None:
    inbox, port = smtp
    await send(
        port,
        message(
            to="kunde@bücher.example",
            from_address="info@bücher.example",
            reply_to="office@grüße.example",
        ),
        email_from="Notify <notify@bücher.example>",
    )
    [received] = inbox.messages
    mail_from, rcpt_tos, options, raw = inbox.envelopes[0]
    assert (mail_from, rcpt_tos) == ("info@xn--bcher-kva.example", ["kunde@xn--bcher-kva.example"])
    assert "SMTPUTF8" not in options
    assert raw.isascii()
    assert received["From"] == "Notify <info@xn--bcher-kva.example>"
    assert received["To"] == "kunde@xn--bcher-kva.example"
    assert received["Reply-To"] == "office@xn--gre-6ka8l.example"
    assert received["Message-ID"] == "<DDDDDDDDDDDDDDDDDDDD@xn--bcher-kva.example>"


async def test_a_non_ascii_local_part_uses_smtputf8_when_offered(
    smtp_utf8: tuple[SmtpInbox, int],
) -> None:
    inbox, port = smtp_utf8
    await send(
        port,
        message(choose(), to="jürgen@bücher.example", delivery_id="1" * 20),
        message(choose(), delivery_id="2" * 20),
    )
    utf8, ascii_only = inbox.envelopes
    assert utf8[1] == ["jürgen@xn--bcher-kva.example"]
    assert "SMTPUTF8" in utf8[2]
    assert "SMTPUTF8" not in ascii_only[2]  # only when a message needs it
    assert inbox.messages[0]["To"] == "jürgen@xn--bcher-kva.example"
    assert inbox.messages[0]["From"] == "Acme Dental <notify@operator.example>"


async def test_a_non_ascii_reply_to_needs_smtputf8_too(smtp_utf8: tuple[SmtpInbox, int]) -> None:
    inbox, port = smtp_utf8
    await send(port, message(choose(address="büro@customer.example")))
    [received] = inbox.messages
    assert received["Reply-To"] == "büro@customer.example"
    assert received["From"] == "Acme Dental <notify@operator.example>"
    assert "SMTPUTF8" in inbox.envelopes[0][2]


async def test_without_smtputf8_a_non_ascii_local_part_fails_permanently(
    smtp: tuple[SmtpInbox, int],
) -> None:
    inbox, port = smtp
    adapter = SmtpAdapter(smtp_settings(port))
    with pytest.raises(PermanentSendError) as raised:
        await adapter.send(message(choose(), to="jürgen@bücher.example"))
    assert str(raised.value) == (
        "the server does not offer SMTPUTF8, needed for the non-ASCII address jürgen@bücher.example"
    )
    # The connection is still good for the next message.
    await adapter.send(message(choose(), delivery_id="2" * 20))
    await adapter.close()
    assert [m["To"] for m in inbox.messages] == ["rosa@example.com"]
    assert inbox.connections == 1


async def test_a_reply_to_cannot_inject_headers(smtp: tuple[SmtpInbox, int]) -> None:
    inbox, port = smtp
    adapter = SmtpAdapter(smtp_settings(port))
    with pytest.raises(PermanentSendError, match="cannot build the email"):
        await adapter.send(message(reply_to="a@b.example\r\nBcc: victim@example.com"))
    await adapter.close()
    assert inbox.messages == []


async def test_an_address_that_cannot_be_encoded_fails_permanently(
    smtp: tuple[SmtpInbox, int],
) -> None:
    _, port = smtp
    adapter = SmtpAdapter(smtp_settings(port))
    with pytest.raises(PermanentSendError, match="cannot build the email"):
        await adapter.send(message(to="jürgen@bücher"))
    await adapter.close()


def test_wire_addresses() -> None:
    assert wire_address("a@example.com").address == "a@example.com"
    assert not wire_address("a@bücher.example").smtputf8
    assert wire_address("ü@bücher.example").smtputf8
    # The outbox shows the same From as SMTP would use.
    assert (
        email_sender(message(choose(address="boss@customer.example")), SETTINGS.email_from)
        == "Acme Dental <notify@operator.example>"
    )
