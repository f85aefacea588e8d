"""What a chunk of claimed deliveries needs, read at once, and each delivery's fence.

:func:`load` reads the appointments, rules, calendars, locations, users, contacts,
templates, allowed senders and deleted occurrences of a chunk in one snapshot (compiled
statements, one trip). :func:`prepare` then decides, for one delivery, whether it may still
go (the fence: what it was planned from has not changed since, its deadline has not
passed, its recipient has an address and no DND) and drafts its message
(:mod:`calnotify.compose.draft`), or says how it ends instead.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, select

from calnotify.actions.links import Signer
from calnotify.channels.base import Message, WireBuilder
from calnotify.channels.senders import (
    ALLOWED,
    NOTHING_ALLOWED,
    AllowedSenders,
    SenderSettings,
    allowed_of,
)
from calnotify.compose.draft import Draft, Recipient, draft
from calnotify.db.engine import Database
from calnotify.db.statements import Statement
from calnotify.deliveries.lifecycle import DeliveryStatus, Outcome, Reason
from calnotify.hooks.events import WEBHOOK
from calnotify.hooks.prepare import WEBHOOKS, message_of, webhook_ids
from calnotify.models import (
    Appointment,
    Calendar,
    Contact,
    Location,
    Notification,
    Template,
    User,
)
from calnotify.models.delivery import RecipientKind
from calnotify.planning.recipients import People, RecipientRef, resolve
from calnotify.templates.render import RenderData

# How long a delivery waits for its rule's re-planning to reach it.
PLANNING_WAIT = timedelta(seconds=1)


def _columns(model: Any) -> Any:
    return select(*model.__table__.c)


def _ids(name: str) -> Any:
    return bindparam(name, expanding=True)


_APPOINTMENTS = Statement(_columns(Appointment).where(Appointment.id.in_(_ids("appointments"))))
_RULES = Statement(_columns(Notification).where(Notification.id.in_(_ids("rules"))))
_CALENDARS = Statement(_columns(Calendar).where(Calendar.id.in_(_ids("calendars"))))
_LOCATIONS = Statement(_columns(Location).where(Location.id.in_(_ids("locations"))))
_USERS = Statement(
    _columns(User).where(User.location_id.in_(_ids("locations")), User.deleted.is_(False))
)
_CONTACTS = Statement(
    _columns(Contact).where(
        Contact.id.in_(
            select(Appointment.contact_id).where(Appointment.id.in_(_ids("appointments")))
        )
    )
)
# A rule's stored template, when it is a template of the rule's own location.
_TEMPLATES = Statement(
    select(Template.id, Template.subject, Template.html, Template.body)
    .join(Notification, Notification.template_id == Template.id)
    .where(
        Notification.id.in_(_ids("rules")),
        Template.location_id == Notification.location_id,
        Template.deleted.is_(False),
    )
    .distinct()
)
# Occurrences of the chunk's series that were deleted on their own (an invitation's EXDATE).
_DELETED = Statement(
    select(Appointment.master_id, Appointment.original_start_at).where(
        Appointment.master_id.in_(_ids("appointments")),
        Appointment.deleted.is_(True),
        Appointment.is_exception.is_(True),
    )
)


@dataclass
class Context:
    appointments: dict[str, Any]
    rules: dict[str, Any]
    calendars: dict[str, Any]
    people: dict[str, People]
    templates: dict[str, tuple[str, str]]
    allowed: dict[str, AllowedSenders]
    deleted: dict[str, list[datetime]]
    webhooks: dict[str, Any]  # webhook deliveries' bodies and endpoints, by delivery id


async def load(db: Database, chunk: Sequence[Any]) -> Context:
    """Everything ``chunk`` needs, in one snapshot."""
    ids = {
        "appointments": list({d.appointment_id for d in chunk}),
        "rules": list({d.notification_id for d in chunk}),
        "calendars": list({d.calendar_id for d in chunk}),
        "locations": list({d.location_id for d in chunk}),
    }
    (
        appointments,
        rules,
        calendars,
        locations,
        users,
        contacts,
        templates,
        allowed,
        deleted,
        *webhooks,
    ) = await db.fetch(
        (_APPOINTMENTS, ids),
        (_RULES, ids),
        (_CALENDARS, ids),
        (_LOCATIONS, ids),
        (_USERS, ids),
        (_CONTACTS, ids),
        (_TEMPLATES, ids),
        (ALLOWED, ids),
        (_DELETED, ids),
        # Only a chunk with webhooks reads them: nothing more for the other channels.
        *([(WEBHOOKS, {"webhooks": hooks})] if (hooks := webhook_ids(chunk)) else []),
    )
    users_of: dict[str, dict[str, Any]] = defaultdict(dict)
    for user in users:
        users_of[user.location_id][user.id] = user
    contacts_by_id = {c.id: c for c in contacts}
    gone: dict[str, list[datetime]] = defaultdict(list)
    for master_id, start in deleted:
        if master_id and start:
            gone[master_id].append(start)
    return Context(
        appointments={a.id: a for a in appointments},
        rules={r.id: r for r in rules},
        calendars={c.id: c for c in calendars},
        people={
            loc.id: People(location=loc, users=users_of[loc.id], contacts=contacts_by_id)
            for loc in locations
        },
        templates={t.id: (t.subject, t.html or t.body) for t in templates},
        allowed=allowed_of(ids["locations"], allowed),
        deleted=gone,
        webhooks={w.id: w for found in webhooks for w in found},
    )


def prepare(
    delivery: Any,
    context: Context,
    now: datetime,
    senders: SenderSettings,
    wire_of: Callable[[str], WireBuilder | None],
    signer: Signer,
) -> Outcome | Draft | Message:
    """The draft of ``delivery``'s message, or the outcome that ends it here (the fence);
    a webhook's message, which needs no composing; ``signer`` makes a message's action links
    (docs/semantics.md §8)."""
    if delivery.channel == WEBHOOK:
        return message_of(delivery, context.webhooks.get(delivery.id), now)
    appointment = context.appointments.get(delivery.appointment_id)
    rule = context.rules.get(delivery.notification_id)
    calendar = context.calendars.get(delivery.calendar_id)
    people = context.people.get(delivery.location_id)
    if rule is not None and (not rule.is_active or rule.deleted):
        return Outcome(delivery, DeliveryStatus.SKIPPED, Reason.INACTIVE)
    if (
        rule is not None
        and rule.version != delivery.notification_version
        and rule.planned_version < rule.version
    ):
        # The rule is being re-planned and this delivery's page is not done yet: it waits
        # for it (kept and re-stamped, or cancelled) instead of being dropped.
        if now > delivery.deadline_at:
            return Outcome(delivery, DeliveryStatus.SKIPPED, Reason.LATE)
        return Outcome(
            delivery, DeliveryStatus.SCHEDULED, released=True, retry_at=now + PLANNING_WAIT
        )
    if (
        appointment is None
        or rule is None
        or calendar is None
        or people is None
        or appointment.deleted
        or calendar.deleted
        or appointment.calendar_id != delivery.calendar_id
        or appointment.version != delivery.appointment_version
        or rule.version != delivery.notification_version
    ):
        # The fence: what this delivery was planned from has changed since.
        return Outcome(delivery, DeliveryStatus.SKIPPED, Reason.STALE)
    if now > delivery.deadline_at:
        return Outcome(delivery, DeliveryStatus.SKIPPED, Reason.LATE)
    ref = RecipientRef(RecipientKind(delivery.recipient_kind), delivery.recipient_ref)
    resolved = resolve(ref, delivery.channel, appointment, people)
    if resolved.skip is not None:
        return Outcome(delivery, DeliveryStatus.SKIPPED, resolved.skip, recipient=resolved.address)
    return draft(
        delivery_id=delivery.id,
        # The id the appointment goes by on the wire (an occurrence: its instance id).
        wire_id=delivery.instance_id or delivery.appointment_id,
        notification_type=delivery.notification_type,
        rule=rule,
        template=context.templates.get(rule.template_id) if rule.template_id else None,
        data=RenderData(
            appointment=appointment,
            calendar=calendar,
            location=people.location,
            contact=people.contacts.get(appointment.contact_id),
            user=people.users.get(appointment.assigned_user_id or ""),
            links=signer.links(appointment.id, appointment.contact_id, delivery.channel),
        ),
        recipient=Recipient(
            delivery.recipient_kind, resolved.address, resolved.user.id if resolved.user else ""
        ),
        allowed=context.allowed.get(delivery.location_id, NOTHING_ALLOWED),
        senders=senders,
        now=now,
        deleted=context.deleted.get(appointment.id, ()),
        wire=wire_of(delivery.channel),
    )
