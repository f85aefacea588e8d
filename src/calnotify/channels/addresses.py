"""Formatting sender addresses safely (no header injection through names)."""

from __future__ import annotations

from email.headerregistry import Address
from email.utils import parseaddr

from calnotify.channels.base import Message


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
    """From = the rule's fromName/fromAddress, else the location's name/email, else the
    default (``CALNOTIFY_EMAIL_FROM``), keeping a given name with the default address.
    The name comes back on one line (whitespace, line breaks included, collapsed)."""
    default_name, default_address = parse_mailbox(default)
    address = message.from_address or default_address
    name = message.from_name or default_name
    return " ".join(name.split()), address


def email_sender(message: Message, default: str) -> str:
    name, address = email_sender_parts(message, default)
    return mailbox(name, address) if address else ""
