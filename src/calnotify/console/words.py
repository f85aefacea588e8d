"""What the console calls things: rule fields, delivery statuses and reasons, in words."""

from __future__ import annotations

from calnotify.models.inbound import ReplyAction
from calnotify.models.notification import Channel, NotificationType, ReceiverType

CHANNELS = {
    Channel.EMAIL: "Email",
    Channel.SMS: "SMS",
    Channel.WHATSAPP: "WhatsApp",
    Channel.IN_APP: "In-app",
}
RECEIVERS = {
    ReceiverType.CONTACT: "Contact",
    ReceiverType.GUEST: "Guests",
    ReceiverType.ASSIGNED_USER: "Assigned user",
    ReceiverType.EMAILS: "Additional emails",
    ReceiverType.PHONE_NUMBERS: "Additional phone numbers",
    ReceiverType.BUSINESS: "Business (selected users)",
}
TRIGGERS = {
    NotificationType.BOOKED: "Booked",
    NotificationType.CONFIRMATION: "Confirmed",
    NotificationType.RESCHEDULE: "Rescheduled",
    NotificationType.CANCELLATION: "Cancelled",
    NotificationType.REMINDER: "Reminder (before the start)",
    NotificationType.FOLLOWUP: "Follow-up (after the end)",
}
UNITS = ("minutes", "hours", "days", "weeks")
# The form fields by the names their problems are filed under.
FIELDS = {
    "channel": "Channel",
    "receiverType": "Receiver",
    "notificationType": "Trigger",
    "subject": "Subject",
    "body": "Body",
    "schedule": "Schedule",
    "additionalEmails": "Additional emails",
    "additionalPhones": "Additional phone numbers",
    "selectedUsers": "Selected users",
    "templateId": "Template",
    "fromName": "From name",
    "fromAddress": "From address",
    "fromNumber": "From number",
    "isActive": "Active",
    "name": "Name",
    "type": "Type",
    "html": "HTML",
}

STATUSES = {
    "scheduled": "scheduled",
    "sending": "sending",
    "sent": "sent",
    "failed": "failed",
    "cancelled": "cancelled",
    "skipped": "skipped",
}
REASONS = {
    "late": "too late to send",
    "past": "booked after the appointment had started",
    "dnd": "do not disturb",
    "no_address": "no address to send to",
    "inactive": "rule inactive",
    "stale": "outdated by a later change",
    "restored": "may have gone out before the database was restored from a backup",
    "retrying": "retrying after an error",
    "permanent": "the provider refused it",
    "retries_exhausted": "gave up after the last retry",
    "deadline": "past its deadline",
    "render": "the template could not be rendered",
    "abandoned": "abandoned after a lost attempt",
    "error": "an unexpected error",
    "undelivered": "undelivered (reported by the provider)",
    "failed": "failed (reported by the provider)",
    "rescheduled": "the appointment was rescheduled",
    "superseded": "replaced by a newer plan",
    "appointment_new": "the appointment went back to new",
    "appointment_confirmed": "the appointment was confirmed",
    "appointment_cancelled": "the appointment was cancelled",
    "appointment_showed": "the contact showed",
    "appointment_noshow": "the contact did not show",
    "appointment_invalid": "the appointment was marked invalid",
    "appointment_restored": "the appointment was restored",
    "appointment_deleted": "the appointment was deleted",
    "calendar_changed": "the calendar changed",
    "calendar_deleted": "the calendar was deleted",
    "rule_changed": "the rule changed",
    "rule_deleted": "the rule was deleted",
    "rule_deactivated": "the rule was deactivated",
    "contact_deleted": "the contact was erased",
}
OUTCOMES = {
    "sent": "accepted by the provider",
    "retry": "failed, to be retried",
    "failed": "failed",
    "unknown": "lost (the provider may have it)",
}


def fate(status: str, reason: str) -> str:
    """``skipped: do not disturb``."""
    word = STATUSES.get(status, status)
    if not reason:
        return word
    return f"{word}: {REASONS.get(reason, reason.replace('_', ' '))}"


def schedule(entries: list[dict[str, object]], direction: str) -> str:
    """``1 hour before, 2 days before``."""
    return ", ".join(f"{_amount(e.get('timeOffset'), e.get('unit'))} {direction}" for e in entries)


def _amount(count: object, unit: object) -> str:
    """``1 minute``, ``2 minutes``: the unit singular for one."""
    word = str(unit)
    if str(count) in ("1", "1.0") and word.endswith("s"):
        word = word[:-1]
    return f"{count} {word}"


# What a reply by SMS or WhatsApp did (calnotify.replies).
REPLY_ACTIONS = {
    ReplyAction.CONFIRMED: "Confirmed the appointment",
    ReplyAction.OPTED_OUT: "Opted out: do not disturb on this channel",
    ReplyAction.OPTED_IN: "Opted back in on this channel",
    ReplyAction.HELP: "Asked for help: answered with the help text",
    ReplyAction.NONE: "Nothing (stored only)",
}


# What happened to an appointment (its events), and who did it (docs/semantics.md §8).
EVENT_KINDS = {
    "created": "Booked",
    "status_changed": "Status changed",
    "rescheduled": "Moved",
    "updated": "Details changed",
    "deleted": "Deleted",
}
_LINK_CHANNELS = {"email": "email", "sms": "SMS", "whatsapp": "WhatsApp", "inApp": "in-app"}


def change_source(source: str, channel: str) -> str:
    """``by the contact, from the email link`` / ``by a reply by SMS`` / ``through the API``."""
    if source != "contact":
        return "through the API"
    shown = _LINK_CHANNELS.get(channel, channel)
    return f"by the contact, from the {shown} link" if channel else "by the contact"
