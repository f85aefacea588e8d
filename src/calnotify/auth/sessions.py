"""Console sign-in: a location token exchanged for a server-side session.

The browser holds only a random session secret (cookie ``HttpOnly``, ``SameSite=Strict``,
``Secure`` behind https); the database holds its SHA-256 and the id of the token it acts
with. Every request looks the session up joined to its token, so a revoked token ends
its sessions at once, in every process. Forms carry the session's CSRF token back.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from calnotify.auth.tokens import Principal, hash_token, resolve_token
from calnotify.models import ApiToken, ConsoleSession, Location

COOKIE = "calnotify_console"
# Before sign-in there is no session to hold a CSRF token: the sign-in form's token is
# also set as a cookie and the two must match (double submit).
SIGN_IN_COOKIE = "calnotify_console_signin"
LIFETIME = timedelta(hours=12)
MAX_TOKEN_LENGTH = 512


@dataclass(frozen=True, slots=True)
class Operator:
    """Who is using the console: the token's principal, the location, the session's CSRF."""

    principal: Principal
    location_name: str
    location_zone: str
    csrf: str


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def same(given: str | None, expected: str) -> bool:
    """A constant-time comparison of a submitted CSRF token."""
    return bool(given) and hmac.compare_digest(str(given).encode(), expected.encode())


async def token_principal(session: AsyncSession, token: str) -> Principal | None:
    """Who ``token`` is, or None when it is not a valid (unrevoked) token."""
    token = token.strip()
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    return await resolve_token(session, token)


async def open_session(session: AsyncSession, principal: Principal, now: datetime) -> str:
    """A new session acting as ``principal``'s token: the secret for its cookie."""
    # Sign-in is also when old sessions are cleared away.
    await session.execute(delete(ConsoleSession).where(ConsoleSession.expires_at <= now))
    secret = new_secret()
    session.add(
        ConsoleSession(
            id_hash=hash_token(secret),
            token_id=principal.token_id,
            csrf=new_secret(),
            created_at=now,
            expires_at=now + LIFETIME,
        )
    )
    await session.flush()
    return secret


async def find_operator(
    session: AsyncSession, secret: str | None, now: datetime
) -> Operator | None:
    """The operator of a session cookie: None when unknown, expired or its token revoked.
    An operator token's session is in the location it chose (at first, the first location
    by name), with every scope."""
    if not secret or len(secret) > MAX_TOKEN_LENGTH:
        return None
    row = (
        await session.execute(
            select(
                ConsoleSession.csrf,
                ConsoleSession.location_id.label("chosen"),
                ApiToken.id,
                ApiToken.location_id,
                ApiToken.scopes,
                ApiToken.operator,
            )
            .join(ApiToken, ApiToken.id == ConsoleSession.token_id)
            .where(
                ConsoleSession.id_hash == hash_token(secret),
                ConsoleSession.expires_at > now,
                ApiToken.revoked_at.is_(None),
            )
        )
    ).one_or_none()
    if row is None:
        return None
    looked_at = select(Location.id, Location.name, Location.timezone)
    if row.operator:
        looked_at = looked_at.order_by(Location.id != row.chosen, Location.name, Location.id)
    else:
        looked_at = looked_at.where(Location.id == row.location_id)
    location = (await session.execute(looked_at.limit(1))).one_or_none()
    if location is None and not row.operator:
        return None  # its location was deleted
    return Operator(
        principal=Principal(
            token_id=row.id,
            location_id=location.id if location else "",
            scopes=frozenset(row.scopes),
            operator=bool(row.operator),
        ),
        location_name=location.name if location else "(no location yet)",
        location_zone=(location.timezone if location else "") or "UTC",
        csrf=row.csrf,
    )


async def choose_location(session: AsyncSession, secret: str | None, location_id: str) -> bool:
    """An operator's session now looks at ``location_id``; False when there is no such
    location."""
    if await session.get(Location, location_id) is None or not secret:
        return False
    await session.execute(
        update(ConsoleSession)
        .where(ConsoleSession.id_hash == hash_token(secret))
        .values(location_id=location_id)
    )
    return True


async def close_session(session: AsyncSession, secret: str | None) -> None:
    if secret and len(secret) <= MAX_TOKEN_LENGTH:
        await session.execute(
            delete(ConsoleSession).where(ConsoleSession.id_hash == hash_token(secret))
        )
