"""Identifiers: 20-character base62 strings, like HighLevel's."""

from __future__ import annotations

import re
import secrets
import string
from datetime import UTC, datetime

_ALPHABET = string.ascii_letters + string.digits
ID_LENGTH = 20
_ID_RE = re.compile(r"[A-Za-z0-9]{20}")


# Each random byte below 248 as a character of the alphabet (modulo 62: uniform); the
# bytes of 248 and more are dropped.
_TABLE = bytes(ord(_ALPHABET[b % 62]) for b in range(256))
_DROPPED = bytes(range(248, 256))


def new_id() -> str:
    """20 characters drawn uniformly from 62 (about 119 random bits), from one read of the
    system's random source: bytes of 248 and more are dropped, the rest taken modulo 62."""
    while True:
        chars = secrets.token_bytes(ID_LENGTH + 8).translate(_TABLE, _DROPPED)
        if len(chars) >= ID_LENGTH:
            return chars[:ID_LENGTH].decode("ascii")


def looks_like_id(value: str) -> bool:
    """True when ``value`` could be an id we issued; anything else cannot exist."""
    return _ID_RE.fullmatch(value) is not None


_INSTANCE_RE = re.compile(r"([A-Za-z0-9]{20})_(\d{1,15})")


def instance_id(master_id: str, original_start: datetime) -> str:
    """An occurrence of a series: ``<masterEventId>_<epoch ms of its original start>``."""
    return f"{master_id}_{int(original_start.astimezone(UTC).timestamp() * 1000)}"


def parse_instance_id(value: str) -> tuple[str, datetime] | None:
    """The master id and original start of an instance id; None for anything else."""
    match = _INSTANCE_RE.fullmatch(value)
    if match is None:
        return None
    try:
        start = datetime.fromtimestamp(int(match.group(2)) / 1000, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return match.group(1), start
