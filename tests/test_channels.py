"""The SMTP and Twilio adapters against real local servers."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from calnotify.channels.base import Message, PermanentSendError, Receipt, RetryableSendError
from calnotify.channels.ics import invitation
from calnotify.channels.smtp import SmtpAdapter
from calnotify.channels.twilio import TwilioAdapter, signature, signature_valid
from calnotify.config import Settings
from tests.providers import SmtpInbox, TwilioRecord, smtp_server, twilio_server


@pytest.fixture
def smtp() -> Iterator[tuple[SmtpInbox, int]]:
    with smtp_server() as running:
        yield running


@pytest.fixture
def twilio() -> Iterator[tuple[TwilioRecord, str]]:
    with twilio_server() as running:
        yield running


def smtp_settings(port: int, **extra: object) -> Settings:
    return Settings(
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_security="none",
        email_from="Acme Notifications <notify@acme.example>",
        **extra,
    )


def email(**fields: object) -> Message:
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
        "html": "<p>See you <b>soon</b></p>",
    }
    values.update(fields)
    return Message(**values)  # type: ignore[arg-type]


# --- SMTP ---------------------------------------------------------------------------------


async def test_email_headers_parts_and_message_id(smtp: tuple[SmtpInbox, int]) -> None:
    inbox, port = smtp
    adapter = SmtpAdapter(smtp_settings(port))
    receipt = await adapter.send(email(from_name="Acme Dental", from_address="desk@acme.example"))
    await adapter.close()
    [received] = inbox.messages
    assert received["From"] == "Acme Dental <desk@acme.example>"
    assert received["To"] == "rosa@example.com"
    assert received["Subject"] == "Booked"
    assert received["Message-ID"] == "<DDDDDDDDDDDDDDDDDDDD@acme.example>"
    assert receipt.message_id == received["Message-ID"]
    assert received["Auto-Submitted"] == "auto-generated"  # RFC 3834: no auto-replies
    assert received.get_content_type() == "multipart/alternative"
    plain = received.get_body(preferencelist=("plain",))
    html = received.get_body(preferencelist=("html",))
    assert plain is not None and plain.get_content().strip() == "See you soon"
    assert html is not None and "<b>soon</b>" in html.get_content()


@pytest.mark.parametrize(
    ("name", "address", "expected"),
    [
        ("", "", "Acme Notifications <notify@acme.example>"),  # the default
        ("Acme Dental", "", "Acme Dental <notify@acme.example>"),  # a name, no address
        ("", "desk@acme.example", "Acme Notifications <desk@acme.example>"),
        ("Acme, Inc.", "desk@acme.example", '"Acme, Inc." <desk@acme.example>'),
    ],
)
async def test_from_rules(
    smtp: tuple[SmtpInbox, int], name: str, address: str, expected: str
) -> None:
    inbox, port = smtp
    adapter = SmtpAdapter(smtp_settings(port))
    await adapter.send(email(from_name=name, from_address=address))
    await adapter.close()
    assert inbox.messages[0]["From"] == expected


async def test_a_name_cannot_inject_headers(smtp: tuple[SmtpInbox, int]) -> None:
    inbox, port = smtp
    adapter = SmtpAdapter(smtp_settings(port))
    await adapter.send(email(from_name="Acme\r\nBcc: victim@example.com"))
    await adapter.close()
    [received] = inbox.messages
    assert received["Bcc"] is None
    assert "victim@example.com" in str(received["From"])  # kept inside the quoted name


async def test_calendar_invitation(smtp: tuple[SmtpInbox, int]) -> None:
    inbox, port = smtp
    start = datetime(2030, 3, 4, 15, 0, tzinfo=UTC)
    invite = invitation(
        method="REQUEST",
        status="TENTATIVE",
        appointment_id="A" * 20,
        sequence=3,
        start=start,
        end=start + timedelta(minutes=30),
        summary="Cleaning",
        description="Bring forms",
        location="1 Main St",
        organizer_name="Acme",
        organizer_email="desk@acme.example",
        attendee_email="rosa@example.com",
        stamp=start,
    )
    adapter = SmtpAdapter(smtp_settings(port))
    await adapter.send(email(attachments=(invite,)))
    await adapter.close()
    [received] = inbox.messages
    assert received.get_content_type() == "multipart/mixed"
    [attachment] = list(received.iter_attachments())
    assert attachment.get_content_type() == "text/calendar"
    assert attachment.get_param("method") == "REQUEST"
    ics = attachment.get_content()
    if isinstance(ics, bytes):
        ics = ics.decode()
    for line in (
        "METHOD:REQUEST",
        f"UID:{'A' * 20}@calnotify",
        "SEQUENCE:3",
        "DTSTART:20300304T150000Z",
        "DTEND:20300304T153000Z",
        "SUMMARY:Cleaning",
        "STATUS:TENTATIVE",
        "ATTENDEE;ROLE=REQ-PARTICIPANT;RSVP=FALSE:mailto:rosa@example.com",
    ):
        assert line in ics


async def test_one_connection_for_many_messages(smtp: tuple[SmtpInbox, int]) -> None:
    inbox, port = smtp
    adapter = SmtpAdapter(smtp_settings(port, smtp_connections=1))
    results = await adapter.send_many(
        [email(delivery_id=f"{i:020d}", to=f"p{i}@example.com") for i in range(25)]
    )
    await adapter.close()
    assert all(not isinstance(r, Exception) for r in results)
    assert len(inbox.messages) == 25
    assert inbox.connections == 1


async def test_pool_is_bounded(smtp: tuple[SmtpInbox, int]) -> None:
    inbox, port = smtp
    adapter = SmtpAdapter(smtp_settings(port, smtp_connections=3))
    await adapter.send_many([email(delivery_id=f"{i:020d}") for i in range(40)])
    await adapter.close()
    assert len(inbox.messages) == 40
    assert 1 <= inbox.connections <= 3


async def test_4xx_is_retryable_and_5xx_permanent(smtp: tuple[SmtpInbox, int]) -> None:
    inbox, port = smtp
    inbox.refuse = {
        "busy@example.com": "451 4.3.0 Mailbox busy, try later",
        "gone@example.com": "550 5.1.1 No such user",
    }
    adapter = SmtpAdapter(smtp_settings(port))
    with pytest.raises(RetryableSendError, match="451"):
        await adapter.send(email(to="busy@example.com"))
    with pytest.raises(PermanentSendError, match="550"):
        await adapter.send(email(to="gone@example.com"))
    await adapter.send(email(to="fine@example.com"))  # the connection survives refusals
    await adapter.close()
    assert [m["To"] for m in inbox.messages] == ["fine@example.com"]


async def test_no_server_is_retryable() -> None:
    from tests.providers import free_port

    adapter = SmtpAdapter(smtp_settings(free_port(), smtp_timeout=2))
    with pytest.raises(RetryableSendError):
        await adapter.send(email())
    await adapter.close()


# --- Twilio -------------------------------------------------------------------------------


def twilio_settings(base_url: str, **extra: object) -> Settings:
    values: dict[str, object] = {
        "twilio_account_sid": "AC123",
        "twilio_auth_token": "secret",
        "twilio_from_number": "+14155550000",
        "twilio_whatsapp_from": "+14155559999",
        "twilio_base_url": base_url,
    }
    values.update(extra)
    return Settings(**values)  # type: ignore[arg-type]


def sms(**fields: object) -> Message:
    values: dict[str, object] = {"channel": "sms", "to": "+14155550123", "body": "Reminder"}
    values.update(fields)
    return email(html="", **values)


async def test_sms_form_auth_and_sid(twilio: tuple[TwilioRecord, str]) -> None:
    record, base_url = twilio
    adapter = TwilioAdapter(twilio_settings(base_url))
    receipt = await adapter.send(sms())
    await adapter.close()
    [request] = record.requests
    assert request["path"] == "/2010-04-01/Accounts/AC123/Messages.json"
    assert request["content_type"] == "application/x-www-form-urlencoded"
    assert request["form"] == {"To": "+14155550123", "From": "+14155550000", "Body": "Reminder"}
    assert receipt.provider == "twilio"
    assert receipt.message_id.startswith("SM")


async def test_from_number_overrides_and_whatsapp_addresses(
    twilio: tuple[TwilioRecord, str],
) -> None:
    record, base_url = twilio
    adapter = TwilioAdapter(twilio_settings(base_url, public_url="https://cal.example"))
    await adapter.send(sms(from_number="+14155551111"))
    await adapter.send(sms(channel="whatsapp"))
    await adapter.close()
    first, second = record.messages()
    assert first["From"] == "+14155551111"
    assert first["StatusCallback"] == "https://cal.example/webhooks/twilio/status"
    assert (second["To"], second["From"]) == ("whatsapp:+14155550123", "whatsapp:+14155559999")


@pytest.mark.parametrize(
    ("status", "code", "error"),
    [
        (400, 21211, PermanentSendError),  # invalid 'To' number
        (400, 21610, PermanentSendError),  # unsubscribed recipient
        (400, 21614, PermanentSendError),  # not a mobile number
        (429, 20429, RetryableSendError),
        (500, 20500, RetryableSendError),
        (503, None, RetryableSendError),
    ],
)
async def test_twilio_errors(
    twilio: tuple[TwilioRecord, str], status: int, code: int | None, error: type[Exception]
) -> None:
    record, base_url = twilio
    record.answers["+14155550123"] = (status, {"code": code, "message": "nope", "status": status})
    adapter = TwilioAdapter(twilio_settings(base_url))
    with pytest.raises(error) as raised:
        await adapter.send(sms())
    await adapter.close()
    if code:
        assert str(code) in str(raised.value)


async def test_wrong_credentials_are_permanent(twilio: tuple[TwilioRecord, str]) -> None:
    _, base_url = twilio
    adapter = TwilioAdapter(twilio_settings(base_url, twilio_auth_token="wrong"))
    with pytest.raises(PermanentSendError, match="20003"):
        await adapter.send(sms())
    await adapter.close()


async def test_unreachable_twilio_is_retryable() -> None:
    from tests.providers import free_port

    adapter = TwilioAdapter(twilio_settings(f"http://127.0.0.1:{free_port()}"))
    with pytest.raises(RetryableSendError):
        await adapter.send(sms())
    await adapter.close()


async def test_concurrent_sends_reuse_the_client(twilio: tuple[TwilioRecord, str]) -> None:
    record, base_url = twilio
    adapter = TwilioAdapter(twilio_settings(base_url))
    results = await adapter.send_many([sms(delivery_id=f"{i:020d}") for i in range(30)])
    await adapter.close()
    assert [r for r in results if isinstance(r, Exception)] == []
    assert len({r.message_id for r in results if not isinstance(r, Exception)}) == 30
    assert len(record.requests) == 30
    await asyncio.sleep(0)


def test_signature_is_twilios() -> None:
    # The example from Twilio's documentation of request validation.
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+12349013030",
        "Digits": "1234",
        "From": "+12349013030",
        "To": "+18005551212",
    }
    assert signature("12345", url, params) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
    assert signature_valid("12345", url, params, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=")
    assert not signature_valid(
        "12345", url, {**params, "Digits": "9"}, "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
    )
    assert not signature_valid("", url, params, signature("", url, params))


def test_invitation_organizer_name_is_quoted() -> None:
    start = datetime(2030, 3, 4, 15, 0, tzinfo=UTC)
    invite = invitation(
        method="REQUEST",
        status="CONFIRMED",
        appointment_id="A" * 20,
        sequence=1,
        start=start,
        end=start + timedelta(minutes=30),
        summary="x",
        description="",
        location="",
        organizer_name='Acme: "Dental"; ROLE=CHAIR',
        organizer_email="desk@acme.example",
        attendee_email="rosa@example.com",
        stamp=start,
    )
    text = invite.data.decode()
    assert 'ORGANIZER;CN="Acme: Dental; ROLE=CHAIR":mailto:desk@acme.example' in text


# --- provider answers (docs/engine.md, "Provider answers") ---------------------------------


async def test_smtp_answers_per_recipient_and_the_connection_is_reused() -> None:
    with smtp_server() as (inbox, port):
        inbox.refuse = {
            "later@example.com": "451 4.7.1 greylisted, try later",
            "gone@example.com": "550 5.1.1 no such user",
        }
        adapter = SmtpAdapter(smtp_settings(port))
        with pytest.raises(RetryableSendError, match="451") as later:
            await adapter.send(email(to="later@example.com"))
        assert not later.value.maybe_sent
        with pytest.raises(PermanentSendError, match="550"):
            await adapter.send(email(to="gone@example.com"))
        await adapter.send(email(to="fine@example.com"))
        await adapter.close()
    assert [m["To"] for m in inbox.messages] == ["fine@example.com"]
    assert inbox.connections == 1  # RSET after each refusal, one connection throughout


async def test_smtp_connection_lost_during_data_may_have_been_delivered() -> None:
    with smtp_server() as (inbox, port):
        inbox.hang_up_after_data = True
        adapter = SmtpAdapter(smtp_settings(port, smtp_timeout=5))
        with pytest.raises(RetryableSendError, match="during DATA") as lost:
            await adapter.send(email())
        await adapter.close()
    assert lost.value.maybe_sent


async def test_smtp_unreachable_is_retryable_and_nothing_was_sent() -> None:
    from tests.providers import free_port

    adapter = SmtpAdapter(smtp_settings(free_port()))
    with pytest.raises(RetryableSendError) as refused:
        await adapter.send(email())
    await adapter.close()
    assert not refused.value.maybe_sent


def mock_twilio(handler: Any) -> TwilioAdapter:
    return TwilioAdapter(twilio_settings("https://twilio.test"), httpx.MockTransport(handler))


@pytest.mark.parametrize(
    ("status", "body"),
    [(201, b"<html>not json</html>"), (200, b'{"status": "queued"}'), (202, b"[]")],
)
async def test_twilio_2xx_without_a_sid_is_still_sent(status: int, body: bytes) -> None:
    adapter = mock_twilio(lambda _request: httpx.Response(status, content=body))
    receipt = await adapter.send(sms())
    await adapter.close()
    assert receipt == Receipt("twilio", "")


async def test_twilio_429_and_5xx_carry_retry_after() -> None:
    answers = [
        httpx.Response(
            429, json={"code": 20429, "message": "Too Many Requests"}, headers={"Retry-After": "30"}
        ),
        httpx.Response(
            503, text="unavailable", headers={"Retry-After": "Wed, 21 Oct 2099 07:28:00 GMT"}
        ),
        httpx.Response(500, text="oops"),
    ]
    adapter = mock_twilio(lambda _request: answers.pop(0))
    with pytest.raises(RetryableSendError) as first:
        await adapter.send(sms())
    with pytest.raises(RetryableSendError) as second:
        await adapter.send(sms())
    with pytest.raises(RetryableSendError) as third:
        await adapter.send(sms())
    await adapter.close()
    assert first.value.retry_after == 30
    assert second.value.retry_after is not None and second.value.retry_after > 86400
    assert third.value.retry_after is None
    assert not (first.value.maybe_sent or second.value.maybe_sent or third.value.maybe_sent)


@pytest.mark.parametrize(
    ("error", "maybe_sent"),
    [
        (httpx.ConnectError("refused"), False),
        (httpx.ConnectTimeout("slow connect"), False),
        (httpx.ReadTimeout("no answer"), True),
        (httpx.RemoteProtocolError("dropped"), True),
    ],
)
async def test_twilio_network_trouble(error: Exception, maybe_sent: bool) -> None:
    def handler(_request: httpx.Request) -> httpx.Response:
        raise error

    adapter = mock_twilio(handler)
    with pytest.raises(RetryableSendError) as raised:
        await adapter.send(sms())
    await adapter.close()
    assert raised.value.maybe_sent is maybe_sent
