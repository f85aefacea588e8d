"""Creating and reading locations."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from calnotify.api.validators import email_problem, phone_problem, timezone_problem
from calnotify.errors import BadRequest, FieldError
from calnotify.models import Location


async def create_location(
    session: AsyncSession,
    *,
    name: str,
    email: str = "",
    phone: str = "",
    timezone: str = "UTC",
) -> Location:
    errors: list[FieldError] = []
    if not name.strip() or len(name) > 255:
        errors.append(FieldError("name", "must be 1 to 255 characters"))
    if email and (problem := email_problem(email)):
        errors.append(FieldError("email", problem))
    if phone and (problem := phone_problem(phone)):
        errors.append(FieldError("phone", problem))
    if problem := timezone_problem(timezone):
        errors.append(FieldError("timezone", problem))
    if errors:
        raise BadRequest(errors)
    location = Location(name=name.strip(), email=email, phone=phone, timezone=timezone)
    session.add(location)
    await session.flush()
    return location


def location_dict(location: Location) -> dict[str, str]:
    return {
        "id": location.id,
        "name": location.name,
        "email": location.email,
        "phone": location.phone,
        "timezone": location.timezone,
    }
