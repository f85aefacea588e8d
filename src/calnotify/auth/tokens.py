"""Issuing, resolving and revoking location access tokens.

A token is shown once, when it is created; only its SHA-256 is stored. The secret has
256 bits of entropy, so a plain (unsalted) hash is enough to make a stolen table useless.

The API remembers who a token is, by its hash, for at most :data:`PRINCIPAL_SECONDS`
(:func:`resolve_token_cached`): a revocation (``calnotify tokens revoke``) takes effect
within that second in every API process. Open inbox streams read their token again as
often (calnotify.inbox.router), so they end within the same second.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from calnotify.auth.scopes import ALL_SCOPES, grants
from calnotify.db.base import utcnow
from calnotify.db.engine import Database
from calnotify.db.statements import Statement
from calnotify.errors import BadRequest, FieldError, NotFound
from calnotify.models import ApiToken, Location

TOKEN_PREFIX = "cn_"  # noqa: S105 (a prefix, so leaked tokens are easy to recognise)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a token, the location it belongs to and what it may do. An operator
    token (``operator``) belongs to no location: its console session chooses one."""

    token_id: str
    location_id: str
    scopes: frozenset[str]
    operator: bool = False

    def can(self, scope: str) -> bool:
        return grants(self.scopes, scope)


@dataclass(frozen=True, slots=True)
class IssuedToken:
    id: str
    token: str
    location_id: str
    scopes: list[str]


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


async def issue_token(
    session: AsyncSession, location_id: str, scopes: list[str] | None = None
) -> IssuedToken:
    if await session.get(Location, location_id) is None:
        raise NotFound(f"Location {location_id} not found")
    chosen = list(dict.fromkeys(scopes)) if scopes else list(ALL_SCOPES)
    unknown = [s for s in chosen if s not in ALL_SCOPES]
    if unknown:
        raise BadRequest(
            [
                FieldError("scope", f"unknown scope {s!r}; known: {', '.join(ALL_SCOPES)}")
                for s in unknown
            ]
        )
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(location_id=location_id, token_hash=hash_token(secret), scopes=chosen)
    session.add(row)
    await session.flush()
    return IssuedToken(id=row.id, token=secret, location_id=location_id, scopes=chosen)


async def issue_operator_token(session: AsyncSession) -> IssuedToken:
    """A token for the people who run the deployment: the console of every location, with
    every scope; never accepted by the API (docs/semantics.md §9)."""
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    chosen = list(ALL_SCOPES)
    row = ApiToken(location_id=None, operator=True, token_hash=hash_token(secret), scopes=chosen)
    session.add(row)
    await session.flush()
    return IssuedToken(id=row.id, token=secret, location_id="", scopes=chosen)


async def revoke_token(session: AsyncSession, token_id: str) -> None:
    row = await session.get(ApiToken, token_id)
    if row is None:
        raise NotFound(f"Token {token_id} not found")
    if row.revoked_at is None:
        row.revoked_at = utcnow()


async def list_tokens(session: AsyncSession, location_id: str | None) -> list[ApiToken]:
    """A location's tokens (None: the operator tokens), oldest first, revoked ones
    included."""
    which = ApiToken.location_id == location_id if location_id is not None else ApiToken.operator
    rows = await session.scalars(
        select(ApiToken).where(which).order_by(ApiToken.date_added, ApiToken.id)
    )
    return list(rows)


#: The holder of a token that is not revoked: parameter ``token_hash``.
TOKEN_HOLDER = Statement(
    select(ApiToken.id, ApiToken.location_id, ApiToken.scopes, ApiToken.operator).where(
        ApiToken.token_hash == bindparam("token_hash"), ApiToken.revoked_at.is_(None)
    )
)


def _principal(rows: Sequence[Any]) -> Principal | None:
    if not rows:
        return None
    row = rows[0]
    return Principal(
        token_id=row.id,
        location_id=row.location_id or "",
        scopes=frozenset(row.scopes),
        operator=bool(row.operator),
    )


async def resolve_token(session: AsyncSession, token: str) -> Principal | None:
    found = await session.execute(TOKEN_HOLDER.statement, {"token_hash": hash_token(token)})
    return _principal(found.all())


async def resolve_token_cached(
    db: Database, known: ShortLived[Principal], token: str
) -> Principal | None:
    """:func:`resolve_token`, remembered in ``known`` for a second (an unknown token is
    not); read outside any unit of work (:meth:`~calnotify.db.engine.Database.fetch`)."""
    digest = hash_token(token)
    principal = known.get(digest)
    if principal is None:
        [rows] = await db.fetch((TOKEN_HOLDER, {"token_hash": digest}))
        principal = _principal(rows)
        if principal is not None:
            known.put(digest, principal)
    return principal


#: Seconds a resolved token is trusted without asking the database again: a revoked token
#: stops working within this time.
PRINCIPAL_SECONDS = 1.0

V = TypeVar("V")


class ShortLived(Generic[V]):
    """A map whose entries are forgotten ``seconds`` after they were put (and all at once
    when it holds ``limit``)."""

    def __init__(self, seconds: float, limit: int = 10_000) -> None:
        self.seconds = seconds
        self.limit = limit
        self._entries: dict[str, tuple[float, V]] = {}

    def get(self, key: str) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= time.monotonic():
            self._entries.pop(key, None)
            return None
        return entry[1]

    def put(self, key: str, value: V) -> None:
        if len(self._entries) >= self.limit:
            self._entries.clear()
        self._entries[key] = (time.monotonic() + self.seconds, value)

    def clear(self) -> None:
        self._entries.clear()
