"""What a reply by SMS or WhatsApp does (docs/semantics.md §8, "Replies").

One transaction: the reply is matched (:mod:`.lookup`), acted on, and stored in
``inbound_messages`` with what it did. A confirm keyword confirms the appointment through
the appointment service (its confirmation rules send their own messages: the reply gets no
answer of its own); an opt-out or opt-in keyword sets or clears the contact's DND for the
channel; ``HELP`` is answered with the location's help text. Nothing else changes anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from calnotify.api.types import format_timestamp
from calnotify.appointments.schemas import AppointmentUpdate
from calnotify.appointments.service import update_in
from calnotify.auth.tokens import Principal
from calnotify.channels.addresses import AddressError, normalise_number
from calnotify.contacts.dnd import set_dnd
from calnotify.db.engine import Database
from calnotify.db.statements import Statement, table
from calnotify.db.tx import Tx
from calnotify.hooks.events import WebhookEvent, announce, endpoints_of
from calnotify.ids import new_id
from calnotify.models.appointment import AppointmentStatus, EventSource
from calnotify.models.inbound import MAX_BODY, InboundMessage, ReplyAction
from calnotify.replies import keywords, lookup
from calnotify.replies.reading import list_replies

_INSERT = Statement(insert(table(InboundMessage)))
_WHATSAPP = "whatsapp:"
OPTED_OUT = "opted out by reply"
OPTED_IN = "opted in by reply"


@dataclass(frozen=True)
class Inbound:
    """A reply as Twilio reports it: numbers in E.164 where they read as numbers."""

    channel: str  # sms · whatsapp
    sender: str
    to: str
    body: str
    sid: str

    @classmethod
    def of(cls, form: Mapping[str, str]) -> Inbound:
        """From Twilio's form fields (``From``, ``To``, ``Body``, ``MessageSid``); a
        ``whatsapp:`` sender is the WhatsApp channel."""
        # NUL is no character of a message, and PostgreSQL's text cannot hold it.
        field = {k: v.replace("\x00", "") for k, v in form.items()}
        sender = field.get("From", "")
        channel = "whatsapp" if sender.lower().startswith(_WHATSAPP) else "sms"
        sid = field.get("MessageSid", "") or field.get("SmsMessageSid", "")
        body = field.get("Body", "")[:MAX_BODY]
        return cls(channel, _number(sender), _number(field.get("To", "")), body, sid[:64])


@dataclass(frozen=True)
class Answered:
    """What a reply did, and the text to answer it with (empty: no answer)."""

    action: ReplyAction
    answer: str = ""
    due: bool = False  # something due to send was planned: wake the dispatcher


def _number(value: str) -> str:
    text = value.strip()
    if text.lower().startswith(_WHATSAPP):
        text = text[len(_WHATSAPP) :]
    try:
        return normalise_number(text)
    except AddressError:
        return text[:64]


async def handle_reply(db: Database, reply: Inbound, now: datetime, horizon: timedelta) -> Answered:
    """Match, act on and store one reply."""
    async with db.transaction() as tx:
        found = await lookup.match(tx, reply.sender, reply.to, reply.channel, now)
        answered = await _act(tx, found, reply, now, horizon)
        stored = {
            "id": new_id(),
            "location_id": found.location.id if found.location is not None else None,
            "contact_id": found.contact_id,
            "appointment_id": found.appointment_id,
            "channel": reply.channel,
            "from_number": reply.sender[:64],
            "to_number": reply.to[:64],
            "body": reply.body[:MAX_BODY],
            "provider_message_id": reply.sid,
            "action": answered.action.value,
            "received_at": now,
        }
        tx.write(_INSERT, stored)
        if found.location is not None:
            endpoints = await endpoints_of(tx, found.location.id)
            event = WebhookEvent.INBOUND_MESSAGE
            data = message_body(stored)
            about = found.appointment_id
            if announce(tx, endpoints, event, found.location.id, data, now, appointment_id=about):
                answered = replace(answered, due=True)
    return answered


def message_body(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored reply as an ``InboundMessage`` webhook shows it (docs/semantics.md §8)."""
    return {
        "id": stored["id"],
        "messageType": "WhatsApp" if stored["channel"] == "whatsapp" else "SMS",
        "direction": "inbound",
        "contactId": stored["contact_id"] or "",
        "appointmentId": stored["appointment_id"] or "",
        "from": stored["from_number"],
        "to": stored["to_number"],
        "body": stored["body"],
        "providerMessageId": stored["provider_message_id"],
        "action": stored["action"],
        "dateAdded": format_timestamp(stored["received_at"]),
    }


async def _act(
    tx: Tx, found: lookup.Match, reply: Inbound, now: datetime, horizon: timedelta
) -> Answered:
    location = found.location
    if location is None:
        return Answered(ReplyAction.NONE)
    action = keywords.intent(reply.body, keywords.confirm_keywords(location))
    if action == ReplyAction.HELP:
        return Answered(action, keywords.help_text(location))
    if found.contact_id is None:
        return Answered(ReplyAction.NONE)
    if action in (ReplyAction.OPTED_OUT, ReplyAction.OPTED_IN):
        on = action == ReplyAction.OPTED_OUT
        why = OPTED_OUT if on else OPTED_IN
        await set_dnd(tx, location.id, reply.sender, reply.channel, on=on, why=why, now=now)
        return Answered(action)
    if action == ReplyAction.CONFIRMED and found.appointment_id is not None:
        principal = Principal(token_id="", location_id=location.id, scopes=frozenset())
        change = AppointmentUpdate.model_validate(
            {"appointmentStatus": AppointmentStatus.CONFIRMED.value}
        )
        written = await update_in(
            tx,
            principal,
            found.event_id,
            change,
            now,
            horizon,
            source=EventSource.CONTACT,
            channel=reply.channel,
        )
        return Answered(action, due=written.due)
    return Answered(ReplyAction.NONE)


async def replies_to(
    session: AsyncSession, principal: Principal, appointment_id: str, count: int = 100
) -> Sequence[InboundMessage]:
    """The latest replies by SMS or WhatsApp matched to an appointment, oldest first (the
    list ``GET /replies`` answers)."""
    rows, _ = await list_replies(session, principal, {"appointment_id": appointment_id}, count, 0)
    return list(reversed(rows))
