"""What a location is told of a failure (docs/semantics.md §9): the provider's own answer
when it is about the message (a refused number, a full mailbox, a rate limit, a template
that cannot render), a provider-neutral sentence when the error is about the deployment:
a server that cannot be reached, a connection, a time-out, TLS or a login, whose details
(hosts, ports, accounts) are the operator's. Operators, in the console, see every word."""

from __future__ import annotations

import re
from typing import Any

#: Words of an error about reaching the provider rather than about the message.
DEPLOYMENT = re.compile(
    r"connect|timed? ?out|no answer within|unreachable|refused|reset by peer|broken pipe"
    r"|getaddrinfo|name or service|resolv|\bdns\b|ssl|tls|certificate|handshake"
    r"|authenticat|credential|\b535\b|\berrno\b|\bport \d|\bhost\b|127\.0\.0\.1|localhost",
    re.IGNORECASE,
)
#: Kept from the end of an error: whether the provider may have the message after all.
MAY_HAVE = "(the provider may have acted on it)"
_PROVIDER = {"email": "email", "sms": "SMS", "whatsapp": "WhatsApp", "inApp": "in-app"}


def neutral(channel: str) -> str:
    kind = _PROVIDER.get(channel, "message")
    return f"the {kind} provider could not be reached; the operator has been told"


def shown_error(channel: str, text: str, *, operator: bool = False) -> str:
    """A delivery's ``lastError`` or an attempt's ``error`` as ``operator`` (or a
    location) may see it."""
    if operator or not text or not DEPLOYMENT.search(text):
        return text
    if text.endswith(MAY_HAVE):
        return f"{neutral(channel)} {MAY_HAVE}"
    return neutral(channel)


def content_removed(delivery: Any) -> str:
    """``content removed after N days`` for a delivery whose content retention removed
    (docs/semantics.md §10), counted from when it finished; empty otherwise."""
    removed_at = delivery.content_removed_at
    if removed_at is None:
        return ""
    days = max(0, (removed_at - delivery.updated_at).days)
    return f"content removed after {days} day{'' if days == 1 else 's'}"
