"""What erasing a contact makes of a text: their email address, phone number and name
replaced by ``erased``, wherever they appear."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

ERASED = "erased"


class Scrubber:
    """Replaces one contact's email address and phone number (whatever their case, the
    number with or without its ``+``) and their name (the full name, then each part as a
    whole word, as written) by :data:`ERASED`."""

    def __init__(self, *, email: str, phone: str, first_name: str, last_name: str) -> None:
        exact = [email.strip(), phone.strip(), phone.strip().lstrip("+")]
        self._exact = _pattern((re.escape(s) for s in exact if len(s) >= 3), re.IGNORECASE)
        full = " ".join(p for p in (first_name.strip(), last_name.strip()) if p)
        parts = [full, *first_name.split(), *last_name.split()]
        words = (rf"\b{re.escape(p)}\b" for p in parts if len(p) >= 2)
        self._names = _pattern(words, 0)
        #: The contact's addresses, as a delivery's recipient holds them.
        self.addresses = {s.lower() for s in exact if s}
        self.email, self.phone = email.strip(), phone.strip()

    def addresses_only(self) -> Scrubber:
        """A scrubber of the email address and phone number alone, for text about other
        people (another appointment's guests), where the name may be someone else's."""
        return Scrubber(email=self.email, phone=self.phone, first_name="", last_name="")

    def text(self, value: str) -> str:
        if not value:
            return value
        if self._exact is not None:
            value = self._exact.sub(ERASED, value)
        if self._names is not None:
            value = self._names.sub(ERASED, value)
        return value

    def value(self, value: Any) -> Any:
        """A JSON value with every string in it scrubbed (keys too)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if isinstance(value, dict):
            return {self.text(str(k)): self.value(v) for k, v in value.items()}
        return value

    def is_address(self, value: str) -> bool:
        return value.strip().lower() in self.addresses


def _pattern(alternatives: Iterable[str], flags: int) -> re.Pattern[str] | None:
    # Longest first, so "+14155550123" goes before "14155550123" and a full name before
    # its parts.
    found = sorted(set(alternatives), key=len, reverse=True)
    return re.compile("|".join(found), flags) if found else None


def changes(row: Any, scrub: Scrubber, columns: Iterable[str]) -> dict[str, Any]:
    """The scrubbed values of ``row``'s ``columns`` that differ from what it holds."""
    out: dict[str, Any] = {}
    for name in columns:
        before = getattr(row, name)
        after = scrub.value(before)
        if after != before:
            out[name] = after
    return out
