"""Checks of the configured database and providers, and the startup summary.

``calnotify check`` prints :meth:`CheckResult.line` for each result of :func:`run_checks`
and fails when any result is not ok; ``serve`` and ``worker`` log
:func:`startup_summary`. Every check is bounded by a timeout and never raises: whatever
goes wrong becomes a failed result whose one-line detail says what was checked, why it
failed and which ``CALNOTIFY_*`` setting to look at. A check of a provider that is not
configured returns ``None`` and :func:`run_checks` leaves it out (the startup summary
says which channels go to the outbox).

Nothing is sent and nothing is written: the database is opened without creating it and
only its migration state is read; the SMTP check ends with QUIT before any MAIL; the
Twilio check reads the account resource.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import socket
import ssl
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import aiosmtplib
import aiosqlite
import httpx
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from calnotify import __version__
from calnotify.channels.smtp import smtp_client
from calnotify.channels.twilio import _error as twilio_error
from calnotify.config import Settings
from calnotify.db.migrate import revision_problem
from calnotify.db.urls import (
    DatabaseURLError,
    async_url,
    masked_database_url,
    shown_database_url,
)

__all__ = [
    "CheckResult",
    "check_database",
    "check_public_url",
    "check_smtp",
    "check_twilio",
    "masked_database_url",
    "run_checks",
    "startup_summary",
]

DEFAULT_TIMEOUT = 10.0
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


async def run_checks(
    settings: Settings,
    *,
    timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109
) -> list[CheckResult]:
    """Every applicable check, run concurrently, each bounded by ``timeout`` seconds.

    In a fixed order: database, smtp, twilio, public_url; checks of providers that are
    not configured are left out. Never raises.
    """
    found = await asyncio.gather(
        check_database(settings, timeout),
        check_smtp(settings, timeout),
        check_twilio(settings, timeout),
    )
    results: list[CheckResult | None] = [*found, check_public_url(settings)]
    return [result for result in results if result is not None]


# --- database -----------------------------------------------------------------------------


async def check_database(
    settings: Settings,
    timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109
) -> CheckResult:
    """Connect to ``CALNOTIFY_DATABASE_URL`` and compare its migration with the latest.

    SQLite: the file must exist (it is not created) and it and its directory must be
    writable. Ok only when the database is at the head revision of calnotify's
    migrations.
    """
    shown = masked_database_url(settings.database_url)
    return await _bounded("database", shown, _database(settings, shown, timeout), timeout, settings)


async def _database(settings: Settings, shown: str, seconds: float) -> CheckResult:
    try:
        url = async_url(settings.database_url)
    except DatabaseURLError as exc:
        return _fail("database", f"CALNOTIFY_DATABASE_URL: {exc}")
    if url.get_backend_name() == "sqlite":
        opened = _sqlite_engine(url, seconds)
        if isinstance(opened, str):
            return _fail("database", f"{shown}: {opened}")
        engine, where = opened
    else:
        engine = create_async_engine(
            url,
            poolclass=NullPool,
            connect_args={"connect_timeout": max(1, math.ceil(seconds))},
        )
        where = f"{url.host}:{url.port or 5432}" if url.host else "the local socket"
    try:
        try:
            connection = await engine.connect()
        except Exception as exc:
            return _fail(
                "database",
                f"{shown}: cannot connect to {where}: {_reason(exc)} "
                "(check CALNOTIFY_DATABASE_URL)",
            )
        try:
            heads = await connection.run_sync(_current_heads)
        finally:
            await connection.close()
    finally:
        await engine.dispose()
    return _compare_revisions(shown, heads)


def _sqlite_engine(url: URL, timeout: float) -> tuple[AsyncEngine, str] | str:
    """An engine on the existing SQLite file, or why there is none."""
    database = url.database or ""
    if database in ("", ":memory:") or url.query.get("mode") == "memory":
        return (
            "an in-memory database keeps nothing: set CALNOTIFY_DATABASE_URL "
            "to sqlite:///path/to/calnotify.db"
        )
    path = Path(database).absolute()
    if not path.exists():
        return (
            f"database file {path} does not exist: run `calnotify db upgrade` to create it, "
            "or point CALNOTIFY_DATABASE_URL at the existing file"
        )
    if not path.is_file():
        return f"{path} is not a file: fix CALNOTIFY_DATABASE_URL"
    if not os.access(path, os.R_OK | os.W_OK):
        return f"database file {path} is not writable by this user: fix its permissions"
    if not os.access(path.parent, os.W_OK | os.X_OK):
        return (
            f"directory {path.parent} is not writable by this user (SQLite keeps its -wal "
            "and -shm files next to the database): fix its permissions"
        )
    # mode=rw: open the existing file, never create one.
    uri = f"file:{quote(str(path))}?mode=rw"

    async def connect() -> aiosqlite.Connection:
        return await aiosqlite.connect(uri, uri=True, timeout=timeout)

    engine = create_async_engine("sqlite+aiosqlite://", poolclass=NullPool, async_creator=connect)
    return engine, str(path)


def _current_heads(connection: Connection) -> tuple[str, ...]:
    return tuple(MigrationContext.configure(connection).get_current_heads())


def _compare_revisions(shown: str, heads: tuple[str, ...]) -> CheckResult:
    problem = revision_problem(shown, heads)
    if problem is not None:
        return _fail("database", problem)
    return CheckResult("database", True, f"{shown} at migration {heads[0]} (latest)")


# --- SMTP ---------------------------------------------------------------------------------


async def check_smtp(
    settings: Settings,
    timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109
) -> CheckResult | None:
    """Connect to the SMTP server as the adapter does, log in when a username is set, QUIT.

    ``None`` when ``CALNOTIFY_SMTP_HOST`` is not set (email goes to the outbox). Sends
    nothing.
    """
    if not settings.smtp_configured:
        return None
    target = f"{settings.smtp_host}:{settings.smtp_port_or_default}"
    return await _bounded("smtp", target, _smtp(settings, target, timeout), timeout, settings)


_SECURITY = {"none": "plain, no TLS", "starttls": "STARTTLS", "tls": "implicit TLS"}


async def _smtp(settings: Settings, target: str, seconds: float) -> CheckResult:
    client = smtp_client(settings, timeout=seconds)
    try:
        try:
            # The adapter's connect() does these steps in one; here one at a time, so that
            # a failure can name its step.
            await client.connect(start_tls=False)
            await _hello(client)
            if settings.smtp_security == "starttls":
                if not client.supports_extension("starttls"):
                    await _quit(client)
                    return _fail(
                        "smtp",
                        f"{target}: server does not offer STARTTLS (set "
                        "CALNOTIFY_SMTP_SECURITY=none for a plain relay, or tls for "
                        "implicit TLS)",
                    )
                await client.starttls()
                await _hello(client)
        except (aiosmtplib.SMTPException, OSError) as exc:
            return _fail("smtp", _smtp_connect_problem(exc, settings, target, seconds))
        username = settings.smtp_username
        if username:
            try:
                await client.login(username, settings.smtp_password.get_secret_value())
            except aiosmtplib.SMTPAuthenticationError as exc:
                return _fail(
                    "smtp",
                    f"{target}: login as {username} refused ({exc.code} "
                    f"{_first_line(exc.message)}): check CALNOTIFY_SMTP_USERNAME and "
                    "CALNOTIFY_SMTP_PASSWORD",
                )
            except aiosmtplib.SMTPResponseException as exc:
                return _fail("smtp", f"{target}: login failed: {exc.code} {exc.message}")
            except aiosmtplib.SMTPException as exc:
                return _fail("smtp", _smtp_login_problem(exc, client, settings, target))
        await _quit(client)
    finally:
        client.close()
    done = f"connected, logged in as {username}" if username else "connected (no login set)"
    if username and settings.smtp_security == "none":
        done += "; the password travels unencrypted (CALNOTIFY_SMTP_SECURITY=none)"
    return CheckResult("smtp", True, f"{target} ({_SECURITY[settings.smtp_security]}): {done}")


async def _hello(client: aiosmtplib.SMTP) -> None:
    try:
        await client.ehlo()
    except aiosmtplib.SMTPHeloError:
        await client.helo()  # an old server without ESMTP


async def _quit(client: aiosmtplib.SMTP) -> None:
    with contextlib.suppress(aiosmtplib.SMTPException, OSError):
        await client.quit()


def _smtp_connect_problem(
    exc: BaseException, settings: Settings, target: str, timeout: float
) -> str:
    security = settings.smtp_security
    tls_error = _find(exc, ssl.SSLError)
    if isinstance(tls_error, ssl.SSLCertVerificationError):
        return (
            f"{target}: the server's TLS certificate is not trusted "
            f"({tls_error.verify_message or _reason(tls_error)}): give it a certificate "
            "from a public CA for this host name, or trust its CA (SSL_CERT_FILE)"
        )
    if tls_error is not None:
        if security == "tls":
            return (
                f"{target}: TLS handshake failed ({_reason(tls_error)}): "
                "CALNOTIFY_SMTP_SECURITY=tls expects implicit TLS (usually port 465); "
                "use starttls for port 587, or none for a plain relay"
            )
        return f"{target}: STARTTLS handshake failed: {_reason(tls_error)}"
    if isinstance(exc, aiosmtplib.SMTPConnectResponseError):
        return f"{target}: the server refused the session: {exc.code} {_first_line(exc.message)}"
    if isinstance(exc, aiosmtplib.SMTPTimeoutError | TimeoutError):
        return f"cannot connect to {target}: no answer within {timeout:g} s"
    if isinstance(exc, aiosmtplib.SMTPConnectError | OSError):
        return f"cannot connect to {target}: {_os_reason(exc, settings.smtp_host)}"
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return f"{target}: {exc.code} {_first_line(exc.message)}"
    return f"{target}: {_reason(exc)}"


def _smtp_login_problem(
    exc: BaseException, client: aiosmtplib.SMTP, settings: Settings, target: str
) -> str:
    if client.is_connected and not client.supports_extension("auth"):
        if settings.smtp_security == "none":
            return (
                f"{target}: the server offers no login (AUTH) on a plain connection: set "
                "CALNOTIFY_SMTP_SECURITY=starttls or tls, or unset CALNOTIFY_SMTP_USERNAME "
                "for a relay that needs no login"
            )
        return (
            f"{target}: the server offers no login (AUTH): unset CALNOTIFY_SMTP_USERNAME "
            "for a relay that needs no login"
        )
    return f"{target}: login failed: {_reason(exc)}"


def _os_reason(exc: BaseException, host: str) -> str:
    """The operating system's reason ("connection refused", "cannot resolve HOST: ...")
    found in the chain of ``exc``, rather than the wrappers' texts; else ``exc``'s own."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, socket.gaierror):
            return f"cannot resolve {host}: {current.strerror or current}"
        if isinstance(current, OSError) and current.errno and current.errno > 0:
            return os.strerror(current.errno).lower()
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return _reason(exc)


# --- Twilio -------------------------------------------------------------------------------


async def check_twilio(
    settings: Settings,
    timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109
) -> CheckResult | None:
    """Read the account resource (``GET /2010-04-01/Accounts/{sid}.json``) with the
    configured credentials. ``None`` when Twilio is not configured. Sends nothing."""
    if not settings.twilio_configured:
        return None
    base = settings.twilio_base_url.rstrip("/")
    return await _bounded("twilio", base, _twilio(settings, base, timeout), timeout, settings)


async def _twilio(settings: Settings, base: str, seconds: float) -> CheckResult:
    sid = settings.twilio_account_sid
    resource = f"/2010-04-01/Accounts/{sid}.json"
    try:
        async with httpx.AsyncClient(
            auth=(sid, settings.twilio_auth_token.get_secret_value()),
            timeout=seconds,
            follow_redirects=False,
        ) as client:
            response = await client.get(base + resource, headers={"Accept": "application/json"})
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
        return _fail(
            "twilio", f"{base}: not an http(s) URL ({_reason(exc)}): fix CALNOTIFY_TWILIO_BASE_URL"
        )
    except httpx.TimeoutException:
        return _fail("twilio", f"{base}: no answer within {seconds:g} s")
    except httpx.HTTPError as exc:
        host = urlsplit(base).hostname or base
        return _fail("twilio", f"{base}: cannot connect: {_os_reason(exc, host)}")
    status = response.status_code
    if status == 200:
        return _twilio_account(settings, base, response)
    if status in (401, 403):
        return _fail(
            "twilio",
            f"{base}: credentials rejected ({status}): check CALNOTIFY_TWILIO_ACCOUNT_SID "
            "and CALNOTIFY_TWILIO_AUTH_TOKEN",
        )
    if status == 404:
        return _fail(
            "twilio",
            f"{base}: account {sid} not found (404): check CALNOTIFY_TWILIO_ACCOUNT_SID "
            "and CALNOTIFY_TWILIO_BASE_URL",
        )
    if 300 <= status < 400:
        location = response.headers.get("Location", "")
        return _fail(
            "twilio",
            f"{base}: answered {status} (redirect to {location or '?'}): "
            "check CALNOTIFY_TWILIO_BASE_URL",
        )
    code, text = twilio_error(response)
    said = f" ({code})" if code else ""
    return _fail(
        "twilio", f"{base}: GET {resource} answered {status}{said}: {_first_line(text) or '-'}"
    )


def _twilio_account(settings: Settings, base: str, response: httpx.Response) -> CheckResult:
    sid = settings.twilio_account_sid
    try:
        data: Any = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return _fail(
            "twilio",
            f"{base}: the account answer is not Twilio's JSON: check CALNOTIFY_TWILIO_BASE_URL",
        )
    name, state, kind = data.get("friendly_name"), data.get("status"), data.get("type")
    shown = f"{base} account {sid}" + (f' "{name}"' if name else "")
    if state not in (None, "active"):
        return _fail(
            "twilio",
            f"{shown} is {state}: Twilio sends nothing until the account is active again",
        )
    detail = f"{shown}" + (f" ({state})" if state else "")
    if kind == "Trial":
        detail += ", trial account: sends only to verified numbers"
    if not settings.twilio_from_number:
        detail += (
            "; CALNOTIFY_TWILIO_FROM_NUMBER is not set: only notifications with their own "
            "fromNumber can be sent"
        )
    return CheckResult("twilio", True, detail)


# --- public URL ---------------------------------------------------------------------------


def check_public_url(settings: Settings) -> CheckResult | None:
    """``CALNOTIFY_PUBLIC_URL``, which Twilio's delivery status callbacks are sent to.

    Fails when it is set but not an ``http(s)://host`` URL, or when Twilio is configured
    and it is empty (callbacks are then off). ``None`` when it is empty and Twilio is not
    configured. Does not try to reach it.
    """
    url = settings.public_url.strip()
    if not url:
        if not settings.twilio_configured:
            return None
        return _fail(
            "public_url",
            "CALNOTIFY_PUBLIC_URL is not set: Twilio delivery status callbacks are off "
            "(set it to the address Twilio reaches this service at, "
            "e.g. https://calnotify.example.com)",
        )
    problem = _url_problem(url)
    if problem:
        return _fail(
            "public_url",
            f"CALNOTIFY_PUBLIC_URL {url!r} {problem}: give the address this service is "
            "reached at from outside, e.g. https://calnotify.example.com",
        )
    if not settings.twilio_configured:
        return CheckResult(
            "public_url", True, f"{url} (Twilio is not configured: no callbacks expected)"
        )
    callback = f"{url.rstrip('/')}/webhooks/twilio/status"
    return CheckResult("public_url", True, f"{url}: Twilio status callbacks go to {callback}")


def _url_problem(url: str) -> str:
    if any(ch.isspace() for ch in url):
        return "contains whitespace"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as exc:
        return f"is not a URL ({exc})"
    if parts.scheme not in ("http", "https"):
        return "is not an http:// or https:// URL"
    if not parts.hostname:
        return "has no host"
    if parts.query or parts.fragment:
        return "must not have a query or fragment"
    return ""


# --- startup summary ----------------------------------------------------------------------


def startup_summary(settings: Settings, *, mode: str) -> list[str]:
    """Lines for ``serve`` and ``worker`` to log at startup: version, database (password
    masked), the provider of each channel, Twilio callbacks, and ``mode`` (the caller's
    text, e.g. ``"API + dispatcher (2 loops)"``). Never raises."""
    lines = [
        f"calnotify {__version__}",
        f"database: {shown_database_url(settings.database_url)}",
    ]
    if settings.smtp_configured:
        email = (
            f"smtp {settings.smtp_host}:{settings.smtp_port_or_default} {settings.smtp_security}"
        )
        if settings.smtp_username:
            email += f" as {settings.smtp_username}"
    else:
        email = "outbox (CALNOTIFY_SMTP_HOST not set)"
    lines.append(f"email: {email}")
    if settings.twilio_configured:
        base = settings.twilio_base_url.rstrip("/")
        sms_from = settings.twilio_from_number or "nobody (CALNOTIFY_TWILIO_FROM_NUMBER not set)"
        whatsapp_from = (
            settings.twilio_whatsapp_from
            or settings.twilio_from_number
            or "nobody (CALNOTIFY_TWILIO_WHATSAPP_FROM not set)"
        )
        lines.append(f"sms: twilio {base} from {sms_from}")
        lines.append(f"whatsapp: twilio {base} from {whatsapp_from}")
    else:
        outbox = "outbox (CALNOTIFY_TWILIO_ACCOUNT_SID / CALNOTIFY_TWILIO_AUTH_TOKEN not set)"
        lines.append(f"sms: {outbox}")
        lines.append(f"whatsapp: {outbox}")
    lines.append("inApp: inbox")
    if settings.twilio_configured:
        public = settings.public_url.strip()
        callbacks = (
            f"{public.rstrip('/')}/webhooks/twilio/status"
            if public
            else "off (CALNOTIFY_PUBLIC_URL not set)"
        )
        lines.append(f"twilio status callbacks: {callbacks}")
    lines.append(f"mode: {mode}")
    return lines


# --- helpers ------------------------------------------------------------------------------


def _fail(name: str, detail: str) -> CheckResult:
    return CheckResult(name, False, detail)


async def _bounded(
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
        result = _fail(name, f"{target}: no answer within {seconds:g} s")
    except Exception as exc:
        result = _fail(name, f"{target}: {_reason(exc)}")
    detail = _first_line(_scrub(result.detail, _secrets(settings)))
    return CheckResult(result.name, result.ok, detail[:_MAX_DETAIL])


def _reason(exc: BaseException) -> str:
    """The first line of an exception's text (the driver's own, for a database error)."""
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        exc = exc.orig
    return _first_line(str(exc)) or type(exc).__name__


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def _find(exc: BaseException, kind: type[_E]) -> _E | None:
    """``exc`` or the first exception of its cause/context chain that is a ``kind``."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _secrets(settings: Settings) -> list[str]:
    found = [
        settings.smtp_password.get_secret_value(),
        settings.twilio_auth_token.get_secret_value(),
    ]
    with contextlib.suppress(Exception):
        password = make_url(settings.database_url).password
        if password:
            found.append(str(password))
    return found


def _scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if len(secret) >= 4:
            text = text.replace(secret, "***")
    return text
