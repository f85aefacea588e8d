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
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import aiosmtplib
import aiosqlite
import httpx
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import URL, Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from calnotify.actions.links import base_url
from calnotify.channels.smtp import smtp_client
from calnotify.channels.twilio import _error as twilio_error
from calnotify.config import Settings
from calnotify.db.migrate import revision_problem
from calnotify.db.urls import (
    DatabaseURLError,
    async_url,
    masked_database_url,
)
from calnotify.ops.results import (
    CheckResult,
    bounded,
    fail,
    find_in_chain,
    first_line,
    reason,
)

__all__ = [
    "CheckResult",
    "check_database",
    "check_public_url",
    "check_smtp",
    "check_twilio",
    "masked_database_url",
    "run_checks",
]

DEFAULT_TIMEOUT = 10.0


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
    return await bounded("database", shown, _database(settings, shown, timeout), timeout, settings)


async def _database(settings: Settings, shown: str, seconds: float) -> CheckResult:
    try:
        url = async_url(settings.database_url)
    except DatabaseURLError as exc:
        return fail("database", f"CALNOTIFY_DATABASE_URL: {exc}")
    if url.get_backend_name() == "sqlite":
        opened = _sqlite_engine(url, seconds)
        if isinstance(opened, str):
            return fail("database", f"{shown}: {opened}")
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
            return fail(
                "database",
                f"{shown}: cannot connect to {where}: {reason(exc)} (check CALNOTIFY_DATABASE_URL)",
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
        return fail("database", problem)
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
    return await bounded("smtp", target, _smtp(settings, target, timeout), timeout, settings)


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
                    return fail(
                        "smtp",
                        f"{target}: server does not offer STARTTLS (set "
                        "CALNOTIFY_SMTP_SECURITY=none for a plain relay, or tls for "
                        "implicit TLS)",
                    )
                await client.starttls()
                await _hello(client)
        except (aiosmtplib.SMTPException, OSError) as exc:
            return fail("smtp", _smtp_connect_problem(exc, settings, target, seconds))
        username = settings.smtp_username
        if username:
            try:
                await client.login(username, settings.smtp_password.get_secret_value())
            except aiosmtplib.SMTPAuthenticationError as exc:
                return fail(
                    "smtp",
                    f"{target}: login as {username} refused ({exc.code} "
                    f"{first_line(exc.message)}): check CALNOTIFY_SMTP_USERNAME and "
                    "CALNOTIFY_SMTP_PASSWORD",
                )
            except aiosmtplib.SMTPResponseException as exc:
                return fail("smtp", f"{target}: login failed: {exc.code} {exc.message}")
            except aiosmtplib.SMTPException as exc:
                return fail("smtp", _smtp_login_problem(exc, client, settings, target))
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
    tls_error = find_in_chain(exc, ssl.SSLError)
    if isinstance(tls_error, ssl.SSLCertVerificationError):
        return (
            f"{target}: the server's TLS certificate is not trusted "
            f"({tls_error.verify_message or reason(tls_error)}): give it a certificate "
            "from a public CA for this host name, or trust its CA (SSL_CERT_FILE)"
        )
    if tls_error is not None:
        if security == "tls":
            return (
                f"{target}: TLS handshake failed ({reason(tls_error)}): "
                "CALNOTIFY_SMTP_SECURITY=tls expects implicit TLS (usually port 465); "
                "use starttls for port 587, or none for a plain relay"
            )
        return f"{target}: STARTTLS handshake failed: {reason(tls_error)}"
    if isinstance(exc, aiosmtplib.SMTPConnectResponseError):
        return f"{target}: the server refused the session: {exc.code} {first_line(exc.message)}"
    if isinstance(exc, aiosmtplib.SMTPTimeoutError | TimeoutError):
        return f"cannot connect to {target}: no answer within {timeout:g} s"
    if isinstance(exc, aiosmtplib.SMTPConnectError | OSError):
        return f"cannot connect to {target}: {_os_reason(exc, settings.smtp_host)}"
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return f"{target}: {exc.code} {first_line(exc.message)}"
    return f"{target}: {reason(exc)}"


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
    return f"{target}: login failed: {reason(exc)}"


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
    return reason(exc)


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
    return await bounded("twilio", base, _twilio(settings, base, timeout), timeout, settings)


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
        return fail(
            "twilio", f"{base}: not an http(s) URL ({reason(exc)}): fix CALNOTIFY_TWILIO_BASE_URL"
        )
    except httpx.TimeoutException:
        return fail("twilio", f"{base}: no answer within {seconds:g} s")
    except httpx.HTTPError as exc:
        host = urlsplit(base).hostname or base
        return fail("twilio", f"{base}: cannot connect: {_os_reason(exc, host)}")
    status = response.status_code
    if status == 200:
        return _twilio_account(settings, base, response)
    if status in (401, 403):
        return fail(
            "twilio",
            f"{base}: credentials rejected ({status}): check CALNOTIFY_TWILIO_ACCOUNT_SID "
            "and CALNOTIFY_TWILIO_AUTH_TOKEN",
        )
    if status == 404:
        return fail(
            "twilio",
            f"{base}: account {sid} not found (404): check CALNOTIFY_TWILIO_ACCOUNT_SID "
            "and CALNOTIFY_TWILIO_BASE_URL",
        )
    if 300 <= status < 400:
        location = response.headers.get("Location", "")
        return fail(
            "twilio",
            f"{base}: answered {status} (redirect to {location or '?'}): "
            "check CALNOTIFY_TWILIO_BASE_URL",
        )
    code, text = twilio_error(response)
    said = f" ({code})" if code else ""
    return fail(
        "twilio", f"{base}: GET {resource} answered {status}{said}: {first_line(text) or '-'}"
    )


def _twilio_account(settings: Settings, base: str, response: httpx.Response) -> CheckResult:
    sid = settings.twilio_account_sid
    try:
        data: Any = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return fail(
            "twilio",
            f"{base}: the account answer is not Twilio's JSON: check CALNOTIFY_TWILIO_BASE_URL",
        )
    name, state, kind = data.get("friendly_name"), data.get("status"), data.get("type")
    shown = f"{base} account {sid}" + (f' "{name}"' if name else "")
    if state not in (None, "active"):
        return fail(
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


def check_public_url(settings: Settings) -> CheckResult:
    """``CALNOTIFY_PUBLIC_URL``, which Twilio's delivery status callbacks are sent to and
    the recipients' action links point to (docs/semantics.md §8).

    Fails when it is set but not an ``http(s)://host`` URL, or when Twilio is configured
    and it is empty (callbacks are then off). When it is empty and Twilio is not
    configured, warns that links point to localhost. Does not try to reach it.
    """
    url = settings.public_url.strip()
    if not url:
        if not settings.twilio_configured:
            return CheckResult(
                "public_url",
                True,
                f"not set: action links in messages point to {settings.links_url} (set "
                "CALNOTIFY_PUBLIC_URL to the address recipients reach this service at)",
                warning=True,
            )
        return fail(
            "public_url",
            "CALNOTIFY_PUBLIC_URL is not set: Twilio delivery status callbacks are off "
            f"and action links point to {settings.links_url} (set it to the address Twilio and "
            "recipients reach this service at, e.g. https://calnotify.example.com)",
        )
    problem = _url_problem(url)
    if problem:
        return fail(
            "public_url",
            f"CALNOTIFY_PUBLIC_URL {url!r} {problem}: give the address this service is "
            "reached at from outside, e.g. https://calnotify.example.com",
        )
    if not settings.twilio_configured:
        return CheckResult(
            "public_url",
            True,
            f"{url}: action links go to {base_url(url)}/a/… "
            "(Twilio is not configured: no callbacks expected)",
        )
    callback = f"{url.rstrip('/')}/webhooks/twilio/status"
    return CheckResult(
        "public_url",
        True,
        f"{url}: Twilio status callbacks go to {callback}, action links to {base_url(url)}/a/…",
    )


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
