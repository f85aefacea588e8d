"""Field checks shared by every domain: email addresses, E.164 phone numbers, time zones."""

from __future__ import annotations

import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from email_validator import EmailNotValidError, validate_email

from calnotify.channels.addresses import AddressError, normalise_number
from calnotify.zones import written_offset_hint

_ZONE_NAME = re.compile(r"[A-Za-z0-9_+\-]+(/[A-Za-z0-9_+\-]+)*")


def email_problem(value: str) -> str | None:
    if len(value) > 320:
        return "is not a valid email address (too long)"
    try:
        validate_email(value, check_deliverability=False, test_environment=True)
    except EmailNotValidError:
        return f"{value!r} is not a valid email address"
    return None


def phone_problem(value: str) -> str | None:
    """Why ``value`` is not exactly an E.164 number, for the fields HighLevel stores as
    given (a contact's or user's phone); fields calnotify sends from are read with
    :func:`calnotify.channels.addresses.normalise_number` instead."""
    try:
        if normalise_number(value) == value:
            return None
    except AddressError:
        pass
    return f"{value!r} is not an E.164 phone number (+ and 8 to 15 digits)"


def timezone_problem(value: str) -> str | None:
    """Why ``value`` is not an IANA zone (with what to give instead for an offset such as
    ``GMT+2``), or None. Legacy names that IANA still knows (``US/Eastern``) are zones:
    :func:`calnotify.zones.zone_warning` says what they most likely mean."""
    if len(value) <= 64 and _ZONE_NAME.fullmatch(value) is not None:
        try:
            ZoneInfo(value)
            return None
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a folder ("America")
            pass
    hint = written_offset_hint(value)
    return f"{value!r} is not an IANA time zone" + (f": {hint}" if hint else "")
