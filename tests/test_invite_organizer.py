"""The calendar invitation's ORGANIZER is the address the email is sent from (semantics §7),
as a real SMTP server receives it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from email.message import EmailMessage
from email.utils import parseaddr

import httpx
import pytest

from calnotify.app import create_app
from calnotify.channels.registry import build_channels, close_channels
from calnotify.clock import ManualClock
from calnotify.config import Settings
from calnotify.db.engine import Database
from calnotify.dispatch.dispatcher import Dispatcher
from calnotify.dispatch.runtime import dispatch_settings
from calnotify.models import AllowedSender
from tests.conftest import NOW
from tests.engine import Scenario
from tests.factories import Tenant
from tests.providers import SmtpInbox, smtp_server

START = NOW + timedelta(days=1)


@pytest.fixture
def smtp() -> Iterator[tuple[SmtpInbox, int]]:
    with smtp_server() as running:
        yield running


@asynccontextmanager
async def scenario(
    settings: Settings, db: Database, clock: ManualClock, tenant: Tenant, port: int, email_from: str
) -> AsyncIterator[Scenario]:
    """The API and a dispatcher built as ``calnotify serve`` builds them, sending over SMTP."""
    live = settings.model_copy(
        update={
            "smtp_host": "127.0.0.1",
            "smtp_port": port,
            "smtp_security": "none",
            "email_from": email_from,
        }
    )
    app = create_app(live, database=db, clock=clock)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://calnotify.test") as client:
        story = Scenario(client, tenant, clock, db, live)
        channels = build_channels(live, db, clock)
        story.dispatcher = Dispatcher(db, clock, channels, dispatch_settings(live))
        try:
            yield story
        finally:
            await story.dispatcher.stop()
            await close_channels(channels)


def organizer(message: EmailMessage) -> str:
    """The invitation's ORGANIZER line (unfolded)."""
    [attachment] = list(message.iter_attachments())
    ics = attachment.get_content()
    text = ics.decode() if isinstance(ics, bytes) else ics
    [line] = [line for line in text.replace("\r\n ", "").splitlines() if line.startswith("ORG")]
    return line


def sent_from(message: EmailMessage) -> str:
    return parseaddr(str(message["From"]))[1]


async def allow(db: Database, tenant: Tenant, address: str) -> None:
    async with db.session() as session:
        session.add(AllowedSender(location_id=tenant.location_id, kind="email", value=address))


async def test_the_organizer_is_the_from_and_never_a_sender_not_allowed(
    settings: Settings,
    db: Database,
    clock: ManualClock,
    tenant: Tenant,
    smtp: tuple[SmtpInbox, int],
) -> None:
    inbox, port = smtp
    email_from = "Bookings <bookings@calnotify.example>"
    async with scenario(settings, db, clock, tenant, port, email_from) as live:
        await live.rules(
            {
                "receiverType": "contact",
                "channel": "email",
                "notificationType": "booked",
                "fromName": "Front desk",
                "fromAddress": "desk@acme.example",
            }
        )
        contact = await tenant.add_contact()
        # desk@acme.example is not an allowed sender: the email and its invitation are from
        # the operator's address; the rule's address only receives the replies.
        first = await live.book(contact, START)
        await live.dispatcher.drain()
        [received] = inbox.to("rosa@example.com")
        assert received["From"] == "Front desk <bookings@calnotify.example>"
        assert received["Reply-To"] == "desk@acme.example"
        assert organizer(received) == 'ORGANIZER;CN="Front desk":mailto:bookings@calnotify.example'
        [delivery] = await live.deliveries(appointmentId=first["id"])
        assert delivery["sender"] == (
            "Front desk <bookings@calnotify.example>; Reply-To: desk@acme.example"
        )

        # Once allowed, it is the From, and the organizer with it.
        await allow(db, tenant, "desk@acme.example")
        await live.book(contact, START + timedelta(days=1))
        await live.dispatcher.drain()
        allowed = inbox.to("rosa@example.com")[1]
        assert allowed["From"] == "Front desk <desk@acme.example>"
        assert organizer(allowed) == 'ORGANIZER;CN="Front desk":mailto:desk@acme.example'


async def test_the_organizer_has_the_from_address_as_it_is_sent(
    settings: Settings,
    db: Database,
    clock: ManualClock,
    tenant: Tenant,
    smtp: tuple[SmtpInbox, int],
) -> None:
    """A domain that is not ASCII is sent IDNA-encoded, in the From and the ORGANIZER alike,
    so a calendar app matches the organizer with the sender."""
    inbox, port = smtp
    email_from = "Buchungen <buchung@Bücher.example>"
    async with scenario(settings, db, clock, tenant, port, email_from) as live:
        rule = {"receiverType": "contact", "channel": "email", "notificationType": "booked"}
        await live.rules(
            rule, {**rule, "receiverType": "guest", "fromAddress": "info@bücher.example"}
        )
        await allow(db, tenant, "info@xn--bcher-kva.example")
        contact = await tenant.add_contact()
        await live.book(contact, START, guests=[{"email": "gus@example.com"}])
        await live.dispatcher.drain()
        [operator] = inbox.to("rosa@example.com")
        assert sent_from(operator) == "buchung@xn--bcher-kva.example"
        assert organizer(operator).endswith(":mailto:buchung@xn--bcher-kva.example")
        [location] = inbox.to("gus@example.com")
        assert sent_from(location) == "info@xn--bcher-kva.example"
        assert organizer(location).endswith(":mailto:info@xn--bcher-kva.example")
        assert sorted((d["status"], d["sender"]) for d in await live.deliveries()) == [
            ("sent", "Acme Dental <buchung@xn--bcher-kva.example>; Reply-To: front@example.com"),
            ("sent", "Acme Dental <info@xn--bcher-kva.example>; Reply-To: front@example.com"),
        ]


async def test_an_allowed_sender_with_a_non_ascii_local_part_organizes_too(
    settings: Settings, db: Database, clock: ManualClock, tenant: Tenant
) -> None:
    with smtp_server(smtputf8=True) as (inbox, port):
        email_from = "Bookings <bookings@calnotify.example>"
        async with scenario(settings, db, clock, tenant, port, email_from) as live:
            await live.rules(
                {
                    "receiverType": "contact",
                    "channel": "email",
                    "notificationType": "booked",
                    "fromAddress": "büro@bücher.example",
                }
            )
            await allow(db, tenant, "büro@xn--bcher-kva.example")
            await live.book(await tenant.add_contact(), START)
            await live.dispatcher.drain()
            [received] = inbox.to("rosa@example.com")
            assert sent_from(received) == "büro@xn--bcher-kva.example"
            assert organizer(received).endswith(":mailto:büro@xn--bcher-kva.example")
            [delivery] = await live.deliveries()
            assert delivery["status"] == "sent"
            assert delivery["sender"] == (
                "Acme Dental <büro@xn--bcher-kva.example>; Reply-To: front@example.com"
            )
