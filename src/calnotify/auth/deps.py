"""FastAPI dependencies: Bearer token → Principal, scope checks, the ``Version`` header.

Routes declare what they need with the annotated types at the bottom, e.g.
``principal: EventsWrite``. Order of checks: token (401), scope (401), ``Version`` (400).

A token resolved in the last second is not looked up again; otherwise it is resolved in a
read-only unit of work of its own (:func:`resolve_token_cached`), so a refused caller
never takes SQLite's write lock nor waits behind a writer; a route declares its principal
before ``session: SessionDep`` (see calnotify/deps.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from calnotify.auth.scopes import Scope
from calnotify.auth.tokens import Principal, resolve_token_cached
from calnotify.deps import get_database
from calnotify.errors import BadRequest, FieldError, Forbidden, InvalidToken, MissingScope

# HighLevel's documented versions, the official Node SDK's default (2023-02-21) and the
# official Python SDK's (v3): each SDK works with nothing configured but token and base URL.
API_VERSIONS = ("2021-04-15", "2021-07-28", "2023-02-21", "v3")

_bearer = HTTPBearer(auto_error=False, description="A location access token issued by calnotify.")


async def current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or not credentials.credentials or len(credentials.credentials) > 512:
        raise InvalidToken()
    principal = await resolve_token_cached(get_database(request), credentials.credentials)
    if principal is None:
        raise InvalidToken()
    return principal


def check_version(version: str | None) -> None:
    if version is None:
        raise BadRequest([FieldError("Version", "header is required")])
    if version not in API_VERSIONS:
        raise BadRequest([FieldError("Version", f"must be one of {', '.join(API_VERSIONS)}")])


def require(scope: Scope) -> Callable[..., Awaitable[Principal]]:
    """A dependency that admits a token holding ``scope`` and a valid ``Version`` header."""

    async def dependency(
        principal: Annotated[Principal, Depends(current_principal)],
        version: Annotated[
            str | None,
            Header(
                alias="Version",
                description=f"API version: one of {', '.join(API_VERSIONS)}.",
            ),
        ] = None,
    ) -> Principal:
        if not principal.can(scope):
            raise MissingScope()
        check_version(version)
        return principal

    return dependency


def require_unversioned(scope: Scope) -> Callable[..., Awaitable[Principal]]:
    """The same for calnotify's own routes, which take no ``Version`` header."""

    async def dependency(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
        if not principal.can(scope):
            raise MissingScope()
        return principal

    return dependency


def ensure_location(principal: Principal, location_id: str) -> None:
    """A ``locationId`` given in a body or query must be the token's own."""
    if location_id != principal.location_id:
        raise Forbidden()


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
