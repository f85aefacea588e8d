"""Scopes a token may carry. A ``.write`` scope implies its ``.readonly``."""

from __future__ import annotations

from enum import StrEnum


class Scope(StrEnum):
    CALENDARS_READ = "calendars.readonly"
    CALENDARS_WRITE = "calendars.write"
    EVENTS_READ = "calendars/events.readonly"
    EVENTS_WRITE = "calendars/events.write"
    CONTACTS_READ = "contacts.readonly"
    CONTACTS_WRITE = "contacts.write"
    USERS_READ = "users.readonly"
    USERS_WRITE = "users.write"
    LOCATIONS_READ = "locations.readonly"
    LOCATIONS_WRITE = "locations.write"
    TEMPLATES_READ = "locations/templates.readonly"
    TEMPLATES_WRITE = "locations/templates.write"


ALL_SCOPES: tuple[str, ...] = tuple(s.value for s in Scope)


def grants(held: frozenset[str], needed: str) -> bool:
    if needed in held:
        return True
    if needed.endswith(".readonly"):
        return needed.removesuffix(".readonly") + ".write" in held
    return False
