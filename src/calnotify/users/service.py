"""Users of a location: assigned users, business recipients, inbox owners."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from calnotify.api.validators import email_problem, phone_problem
from calnotify.auth.deps import ensure_location
from calnotify.auth.tokens import Principal
from calnotify.db.base import utcnow
from calnotify.db.scoped import find_in_location, get_in_location
from calnotify.errors import BadRequest, FieldError, NotFound
from calnotify.models import Location, User
from calnotify.models.user import UserRole
from calnotify.users.schemas import RolesOut, UserFieldsIn, UserOut

_FIELDS = ("first_name", "last_name", "email", "phone", "role")
_NAME_FIELDS = {"first_name": "firstName", "last_name": "lastName"}


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
    user = User(location_id=location_id, email="", first_name="", last_name="", phone="")
    await _apply(
        session,
        user,
        {
            "email": email,
            "first_name": first_name,
            "last_name": last_name,
            "phone": phone,
            "role": role,
        },
    )
    session.add(user)
    await session.flush()
    return user


async def find_user(
    session: AsyncSession, principal: Principal, user_id: str | None
) -> User | None:
    """The user if it is of the token's location, deleted or not (what an appointment
    names); None otherwise."""
    return await find_in_location(
        session, User, user_id, principal.location_id, include_deleted=True
    )


async def get_user(session: AsyncSession, principal: Principal, user_id: str) -> User:
    return await get_in_location(session, User, user_id, principal.location_id, what="User")


async def list_users(
    session: AsyncSession,
    principal: Principal,
    location_id: str,
    *,
    by_name: bool = False,
    limit: int | None = None,
) -> Sequence[User]:
    """The location's users in creation order (``by_name``: by name), at most ``limit``."""
    ensure_location(principal, location_id)
    order = (User.first_name, User.last_name, User.id) if by_name else (User.date_added, User.id)
    rows = await session.scalars(
        select(User)
        .where(User.location_id == location_id, User.deleted.is_(False))
        .order_by(*order)
        .limit(limit)
    )
    return rows.all()


async def create_user_from_api(
    session: AsyncSession, principal: Principal, body: UserFieldsIn
) -> User:
    _check_locations(principal, body)
    given = body.given()
    return await create_user(
        session,
        location_id=principal.location_id,
        email=str(given.get("email", "")),
        first_name=str(given.get("first_name", "")),
        last_name=str(given.get("last_name", "")),
        phone=str(given.get("phone", "")),
        role=str(given.get("role", UserRole.USER)),
    )


async def update_user(
    session: AsyncSession, principal: Principal, user_id: str, body: UserFieldsIn
) -> User:
    user = await get_user(session, principal, user_id)
    _check_locations(principal, body)
    given = body.given()
    await _apply(session, user, {k: v for k, v in given.items() if k in _FIELDS})
    user.date_updated = utcnow()
    await session.flush()
    return user


async def delete_user(session: AsyncSession, principal: Principal, user_id: str) -> User:
    user = await get_user(session, principal, user_id)
    user.deleted = True
    user.date_updated = utcnow()
    await session.flush()
    return user


def _check_locations(principal: Principal, body: UserFieldsIn) -> None:
    for location_id in body.location_ids or []:
        ensure_location(principal, location_id)


async def _apply(session: AsyncSession, user: User, changes: dict[str, object]) -> None:
    errors: list[FieldError] = []
    email = changes.get("email")
    if email is not None:
        if problem := email_problem(str(email)):
            errors.append(FieldError("email", problem))
        elif await _email_taken(session, user, str(email)):
            errors.append(FieldError("email", "another user of this location has this address"))
    phone = changes.get("phone")
    if phone and (problem := phone_problem(str(phone))):
        errors.append(FieldError("phone", problem))
    role = changes.get("role")
    if role is not None and role not in set(UserRole):
        errors.append(FieldError("role", "must be admin or user"))
    for name, wire in _NAME_FIELDS.items():
        if len(str(changes.get(name, ""))) > 255:
            errors.append(FieldError(wire, "must be at most 255 characters"))
    if errors:
        raise BadRequest(errors)
    for name, value in changes.items():
        setattr(user, name, value)


async def _email_taken(session: AsyncSession, user: User, email: str) -> bool:
    query = select(User.id).where(
        User.location_id == user.location_id,
        func.lower(User.email) == email.lower(),
        User.deleted.is_(False),
    )
    if user.id:
        query = query.where(User.id != user.id)
    return (await session.scalar(query.limit(1))) is not None


def to_out(user: User) -> UserOut:
    return UserOut(
        id=user.id,
        name=user.name,
        firstName=user.first_name,
        lastName=user.last_name,
        email=user.email,
        phone=user.phone,
        roles=RolesOut(role=user.role, locationIds=[user.location_id]),
        deleted=user.deleted,
    )


def user_dict(user: User) -> dict[str, object]:
    out = to_out(user).model_dump(exclude={"deleted"})
    return {**out, "locationId": user.location_id, "role": user.role}
