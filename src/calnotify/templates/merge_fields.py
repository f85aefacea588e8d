"""The merge fields a template may use: HighLevel's names, grouped by object.

A template that names anything else is rejected when it is saved, so a typo is found by
the person who made it rather than by the customer who receives ``Hello ,``.
"""

from __future__ import annotations

MERGE_FIELDS: dict[str, frozenset[str]] = {
    "contact": frozenset(
        {
            "id",
            "first_name",
            "last_name",
            "name",
            "full_name",
            "email",
            "phone",
            "timezone",
            "company_name",
            "address1",
            "city",
            "state",
            "country",
            "postal_code",
        }
    ),
    "user": frozenset({"id", "first_name", "last_name", "name", "email", "phone"}),
    "appointment": frozenset(
        {
            "id",
            "title",
            "status",
            "start_time",
            "only_start_date",
            "only_start_time",
            "end_time",
            "only_end_date",
            "only_end_time",
            "day_of_week",
            "month",
            "timezone",
            "time_zone",
            "meeting_location",
            "notes",
            "cancellation_link",
            "reschedule_link",
            "confirmation_link",  # calnotify's own (docs/semantics.md §8)
        }
    ),
    "calendar": frozenset({"id", "name"}),
    "location": frozenset(
        {
            "id",
            "name",
            "email",
            "phone",
            "address",
            "full_address",
            "city",
            "state",
            "country",
            "postal_code",
            "website",
            "timezone",
        }
    ),
}

# Properties Liquid itself gives every value (``{{ contact.first_name.size }}``).
VALUE_PROPERTIES = frozenset({"size", "first", "last"})
