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
    "slotInterval",
    "slotIntervalUnit",
    "slotBuffer",
    "slotBufferUnit",
    "preBuffer",
    "preBufferUnit",
    "appoinmentPerSlot",
    "appoinmentPerDay",
    "allowBookingAfter",
    "allowBookingAfterUnit",
    "allowBookingFor",
    "allowBookingForUnit",
    "enableRecurring",
    "formId",
    "stickyContact",
    "isLivePaymentMode",
    "shouldSendAlertEmailsToAssignedMember",
    "alertEmail",
    "googleInvitationEmails",
    "allowReschedule",
    "allowCancellation",
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


class CalendarEnvelope(BaseModel):
    calendar: CalendarOut


class CalendarsEnvelope(BaseModel):
    calendars: list[CalendarOut]


class CalendarDeleted(BaseModel):
    success: bool = True
