"""Wire shapes of HighLevel's CreateCalendarNotificationDTO, UpdateCalendarNotificationsDTO
and CalendarNotificationResponseDTO, and of calnotify's extensions (planning progress, plan
preview)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from calnotify.api.types import (
    MAX_LIST,
    Bool,
    InputModel,
    LongText,
    Number,
    OutputModel,
    Text,
    Timestamp,
)
from calnotify.appointments.schemas import MAX_GUESTS, GuestIn, Status
from calnotify.contacts.schemas import ContactFieldsIn
from calnotify.models.notification import Channel, NotificationType, ReceiverType

TextList = Annotated[list[Text], Field(max_length=MAX_LIST)]


class ScheduleIn(InputModel):
    """One ``beforeTime``/``afterTime`` entry, e.g. ``{"timeOffset": 1, "unit": "hours"}``."""

    time_offset: Number | None = None
    unit: Text | None = None


ScheduleList = Annotated[list[ScheduleIn], Field(max_length=MAX_LIST)]


class NotificationFieldsIn(InputModel):
    """The fields create and update share. Every one is optional on update."""

    receiver_type: ReceiverType | None = Field(
        default=None, description="Notification recipient type"
    )
    channel: Channel | None = Field(default=None, description="Notification channel")
    notification_type: NotificationType | None = Field(
        default=None, description="Notification type"
    )
    is_active: Bool | None = Field(
        default=None, description="Is the notification active (default true)"
    )
    template_id: Text | None = Field(default=None, description="Stored template of this location")
    body: LongText | None = Field(default=None, description="Message body (Liquid, merge fields)")
    subject: Text | None = Field(default=None, description="Email subject (Liquid, merge fields)")
    after_time: ScheduleList | None = Field(
        default=None, description="Follow-up offsets after the end"
    )
    before_time: ScheduleList | None = Field(
        default=None, description="Reminder offsets before the start"
    )
    additional_email_ids: TextList | None = None
    additional_phone_numbers: TextList | None = None
    selected_users: TextList | None = Field(
        default=None, description='User ids of the location, or "sub_account_admin"'
    )
    from_address: Text | None = None
    from_name: Text | None = None
    from_number: Text | None = None


class NotificationCreate(NotificationFieldsIn):
    receiver_type: ReceiverType = Field(description="Notification recipient type")
    channel: Channel = Field(description="Notification channel")
    notification_type: NotificationType = Field(description="Notification type")


class NotificationUpdate(NotificationFieldsIn):
    deleted: Bool | None = Field(
        default=None, description="Soft-deletes (true) or restores (false)"
    )


class ScheduleOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    timeOffset: float | int | None = None
    unit: str | None = None


class NotificationOut(OutputModel):
    id: str = Field(alias="_id", description="Notification ID")
    receiver_type: ReceiverType
    additional_email_ids: list[str]
    additional_phone_numbers: list[str]
    channel: Channel
    notification_type: NotificationType
    is_active: bool
    additional_whatsapp_numbers: list[str]
    template_id: str
    body: str
    subject: str
    after_time: list[ScheduleOut]
    before_time: list[ScheduleOut]
    selected_users: list[str]
    deleted: bool
    calendar_id: str
    location_id: str
    from_address: str
    from_name: str
    from_number: str
    date_added: Timestamp
    date_updated: Timestamp


class MessageOut(BaseModel):
    message: str


class PlanningJobOut(OutputModel):
    id: str
    kind: str = Field(description="rule: re-planning this rule over its calendar")
    status: str = Field(description="pending, done, or superseded (a newer change took over)")
    pages: int = Field(description="pages of appointments (or deliveries) done so far")
    items: int = Field(description="appointments (or deliveries) done so far")
    created_at: Timestamp
    updated_at: Timestamp
    finished_at: Timestamp | None


class PlanningOut(OutputModel):
    """Whether every pending delivery of a rule reflects its latest change (a calnotify
    extension: re-planning a big calendar runs in the background, docs/engine.md)."""

    notification_id: str
    state: str = Field(description="planned, or planning while a job is under way")
    version: int
    planned_version: int
    jobs: list[PlanningJobOut] = Field(description="the latest planning jobs, newest first")


# --- plan preview (a calnotify extension) ---------------------------------------------------

MAX_PREVIEW_RULES = 50

PreviewEvent = Literal["booked", "rescheduled", "cancelled", "confirmed"]


class PreviewContactIn(ContactFieldsIn):
    """A contact described inline (any field of a contact create, none required)."""

    model_config = ConfigDict(extra="ignore")


class PreviewRequest(InputModel):
    """What to preview: a hypothetical appointment of the calendar (``startTime``,
    ``endTime`` and the rest) or a stored one (``appointmentId``), under the calendar's
    active rules or under draft ``notifications``."""

    start_time: Text | None = Field(
        default=None, description="ISO 8601 (any offset); required without appointmentId"
    )
    end_time: Text | None = Field(
        default=None, description="ISO 8601, after startTime; required without appointmentId"
    )
    contact_id: Text | None = Field(default=None, description="A contact of this location")
    contact: PreviewContactIn | None = Field(
        default=None, description="A contact described inline, instead of contactId"
    )
    assigned_user_id: Text | None = Field(
        default=None, description="A user of this location; default the calendar's primary one"
    )
    appointment_status: Status | None = Field(default=None, description="Default new")
    title: Text | None = None
    address: Text | None = None
    notes: LongText | None = Field(default=None, max_length=64 * 1024)
    guests: Annotated[list[GuestIn], Field(max_length=MAX_GUESTS)] | None = None
    rrule: Text | None = Field(default=None, description="RRULE: a recurring series")
    appointment_id: Text | None = Field(
        default=None,
        description="A stored appointment of this calendar (an id, a master or instance id), "
        "instead of the fields that describe one",
    )
    event: PreviewEvent | None = Field(
        default=None, description="What happens to the appointment (default booked)"
    )
    notifications: (
        Annotated[list[NotificationCreate], Field(max_length=MAX_PREVIEW_RULES)] | None
    ) = Field(
        default=None,
        description="Draft rules (as a create takes them) to preview instead of the "
        "calendar's active rules",
    )


class PreviewRecipientOut(OutputModel):
    kind: str = Field(
        description="contact, guest, user, additional (an address the rule lists) or location"
    )
    id: str | None = Field(description="The contact's, user's or location's id")
    name: str
    address: str = Field(description="Email address, phone number, or user id for inApp")


class PreviewDeliveryOut(OutputModel):
    notification_id: str = Field(description='The rule\'s id; "draft-<i>" for draft rule i')
    notification_type: NotificationType
    channel: Channel
    receiver_type: ReceiverType
    recipient: PreviewRecipientOut
    due_at: Timestamp
    due_at_local: str = Field(description="The due time in the zone the message is shown in")
    status: Literal["planned", "skipped"]
    skip_reason: str | None = Field(description="late, past, dnd or no_address when skipped")
    subject: str | None = Field(description="Email subject or inApp title")
    text: str | None
    html: str | None = Field(description="Email only")
    render_error: str | None = Field(description="Why the message could not be rendered")
    instance_id: str | None = Field(description="The occurrence of a recurring series")


class PreviewOut(OutputModel):
    """The deliveries an appointment would get, by due time (nothing is stored or sent)."""

    deliveries: list[PreviewDeliveryOut]
    truncated: bool = Field(description="More deliveries would be planned than are shown")


# --- rule impact (a calnotify extension) ----------------------------------------------------


class ImpactChangeOut(OutputModel):
    """One pending send that saving would change."""

    appointment_id: str = Field(description="The appointment (an occurrence's instance id)")
    recipient: str = Field(description="The address (hidden without the scope to read it)")
    old_due_at: Timestamp | None = Field(description="When it is due now (null: newly planned)")
    new_due_at: Timestamp | None = Field(description="When it would be due (null: cancelled)")


class ImpactGroupOut(OutputModel):
    count: int = Field(description="How many (see complete)")
    first: list[ImpactChangeOut] = Field(description="The first 20, by appointment start")


class ImpactOut(OutputModel):
    """What saving would do to pending sends; nothing is stored (docs/api.md "Rule impact")."""

    cancelled: ImpactGroupOut
    retimed: ImpactGroupOut
    planned: ImpactGroupOut
    complete: bool = Field(description="Whether every appointment to re-plan was looked at")
    checked_until: Timestamp | None = Field(
        description="Not complete: the counts are of the appointments starting up to this"
    )
    pending_of_rule: int = Field(
        description="The rule's pending reminders or follow-ups now, over the whole calendar"
    )
