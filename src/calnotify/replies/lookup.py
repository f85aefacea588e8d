"""Who a reply comes from and which appointment it is about.

The location: the one whose allowed sender number the reply was sent to; when the number
is no location's (the deployment's ``CALNOTIFY_TWILIO_FROM_NUMBER`` or
``_WHATSAPP_FROM``, shared by every location), any location. Among those, the contacts
whose phone is the sender's number; when they are of several locations, the location of the
most recent message sent to one of them on the reply's channel. When no contact has the
number, the location is still known if only one was possible.

The appointment: the contact's next one that has not started, is ``new`` or
``confirmed``, and was sent a message on the reply's channel.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, exists, select

from calnotify.channels.senders import NUMBER
from calnotify.db.statements import Statement, table
from calnotify.db.tx import Reader
from calnotify.deliveries.lifecycle import DeliveryStatus
from calnotify.ids import instance_id
from calnotify.models import AllowedSender, Appointment, Contact, Delivery, Location
from calnotify.models.appointment import AppointmentStatus
from calnotify.models.delivery import RecipientKind

# A number shared by more locations than this is treated as the deployment's own.
_MOST_LOCATIONS = 1000

_S, _C, _A, _D, _L = (table(m).c for m in (AllowedSender, Contact, Appointment, Delivery, Location))
_SENDER_LOCATIONS = Statement(
    select(_S.location_id)
    .where(_S.kind == NUMBER, _S.value == bindparam("number"))
    .limit(_MOST_LOCATIONS)
)
_CONTACTS = Statement(
    select(_C.id, _C.location_id)
    .where(_C.phone == bindparam("phone"), _C.deleted.is_(False))
    .order_by(_C.location_id, _C.id)
    .limit(_MOST_LOCATIONS)
)
_LOCATION = Statement(select(*_L).where(_L.id == bindparam("id")))
_TWO_LOCATIONS = Statement(select(_L.id).order_by(_L.id).limit(2))
_MESSAGED = (
    (_D.status == DeliveryStatus.SENT.value)
    & (_D.recipient_kind == RecipientKind.CONTACT.value)
    & (_D.channel == bindparam("channel"))
)
#: The location and contact of the most recent message sent to one of the contacts.
_LATEST = Statement(
    select(_D.location_id, _A.contact_id)
    .join(table(Appointment), _A.id == _D.appointment_id)
    .where(_A.contact_id.in_(bindparam("contacts", expanding=True)), _MESSAGED)
    .order_by(_D.sent_at.desc(), _D.id.desc())
    .limit(1)
)
_UPCOMING = (AppointmentStatus.NEW.value, AppointmentStatus.CONFIRMED.value)
#: The contact's next appointment that was messaged on the channel (an occurrence before
#: its series' master when they start together).
_NEXT = Statement(
    select(_A.id, _A.master_id, _A.original_start_at)
    .where(
        _A.contact_id == bindparam("contact"),
        _A.location_id == bindparam("location"),
        _A.deleted.is_(False),
        _A.start_at > bindparam("now"),
        _A.status.in_(_UPCOMING),
        exists().where(_D.appointment_id == _A.id, _MESSAGED),
    )
    .order_by(_A.start_at, _A.master_id.is_(None), _A.id)
    .limit(1)
)


@dataclass(frozen=True)
class Match:
    """What a reply was matched to; each part None (or empty) when nothing matched."""

    location: Any = None  # the location's row
    contact_id: str | None = None
    appointment_id: str | None = None  # the appointment's own id
    event_id: str = ""  # its id on the wire: an occurrence's instance id


async def match(reader: Reader, sender: str, to: str, channel: str, now: datetime) -> Match:
    """The location, contact and appointment of a reply from ``sender`` to ``to`` (both
    E.164 when they are numbers)."""
    [owners, contacts] = await reader.fetch(
        (_SENDER_LOCATIONS, {"number": to}), (_CONTACTS, {"phone": sender})
    )
    possible = {row.location_id for row in owners}
    if possible:
        contacts = [c for c in contacts if c.location_id in possible]
    location_id, contact_id = await _contact(reader, contacts, channel)
    if location_id is None:
        location_id = await _only_location(reader, possible)
    if location_id is None:
        return Match()
    [location] = await reader.fetch((_LOCATION, {"id": location_id}))
    if not location:
        return Match()
    if contact_id is None:
        return Match(location[0])
    params = {"contact": contact_id, "location": location_id, "now": now, "channel": channel}
    [found] = await reader.fetch((_NEXT, params))
    if not found:
        return Match(location[0], contact_id)
    row = found[0]
    wire = instance_id(row.master_id, row.original_start_at) if row.master_id else row.id
    return Match(location[0], contact_id, row.id, wire)


async def _contact(
    reader: Reader, contacts: list[Any], channel: str
) -> tuple[str | None, str | None]:
    """The location and contact of a reply among the contacts with its number."""
    if not contacts:
        return None, None
    if len({c.location_id for c in contacts}) > 1 or len(contacts) > 1:
        ids = [c.id for c in contacts]
        [latest] = await reader.fetch((_LATEST, {"contacts": ids, "channel": channel}))
        if latest:
            return latest[0].location_id, latest[0].contact_id
        if len({c.location_id for c in contacts}) > 1:
            return None, None
    return contacts[0].location_id, contacts[0].id


async def _only_location(reader: Reader, possible: set[str]) -> str | None:
    """The one location a reply can be for without a contact: the only owner of the number
    it was sent to, or the deployment's only location."""
    if len(possible) == 1:
        return next(iter(possible))
    if possible:
        return None
    [first_two] = await reader.fetch((_TWO_LOCATIONS, {}))
    return first_two[0].id if len(first_two) == 1 else None
