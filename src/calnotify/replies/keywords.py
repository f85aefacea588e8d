"""What a reply says: a keyword, read whatever its case and spacing.

Opt-out and opt-in keywords are the carriers' (``CANCEL`` is one, so it never cancels an
appointment); a location's confirm keywords are its own setting, these by default.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from calnotify.models.inbound import ReplyAction

OPT_OUT = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
OPT_IN = frozenset({"START", "UNSTOP"})
HELP = frozenset({"HELP"})
RESERVED = OPT_OUT | OPT_IN | HELP
DEFAULT_CONFIRM = ("C", "CONFIRM", "Y", "YES")
MAX_KEYWORD = 32


class KeywordError(ValueError):
    """A confirm keyword calnotify cannot use; says why."""


def keyword(text: str) -> str:
    """``text`` as a keyword: upper case, without spaces and a closing ``.`` or ``!``
    (``" yes! "`` → ``YES``, ``"Con firm"`` → ``CONFIRM``)."""
    return "".join(text.split()).rstrip(".!").upper()


def parse_keywords(text: str) -> tuple[str, ...]:
    """A location's confirm keywords from their comma-separated form; an empty text means
    the defaults. Raises :class:`KeywordError` for an opt-out, opt-in or help keyword, and
    for one longer than 32 characters."""
    words = tuple(dict.fromkeys(k for part in text.split(",") if (k := keyword(part))))
    for word in words:
        if word in RESERVED:
            raise KeywordError(f"{word} is a carrier keyword (opt-out, opt-in or help)")
        if len(word) > MAX_KEYWORD:
            raise KeywordError(f"{word[:40]}… is longer than {MAX_KEYWORD} characters")
    return words or DEFAULT_CONFIRM


def confirm_keywords(location: Any) -> tuple[str, ...]:
    """The location's confirm keywords (the defaults when its setting is empty or unusable)."""
    try:
        return parse_keywords(location.reply_confirm_keywords or "")
    except KeywordError:
        return DEFAULT_CONFIRM


def intent(body: str, confirm: Collection[str]) -> ReplyAction:
    """What a reply asks for: opting out or in, help, confirming, or nothing."""
    word = keyword(body)
    if word in OPT_OUT:
        return ReplyAction.OPTED_OUT
    if word in OPT_IN:
        return ReplyAction.OPTED_IN
    if word in HELP:
        return ReplyAction.HELP
    if word in confirm:
        return ReplyAction.CONFIRMED
    return ReplyAction.NONE


def help_text(location: Any) -> str:
    """The answer to ``HELP``: the location's own text, else its name and phone."""
    if location.reply_help:
        return str(location.reply_help)
    call = f" Questions? Call {location.phone}." if location.phone else ""
    return f"{location.name}: appointment messages.{call} Reply STOP to opt out."
