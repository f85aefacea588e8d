"""What one message is made of, as plain data: a :class:`Draft`.

A draft is worked out where the rows are (the dispatcher, the plan preview): which
templates, which merge-field values, which sender, which calendar invitation. It holds no
database row and no connection, so it can cross to a render process, where
:func:`calnotify.compose.compose.compose` makes the message of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from calnotify.channels.base import WireBuilder
from calnotify.channels.ics import INVITE_TYPES, event_status, series_lines
from calnotify.channels.senders import AllowedSenders, SenderChoice, SenderSettings, choose_sender
from calnotify.models.delivery import RecipientKind
from calnotify.templates.render import RenderData, context, sources
from calnotify.timefmt import zone


@dataclass(frozen=True)
class Invite:
    """The calendar invitation attached to an email (RFC 5545, see channels/ics.py)."""

    method: str
    status: str  # the VEVENT's STATUS, from the appointment's
    appointment_id: str  # the UID's: a series' occurrences share their master's
    sequence: int
    start: datetime
    end: datetime
    summary: str
    description: str
    location: str
    organizer_name: str
    organizer_email: str
    attendee_email: str
    stamp: datetime
    recurrence: tuple[str, ...] = ()
    recurrence_id: datetime | None = None


@dataclass(frozen=True)
class Draft:
    """One message to one recipient, before it is rendered."""

    delivery_id: str
    location_id: str
    appointment_id: str  # as the appointment goes by on the wire (an occurrence: instance id)
    calendar_id: str
    notification_type: str
    channel: str
    to: str
    subject_source: str
    body_source: str
    values: dict[str, Any]  # the merge fields
    sender: SenderChoice
    appointment_version: int
    user_id: str = ""  # the inbox owner, for in-app messages
    invite: Invite | None = None
    wire: WireBuilder | None = None


@dataclass(frozen=True, slots=True)
class Recipient:
    kind: str  # a RecipientKind
    address: str
    user_id: str = ""  # for in-app messages: whose inbox


_CUSTOMERS = frozenset(
    {RecipientKind.CONTACT.value, RecipientKind.GUEST.value, RecipientKind.ADDRESS.value}
)


def for_customer(kind: str) -> bool:
    """Whether the recipient is someone the appointment is for (not the team)."""
    return kind in _CUSTOMERS


def recipient_zone(kind: str, contact: Any | None, location: Any) -> ZoneInfo:
    """Times are shown in the contact's zone to the people the appointment is for (when it
    has one), else in the location's (docs/semantics.md §5)."""
    if for_customer(kind) and contact is not None and contact.timezone:
        return zone(contact.timezone)
    return zone(location.timezone)


def draft(
    *,
    delivery_id: str,
    wire_id: str,
    notification_type: str,
    rule: Any,
    template: tuple[str, str] | None,
    data: RenderData,
    recipient: Recipient,
    allowed: AllowedSenders,
    senders: SenderSettings,
    now: datetime,
    deleted: Sequence[datetime] = (),
    wire: WireBuilder | None = None,
) -> Draft:
    """The draft of ``rule``'s message of ``notification_type`` about ``data.appointment``
    to ``recipient`` (docs/semantics.md §5 and §7). ``deleted``: for a series' invitation, the
    original starts of occurrences deleted on their own."""
    location, appointment = data.location, data.appointment
    customer = for_customer(recipient.kind)
    where = recipient_zone(recipient.kind, data.contact, location)
    subject_source, body_source = sources(
        notification_type, rule.subject, rule.body, template, for_customer=customer
    )
    channel = rule.channel
    sender = choose_sender(
        channel,
        rule_from_name=rule.from_name,
        rule_from_address=rule.from_address,
        rule_from_number=rule.from_number,
        location_name=location.name,
        location_email=location.email,
        allowed=allowed,
        settings=senders,
    )
    invite = None
    method = INVITE_TYPES.get(notification_type)
    invited = recipient.kind in (RecipientKind.CONTACT, RecipientKind.GUEST)
    if channel == "email" and method and invited:
        invite = _invite(method, data, sender, recipient.address, now, deleted)
    return Draft(
        delivery_id=delivery_id,
        location_id=location.id,
        appointment_id=wire_id,
        calendar_id=data.calendar.id,
        notification_type=notification_type,
        channel=channel,
        to=recipient.address,
        subject_source=subject_source,
        body_source=body_source,
        values=context(data, where),
        sender=sender,
        appointment_version=appointment.version,
        user_id=recipient.user_id if channel == "inApp" else "",
        invite=invite,
        wire=wire,
    )


def _invite(
    method: str,
    data: RenderData,
    sender: SenderChoice,
    attendee: str,
    now: datetime,
    deleted: Sequence[datetime],
) -> Invite:
    appointment = data.appointment
    uid, recurrence_id = appointment.id, None
    recurrence: tuple[str, ...] = ()
    if appointment.master_id:  # one occurrence of a series changed
        uid, recurrence_id = appointment.master_id, appointment.original_start_at
    elif appointment.rrule:  # the series itself
        recurrence = series_lines(appointment.rrule, deleted)
    return Invite(
        method=method,
        status=event_status(method, appointment.status),
        appointment_id=uid,
        sequence=appointment.version,
        start=appointment.start_at,
        end=appointment.end_at,
        summary=appointment.title or data.calendar.name,
        description=appointment.description,
        location=appointment.address,
        # The organizer is who the email is from (docs/semantics.md §7): never an address that is
        # not an allowed sender of the location.
        organizer_name=sender.from_name,
        organizer_email=sender.from_address,
        attendee_email=attendee,
        stamp=now,
        recurrence=recurrence,
        recurrence_id=recurrence_id,
    )
