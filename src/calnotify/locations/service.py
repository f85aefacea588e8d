"""Locations (sub-accounts): the tenants."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from calnotify.api.validators import email_problem, phone_problem, timezone_problem
from calnotify.auth.deps import ensure_location
from calnotify.auth.tokens import Principal
from calnotify.db.base import utcnow
from calnotify.errors import BadRequest, FieldError, NotFound
from calnotify.locations.schemas import LocationOut, LocationUpdate
from calnotify.models import Location

_WIRE = {"postal_code": "postalCode"}


async def create_location(
    session: AsyncSession,
    *,
    name: str,
    email: str = "",
    phone: str = "",
    timezone: str = "UTC",
    country: str = "",
) -> Location:
    location = Location(name="", email="", phone="", timezone="UTC")
    given = {"name": name, "email": email, "phone": phone, "timezone": timezone}
    _apply(location, {**given, "country": country})
    session.add(location)
    await session.flush()
    return location


async def get_location(session: AsyncSession, principal: Principal, location_id: str) -> Location:
    """The token's own location; any other id is a 403, like a foreign ``locationId``."""
    ensure_location(principal, location_id)
    location = await session.get(Location, location_id)
    if location is None:
        raise NotFound("Location not found")
    return location


async def update_location(
    session: AsyncSession, principal: Principal, location_id: str, body: LocationUpdate
) -> Location:
    location = await get_location(session, principal, location_id)
    _apply(location, body.given())
    location.date_updated = utcnow()
    await session.flush()
    return location


def _apply(location: Location, changes: dict[str, Any]) -> None:
    errors: list[FieldError] = []
    if "name" in changes:
        changes["name"] = str(changes["name"]).strip()
        if not changes["name"] or len(changes["name"]) > 255:
            errors.append(FieldError("name", "must be 1 to 255 characters"))
    checks = (("email", email_problem), ("phone", phone_problem), ("timezone", timezone_problem))
    for name, check in checks:
        value = changes.get(name)
        if (value or name == "timezone") and value is not None and (problem := check(value)):
            errors.append(FieldError(name, problem))
    country = changes.get("country")
    if country and re.fullmatch(r"[A-Z]{2}", str(country)) is None:
        errors.append(FieldError("country", "must be an ISO 3166 alpha-2 code, e.g. US"))
    if errors:
        raise BadRequest(errors)
    for name, value in changes.items():
        setattr(location, name, value)


def to_out(location: Location) -> LocationOut:
    return LocationOut(
        id=location.id,
        name=location.name,
        email=location.email,
        phone=location.phone,
        timezone=location.timezone,
        address=location.address,
        city=location.city,
        state=location.state,
        country=location.country or None,
        postalCode=location.postal_code,
        website=location.website,
    )


def location_dict(location: Location) -> dict[str, object]:
    return to_out(location).model_dump(exclude_none=True)
