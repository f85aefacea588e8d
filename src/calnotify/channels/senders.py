"""Who a message is from (docs/semantics.md §7, "Senders").

Email goes out from the operator's domain: ``From`` is the address of
``CALNOTIFY_EMAIL_FROM``, with the rule's ``fromName``, else the location's name, as display
name, and ``Reply-To`` is the location's email. A rule's ``fromAddress`` is the ``From`` only
when it is an allowed sender of the location; otherwise it becomes the ``Reply-To``. SMS and
WhatsApp go out from ``CALNOTIFY_TWILIO_FROM_NUMBER`` / ``CALNOTIFY_TWILIO_WHATSAPP_FROM``,
or from the rule's ``fromNumber`` when it is an allowed sender of the location.

Allowed senders are set by the operator (``calnotify senders add``), stored in
:class:`~calnotify.models.AllowedSender`. :func:`choose_sender` is pure;
:func:`allowed_senders` reads what it needs for a batch in one query.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import bindparam, select

from calnotify.channels.addresses import (
    AddressError,
    mailbox,
    normalise_email,
    normalise_number,
    parse_mailbox,
    wire_address,
)
from calnotify.db.statements import Statement
from calnotify.db.tx import Reader
from calnotify.models.sender import AllowedSender


class SenderSettings(Protocol):
    """What the choice reads of the settings: :class:`calnotify.config.Settings` is one."""

    @property
    def email_from(self) -> str: ...  # CALNOTIFY_EMAIL_FROM
    @property
    def twilio_from_number(self) -> str: ...  # CALNOTIFY_TWILIO_FROM_NUMBER
    @property
    def twilio_whatsapp_from(self) -> str: ...  # CALNOTIFY_TWILIO_WHATSAPP_FROM


EMAIL = "email"
NUMBER = "number"
KINDS = (EMAIL, NUMBER)


def sender_key(kind: str, value: str, country: str = "") -> str:
    """What two allowed senders are compared by: an email address normalised (see
    :func:`~calnotify.channels.addresses.normalise_email`) and lowercased whole, the local
    part too, as mail servers treat it in practice (``Desk@Acme.example`` is
    ``desk@acme.example``); a number in E.164, read in ``country`` when it has no ``+``
    (:func:`~calnotify.channels.addresses.normalise_number`). Raises
    :class:`~calnotify.channels.addresses.AddressError`."""
    if kind == EMAIL:
        return normalise_email(value).lower()
    return normalise_number(value, country)


@dataclass(frozen=True, slots=True)
class AllowedSenders:
    """The allowed senders of one location, as :func:`sender_key` compares them."""

    emails: frozenset[str] = frozenset()
    numbers: frozenset[str] = frozenset()

    @classmethod
    def of(cls, rows: Iterable[tuple[str, str]]) -> AllowedSenders:
        """From ``(kind, value)`` pairs, values already normalised (as stored)."""
        emails: set[str] = set()
        numbers: set[str] = set()
        for kind, value in rows:
            if kind == EMAIL:
                emails.add(value.lower())
            else:
                numbers.add(value)
        return cls(frozenset(emails), frozenset(numbers))

    def allows_email(self, address: str) -> bool:
        try:
            return sender_key(EMAIL, address) in self.emails
        except AddressError:
            return False

    def allows_number(self, number: str) -> bool:
        try:
            return sender_key(NUMBER, number) in self.numbers
        except AddressError:
            return False


NOTHING_ALLOWED = AllowedSenders()


@dataclass(frozen=True)
class SenderChoice:
    """Who one message is from; the fields go into :class:`~calnotify.channels.base.Message`
    as they are. Email: ``from_name``, ``from_address`` and ``reply_to`` ("" for none);
    SMS / WhatsApp: ``from_number`` ("" when no number is configured: the adapter fails the
    message). ``note`` is "" when the rule's sender was used or the rule names none, else one
    line saying which sender was used instead and why."""

    from_name: str = ""
    from_address: str = ""
    reply_to: str = ""
    from_number: str = ""
    note: str = ""

    @property
    def sender(self) -> str:
        """The sender used, for the record: ``Name <address>`` or the number."""
        if self.from_address:
            return mailbox(self.from_name, self.from_address)
        return self.from_number


def choose_sender(
    channel: str,
    *,
    rule_from_name: str,
    rule_from_address: str,
    rule_from_number: str,
    location_name: str,
    location_email: str,
    allowed: AllowedSenders,
    settings: SenderSettings,
) -> SenderChoice:
    """The sender of a message of ``channel`` ("email", "sms", "whatsapp"; anything else,
    e.g. "inApp", has none) for a rule of a location, as docs/semantics.md §7 says."""
    if channel == "email":
        return _email(
            rule_from_name=rule_from_name,
            rule_from_address=rule_from_address.strip(),
            location_name=location_name,
            location_email=location_email.strip(),
            allowed=allowed,
            email_from=settings.email_from,
        )
    if channel in ("sms", "whatsapp"):
        default = settings.twilio_from_number
        setting = "CALNOTIFY_TWILIO_FROM_NUMBER"
        if channel == "whatsapp" and settings.twilio_whatsapp_from:
            default, setting = settings.twilio_whatsapp_from, "CALNOTIFY_TWILIO_WHATSAPP_FROM"
        asked = rule_from_number.strip()
        if not asked:
            return SenderChoice(from_number=default)
        if allowed.allows_number(asked):
            return SenderChoice(from_number=normalise_number(asked))
        used = default or f"no number ({setting} is not set)"
        return SenderChoice(
            from_number=default,
            note=f"fromNumber {asked} is not an allowed sender of the location: sent from {used}",
        )
    return SenderChoice()


def _email(
    *,
    rule_from_name: str,
    rule_from_address: str,
    location_name: str,
    location_email: str,
    allowed: AllowedSenders,
    email_from: str,
) -> SenderChoice:
    default_name, default_address = parse_mailbox(email_from)
    # As it goes on the wire (an IDN domain IDNA-encoded), so that the From, the invitation's
    # ORGANIZER and the delivery's record say the same address. One that cannot be sent is
    # left as it is: sending fails, saying why.
    with contextlib.suppress(AddressError):
        default_address = wire_address(default_address).address
    name = " ".join(rule_from_name.split()) or " ".join(location_name.split()) or default_name
    asked = rule_from_address
    try:
        valid = normalise_email(asked) if asked else ""
    except AddressError:  # the API refuses these; a row from elsewhere may still hold one
        valid = ""
    if valid and allowed.allows_email(valid):
        address, reply_to, note = valid, location_email, ""
    elif asked and not valid:
        address, reply_to = default_address, location_email
        note = f"fromAddress {asked!r} is not a valid email address: not used"
    elif asked:
        address, reply_to = default_address, asked
        note = (
            f"fromAddress {asked} is not an allowed sender of the location: sent from "
            f"{default_address or 'CALNOTIFY_EMAIL_FROM'}, with Reply-To {asked}"
        )
    else:
        address, reply_to, note = default_address, location_email, ""
    if reply_to and _same_address(reply_to, address):
        reply_to = ""  # replies go to the From anyway
    return SenderChoice(from_name=name, from_address=address, reply_to=reply_to, note=note)


def _same_address(a: str, b: str) -> bool:
    if a.isascii() and b.isascii():
        return a.strip().lower() == b.strip().lower()
    try:
        return normalise_email(a).lower() == normalise_email(b).lower()
    except AddressError:
        return a.strip().lower() == b.strip().lower()


#: The allowed senders of the ``locations``.
ALLOWED = Statement(
    select(AllowedSender.location_id, AllowedSender.kind, AllowedSender.value).where(
        AllowedSender.location_id.in_(bindparam("locations", expanding=True))
    )
)


def allowed_of(location_ids: Iterable[str], rows: Iterable[Any]) -> dict[str, AllowedSenders]:
    """Each location's allowed senders from :data:`ALLOWED`'s rows; every id given has an
    entry (``NOTHING_ALLOWED`` for a location without any)."""
    pairs: dict[str, list[tuple[str, str]]] = {location_id: [] for location_id in location_ids}
    for location_id, kind, value in rows:
        pairs.setdefault(location_id, []).append((kind, value))
    return {location_id: AllowedSenders.of(found) for location_id, found in pairs.items()}


async def allowed_senders(reader: Reader, location_ids: Iterable[str]) -> dict[str, AllowedSenders]:
    """The allowed senders of each location, in one read (see :func:`allowed_of`)."""
    ids = sorted(set(location_ids))
    if not ids:
        return {}
    [rows] = await reader.fetch((ALLOWED, {"locations": ids}))
    return allowed_of(ids, rows)
