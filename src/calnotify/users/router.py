"""HighLevel's Users operations, for a location token's own location."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from calnotify.auth.deps import UsersRead, UsersWrite
from calnotify.deps import SessionDep
from calnotify.users import service
from calnotify.users.schemas import UserCreate, UserDeleted, UserOut, UsersEnvelope, UserUpdate

router = APIRouter(prefix="/users", tags=["Users"])


@router.get("", response_model=UsersEnvelope, operation_id="get-user-by-location")
async def list_users(
    principal: UsersRead,
    session: SessionDep,
    location_id: Annotated[str, Query(alias="locationId", max_length=64)],
) -> UsersEnvelope:
    rows = await service.list_users(session, principal, location_id)
    return UsersEnvelope(users=[service.to_out(u) for u in rows])


@router.post("", response_model=UserOut, status_code=201, operation_id="create-user")
async def create_user(body: UserCreate, principal: UsersWrite, session: SessionDep) -> UserOut:
    return service.to_out(await service.create_user_from_api(session, principal, body))


@router.get("/{userId}", response_model=UserOut, operation_id="get-user")
async def get_user(userId: str, principal: UsersRead, session: SessionDep) -> UserOut:
    return service.to_out(await service.get_user(session, principal, userId))


@router.put("/{userId}", response_model=UserOut, operation_id="update-user")
async def update_user(
    userId: str, body: UserUpdate, principal: UsersWrite, session: SessionDep
) -> UserOut:
    return service.to_out(await service.update_user(session, principal, userId, body))


@router.delete("/{userId}", response_model=UserDeleted, operation_id="delete-user")
async def delete_user(userId: str, principal: UsersWrite, session: SessionDep) -> UserDeleted:
    user = await service.delete_user(session, principal, userId)
    return UserDeleted(
        message=f"Queued deleting user with e-mail {user.email} and name {user.name}"
    )
