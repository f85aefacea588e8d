"""FastAPI dependencies: Bearer token → Principal, scope checks, the ``Version`` header.

Routes declare what they need with the annotated types at the bottom, e.g.
``principal: EventsWrite``. Order of checks: token (401), scope (401), ``Version`` (400).

A token resolved in the last second is not looked up again; otherwise it is read outside
any unit of work (:func:`resolve_token_cached`), so a refused caller never takes SQLite's
write lock nor waits behind a writer; a route declares its principal before
``session: SessionDep`` (see calnotify/deps.py). Each check is one dependency
(:class:`TokenWith`) that reads its headers itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import HTTPBearer

from calnotify.auth.scopes import Scope
from calnotify.auth.tokens import Principal, resolve_token_cached
from calnotify.deps import get_database
from calnotify.errors import (
    BadRequest,
    FieldError,
    Forbidden,
    InvalidToken,
    MissingScope,
    OperatorToken,
)

# HighLevel's documented versions, the official Node SDK's default (2023-02-21) and the
# official Python SDK's (v3): each SDK works with nothing configured but token and base URL.
API_VERSIONS = ("2021-04-15", "2021-07-28", "2023-02-21", "v3")

BEARER_DESCRIPTION = "A location access token issued by calnotify."
VERSION_DESCRIPTION = f"API version: one of {', '.join(API_VERSIONS)}."
MAX_TOKEN_LENGTH = 512


class TokenWith(HTTPBearer):
    """The dependency admitting a token that holds ``scope`` (and, on HighLevel's routes, a
    valid ``Version`` header), as a single step: FastAPI solves each nested dependency and
    header parameter anew on every request, and this is on every request.

    It is FastAPI's ``HTTPBearer`` to the OpenAPI document (the same security scheme); the
    ``Version`` header it reads is added to the document by calnotify.app.
    """

    def __init__(self, scope: Scope, *, versioned: bool) -> None:
        super().__init__(auto_error=False, scheme_name="HTTPBearer", description=BEARER_DESCRIPTION)
        self.scope = scope
        self.versioned = versioned

    async def __call__(self, request: Request) -> Principal:  # type: ignore[override]
        headers = request.headers
        scheme, _, token = (headers.get("authorization") or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or len(token) > MAX_TOKEN_LENGTH:
            raise InvalidToken()
        principal = await resolve_token_cached(
            get_database(request), request.app.state.principals, token
        )
        if principal is None:
            raise InvalidToken()
        if principal.operator:
            raise OperatorToken()
        if not principal.can(self.scope):
            raise MissingScope(self.scope.value)
        if self.versioned:
            check_version(headers.get("version"))
        return principal


def check_version(version: str | None) -> None:
    if version is None:
        raise BadRequest([FieldError("Version", "header is required")])
    if version not in API_VERSIONS:
        raise BadRequest([FieldError("Version", f"must be one of {', '.join(API_VERSIONS)}")])


def require(scope: Scope) -> TokenWith:
    """A dependency that admits a token holding ``scope`` and a valid ``Version`` header."""
    return TokenWith(scope, versioned=True)


def require_unversioned(scope: Scope) -> TokenWith:
    """The same for calnotify's own routes, which take no ``Version`` header."""
    return TokenWith(scope, versioned=False)


def ensure_location(principal: Principal, location_id: str) -> None:
    """A ``locationId`` given in a body or query must be the token's own."""
    if location_id != principal.location_id:
        raise Forbidden()


LocationIdPath = Annotated[str, Path(description="Location Id (the token's own)")]


def in_path_location(scope: Scope) -> Callable[..., Awaitable[Principal]]:
    """A dependency for routes under ``/locations/{locationId}/…``: a token holding
    ``scope`` (and a valid ``Version``) whose own location is the path's ``locationId``,
    else 403; checked after the token, scope and Version and before the body."""
    check = require(scope)

    # ``check`` as a default: this module's annotations are strings, resolved in its
    # globals, where a local name is not.
    async def here(locationId: LocationIdPath, principal: Principal = Depends(check)) -> Principal:
        ensure_location(principal, locationId)
        return principal

    return here


CalendarsRead = Annotated[Principal, Depends(require(Scope.CALENDARS_READ))]
CalendarsWrite = Annotated[Principal, Depends(require(Scope.CALENDARS_WRITE))]
EventsRead = Annotated[Principal, Depends(require(Scope.EVENTS_READ))]
EventsWrite = Annotated[Principal, Depends(require(Scope.EVENTS_WRITE))]
ContactsRead = Annotated[Principal, Depends(require(Scope.CONTACTS_READ))]
ContactsWrite = Annotated[Principal, Depends(require(Scope.CONTACTS_WRITE))]
UsersRead = Annotated[Principal, Depends(require(Scope.USERS_READ))]
UsersWrite = Annotated[Principal, Depends(require(Scope.USERS_WRITE))]
LocationsRead = Annotated[Principal, Depends(require(Scope.LOCATIONS_READ))]
LocationsWrite = Annotated[Principal, Depends(require(Scope.LOCATIONS_WRITE))]
