"""A plan preview's messages: each planned delivery composed as the dispatcher composes it
(:func:`calnotify.compose.draft.draft`, :func:`calnotify.compose.compose.compose`), within
the preview's time and size bounds (see :mod:`calnotify.notifications.preview`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from calnotify.actions.links import preview_links
from calnotify.appointments import series
from calnotify.channels.base import Message
from calnotify.channels.senders import AllowedSenders, SenderSettings
from calnotify.compose.draft import Recipient, draft, recipient_zone
from calnotify.compose.pool import ComposePool
from calnotify.models.delivery import RecipientKind
from calnotify.models.notification import Channel, NotificationType, ReceiverType
from calnotify.notifications.schemas import PreviewDeliveryOut, PreviewRecipientOut
from calnotify.planning.planner import Wanted
from calnotify.planning.recipients import People, Resolved
from calnotify.templates.render import RenderData, RenderError, full_name
from calnotify.timefmt import show_local

log = logging.getLogger("calnotify.preview")

# Rendered subject + text + html over every delivery shown: a hostile template can write
# 256 KiB per message, and a preview must not answer with hundreds of megabytes.
MAX_CONTENT_CHARS = 2 * 1024 * 1024
OUT_OF_TIME = "not rendered: this preview used up its rendering time"
OUT_OF_ROOM = f"not shown: this preview's messages are over {MAX_CONTENT_CHARS} characters"

_RECIPIENT_KINDS = {
    RecipientKind.CONTACT: "contact",
    RecipientKind.GUEST: "guest",
    RecipientKind.USER: "user",
    RecipientKind.ADDRESS: "additional",
    RecipientKind.LOCATION: "location",
}


@dataclass(frozen=True, slots=True)
class Planned:
    """One wanted delivery, with the appointment it is for and how it is planned."""

    wanted: Wanted
    appointment: Any
    resolved: Resolved
    skip: str | None


@dataclass(frozen=True, slots=True)
class Sources:
    """What the messages of one preview are composed from."""

    calendar: Any
    people: People
    templates: dict[str, tuple[str, str]]
    allowed: AllowedSenders
    # An inline or sample contact: its id is made up, and not shown.
    unsaved_contact: Any


class Renderer:
    """Composes the planned deliveries of one preview: each distinct message once
    (recipients of one rule, zone and audience share it), within the preview's time and
    size bounds."""

    def __init__(
        self,
        sources: Sources,
        pool: ComposePool,
        senders: SenderSettings,
        now: datetime,
        public_url: str = "",
    ) -> None:
        self.sources = sources
        self.pool = pool
        self.senders = senders
        self.links = preview_links(public_url)
        self.now = now
        self.cache: dict[tuple[str, int, str, str], Message | str] = {}
        self.failed: dict[str, str] = {}  # rule id → its render error
        self.content = 0

    async def all(self, planned: Sequence[Planned]) -> list[PreviewDeliveryOut]:
        # Composing starts within one budget of the first: with the last one's own budget,
        # a preview composes for at most two budgets, whatever its templates.
        start_before = time.monotonic() + self.pool.budget_seconds
        return [await self.one(item, start_before) for item in planned]

    async def one(self, item: Planned, start_before: float) -> PreviewDeliveryOut:
        rule, appointment = item.wanted.notification, item.appointment
        people = self.sources.people
        contact = people.contacts.get(appointment.contact_id)
        where = recipient_zone(item.wanted.recipient.kind, contact, people.location)
        key = (rule.id, id(appointment), where.key, item.resolved.address)
        outcome = self.cache.get(key)
        if outcome is None:
            outcome = await self._compose(item, start_before)
            self.cache[key] = outcome

        subject = text = html = error = None
        if isinstance(outcome, str):
            error = outcome
        else:
            size = len(outcome.subject) + len(outcome.body) + len(outcome.html)
            if self.content + size > MAX_CONTENT_CHARS:
                error = OUT_OF_ROOM
            else:
                self.content += size
                if rule.channel in (Channel.EMAIL, Channel.IN_APP):
                    subject = outcome.subject
                text = outcome.body
                if rule.channel == Channel.EMAIL:
                    html = outcome.html
        return PreviewDeliveryOut(
            notification_id=rule.id,
            notification_type=NotificationType(rule.notification_type),
            channel=Channel(rule.channel),
            receiver_type=ReceiverType(rule.receiver_type),
            recipient=self._recipient(item, contact),
            due_at=item.wanted.due_at,
            due_at_local=show_local(item.wanted.due_at, where),
            status="skipped" if item.skip else "planned",
            skip_reason=item.skip or None,
            subject=subject,
            text=text,
            html=html,
            render_error=error,
            instance_id=series.wire_id(appointment) if appointment.master_id else None,
        )

    async def _compose(self, item: Planned, start_before: float) -> Message | str:
        rule, appointment = item.wanted.notification, item.appointment
        if rule.id in self.failed:
            return self.failed[rule.id]
        if time.monotonic() > start_before:
            return OUT_OF_TIME
        sources = self.sources
        people = sources.people
        template = sources.templates.get(rule.template_id) if rule.template_id else None
        user = item.resolved.user
        message = draft(
            delivery_id="preview",
            wire_id=series.wire_id(appointment),
            notification_type=rule.notification_type,
            rule=rule,
            template=template,
            data=RenderData(
                appointment=appointment,
                calendar=sources.calendar,
                location=people.location,
                contact=people.contacts.get(appointment.contact_id),
                user=people.users.get(appointment.assigned_user_id or ""),
                links=self.links,
            ),
            recipient=Recipient(
                item.wanted.recipient.kind, item.resolved.address, user.id if user else ""
            ),
            allowed=sources.allowed,
            senders=self.senders,
            now=self.now,
        )
        try:
            return (await self.pool.compose(people.location.id, message)).message
        except RenderError as exc:
            # A template that hit a limit or its budget would hit it again for the rule's
            # next message (and spend its whole budget on it): its error stands for them.
            self.failed[rule.id] = str(exc)
            return str(exc)
        except Exception as exc:  # a fault in composing one message is that message's own
            log.exception("preview: cannot compose rule %s", rule.id)
            return f"cannot render: {type(exc).__name__}"

    def _recipient(self, item: Planned, contact: Any) -> PreviewRecipientOut:
        ref = item.wanted.recipient
        people = self.sources.people
        name, found_id = "", None
        if ref.kind == RecipientKind.CONTACT and contact is not None:
            name = full_name(contact)
            found_id = None if contact is self.sources.unsaved_contact else contact.id
        elif ref.kind == RecipientKind.USER:
            user = people.users.get(ref.ref)
            name, found_id = (full_name(user) if user else ""), ref.ref or None
        elif ref.kind == RecipientKind.GUEST:
            name = _guest_name(item.appointment.guests or [], ref.ref)
        elif ref.kind == RecipientKind.LOCATION:
            name, found_id = people.location.name, people.location.id
        return PreviewRecipientOut(
            kind=_RECIPIENT_KINDS[RecipientKind(ref.kind)],
            id=found_id,
            name=name,
            address=item.resolved.address,
        )


def _guest_name(guests: Sequence[dict[str, Any]], ref: str) -> str:
    """The name of the guest a recipient reference points at (its email, or ``#i``)."""
    for i, guest in enumerate(guests):
        if ref in (str(guest.get("email") or ""), f"#{i}"):
            return str(guest.get("name") or "")
    return ""
