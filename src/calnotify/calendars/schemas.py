"""Wire shapes of HighLevel's CalendarCreateDTO / CalendarDTO (the fields calnotify uses,
plus the spec's other fields, stored and echoed back)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from calnotify.api.types import (
    MAX_LIST,
    Bool,
    InputModel,
    LongText,
    Number,
    OutputModel,
    Short,
    Text,
)

# CalendarDTO fields calnotify does not interpret but keeps for the client.
ECHOED_FIELDS = (
    "groupId",
    "eventType",
    "slug",
    "widgetSlug",
    "widgetType",
    "eventTitle",
    "eventColor",
    "meetingLocation",
    "enableRecurring",
    "formId",
    "stickyContact",
    "isLivePaymentMode",
    "shouldSendAlertEmailsToAssignedMember",
    "alertEmail",
    "googleInvitationEmails",
    "shouldAssignContactToTeamMember",
    "shouldSkipAssigningContactForExisting",
    "notes",
    "pixelId",
    "formSubmitType",
    "formSubmitRedirectURL",
    "formSubmitThanksMessage",
    "availabilityType",
    "guestType",
    "consentLabel",
    "calendarCoverImage",
)
MAX_ECHOED_JSON_BYTES = 16 * 1024


class TeamMemberIn(InputModel):
    user_id: Text
    priority: Number | None = None
    is_primary: Bool | None = None
    meeting_location_type: Text | None = None
    meeting_location: Text | None = None


class HourIn(InputModel):
    """HighLevel's ``Hour``: one opening, from ``openHour:openMinute`` to
    ``closeHour:closeMinute`` (wall-clock time in the location's zone)."""

    open_hour: Number
    open_minute: Number
    close_hour: Number
    close_minute: Number


class OpenHourIn(InputModel):
    """HighLevel's ``OpenHour``: openings on some days of the week (0 = Sunday … 6)."""

    days_of_the_week: Annotated[list[Number], Field(max_length=MAX_LIST)]
    hours: Annotated[list[HourIn], Field(max_length=MAX_LIST)]


class CalendarFieldsIn(InputModel):
    model_config = ConfigDict(extra="allow")

    name: Short | None = None
    description: LongText | None = Field(default=None, max_length=64 * 1024)
    calendar_type: Annotated[Text, Field(max_length=32)] | None = None
    team_members: Annotated[list[TeamMemberIn], Field(max_length=MAX_LIST)] | None = None
    slot_duration: Number | None = None
    slot_duration_unit: Text | None = None
    is_active: Bool | None = None
    auto_confirm: Bool | None = None
    # Availability (docs/semantics.md §8), checked by calendars/availability.py.
    open_hours: Annotated[list[OpenHourIn], Field(max_length=MAX_LIST)] | None = None
    slot_interval: Number | None = None
    slot_interval_unit: Text | None = None
    slot_buffer: Number | None = None
    slot_buffer_unit: Text | None = None
    pre_buffer: Number | None = None
    pre_buffer_unit: Text | None = None
    appoinment_per_slot: Number | None = None  # sic: HighLevel's spelling
    appoinment_per_day: Number | None = None
    allow_booking_after: Number | None = None
    allow_booking_after_unit: Text | None = None
    allow_booking_for: Number | None = None
    allow_booking_for_unit: Text | None = None
    allow_reschedule: Bool | None = None
    allow_cancellation: Bool | None = None

    def echoed(self) -> dict[str, Any]:
        extra = self.model_extra or {}
        return {k: extra[k] for k in ECHOED_FIELDS if extra.get(k) is not None}


class CalendarCreate(CalendarFieldsIn):
    location_id: Text
    name: Short


class CalendarUpdate(CalendarFieldsIn):
    pass


class TeamMemberOut(OutputModel):
    user_id: str
    priority: float | int = 0.5
    is_primary: bool = False
    meeting_location_type: str | None = None
    meeting_location: str | None = None


class HourOut(OutputModel):
    open_hour: int
    open_minute: int
    close_hour: int
    close_minute: int


class OpenHourOut(OutputModel):
    days_of_the_week: list[int]
    hours: list[HourOut]


class CalendarOut(OutputModel):
    model_config = ConfigDict(extra="allow")

    id: str
    location_id: str
    name: str
    description: str
    calendar_type: str
    team_members: list[TeamMemberOut]
    slot_duration: float | int
    slot_duration_unit: str
    is_active: bool
    auto_confirm: bool
    open_hours: list[OpenHourOut]
    slot_interval: float | int
    slot_interval_unit: str
    slot_buffer: float | int
    slot_buffer_unit: str
    pre_buffer: float | int
    pre_buffer_unit: str
    appoinment_per_slot: int
    appoinment_per_day: int
    allow_booking_after: float | int
    allow_booking_after_unit: str
    allow_booking_for: float | int
    allow_booking_for_unit: str
    allow_reschedule: bool
    allow_cancellation: bool


class CalendarEnvelope(BaseModel):
    calendar: CalendarOut


class CalendarsEnvelope(BaseModel):
    calendars: list[CalendarOut]


class CalendarDeleted(BaseModel):
    success: bool = True
