"""The validation rules of a calendar notification (docs/semantics.md §2).

``draft_problems`` checks one complete rule on its own; ``NotificationRules`` adds the
checks that need the database (selected users, templates). Every problem names its
field, prefixed with the item index for a POST array (``[2].channel``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace
from typing import Any

from calnotify.api.validators import email_problem, phone_problem
from calnotify.channels.addresses import AddressError, normalise_number
from calnotify.errors import FieldError
from calnotify.models.notification import Channel, NotificationType, ReceiverType
from calnotify.templates.liquid import template_errors

SUB_ACCOUNT_ADMIN = "sub_account_admin"

RECEIVERS_BY_CHANNEL: dict[Channel, tuple[ReceiverType, ...]] = {
    Channel.EMAIL: (
        ReceiverType.CONTACT,
        ReceiverType.GUEST,
        ReceiverType.ASSIGNED_USER,
        ReceiverType.EMAILS,
        ReceiverType.BUSINESS,
    ),
    Channel.SMS: (ReceiverType.CONTACT, ReceiverType.ASSIGNED_USER, ReceiverType.PHONE_NUMBERS),
    Channel.WHATSAPP: (
        ReceiverType.CONTACT,
        ReceiverType.ASSIGNED_USER,
        ReceiverType.PHONE_NUMBERS,
    ),
    Channel.IN_APP: (ReceiverType.ASSIGNED_USER, ReceiverType.BUSINESS),
}

# Template ``type`` a channel can use.
TEMPLATE_TYPE_BY_CHANNEL: dict[Channel, str] = {
    Channel.EMAIL: "email",
    Channel.SMS: "sms",
    Channel.WHATSAPP: "whatsapp",
}

SECONDS_PER_UNIT: dict[str, int] = {
    "minutes": 60,
    "minute": 60,
    "mins": 60,
    "hours": 3600,
    "hour": 3600,
    "days": 86400,
    "day": 86400,
    "weeks": 604800,
    "week": 604800,
}
MAX_OFFSET_SECONDS = 365 * 86400
MAX_SCHEDULE_ENTRIES = 10
MAX_SUBJECT_CHARS = 255
MAX_BODY_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class NotificationDraft:
    """A complete notification rule as it would be stored (snake_case, no nulls)."""

    receiver_type: ReceiverType
    channel: Channel
    notification_type: NotificationType
    is_active: bool = True
    deleted: bool = False
    template_id: str = ""
    body: str = ""
    subject: str = ""
    after_time: list[dict[str, Any]] = field(default_factory=list)
    before_time: list[dict[str, Any]] = field(default_factory=list)
    additional_email_ids: list[str] = field(default_factory=list)
    additional_phone_numbers: list[str] = field(default_factory=list)
    selected_users: list[str] = field(default_factory=list)
    from_address: str = ""
    from_name: str = ""
    from_number: str = ""

    @classmethod
    def from_row(cls, row: Any) -> NotificationDraft:
        values = {f.name: getattr(row, f.name) for f in fields(cls)}
        values["receiver_type"] = ReceiverType(row.receiver_type)
        values["channel"] = Channel(row.channel)
        values["notification_type"] = NotificationType(row.notification_type)
        return cls(**values)

    def merged(self, changes: dict[str, Any]) -> NotificationDraft:
        return replace(self, **{k: v for k, v in changes.items() if k in DRAFT_FIELDS})

    def as_columns(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in DRAFT_FIELDS}


DRAFT_FIELDS = tuple(f.name for f in fields(NotificationDraft))


def schedule_entries(entries: Iterable[Any]) -> list[dict[str, Any]]:
    """Wire entries → stored dicts, keeping integral offsets integral (1, not 1.0)."""
    stored: list[dict[str, Any]] = []
    for entry in entries:
        offset = entry.time_offset
        if isinstance(offset, float) and offset.is_integer():
            offset = int(offset)
        stored.append({"timeOffset": offset, "unit": entry.unit})
    return stored


def offset_seconds(entry: dict[str, Any]) -> float:
    """An entry's offset as an absolute duration (a day is 24 hours)."""
    return float(entry["timeOffset"]) * SECONDS_PER_UNIT[entry["unit"]]


def draft_problems(draft: NotificationDraft, prefix: str = "") -> list[FieldError]:
    """Every rule of docs/semantics.md §2 that one draft breaks, without looking at the database."""
    errors: list[FieldError] = []

    def add(name: str, message: str) -> None:
        errors.append(FieldError(prefix + name, message))

    allowed = RECEIVERS_BY_CHANNEL[draft.channel]
    if draft.receiver_type not in allowed:
        add(
            "receiverType",
            f"{draft.receiver_type.value} cannot receive {draft.channel.value} notifications; "
            f"{draft.channel.value} goes to {', '.join(r.value for r in allowed)}",
        )

    if draft.receiver_type is ReceiverType.EMAILS and not draft.additional_email_ids:
        add("additionalEmailIds", "needs at least one address when receiverType is emails")
    for i, address in enumerate(draft.additional_email_ids):
        if problem := email_problem(address):
            add(f"additionalEmailIds[{i}]", problem)

    if draft.receiver_type is ReceiverType.PHONE_NUMBERS and not draft.additional_phone_numbers:
        add("additionalPhoneNumbers", "needs at least one number when receiverType is phoneNumbers")
    for i, number in enumerate(draft.additional_phone_numbers):
        if problem := phone_problem(number):
            add(f"additionalPhoneNumbers[{i}]", problem)

    if (
        draft.receiver_type is ReceiverType.BUSINESS
        and draft.channel is Channel.IN_APP
        and not draft.selected_users
    ):
        add("selectedUsers", "needs at least one user for business inApp notifications")

    if draft.notification_type is NotificationType.REMINDER:
        errors.extend(_schedule_problems(draft.before_time, prefix + "beforeTime", "reminder"))
    if draft.notification_type is NotificationType.FOLLOWUP:
        errors.extend(_schedule_problems(draft.after_time, prefix + "afterTime", "followup"))

    if draft.from_address and (problem := email_problem(draft.from_address)):
        add("fromAddress", problem)
    if draft.template_id and draft.channel is Channel.IN_APP:
        add("templateId", "inApp notifications cannot use a stored template")

    if len(draft.subject) > MAX_SUBJECT_CHARS:
        add("subject", f"must be at most {MAX_SUBJECT_CHARS} characters")
    if "\r" in draft.subject or "\n" in draft.subject:
        add("subject", "must not contain line breaks")
    if len(draft.body.encode("utf-8")) > MAX_BODY_BYTES:
        add("body", f"must be at most {MAX_BODY_BYTES} bytes")
    else:
        errors.extend(template_errors(prefix + "body", draft.body))
    errors.extend(template_errors(prefix + "subject", draft.subject))
    return errors


def with_sender_number(
    draft: NotificationDraft, country: str, prefix: str = ""
) -> tuple[NotificationDraft, list[FieldError]]:
    """The draft with its ``fromNumber`` in E.164, as any common form of it is read in the
    location's ``country`` (``1-415-555-0100`` in the US), or the problem with it."""
    if not draft.from_number:
        return draft, []
    try:
        return replace(draft, from_number=normalise_number(draft.from_number, country)), []
    except AddressError as exc:
        return draft, [FieldError(prefix + "fromNumber", str(exc))]


def _schedule_problems(entries: list[dict[str, Any]], name: str, kind: str) -> list[FieldError]:
    if not entries:
        return [FieldError(name, f"needs at least one entry for a {kind} notification")]
    if len(entries) > MAX_SCHEDULE_ENTRIES:
        return [FieldError(name, f"must have at most {MAX_SCHEDULE_ENTRIES} entries")]
    errors: list[FieldError] = []
    for i, entry in enumerate(entries):
        offset, unit = entry.get("timeOffset"), entry.get("unit")
        where = f"{name}[{i}]"
        if offset is None:
            errors.append(FieldError(f"{where}.timeOffset", "is required"))
        elif offset < 0:
            errors.append(FieldError(f"{where}.timeOffset", "must be 0 or more"))
        if unit is None:
            errors.append(FieldError(f"{where}.unit", "is required"))
        elif unit not in SECONDS_PER_UNIT:
            errors.append(FieldError(f"{where}.unit", "must be one of minutes, hours, days, weeks"))
        if (
            offset is not None
            and offset >= 0
            and unit in SECONDS_PER_UNIT
            and offset_seconds(entry) > MAX_OFFSET_SECONDS
        ):
            errors.append(FieldError(f"{where}.timeOffset", "must be at most 365 days"))
    return errors
