"""Database URLs as calnotify takes them, and what a user is told when one cannot be used.

``CALNOTIFY_DATABASE_URL`` is given without a driver (``sqlite:///path``,
``postgresql://user@host:port/db``); the driver is chosen here. Passwords never reach a
log line or a message: :func:`masked_database_url` hides them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL, make_url

_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+psycopg"}
_ALIASES = {"postgres": "postgresql"}


class DatabaseURLError(ValueError):
    pass


def async_url(raw: str) -> URL:
    """Map a driverless URL to the async driver calnotify uses for its dialect."""
    try:
        url = make_url(raw)
    except Exception as exc:  # sqlalchemy raises ArgumentError with an unhelpful text
        raise DatabaseURLError(f"not a database URL: {masked_database_url(raw)!r}") from exc
    backend = _ALIASES.get(url.get_backend_name(), url.get_backend_name())
    if backend not in _DRIVERS:
        raise DatabaseURLError(
            f"unsupported database {backend!r}: use sqlite:///path or postgresql://user@host/db"
        )
    return url.set(drivername=_DRIVERS[backend])


def masked_database_url(raw: str) -> str:
    """``raw`` with its password shown as ``***``, for logs and messages. Never raises.

    Works on the text, not on a parsed URL: a password with an unescaped ``@`` (which
    SQLAlchemy splits at the first ``@``) is still hidden whole, as is a ``password=``
    query parameter.
    """
    return _replace_password(raw, "***")


def database_url_without_password(raw: str) -> str:
    """``raw`` with no password at all, for a command such as ``pg_dump URL`` that then
    takes it from ``PGPASSWORD`` or ``~/.pgpass``. The scheme loses any ``+driver``."""
    scheme, sep, rest = raw.partition("://")
    return _replace_password(f"{scheme.partition('+')[0]}{sep}{rest}", None)


def _replace_password(raw: str, mask: str | None) -> str:
    scheme, sep, rest = raw.partition("://")
    if not sep or scheme.lower().startswith("sqlite"):  # a file path has no password
        return raw
    main, qmark, query = rest.partition("?")
    userinfo, at, hostpart = main.rpartition("@")
    if at and ":" in userinfo:
        user = userinfo.partition(":")[0]
        main = f"{user}:{mask}@{hostpart}" if mask is not None else f"{user}@{hostpart}"
    if mask is not None:
        query = re.sub(r"(^|&)(password=)[^&]*", rf"\1\2{mask}", query, flags=re.IGNORECASE)
    else:
        kept = [p for p in query.split("&") if p and not p.lower().startswith("password=")]
        query = "&".join(kept)
        qmark = qmark if query else ""
    return f"{scheme}{sep}{main}{qmark}{query}"


def shown_database_url(raw: str) -> str:
    """The URL with its password masked; for a SQLite file, with the absolute path it
    resolves to when the URL does not show it (a relative path). Never raises."""
    try:
        path = sqlite_path(raw)
    except DatabaseURLError:
        path = None
    shown = masked_database_url(raw)
    return f"{shown} ({path})" if path is not None and str(path) not in shown else shown


def sqlite_path(raw: str) -> Path | None:
    """The absolute path of a SQLite file database (None: PostgreSQL or in-memory)."""
    url = async_url(raw)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database).expanduser().resolve()


def describe_database_error(exc: BaseException, raw_url: str) -> str | None:
    """One line saying why the database cannot be used and what to do; None if not a
    database connection problem."""
    orig = getattr(exc, "orig", None) or exc
    if not type(orig).__module__.startswith(("sqlite3", "psycopg")):
        return None
    text = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
    path = sqlite_path(raw_url)
    if path is not None:
        return _describe_sqlite_error(text, path)
    shown = masked_database_url(raw_url)
    text = " ".join(text.removeprefix("connection failed: ").replace("FATAL:", "").split())
    if missing := re.search(r'database "[^"]*" does not exist', text):
        name = async_url(raw_url).database or "calnotify"
        return (
            f"{missing.group(0)} ({shown}): create it (`createdb {name}`) "
            "or fix CALNOTIFY_DATABASE_URL"
        )
    if "authentication failed" in text or "no password supplied" in text:
        return (
            f"the database refused the login ({shown}): "
            "check the user and password in CALNOTIFY_DATABASE_URL"
        )
    if "refused" in text or "timeout" in text.lower() or "resolve" in text or "translate" in text:
        return (
            f"cannot reach the database at {shown}: {text}; "
            "is PostgreSQL running there? (CALNOTIFY_DATABASE_URL)"
        )
    return f"database error ({shown}): {text}"


def _describe_sqlite_error(text: str, path: Path) -> str:
    lowered = text.lower()
    if "locked" in lowered or "busy" in lowered:
        return (
            f"the SQLite database {path} is locked: another process kept it busy for longer "
            "than this command waits (CALNOTIFY_SQLITE_BUSY_TIMEOUT_MS); try again"
        )
    if not path.parent.is_dir():
        why = f"the folder {path.parent} does not exist"
    elif path.is_dir():
        why = "that is a folder"
    elif not os.access(path.parent, os.W_OK):
        why = f"no permission to write in {path.parent}"
    elif path.exists() and not os.access(path, os.W_OK):
        why = f"no permission to write {path}"
    elif "unable to open" in lowered:
        why = text
    else:
        return f"SQLite error on {path}: {text} (CALNOTIFY_DATABASE_URL)"
    return f"cannot open the SQLite database {path}: {why} (CALNOTIFY_DATABASE_URL)"


#: Seconds a PostgreSQL connection of a command (migrations, ``check``, admin commands)
#: may take to open, so that an unreachable host fails in seconds rather than minutes.
CONNECT_TIMEOUT_SECONDS = 10


def connect_args(url: URL, timeout: int = CONNECT_TIMEOUT_SECONDS) -> dict[str, Any]:
    """Driver arguments bounding how long a connection takes to open (PostgreSQL only;
    a ``connect_timeout`` in the URL itself wins)."""
    if url.get_backend_name() != "postgresql" or "connect_timeout" in url.query:
        return {}
    return {"connect_timeout": timeout}


def sync_url(raw: str) -> URL:
    """The same database through a synchronous driver (used by Alembic and admin commands)."""
    url = async_url(raw)
    return url.set(drivername="sqlite" if url.get_backend_name() == "sqlite" else url.drivername)
