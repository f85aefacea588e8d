"""The token of an action link: which appointment, for which contact, from which channel.

A token is the base64url text of ``key id (1 byte) · channel (1 byte) · appointment id
(15 bytes: its 20 base62 characters as a number) · MAC (16 bytes)``: 44 characters, short
enough for an SMS (docs/semantics.md §8). The MAC is HMAC-SHA256, truncated to 128 bits, of
the rest and the appointment's contact id: a token names one appointment of one contact,
and cannot be made or changed without the server's secret. It carries no expiry of its
own: a link lives as long as its appointment (it ends a day after the appointment does,
:mod:`calnotify.actions.service`), so a reschedule moves its end along.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import string
from dataclasses import dataclass

from calnotify.ids import ID_LENGTH, looks_like_id

_ALPHABET = string.ascii_letters + string.digits
_VALUE = {char: value for value, char in enumerate(_ALPHABET)}
_ID_BYTES = 15  # 62**20 < 256**15
_MAC_BYTES = 16
_TOKEN_BYTES = 2 + _ID_BYTES + _MAC_BYTES
TOKEN_LENGTH = 44  # base64url of _TOKEN_BYTES, without padding
_DOMAIN = b"calnotify-action-link\x00"
# The channel a link was sent on, recorded with the action it leads to.
CHANNELS = ("email", "sms", "whatsapp", "inApp")
# The sample token of a preview: it opens a page saying it is one, and does nothing.
PREVIEW_TOKEN = "preview"  # noqa: S105 (not a secret)


@dataclass(frozen=True, slots=True)
class Key:
    """One server secret: ``id`` (its row) and its bytes."""

    id: int
    secret: bytes


@dataclass(frozen=True, slots=True)
class Parsed:
    """What a token says before its MAC is checked."""

    key_byte: int
    channel: str
    appointment_id: str
    body: bytes
    mac: bytes


def _id_to_bytes(appointment_id: str) -> bytes:
    number = 0
    for char in appointment_id:
        number = number * 62 + _VALUE[char]
    return number.to_bytes(_ID_BYTES, "big")


def _id_of_bytes(data: bytes) -> str:
    number = int.from_bytes(data, "big")
    chars = []
    for _ in range(ID_LENGTH):
        number, digit = divmod(number, 62)
        chars.append(_ALPHABET[digit])
    return "".join(reversed(chars)) if number == 0 else ""


def _mac(key: Key, body: bytes, contact_id: str) -> bytes:
    message = _DOMAIN + body + contact_id.encode("utf-8")
    return hmac.digest(key.secret, message, "sha256")[:_MAC_BYTES]


def sign(key: Key, appointment_id: str, contact_id: str, channel: str) -> str:
    """The token of ``appointment_id`` (an appointment row's id) for ``contact_id``, sent on
    ``channel``."""
    code = CHANNELS.index(channel) if channel in CHANNELS else 0
    body = bytes((key.id % 256, code)) + _id_to_bytes(appointment_id)
    raw = body + _mac(key, body, contact_id)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def parse(token: str) -> Parsed | None:
    """The parts of ``token``, or None when it cannot be one of ours."""
    if len(token) != TOKEN_LENGTH or not token.isascii():
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        return None
    if len(raw) != _TOKEN_BYTES or raw[1] >= len(CHANNELS):
        return None
    appointment_id = _id_of_bytes(raw[2 : 2 + _ID_BYTES])
    if not looks_like_id(appointment_id):
        return None
    body = raw[: 2 + _ID_BYTES]
    return Parsed(raw[0], CHANNELS[raw[1]], appointment_id, body, raw[2 + _ID_BYTES :])


def verified(parsed: Parsed, keys: tuple[Key, ...], contact_id: str) -> bool:
    """Whether one of ``keys`` signed ``parsed`` for ``contact_id``."""
    return any(
        key.id % 256 == parsed.key_byte
        and hmac.compare_digest(_mac(key, parsed.body, contact_id), parsed.mac)
        for key in keys
    )
