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
    if channel == "webhook":
        # Its own endpoint, but how it failed to reach it would map the operator's network.
        return "the webhook endpoint could not be reached; the operator has been told"
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


#: The provider's answers a location can act on: (pattern of the error, in words and what
#: to do). The first that matches is said.
_ANSWERS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), words)
    for pattern, words in (
        (
            r"\b21211\b|\b21614\b|invalid ['\"]?to['\"]? (phone )?number"
            r"|not a valid (phone|mobile)",
            "the provider refused the number as invalid: check the contact's phone",
        ),
        (
            r"\b21610\b|unsubscribed|opted out|\bstop\b",
            "the recipient replied STOP to this number: nothing reaches them until they "
            "reply START",
        ),
        (
            r"\b21408\b|\b21612\b|region|not reachable via",
            "the provider cannot send to this number's country or network: check the "
            "sender number's permissions for it",
        ),
        (
            r"\b63016\b|outside the allowed window|24.hour",
            "WhatsApp refused a free-form message outside the 24-hour window: use an "
            "approved template",
        ),
        (
            r"\b5\.7\.[0-9]\b|spam|blocked|policy|dmarc|spf|dkim",
            "the recipient's mail server refused the message as unwanted: check the "
            "sender address's domain settings (SPF, DKIM, DMARC)",
        ),
        (
            r"\b5\.1\.[0-9]\b|\b55[03]\b|user unknown|no such (user|mailbox)"
            r"|mailbox unavailable|does not exist|recipient address rejected",
            "the recipient's mail server refused the address: check the contact's email",
        ),
        (
            r"\b5\.2\.2\b|\b452\b|mailbox full|over quota",
            "the recipient's mailbox is full: resend later",
        ),
        (
            r"\b20429\b|\b429\b|rate limit|too many requests",
            "the provider was sending too fast: resend in a few minutes",
        ),
    )
)
#: What a status' reason means and what to do, when the provider's answer says no more.
_REASONS = {
    "dnd": "the recipient has do-not-disturb on for this channel: clear it on the contact, "
    "then resend",
    "no_address": "there was no address to send to: add the recipient's email or phone, "
    "then resend",
    "late": "it was planned after its time had passed: resend to send it now",
    "past": "the appointment was booked after it had started: resend if it should go out",
    "inactive": "its rule was inactive: activate the rule, or resend this one",
    "stale": "a later change made it outdated: nothing to do unless it should go out",
    "restored": "the database was restored from an older backup and it may have gone out "
    "already: check with the recipient before resending",
    "render": "its template could not be rendered: fix the template, then resend",
    "deadline": "it could not be sent before its deadline: resend if it still matters",
    "retries_exhausted": "every attempt failed: check the error, then resend",
    "abandoned": "an attempt was lost and the provider may have it: check with the "
    "recipient before resending",
    "error": "an unexpected error stopped it: the operator has been told; resend later",
}


def explained(status: str, reason: str, channel: str, error: str) -> str:
    """A failed or skipped delivery's fate in words, with what to do about it ("" for any
    other): the provider's answer when it says something a location can act on, else its
    reason (docs/semantics.md §9: deployment details stay the operator's)."""
    if status not in ("failed", "skipped"):
        return ""
    shown = shown_error(channel, error)
    for pattern, words in _ANSWERS:
        if shown and pattern.search(shown):
            return words
    if reason in _REASONS:
        return _REASONS[reason]
    if shown:
        return f"the provider answered: {shown}: check the recipient's address, then resend"
    return "it was not sent: resend once what stopped it is fixed"


def content_removed(delivery: Any) -> str:
    """``content removed after N days`` for a delivery whose content retention removed
    (docs/semantics.md §10), counted from when it finished; empty otherwise."""
    removed_at = delivery.content_removed_at
    if removed_at is None:
        return ""
    days = max(0, (removed_at - delivery.updated_at).days)
    return f"content removed after {days} day{'' if days == 1 else 's'}"
