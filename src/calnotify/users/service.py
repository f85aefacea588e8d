"""Creating and reading users of a location."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from calnotify.api.validators import email_problem, phone_problem
from calnotify.errors import BadRequest, FieldError, NotFound
from calnotify.models import Location, User
from calnotify.models.user import UserRole


async def create_user(
    session: AsyncSession,
    *,
    location_id: str,
    email: str,
    first_name: str = "",
    last_name: str = "",
    phone: str = "",
    role: str = UserRole.USER,
) -> User:
    if await session.get(Location, location_id) is None:
        raise NotFound(f"Location {location_id} not found")
    errors: list[FieldError] = []
    if problem := email_problem(email):
        errors.append(FieldError("email", problem))
    if phone and (problem := phone_problem(phone)):
        errors.append(FieldError("phone", problem))
    if role not in set(UserRole):
        errors.append(FieldError("role", "must be admin or user"))
    for name, value in (("firstName", first_name), ("lastName", last_name)):
        if len(value) > 255:
            errors.append(FieldError(name, "must be at most 255 characters"))
    if errors:
        raise BadRequest(errors)
    user = User(
        location_id=location_id,
        email=email,
        first_name=first_name,
        last_name=last_name,
        phone=phone,
        role=role,
    )
    session.add(user)
    await session.flush()
    return user


def user_dict(user: User) -> dict[str, object]:
    return {
        "id": user.id,
        "locationId": user.location_id,
        "firstName": user.first_name,
        "lastName": user.last_name,
        "name": user.name,
        "email": user.email,
        "phone": user.phone,
        "role": user.role,
    }
