"""Calendar availability (docs/semantics.md §8): HighLevel's open hours and slot settings, the free
slots they leave (``GET /calendars/{calendarId}/free-slots``), and the check a booking
or a reschedule can make against them (:func:`booking_problem`).

The computation (:mod:`.slots`) is pure; :mod:`.service` reads what it needs.
"""

from calnotify.availability.settings import (
    AvailabilitySettings,
    Hours,
    Notice,
    NoticeUnit,
    OpenHours,
    SlotUnit,
    settings_of,
)
from calnotify.availability.slots import BookedTime, booking_problem, free_slots

__all__ = [
    "AvailabilitySettings",
    "BookedTime",
    "Hours",
    "Notice",
    "NoticeUnit",
    "OpenHours",
    "SlotUnit",
    "booking_problem",
    "free_slots",
    "settings_of",
]
