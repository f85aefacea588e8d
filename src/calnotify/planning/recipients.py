"""Who a notification goes to (docs/semantics.md §4), and their address for a channel.

Planning records *how* to find each recipient (:class:`RecipientKind` + a reference); the
address itself is looked up again when the message is sent, so a contact who fixes their
email before a reminder is due gets it at the new address, and one who turns on DND in
the meantime gets nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from calnotify.deliveries.lifecycle import Reason
from calnotify.models import Appointment, Contact, Location, Notification, User
from calnotify.models.delivery import RecipientKind
from calnotify.models.notification import Channel, ReceiverType
from calnotify.models.user import UserRole
from calnotify.notifications.rules import SUB_ACCOUNT_ADMIN

# dndSettings key for a channel.
DND_KEY = {"email": "Email", "sms": "SMS", "whatsapp": "WhatsApp"}
DND_ON = ("active", "permanent")


@dataclass(frozen=True, slots=True)
class RecipientRef:
    kind: RecipientKind
    ref: str = ""

    @property
    def identity(self) -> str:
        return f"{self.kind.value}:{self.ref}"


@dataclass(frozen=True, slots=True)
class Resolved:
    address: str
    skip: Reason | None = None
    user: User | None = None


@dataclass
class People:
    """The rows recipients are resolved from, for one location."""

    location: Location
    users: dict[str, User]  # the location's users that are not deleted
    contacts: dict[str, Contact]

    def admins(self) -> list[User]:
        return [u for u in self.users.values() if u.role == UserRole.ADMIN]


def recipients(
    notification: Notification, appointment: Appointment, people: People
) -> list[RecipientRef]:
    """Every recipient of ``notification`` for ``appointment``, each once."""
    receiver = notification.receiver_type
    channel = notification.channel
    refs: list[RecipientRef] = []
    if receiver == ReceiverType.CONTACT:
        refs.append(RecipientRef(RecipientKind.CONTACT))
    elif receiver == ReceiverType.GUEST:
        for i, guest in enumerate(appointment.guests or []):
            email = str(guest.get("email") or "")
            refs.append(RecipientRef(RecipientKind.GUEST, email or f"#{i}"))
    elif receiver == ReceiverType.ASSIGNED_USER:
        refs.append(RecipientRef(RecipientKind.USER, appointment.assigned_user_id or ""))
    elif receiver == ReceiverType.EMAILS:
        refs.extend(
            RecipientRef(RecipientKind.ADDRESS, a) for a in notification.additional_email_ids
        )
    elif receiver == ReceiverType.PHONE_NUMBERS:
        refs.extend(
            RecipientRef(RecipientKind.ADDRESS, n) for n in notification.additional_phone_numbers
        )
    elif receiver == ReceiverType.BUSINESS:
        user_ids: list[str] = []
        for selected in notification.selected_users:
            if selected == SUB_ACCOUNT_ADMIN:
                user_ids.extend(u.id for u in sorted(people.admins(), key=lambda u: u.id))
            else:
                user_ids.append(selected)
        refs.extend(RecipientRef(RecipientKind.USER, uid) for uid in user_ids)
        if not notification.selected_users and channel == Channel.EMAIL:
            refs.append(RecipientRef(RecipientKind.LOCATION))
    return list(dict.fromkeys(refs))


def resolve(ref: RecipientRef, channel: str, appointment: Appointment, people: People) -> Resolved:
    """The address of a recipient for a channel now, or why there is none."""
    if ref.kind == RecipientKind.CONTACT:
        contact = people.contacts.get(appointment.contact_id)
        if contact is None or contact.deleted:
            return Resolved("", Reason.NO_ADDRESS)
        address = contact.email if channel == Channel.EMAIL else contact.phone
        if not address:
            return Resolved("", Reason.NO_ADDRESS)
        if contact_dnd(contact, channel):
            return Resolved(address, Reason.DND)
        return Resolved(address)
    if ref.kind == RecipientKind.USER:
        user = people.users.get(ref.ref)
        if user is None:
            return Resolved("", Reason.NO_ADDRESS)
        if channel == Channel.IN_APP:
            return Resolved(user.id, user=user)
        address = user.email if channel == Channel.EMAIL else user.phone
        return Resolved(address, None if address else Reason.NO_ADDRESS, user=user)
    if ref.kind == RecipientKind.GUEST:
        if ref.ref.startswith("#"):
            return Resolved("", Reason.NO_ADDRESS)
        return Resolved(ref.ref)
    if ref.kind == RecipientKind.LOCATION:
        email = people.location.email
        return Resolved(email, None if email else Reason.NO_ADDRESS)
    return Resolved(ref.ref, None if ref.ref else Reason.NO_ADDRESS)


def contact_dnd(contact: Contact, channel: str) -> bool:
    return dnd_on(contact.dnd, contact.dnd_settings, channel)


def dnd_on(dnd: bool, settings: dict[str, Any] | None, channel: str) -> bool:
    """Whether a contact's DND (all channels, or ``dndSettings`` per channel) stops ``channel``."""
    if dnd:
        return True
    entry = (settings or {}).get(DND_KEY.get(channel, ""))
    return isinstance(entry, dict) and entry.get("status") in DND_ON
