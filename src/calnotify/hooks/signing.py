"""Standard Webhooks signatures (https://www.standardwebhooks.com/): secrets and the
``webhook-id`` / ``webhook-timestamp`` / ``webhook-signature`` headers."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import timedelta

PREFIX = "whsec_"
SECRET_BYTES = 32  # the scheme allows 24 to 64
#: How long after a rotation requests are signed with the previous secret too.
ROTATION_GRACE = timedelta(hours=24)


def new_secret() -> str:
    """A new signing secret, ``whsec_<base64 of 32 random bytes>``."""
    return PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`` with the secret's bytes."""
    key = base64.b64decode(secret.removeprefix(PREFIX))
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(
    secret: str, message_id: str, timestamp: int, body: bytes, previous: str = ""
) -> dict[str, str]:
    """The headers of one signed request (``message_id`` stays the same across retries, so a
    receiver can tell a retry from a new event). With a ``previous`` secret (a rotation's
    grace period), signed with both, space separated, as the scheme allows."""
    signed = signature(secret, message_id, timestamp, body)
    if previous:
        signed += " " + signature(previous, message_id, timestamp, body)
    return {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signed,
    }
