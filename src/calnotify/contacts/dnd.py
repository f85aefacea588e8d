"""A contact's do-not-disturb for one channel, kept in HighLevel's ``dndSettings`` shape
(``{"SMS": {"status": "active", "message": …, "code": …}}``).

Set when the contact opts out by reply (``STOP``) or when Twilio answers that the number has
opted out (error 21610); cleared when the contact opts back in (``START``). Messages on a
channel whose DND is on end ``skipped``/``dnd`` (:mod:`calnotify.planning.recipients`).
A ``permanent`` DND, set by the location, is never changed here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, update

from calnotify.channels.twilio import OPTED_OUT_CODE
from calnotify.db.statements import Statement, table
from calnotify.db.tx import Tx
from calnotify.models import Contact
from calnotify.planning.recipients import DND_KEY

#: The DND message when Twilio answers that the number opted out (error 21610).
OPTED_OUT_AT_PROVIDER = "opted out at the provider"

_C = table(Contact).c
#: The location's contacts with a phone number, locked for the change (PostgreSQL).
BY_PHONE = Statement(
    select(_C.id, _C.dnd_settings)
    .where(
        _C.phone == bindparam("phone"),
        _C.location_id == bindparam("location_id"),
        _C.deleted.is_(False),
    )
    .order_by(_C.id)
    .with_for_update()
)
_SET = Statement(
    update(table(Contact))
    .where(_C.id == bindparam("b_id"))
    .values(
        dnd_settings=bindparam("b_settings", type_=_C.dnd_settings.type),
        date_updated=bindparam("b_now"),
    )
)


def switched(
    settings: dict[str, Any] | None, channel: str, on: bool, why: str, code: str = ""
) -> dict[str, Any] | None:
    """``settings`` with the channel's DND turned on or off (``why``: its message), or None
    when that changes nothing (already so, or ``permanent``)."""
    key = DND_KEY[channel]
    current = dict(settings or {})
    entry = current.get(key)
    status = entry.get("status") if isinstance(entry, dict) else None
    if status == "permanent" or (status == "active") == on:
        return None
    current[key] = {"status": "active" if on else "inactive", "message": why, "code": code}
    return current


async def set_dnd(
    tx: Tx,
    location_id: str,
    phone: str,
    channel: str,
    *,
    on: bool,
    why: str,
    now: datetime,
    code: str = "",
) -> list[str]:
    """Turn the channel's DND on (or off) for every contact of the location with ``phone``
    (E.164); the ids of those contacts."""
    [found] = await tx.fetch((BY_PHONE, {"phone": phone, "location_id": location_id}))
    changes = [
        {"b_id": row.id, "b_settings": changed, "b_now": now}
        for row in found
        if (changed := switched(row.dnd_settings, channel, on, why, code)) is not None
    ]
    tx.write_many(_SET, changes)
    return [row.id for row in found]


async def opted_out_at_provider(
    tx: Tx, location_id: str, recipient: str, channel: str, now: datetime
) -> None:
    """Twilio said ``recipient`` opted out of this sender (error 21610), on send or in a
    ``failed`` status callback: the channel's DND is set for the location's contacts with
    that number, so the next message to them is skipped (docs/semantics.md §8, "Replies")."""
    number = recipient.removeprefix("whatsapp:")
    if not number:  # no number: no contact to match (an empty phone is no one's)
        return
    await set_dnd(
        tx,
        location_id,
        number,
        channel,
        on=True,
        why=OPTED_OUT_AT_PROVIDER,
        now=now,
        code=str(OPTED_OUT_CODE),
    )
