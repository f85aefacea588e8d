"""Identifiers: 20-character base62 strings, like HighLevel's."""

from __future__ import annotations

import re
import secrets
import string

_ALPHABET = string.ascii_letters + string.digits
ID_LENGTH = 20
_ID_RE = re.compile(r"[A-Za-z0-9]{20}")


def new_id() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(ID_LENGTH))


def looks_like_id(value: str) -> bool:
    """True when ``value`` could be an id we issued; anything else cannot exist."""
    return _ID_RE.fullmatch(value) is not None
