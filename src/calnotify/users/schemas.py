"""Wire shapes of HighLevel's CreateUserDto / UpdateUserDto / UserSuccessfulResponseDto."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field

from calnotify.api.types import InputModel, Text


class UserFieldsIn(InputModel):
    first_name: Text | None = None
    last_name: Text | None = None
    email: Text | None = None
    phone: Text | None = None
    type: Text | None = Field(default=None, description='Always "account" in calnotify')
    role: Text | None = Field(default=None, description="admin or user")
    location_ids: Annotated[list[Text], Field(max_length=50)] | None = Field(
        default=None, description="Only the token's own location"
    )
    # companyId, password, permissions, scopes ... are accepted and ignored: calnotify has
    # no agencies and users do not log in. A password is never stored.


class UserCreate(UserFieldsIn):
    email: Text


class UserUpdate(UserFieldsIn):
    pass


class RolesOut(BaseModel):
    type: str = "account"
    role: str
    locationIds: list[str]
    restrictSubAccount: bool = False


class UserOut(BaseModel):
    id: str
    name: str
    firstName: str
    lastName: str
    email: str
    phone: str
    extension: str = ""
    permissions: dict[str, Any] = Field(default_factory=dict)
    roles: RolesOut
    deleted: bool = False


class UsersEnvelope(BaseModel):
    users: list[UserOut]


class UserDeleted(BaseModel):
    succeded: bool = True
    message: str
