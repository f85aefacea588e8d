"""Wire shapes of HighLevel's AppointmentCreateSchema / AppointmentEditSchema and the
appointment answers (AppointmentSchemaResponse, CalendarEventDTO)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from calnotify.api.types import Bool, InputModel, LongText, Text, Timestamp

Status = Literal["new", "confirmed", "cancelled", "showed", "noshow", "invalid"]
MeetingLocationType = Literal[
    "custom", "zoom", "gmeet", "phone", "address", "ms_teams", "google", "default"
]
MAX_GUESTS = 50


class GuestIn(InputModel):
    """A guest of the appointment (calnotify extension, docs/semantics.md §4)."""

    email: Text | None = None
    name: Text | None = None
    phone: Text | None = None


class AppointmentFieldsIn(InputModel):
    title: Text | None = None
    meeting_location_type: MeetingLocationType | None = None
    appointment_status: Status | None = None
    assigned_user_id: Text | None = None
    description: LongText | None = Field(default=None, max_length=64 * 1024)
    notes: LongText | None = Field(default=None, max_length=64 * 1024)
    address: Text | None = None
    to_notify: Bool | None = Field(
        default=None, description="false: send no immediate notification for this request"
    )
    rrule: Text | None = None
    calendar_id: Text | None = None
    start_time: Text | None = Field(default=None, description="ISO 8601, any offset")
    end_time: Text | None = Field(
        default=None, description="ISO 8601; default start + the calendar's slot duration"
    )
    guests: Annotated[list[GuestIn], Field(max_length=MAX_GUESTS)] | None = None
    ignore_free_slot_validation: Bool | None = Field(
        default=None,
        description="true: book or move the appointment even where the calendar's "
        "availability has no free slot",
    )


class AppointmentCreate(AppointmentFieldsIn):
    calendar_id: Text
    location_id: Text
    contact_id: Text
    start_time: Text
    notify_past: Bool | None = Field(
        default=None,
        description="calnotify extension: true sends the booked or confirmation message even "
        "when the appointment has already started (by default it is recorded skipped, past)",
    )


class AppointmentUpdate(AppointmentFieldsIn):
    pass


class GuestOut(BaseModel):
    email: str = ""
    name: str = ""
    phone: str = ""


class AppointmentOut(BaseModel):
    """HighLevel's AppointmentSchemaResponse (create/edit answers), plus calnotify's fields."""

    id: str
    calendarId: str
    locationId: str
    contactId: str
    startTime: str
    endTime: str
    title: str
    meetingLocationType: str
    appointmentStatus: str
    assignedUserId: str
    address: str
    isRecurring: bool
    rrule: str
    description: str
    notes: str
    toNotify: bool
    guests: list[GuestOut]
    dateAdded: Timestamp
    dateUpdated: Timestamp


class EventOut(AppointmentOut):
    """HighLevel's CalendarEventDTO."""

    groupId: str = ""
    users: list[str] = Field(default_factory=list)
    masterEventId: str = ""


class EventEnvelope(BaseModel):
    event: EventOut


class EventsEnvelope(BaseModel):
    events: list[EventOut]


class Succeeded(BaseModel):
    succeeded: bool = True
