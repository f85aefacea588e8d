"""Sender and recipient addresses: normalising, formatting safely (no header injection
through names), and their wire form (IDNA domains, SMTPUTF8 local parts)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.headerregistry import Address
from email.utils import formataddr, parseaddr
from functools import lru_cache

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from calnotify.channels.base import Message

_E164 = re.compile(r"\+[1-9][0-9]{7,14}")
# Written between the digits of a number by people, never part of it.
_NUMBER_SEPARATORS = re.compile(r"[\s().\-]")


class AddressError(ValueError):
    """Not an email address or E.164 number calnotify can send from or to; says why."""


@lru_cache(maxsize=4096)  # pure, and the same few addresses come back message after message
def normalise_email(text: str) -> str:
    """``local@domain`` with the domain lowercased and IDNA-encoded
    (``User@Bücher.Example`` → ``User@xn--bcher-kva.example``); the local part is kept
    (Unicode normalised to NFC). The same checks as the API's address fields."""
    candidate = text.strip()
    if len(candidate) > 320 or any(c in candidate for c in "\r\n"):
        raise AddressError(f"{text!r} is not a valid email address")
    try:
        checked = validate_email(candidate, check_deliverability=False, test_environment=True)
    except EmailNotValidError as exc:
        raise AddressError(f"{text!r} is not a valid email address: {exc}") from None
    return f"{checked.local_part}@{checked.ascii_domain}"


def normalise_number(text: str, country: str = "") -> str:
    """A phone number as E.164 (``+`` and 8 to 15 digits), from the forms people write.

    Spaces, dots, dashes and parentheses between the digits are dropped
    (``+1 (415) 555-0100`` → ``+14155550100``). A number without ``+`` is read in
    ``country`` (ISO 3166 alpha-2, e.g. a location's ``US``: ``1-415-555-0100`` and
    ``(415) 555-0100`` → ``+14155550100``); without a country it must start with ``+``.
    The one place calnotify reads a phone number it will send from or to."""
    candidate = _NUMBER_SEPARATORS.sub("", text)
    if _E164.fullmatch(candidate) is not None:
        return candidate
    region = country.strip().upper()
    if candidate.startswith("+"):
        raise AddressError(f"{text!r} is not an E.164 phone number (+ and 8 to 15 digits)")
    if not region:
        raise AddressError(
            f"{text!r} is not an E.164 phone number (+ and 8 to 15 digits): write it with + "
            "and its country code, or set the location's country to write national numbers"
        )
    number = _national_number(text, region)
    if number is None:
        raise AddressError(
            f"{text!r} is neither an E.164 phone number (+ and 8 to 15 digits) nor a phone "
            f"number of {region}"
        )
    return number


def _national_number(text: str, region: str) -> str | None:
    """``text`` as dialled in ``region`` (a national number, a trunk prefix, an
    international prefix), in E.164; None when it cannot be a number there."""
    if len(text) > 64 or any(c.isalpha() for c in text):
        return None  # letters would be read as keypad digits ("1-800-FLOWERS")
    try:
        parsed = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(parsed):
        return None
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return e164 if _E164.fullmatch(e164) else None


@dataclass(frozen=True, slots=True)
class WireAddress:
    """An address as it goes into the envelope and the headers: the domain IDNA-encoded.
    ``smtputf8``: the local part is not ASCII, so the server must offer SMTPUTF8."""

    address: str
    smtputf8: bool = False

    def header(self, name: str = "") -> str:
        """A header value (From, To, Reply-To): ``address`` or ``Name <address>``."""
        clean = " ".join(name.split())
        if not self.smtputf8:
            # RFC 2047-encodes a non-ASCII name; quotes one that needs it.
            return formataddr((clean, self.address)) if clean else self.address
        # RFC 6532: raw UTF-8, which only an SMTPUTF8 transaction may carry. Handed to the
        # compat32 generator as surrogate-escaped bytes, so that it writes them unchanged.
        local, _, domain = self.address.rpartition("@")
        text = str(Address(display_name=clean, username=local, domain=domain))
        return text.encode("utf-8").decode("ascii", "surrogateescape")


def wire_address(address: str) -> WireAddress:
    """The wire form of a plain address; raises :class:`AddressError` when it has none."""
    address = address.strip()
    if any(c in address for c in "\r\n"):
        raise AddressError(f"{address!r} is not a valid email address")
    if address.isascii():
        # Checked where it was stored (the API, the CLI); nothing to encode.
        return WireAddress(address)
    normalised = normalise_email(address)
    local = normalised.rpartition("@")[0]
    return WireAddress(normalised, smtputf8=not local.isascii())


@lru_cache(maxsize=256)  # pure; called with CALNOTIFY_EMAIL_FROM for every message
def parse_mailbox(text: str) -> tuple[str, str]:
    """``"Name <a@b>"`` → ("Name", "a@b"); ("", "") when it is not one mailbox."""
    name, address = parseaddr(text)
    if "@" not in address or any(c in text for c in "\r\n"):
        return "", ""
    return name, address


def mailbox(name: str, address: str) -> str:
    """A From header value; the display name is quoted or encoded as needed."""
    local, _, domain = address.rpartition("@")
    clean = " ".join(name.split())
    return str(Address(display_name=clean, username=local, domain=domain))


def email_sender_parts(message: Message, default: str) -> tuple[str, str]:
    """The From of an email: ``message.from_address`` with ``message.from_name``; either,
    when empty, taken from the default (``CALNOTIFY_EMAIL_FROM``).

    The dispatcher fills both from :func:`calnotify.channels.senders.choose_sender`, which
    puts an address there only when it is the operator's (``CALNOTIFY_EMAIL_FROM``) or an
    allowed sender of the location: a rule's other ``fromAddress`` arrives as
    ``message.reply_to``, never here. The name comes back on one line (whitespace, line
    breaks included, collapsed)."""
    default_name, default_address = parse_mailbox(default)
    address = message.from_address or default_address
    name = message.from_name or default_name
    return " ".join(name.split()), address


def email_sender(message: Message, default: str) -> str:
    name, address = email_sender_parts(message, default)
    return mailbox(name, address) if address else ""
