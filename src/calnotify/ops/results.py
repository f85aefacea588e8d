"""What a check answers (:class:`CheckResult`), and the helpers every check uses: a
bound on its time, one line of detail with no secret in it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from calnotify.config import Settings

_NAME_WIDTH = len("public_url") + 2
_MAX_DETAIL = 500
_E = TypeVar("_E", bound=BaseException)


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check.

    ``name`` is ``database``, ``smtp``, ``twilio``, ``public_url`` or ``time_zones``;
    ``detail`` is one line: what was checked and, on failure, why and what to do.
    """

    name: str
    ok: bool
    detail: str
    # Ok, but something the operator should look at (``warn``; the exit status stays 0).
    warning: bool = False

    def line(self) -> str:
        """The result as printed by ``calnotify check``, in aligned columns, e.g.
        ``ok    database    sqlite:///./calnotify.db at migration 0004 (latest)``."""
        status = ("warn" if self.warning else "ok") if self.ok else "FAIL"
        return f"{status:<6}{self.name:<{_NAME_WIDTH}}{self.detail}"


def fail(name: str, detail: str) -> CheckResult:
    return CheckResult(name, False, detail)


async def bounded(
    name: str,
    target: str,
    work: Coroutine[Any, Any, CheckResult],
    seconds: float,
    settings: Settings,
) -> CheckResult:
    """``work`` within ``seconds``; a timeout or any exception becomes a failed result.
    Known secrets never appear in the detail, which is one line."""
    try:
        async with asyncio.timeout(seconds):
            result = await work
    except TimeoutError:
        result = fail(name, f"{target}: no answer within {seconds:g} s")
    except Exception as exc:
        result = fail(name, f"{target}: {reason(exc)}")
    detail = first_line(scrub(result.detail, secrets_of(settings)))
    return CheckResult(result.name, result.ok, detail[:_MAX_DETAIL])


def reason(exc: BaseException) -> str:
    """The first line of an exception's text (the driver's own, for a database error)."""
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        exc = exc.orig
    return first_line(str(exc)) or type(exc).__name__


def first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def find_in_chain(exc: BaseException, kind: type[_E]) -> _E | None:
    """``exc`` or the first exception of its cause/context chain that is a ``kind``."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def secrets_of(settings: Settings) -> list[str]:
    found = [
        settings.smtp_password.get_secret_value(),
        settings.twilio_auth_token.get_secret_value(),
    ]
    with contextlib.suppress(Exception):
        password = make_url(settings.database_url).password
        if password:
            found.append(str(password))
    return found


def scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if len(secret) >= 4:
            text = text.replace(secret, "***")
    return text
