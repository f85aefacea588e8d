"""Erasing a contact (docs/semantics.md §10): ``DELETE /contacts/{contactId}`` and
``calnotify contacts erase``.

Pending sends to the contact end ``cancelled`` (``contact_deleted``); their email address,
phone number and name are replaced by ``erased`` in every delivery, attempt, outbox message
and in-app notice of their appointments, in those appointments' text and in their history
(appointment events); the content of messages to them is removed; the contact row keeps only
its id and ``deleted: true``. Appointments keep their times, for the calendar's history.

Beyond their own appointments: the location's other messages to their email address or
phone number (as another appointment's guest, or a rule's additional recipient) lose their
content and recipient, and those pending are cancelled; so are the location's webhook
deliveries whose body carries the address or number (an ``InboundMessage`` of a reply that
matched no appointment, an ``Appointment*`` body naming them), whose bodies are scrubbed;
their replies (``inbound_messages``) keep neither their number nor their text.

The work is done in pages, each its own short transaction (architecture principle 10). The
contact is marked deleted first, so from then on nothing new is sent to them (the planner
and the dispatcher's fence take a deleted contact for one without an address); their
details are blanked last, so an erasure cut short by a crash is finished by asking again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, or_, select, update

from calnotify.contacts.scrub import ERASED, Scrubber, changes
from calnotify.db.engine import Database
from calnotify.db.pages import in_pages
from calnotify.db.statements import Statement, table
from calnotify.db.tx import Tx
from calnotify.deliveries import lifecycle
from calnotify.errors import NotFound
from calnotify.ids import looks_like_id
from calnotify.models import (
    Appointment,
    AppointmentEvent,
    Contact,
    Delivery,
    DeliveryAttempt,
    InboundMessage,
    InboxItem,
    OutboxMessage,
)
from calnotify.models.delivery import RecipientKind

PAGE = 500  # rows per transaction
APPOINTMENT_PAGE = 100  # appointments whose deliveries are worked through together
SETTLE_SECONDS = 30.0  # how long to wait for messages to the contact being sent right now

_C, _A, _E = table(Contact), table(Appointment), table(AppointmentEvent)
_D, _T, _O, _I = table(Delivery), table(DeliveryAttempt), table(OutboxMessage), table(InboxItem)
_R = table(InboundMessage)
_NAMES = ("first_name", "last_name", "email", "phone")
_BLANK_TEXT = (
    *_NAMES, "timezone", "company_name", "address1", "city", "state", "country", "postal_code",
    "website", "source",
)  # fmt: skip
_APPOINTMENT_TEXT = ("title", "address", "description", "notes", "guests", "extra")
_DELIVERY_TEXT = ("recipient", "recipient_ref", "subject", "body", "last_error")
_OUTBOX_TEXT = ("to", "subject", "body")

_CONTACT = Statement(
    select(_C.c.id, _C.c.location_id, *(_C.c[n] for n in _NAMES)).where(
        _C.c.id == bindparam("contact_id")
    )
)
_MARK_DELETED = Statement(
    update(_C)
    .where(_C.c.id == bindparam("b_id"))
    .values(deleted=True, date_updated=bindparam("now"))
)
_BLANK = Statement(
    update(_C)
    .where(_C.c.id == bindparam("b_id"))
    .values(
        {
            **{n: "" for n in _BLANK_TEXT},
            "dnd": False,
            "dnd_settings": bindparam("no_settings"),
            "tags": bindparam("no_tags"),
            "extra": bindparam("no_extra"),
            "deleted": True,
            "date_updated": bindparam("now"),
        }
    )
)
_APPOINTMENTS = Statement(
    select(_A.c.id, *(_A.c[n] for n in _APPOINTMENT_TEXT))
    .where(_A.c.contact_id == bindparam("contact_id"), _A.c.id > bindparam("after"))
    .order_by(_A.c.id)
    .limit(bindparam("limit"))
)
_PENDING_TO_CONTACT = Statement(
    select(_D.c.id)
    .where(
        _D.c.appointment_id.in_(bindparam("appointments", expanding=True)),
        _D.c.status == lifecycle.DeliveryStatus.SCHEDULED.value,
        # A webhook about their appointment carries them too (HighLevel's contact shape).
        _D.c.recipient_kind.in_((RecipientKind.CONTACT.value, RecipientKind.WEBHOOK.value)),
    )
    .limit(bindparam("limit"))
    .with_for_update(skip_locked=True)
)
_DELIVERY_COLUMNS = (_D.c.id, _D.c.status, _D.c.recipient_kind, *(_D.c[n] for n in _DELIVERY_TEXT))
_DELIVERIES = Statement(
    select(*_DELIVERY_COLUMNS)
    .where(
        _D.c.appointment_id.in_(bindparam("appointments", expanding=True)),
        _D.c.id > bindparam("after"),
    )
    .order_by(_D.c.id)
    .limit(bindparam("limit"))
)
#: The location's other deliveries to one of the contact's addresses, or webhooks whose body
#: carries one (lower-cased ``needles``: ``%address%``).
_ELSEWHERE = Statement(
    select(*_DELIVERY_COLUMNS, _D.c.appointment_id)
    .where(
        _D.c.location_id == bindparam("location_id"),
        _D.c.id > bindparam("after"),
        or_(
            func.lower(_D.c.recipient).in_(bindparam("addresses", expanding=True)),
            (_D.c.recipient_kind == RecipientKind.WEBHOOK.value)
            & or_(*(func.lower(_D.c.body).like(bindparam(f"needle{i}")) for i in range(3))),
        ),
    )
    .order_by(_D.c.id)
    .limit(bindparam("limit"))
)
_GUESTS = Statement(
    select(_A.c.id, _A.c.guests).where(_A.c.id.in_(bindparam("ids", expanding=True)))
)
_REPLIES = Statement(
    select(_R.c.id)
    .where(
        _R.c.location_id == bindparam("location_id"),
        or_(_R.c.contact_id == bindparam("contact_id"), _R.c.from_number == bindparam("phone")),
        _R.c.id > bindparam("after"),
    )
    .order_by(_R.c.id)
    .limit(bindparam("limit"))
)
_DELIVERIES_BY_ID = Statement(
    select(*_DELIVERY_COLUMNS).where(_D.c.id.in_(bindparam("ids", expanding=True)))
)
_STILL_SENDING = Statement(
    select(_D.c.id).where(
        _D.c.id.in_(bindparam("ids", expanding=True)),
        _D.c.status == lifecycle.DeliveryStatus.SENDING.value,
    )
)
_ATTEMPTS = Statement(
    select(_T.c.id, _T.c.error).where(_T.c.delivery_id.in_(bindparam("ids", expanding=True)))
)
_OUTBOX = Statement(
    select(_O.c.id, _O.c.delivery_id, _O.c.to, _O.c.subject, _O.c.body).where(
        _O.c.delivery_id.in_(bindparam("ids", expanding=True))
    )
)
_INBOX = Statement(
    select(_I.c.id, _I.c.title, _I.c.body).where(
        _I.c.delivery_id.in_(bindparam("ids", expanding=True))
    )
)
_EVENTS = Statement(
    select(_E.c.id, _E.c.before, _E.c.after, _E.c.note)
    .where(
        _E.c.appointment_id.in_(bindparam("appointments", expanding=True)),
        _E.c.id > bindparam("after_id"),
    )
    .order_by(_E.c.id)
    .limit(bindparam("limit"))
)


def _set(model_table: Any, columns: Sequence[str]) -> Statement:
    return Statement(
        update(model_table)
        .where(model_table.c.id == bindparam("b_id"))
        .values({n: bindparam(n) for n in columns})
    )


_SET_APPOINTMENT = _set(_A, _APPOINTMENT_TEXT)
_SET_DELIVERY = _set(_D, _DELIVERY_TEXT)
_SET_ATTEMPT = _set(_T, ("error",))
_SET_OUTBOX = _set(_O, _OUTBOX_TEXT)
_SET_INBOX = _set(_I, ("title", "body"))
_SET_GUESTS = _set(_A, ("guests",))
_BLANK_REPLY = Statement(
    update(_R).where(_R.c.id == bindparam("b_id")).values(from_number=ERASED, body="")
)
# A cancellation reason typed at the console may name the contact too.
_SET_EVENT = _set(_E, ("before", "after", "note"))


@dataclass(slots=True)
class Erased:
    """How many rows of each kind an erasure changed."""

    cancelled: int = 0
    deliveries: int = 0
    attempts: int = 0
    outbox_messages: int = 0
    inbox_items: int = 0
    appointments: int = 0
    appointment_events: int = 0
    replies: int = 0

    def counts(self) -> dict[str, int]:
        """The counts with the API's names (``outboxMessages``, …)."""
        return {_camel(f.name): getattr(self, f.name) for f in fields(self)}


async def erase_contact(
    db: Database,
    contact_id: str,
    now: datetime,
    *,
    location_id: str | None = None,
    settle_seconds: float = SETTLE_SECONDS,
) -> Erased:
    """Erase the contact ``contact_id`` (of ``location_id``, when given; 404 otherwise)."""
    scrub, location = await _mark_deleted(db, contact_id, location_id, now)
    erased = Erased()
    in_flight: list[str] = []
    after = ""
    while True:
        async with db.transaction() as tx:
            params = {"contact_id": contact_id, "after": after, "limit": APPOINTMENT_PAGE}
            [appointments] = await tx.fetch((_APPOINTMENTS, params))
            erased.appointments += _scrub_rows(
                tx, _SET_APPOINTMENT, appointments, scrub, _APPOINTMENT_TEXT
            )
        ids = [a.id for a in appointments]
        if ids:
            await _cancel_pending(db, ids, now, erased)
            in_flight += await _scrub_deliveries(db, ids, scrub, erased)
            await _scrub_events(db, ids, scrub, erased)
        if len(appointments) < APPOINTMENT_PAGE:
            break
        after = ids[-1]
    in_flight += await _erase_elsewhere(db, location, scrub, now, erased)
    erased.replies += await _erase_replies(db, location, contact_id, scrub)
    if in_flight:
        await _settle(db, in_flight, scrub, erased, settle_seconds)
    async with db.transaction() as tx:
        tx.write(
            _BLANK,
            {"b_id": contact_id, "no_settings": {}, "no_tags": [], "no_extra": {}, "now": now},
        )
    return erased


async def _mark_deleted(
    db: Database, contact_id: str, location_id: str | None, now: datetime
) -> tuple[Scrubber, str]:
    contact = None
    if looks_like_id(contact_id):
        async with db.transaction() as tx:
            [found] = await tx.fetch((_CONTACT, {"contact_id": contact_id}))
            contact = found[0] if found else None
            if contact is not None and location_id in (None, contact.location_id):
                tx.write(_MARK_DELETED, {"b_id": contact_id, "now": now})
    if contact is None or location_id not in (None, contact.location_id):
        raise NotFound("Contact not found")
    scrub = Scrubber(
        email=contact.email,
        phone=contact.phone,
        first_name=contact.first_name,
        last_name=contact.last_name,
    )
    return scrub, contact.location_id


async def _cancel_pending(
    db: Database, appointments: list[str], now: datetime, erased: Erased
) -> None:
    async def page(tx: Tx) -> int:
        [rows] = await tx.fetch(
            (_PENDING_TO_CONTACT, {"appointments": appointments, "limit": PAGE})
        )
        lifecycle.cancel(tx, lifecycle.Reason.CONTACT_DELETED, [r.id for r in rows], now)
        return len(rows)

    erased.cancelled += await in_pages(db, page, PAGE)


async def _scrub_deliveries(
    db: Database, appointments: list[str], scrub: Scrubber, erased: Erased
) -> list[str]:
    """Scrub the deliveries of ``appointments`` and what hangs off them; the ids of those
    being sent right now (their outcome, once recorded, is scrubbed again)."""
    sending: list[str] = []
    after = ""
    while True:
        async with db.transaction() as tx:
            params = {"appointments": appointments, "after": after, "limit": PAGE}
            [rows] = await tx.fetch((_DELIVERIES, params))
            await _scrub_delivery_rows(tx, rows, scrub, erased)
        sending += [r.id for r in rows if r.status == lifecycle.DeliveryStatus.SENDING.value]
        if len(rows) < PAGE:
            return sending
        after = rows[-1].id


async def _scrub_delivery_rows(
    tx: Tx, rows: Sequence[Any], scrub: Scrubber, erased: Erased
) -> None:
    """Scrub these deliveries, their attempts, outbox messages and in-app notices."""
    if not rows:
        return
    to_contact = {r.id for r in rows if _to_contact(r, scrub)}
    changed = []
    for r in rows:
        values = {n: getattr(r, n) for n in _DELIVERY_TEXT} | changes(r, scrub, _DELIVERY_TEXT)
        if r.id in to_contact:
            values.update(subject="", body="", recipient=ERASED if r.recipient else "")
        if any(values[n] != getattr(r, n) for n in _DELIVERY_TEXT):
            changed.append({**values, "b_id": r.id})
    tx.write_many(_SET_DELIVERY, changed)
    erased.deliveries += len(changed)
    ids = {"ids": [r.id for r in rows]}
    attempts, outbox, inbox = await tx.fetch((_ATTEMPTS, ids), (_OUTBOX, ids), (_INBOX, ids))
    erased.attempts += _scrub_rows(tx, _SET_ATTEMPT, attempts, scrub, ("error",))
    erased.inbox_items += _scrub_rows(tx, _SET_INBOX, inbox, scrub, ("title", "body"))
    messages = []
    for m in outbox:
        values = {n: getattr(m, n) for n in _OUTBOX_TEXT} | changes(m, scrub, _OUTBOX_TEXT)
        if m.delivery_id in to_contact or scrub.is_address(m.to):
            values.update(to=ERASED, subject="", body="")
        if any(values[n] != getattr(m, n) for n in _OUTBOX_TEXT):
            messages.append({**values, "b_id": m.id})
    tx.write_many(_SET_OUTBOX, messages)
    erased.outbox_messages += len(messages)


async def _erase_elsewhere(
    db: Database, location_id: str, scrub: Scrubber, now: datetime, erased: Erased
) -> list[str]:
    """The location's deliveries outside the contact's appointments that hold their address
    (docs/semantics.md §10): pending ones cancelled, all scrubbed, as are the addresses in
    the guests (and their history) of the appointments they belong to. The ids of those
    being sent right now."""
    addresses = sorted(scrub.addresses | {f"whatsapp:{a}" for a in scrub.addresses})
    if not addresses:
        return []
    needles = sorted(scrub.addresses, key=len, reverse=True)[:3]
    params: dict[str, Any] = {"location_id": location_id, "addresses": addresses, "limit": PAGE}
    params |= {f"needle{i}": f"%{needles[i % len(needles)]}%" for i in range(3)}
    only_addresses = scrub.addresses_only()
    sending: list[str] = []
    after = ""
    while True:
        async with db.transaction() as tx:
            [rows] = await tx.fetch((_ELSEWHERE, {**params, "after": after}))
            pending = [r.id for r in rows if r.status == lifecycle.DeliveryStatus.SCHEDULED.value]
            lifecycle.cancel(tx, lifecycle.Reason.CONTACT_DELETED, pending, now)
            erased.cancelled += len(pending)
            await _scrub_delivery_rows(tx, rows, scrub, erased)
            appointments = sorted({r.appointment_id for r in rows if r.appointment_id})
            [guests] = await tx.fetch((_GUESTS, {"ids": appointments}))
            _scrub_rows(tx, _SET_GUESTS, guests, only_addresses, ("guests",))
        if appointments:  # their history holds the guests too
            await _scrub_events(db, appointments, only_addresses, erased)
        sending += [r.id for r in rows if r.status == lifecycle.DeliveryStatus.SENDING.value]
        if len(rows) < PAGE:
            return sending
        after = rows[-1].id


async def _erase_replies(db: Database, location_id: str, contact_id: str, scrub: Scrubber) -> int:
    """Blank the sender and text of the location's replies from the contact (matched to
    them, or from their number); how many."""
    # No number: the contact's id, which is no sender's number, matches none by number.
    params = {"location_id": location_id, "contact_id": contact_id, "limit": PAGE}
    params["phone"] = scrub.phone or contact_id
    count, after = 0, ""
    while True:
        async with db.transaction() as tx:
            [rows] = await tx.fetch((_REPLIES, {**params, "after": after}))
            tx.write_many(_BLANK_REPLY, [{"b_id": r.id} for r in rows])
        count += len(rows)
        if len(rows) < PAGE:
            return count
        after = rows[-1].id


def _to_contact(delivery: Any, scrub: Scrubber) -> bool:
    return delivery.recipient_kind == RecipientKind.CONTACT.value or scrub.is_address(
        delivery.recipient
    )


def _scrub_rows(
    tx: Tx, statement: Statement, rows: Sequence[Any], scrub: Scrubber, columns: Sequence[str]
) -> int:
    """Write the scrubbed ``columns`` of the rows that held something to scrub; how many."""
    written = []
    for row in rows:
        if values := changes(row, scrub, columns):
            written.append({**{n: getattr(row, n) for n in columns}, **values, "b_id": row.id})
    tx.write_many(statement, written)
    return len(written)


async def _scrub_events(
    db: Database, appointments: list[str], scrub: Scrubber, erased: Erased
) -> None:
    after = 0
    while True:
        async with db.transaction() as tx:
            params = {"appointments": appointments, "after_id": after, "limit": PAGE}
            [rows] = await tx.fetch((_EVENTS, params))
            erased.appointment_events += _scrub_rows(
                tx, _SET_EVENT, rows, scrub, ("before", "after", "note")
            )
        if len(rows) < PAGE:
            return
        after = rows[-1].id


async def _settle(
    db: Database, ids: list[str], scrub: Scrubber, erased: Erased, seconds: float
) -> None:
    """Wait (at most ``seconds``) for the messages to the contact that were being sent to
    be recorded, then scrub what their outcome wrote."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        [sending] = await db.fetch((_STILL_SENDING, {"ids": ids}))
        if not sending:
            break
        await asyncio.sleep(0.25)
    for start in range(0, len(ids), PAGE):
        async with db.transaction() as tx:
            [rows] = await tx.fetch((_DELIVERIES_BY_ID, {"ids": ids[start : start + PAGE]}))
            before = erased.deliveries
            await _scrub_delivery_rows(tx, rows, scrub, erased)
            erased.deliveries = before  # the same deliveries, counted once


def _camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(part.title() for part in rest)
