"""The server secrets that sign action links, as a process keeps them.

The secrets live in ``link_secrets`` (the first is made when a process first needs one).
A process reads them at most once a :data:`REFRESH` (:class:`LinkKeys`), so signing a
message's links costs an HMAC in memory and no database round trip; a token signed by a
key the process does not know yet (made by ``calnotify secrets rotate`` since) makes it
read them again at once. ``calnotify secrets rotate`` (:func:`rotate`) adds a new secret
and retires the previous one, which still verifies for the grace period
(``CALNOTIFY_LINK_SECRET_GRACE_DAYS``).
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import time
from datetime import datetime, timedelta

from sqlalchemy import select, update

from calnotify.actions.tokens import Key
from calnotify.db.engine import Database
from calnotify.models import LinkSecret

REFRESH = 60.0  # seconds a process keeps the secrets it read
RETRY = 1.0  # seconds between two reads forced by a token of an unknown key
DEFAULT_GRACE = timedelta(days=30)


def _new_secret() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii").rstrip("=")


def _key(row: LinkSecret) -> Key:
    return Key(row.id, base64.urlsafe_b64decode(row.secret + "=" * (-len(row.secret) % 4)))


async def read_keys(db: Database, now: datetime, grace: timedelta) -> tuple[Key, ...]:
    """The secrets that verify links at ``now``, the signing one (newest) first; the first
    secret is made when there is none."""
    for _ in range(2):
        async with db.session(write=False) as session:
            rows = list(await session.scalars(select(LinkSecret).order_by(LinkSecret.id.desc())))
        if rows:
            return tuple(
                _key(r)
                for i, r in enumerate(rows)
                if i == 0 or r.retired_at is None or r.retired_at + grace > now
            )
        async with db.session() as session:
            session.add(LinkSecret(secret=_new_secret(), created_at=now))
    raise RuntimeError("no link secret could be made")  # pragma: no cover


async def rotate(db: Database, now: datetime) -> int:
    """A new signing secret; the previous ones retired now (they verify for the grace
    period). The new secret's id."""
    async with db.session() as session:
        await session.execute(
            update(LinkSecret).where(LinkSecret.retired_at.is_(None)).values(retired_at=now)
        )
        row = LinkSecret(secret=_new_secret(), created_at=now)
        session.add(row)
        await session.flush()
        return row.id


class LinkKeys:
    """A process's copy of the link secrets, read again after :data:`REFRESH` seconds."""

    def __init__(self, grace: timedelta = DEFAULT_GRACE, refresh: float = REFRESH) -> None:
        self.grace = grace
        self.refresh = refresh
        self._keys: tuple[Key, ...] = ()
        self._read_at = -float("inf")
        self._lock = asyncio.Lock()

    async def get(
        self, db: Database, now: datetime, *, key_byte: int | None = None
    ) -> tuple[Key, ...]:
        """The secrets, the signing one first (``key_byte``: a token's key, read again at
        once when no secret known has it)."""
        age = time.monotonic() - self._read_at
        unknown = key_byte is not None and all(k.id % 256 != key_byte for k in self._keys)
        if self._keys and age < self.refresh and not (unknown and age >= RETRY):
            return self._keys
        async with self._lock:
            if time.monotonic() - self._read_at >= min(age, RETRY):
                self._keys = await read_keys(db, now, self.grace)
                self._read_at = time.monotonic()
        return self._keys
