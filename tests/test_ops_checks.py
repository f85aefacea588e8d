"""`calnotify check` and the startup summary, against real databases and real local
SMTP and Twilio-shaped servers. Assertions are on the lines a user reads."""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from calnotify import __version__
from calnotify.config import Settings
from calnotify.db.migrate import current_head, script_directory, upgrade
from calnotify.ops.checks import (
    CheckResult,
    check_database,
    check_public_url,
    check_smtp,
    check_twilio,
    masked_database_url,
    run_checks,
)
from calnotify.ops.summary import startup_summary
from tests.providers import TwilioRecord, free_port, smtp_server, twilio_server

HEAD = current_head()


def previous_revision() -> str:
    assert HEAD is not None
    down = script_directory().get_revision(HEAD).down_revision
    assert isinstance(down, str)
    return down


@pytest.fixture
def sqlite_file(tmp_path: Path, sqlite_template: Path) -> Path:
    path = tmp_path / "calnotify.db"
    shutil.copyfile(sqlite_template, path)
    return path


# --- CheckResult.line ---------------------------------------------------------------------


def test_line_has_aligned_columns() -> None:
    assert CheckResult("database", True, "fine").line() == "ok    database    fine"
    assert CheckResult("smtp", False, "broken").line() == "FAIL  smtp        broken"
    assert CheckResult("public_url", False, "x").line() == "FAIL  public_url  x"


# --- database -----------------------------------------------------------------------------


async def test_migrated_sqlite_is_ok(sqlite_file: Path) -> None:
    result = await check_database(Settings(database_url=f"sqlite:///{sqlite_file}"))
    assert result.line() == (
        f"ok    database    sqlite:///{sqlite_file} at migration {HEAD} (latest)"
    )


async def test_relative_sqlite_path(sqlite_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(sqlite_file.parent)
    result = await check_database(Settings(database_url="sqlite:///./calnotify.db"))
    assert result.ok
    assert result.detail == f"sqlite:///./calnotify.db at migration {HEAD} (latest)"


async def test_missing_sqlite_file_fails_and_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.db"
    result = await check_database(Settings(database_url=f"sqlite:///{path}"))
    assert not result.ok
    assert result.detail == (
        f"sqlite:///{path}: database file {path} does not exist: run `calnotify db upgrade` "
        "to create it, or point CALNOTIFY_DATABASE_URL at the existing file"
    )
    assert not path.exists()


async def test_sqlite_path_that_is_a_directory(tmp_path: Path) -> None:
    result = await check_database(Settings(database_url=f"sqlite:///{tmp_path}"))
    assert result.line() == (
        f"FAIL  database    sqlite:///{tmp_path}: {tmp_path} is not a file: "
        "fix CALNOTIFY_DATABASE_URL"
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
async def test_unwritable_sqlite_directory(sqlite_file: Path) -> None:
    sqlite_file.parent.chmod(0o555)
    try:
        result = await check_database(Settings(database_url=f"sqlite:///{sqlite_file}"))
    finally:
        sqlite_file.parent.chmod(0o755)
    assert not result.ok
    assert f"directory {sqlite_file.parent} is not writable by this user" in result.detail


async def test_sqlite_at_an_older_migration(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    upgrade(f"sqlite:///{path}", previous_revision())
    result = await check_database(Settings(database_url=f"sqlite:///{path}"))
    assert result.line() == (
        f"FAIL  database    sqlite:///{path} is at migration {previous_revision()}, "
        f"this calnotify needs {HEAD}: run `calnotify db upgrade`"
    )


async def test_sqlite_migrated_by_a_newer_calnotify(sqlite_file: Path) -> None:
    with sqlite3.connect(sqlite_file) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    conn.close()
    result = await check_database(Settings(database_url=f"sqlite:///{sqlite_file}"))
    assert not result.ok
    assert result.detail == (
        f"sqlite:///{sqlite_file} is at migration 9999, which calnotify {__version__} does not "
        f"know (its latest is {HEAD}): run the calnotify version that migrated it, "
        "or a newer one"
    )


async def test_empty_sqlite_file_is_not_migrated(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    sqlite3.connect(path).close()
    result = await check_database(Settings(database_url=f"sqlite:///{path}"))
    assert result.detail == (
        f"sqlite:///{path} has no calnotify schema (never migrated): run `calnotify db upgrade`"
    )
    assert not result.ok


async def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("not a database, just some words " * 100)
    result = await check_database(Settings(database_url=f"sqlite:///{path}"))
    assert not result.ok
    assert result.detail.startswith(f"sqlite:///{path}: ")
    assert "not a database" in result.detail
    assert "\n" not in result.detail


async def test_unreachable_postgresql_fails_fast_without_the_password() -> None:
    url = "postgresql://app:hunter2@127.0.0.1:1/calnotify"
    started = time.monotonic()
    result = await check_database(Settings(database_url=url), timeout=5)
    assert time.monotonic() - started < 4
    assert not result.ok
    assert result.detail.startswith(
        "postgresql://app:***@127.0.0.1:1/calnotify: cannot connect to 127.0.0.1:1: "
    )
    assert result.detail.endswith("(check CALNOTIFY_DATABASE_URL)")
    assert "refused" in result.detail.lower()
    assert "hunter2" not in result.line()


async def test_unsupported_database_url() -> None:
    result = await check_database(Settings(database_url="mysql://app:hunter2@db/calnotify"))
    assert not result.ok
    assert result.detail.startswith("CALNOTIFY_DATABASE_URL: unsupported database 'mysql'")
    assert "hunter2" not in result.detail


async def test_migrated_postgresql_is_ok(pg_database: str) -> None:
    result = await check_database(Settings(database_url=pg_database))
    assert result.ok, result.detail
    assert result.detail == f"{masked_database_url(pg_database)} at migration {HEAD} (latest)"


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("postgresql://app:hunter2@db:5432/cal", "postgresql://app:***@db:5432/cal"),
        ("postgresql://app:p@ss/w0rd@db/cal", "postgresql://app:***@db/cal"),
        (
            "postgresql://app@db/cal?password=hunter2&x=1",
            "postgresql://app@db/cal?password=***&x=1",
        ),
        ("postgresql://db/cal", "postgresql://db/cal"),
        ("sqlite:///./calnotify.db", "sqlite:///./calnotify.db"),
        ("not a url", "not a url"),
    ],
)
def test_masked_database_url(raw: str, shown: str) -> None:
    assert masked_database_url(raw) == shown


# --- SMTP ---------------------------------------------------------------------------------


def smtp_settings(port: int, **extra: object) -> Settings:
    values: dict[str, object] = {
        "smtp_host": "127.0.0.1",
        "smtp_port": port,
        "smtp_security": "none",
    }
    values.update(extra)
    return Settings(**values)  # type: ignore[arg-type]


async def test_plain_relay_is_ok_and_receives_nothing() -> None:
    with smtp_server() as (inbox, port):
        result = await check_smtp(smtp_settings(port))
        assert result is not None
        assert result.line() == (
            f"ok    smtp        127.0.0.1:{port} (plain, no TLS): connected (no login set)"
        )
        assert inbox.connections == 1  # it said EHLO
        assert inbox.messages == []


async def test_starttls_against_a_server_without_it() -> None:
    with smtp_server() as (_, port):
        result = await check_smtp(smtp_settings(port, smtp_security="starttls"))
    assert result is not None
    assert result.line() == (
        f"FAIL  smtp        127.0.0.1:{port}: server does not offer STARTTLS "
        "(set CALNOTIFY_SMTP_SECURITY=none for a plain relay, or tls for implicit TLS)"
    )


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_login() -> None:
    with smtp_server(login=("rosa", "right-password")) as (inbox, port):
        wrong = await check_smtp(
            smtp_settings(port, smtp_username="rosa", smtp_password="wrong-password")
        )
        right = await check_smtp(
            smtp_settings(port, smtp_username="rosa", smtp_password="right-password")
        )
    assert wrong is not None
    assert right is not None
    assert not wrong.ok
    assert wrong.detail.startswith(f"127.0.0.1:{port}: login as rosa refused (535 ")
    assert wrong.detail.endswith("): check CALNOTIFY_SMTP_USERNAME and CALNOTIFY_SMTP_PASSWORD")
    assert "wrong-password" not in wrong.detail
    assert right.line() == (
        f"ok    smtp        127.0.0.1:{port} (plain, no TLS): connected, logged in as rosa; "
        "the password travels unencrypted (CALNOTIFY_SMTP_SECURITY=none)"
    )
    assert inbox.messages == []


async def test_username_for_a_server_without_login() -> None:
    with smtp_server() as (_, port):
        result = await check_smtp(smtp_settings(port, smtp_username="rosa", smtp_password="pw"))
    assert result is not None
    assert result.detail == (
        f"127.0.0.1:{port}: the server offers no login (AUTH) on a plain connection: set "
        "CALNOTIFY_SMTP_SECURITY=starttls or tls, or unset CALNOTIFY_SMTP_USERNAME for a "
        "relay that needs no login"
    )


async def test_closed_port() -> None:
    port = free_port()
    result = await check_smtp(smtp_settings(port, smtp_security="starttls"))
    assert result is not None
    assert result.line() == (
        f"FAIL  smtp        cannot connect to 127.0.0.1:{port}: connection refused"
    )


async def test_unknown_host() -> None:
    result = await check_smtp(smtp_settings(25, smtp_host="mail.calnotify.invalid"), timeout=5)
    assert result is not None
    assert not result.ok
    assert result.detail.startswith(
        "cannot connect to mail.calnotify.invalid:25: cannot resolve mail.calnotify.invalid: "
    )


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections and never says anything."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


async def test_a_server_that_never_greets_is_bounded(silent_port: int) -> None:
    started = time.monotonic()
    result = await check_smtp(smtp_settings(silent_port), timeout=0.5)
    assert time.monotonic() - started < 3
    assert result is not None
    assert result.line() == (f"FAIL  smtp        127.0.0.1:{silent_port}: no answer within 0.5 s")


def test_no_smtp_host_means_no_check() -> None:
    import asyncio

    assert asyncio.run(check_smtp(Settings())) is None


# TLS: a self-signed certificate for 127.0.0.1, made by openssl.


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [  # noqa: S607
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def server_tls(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


@pytest.fixture
def trusted(certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """The client trusts the test certificate (and nothing else)."""
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))


@pytest.mark.usefixtures("trusted")
async def test_starttls_and_login(server_tls: ssl.SSLContext) -> None:
    with smtp_server(login=("rosa", "right-password"), starttls=server_tls) as (inbox, port):
        result = await check_smtp(
            smtp_settings(
                port,
                smtp_security="starttls",
                smtp_username="rosa",
                smtp_password="right-password",
            )
        )
    assert result is not None
    assert result.line() == (
        f"ok    smtp        127.0.0.1:{port} (STARTTLS): connected, logged in as rosa"
    )
    assert inbox.messages == []


@pytest.mark.usefixtures("trusted")
async def test_implicit_tls(server_tls: ssl.SSLContext) -> None:
    with smtp_server(implicit_tls=server_tls) as (_, port):
        result = await check_smtp(smtp_settings(port, smtp_security="tls"))
    assert result is not None
    assert result.line() == (
        f"ok    smtp        127.0.0.1:{port} (implicit TLS): connected (no login set)"
    )


async def test_untrusted_certificate(server_tls: ssl.SSLContext) -> None:
    with smtp_server(starttls=server_tls) as (_, port):
        result = await check_smtp(smtp_settings(port, smtp_security="starttls"))
    assert result is not None
    assert not result.ok
    assert result.detail.startswith(
        f"127.0.0.1:{port}: the server's TLS certificate is not trusted (self"
    )
    assert result.detail.endswith(
        "give it a certificate from a public CA for this host name, or trust its CA (SSL_CERT_FILE)"
    )


async def test_implicit_tls_against_a_plain_server() -> None:
    with smtp_server() as (_, port):
        result = await check_smtp(smtp_settings(port, smtp_security="tls"), timeout=3)
    assert result is not None
    assert not result.ok
    assert result.detail.startswith(f"127.0.0.1:{port}: TLS handshake failed (")
    assert result.detail.endswith(
        "CALNOTIFY_SMTP_SECURITY=tls expects implicit TLS (usually port 465); "
        "use starttls for port 587, or none for a plain relay"
    )


# --- Twilio -------------------------------------------------------------------------------


@pytest.fixture
def twilio() -> Iterator[tuple[TwilioRecord, str]]:
    with twilio_server() as running:
        yield running


def twilio_settings(base_url: str, **extra: object) -> Settings:
    values: dict[str, object] = {
        "twilio_account_sid": "AC123",
        "twilio_auth_token": "secret-token",
        "twilio_from_number": "+14155550000",
        "twilio_base_url": base_url,
        "public_url": "https://cal.example",
    }
    values.update(extra)
    return Settings(**values)  # type: ignore[arg-type]


async def test_twilio_account_is_read() -> None:
    with twilio_server(auth_token="secret-token") as (record, base_url):
        result = await check_twilio(twilio_settings(base_url))
        assert record.requests == []  # nothing sent
        [read] = record.account_reads
    assert result is not None
    assert result.line() == (f'ok    twilio      {base_url} account AC123 "Acme Test" (active)')
    assert read["path"] == "/2010-04-01/Accounts/AC123.json"


async def test_twilio_trial_account_without_a_sender() -> None:
    with twilio_server(auth_token="secret-token") as (record, base_url):
        record.account = {"friendly_name": "Trial", "status": "active", "type": "Trial"}
        result = await check_twilio(twilio_settings(base_url, twilio_from_number=""))
    assert result is not None
    assert result.ok
    assert result.detail == (
        f'{base_url} account AC123 "Trial" (active), trial account: sends only to verified '
        "numbers; CALNOTIFY_TWILIO_FROM_NUMBER is not set: only notifications with their "
        "own fromNumber can be sent"
    )


async def test_twilio_suspended_account() -> None:
    with twilio_server(auth_token="secret-token") as (record, base_url):
        record.account = {"friendly_name": "Acme", "status": "suspended"}
        result = await check_twilio(twilio_settings(base_url))
    assert result is not None
    assert result.line() == (
        f'FAIL  twilio      {base_url} account AC123 "Acme" is suspended: Twilio sends '
        "nothing until the account is active again"
    )


async def test_twilio_wrong_credentials(twilio: tuple[TwilioRecord, str]) -> None:
    _, base_url = twilio  # expects the token "secret"
    result = await check_twilio(twilio_settings(base_url))
    assert result is not None
    assert result.line() == (
        f"FAIL  twilio      {base_url}: credentials rejected (401): check "
        "CALNOTIFY_TWILIO_ACCOUNT_SID and CALNOTIFY_TWILIO_AUTH_TOKEN"
    )
    assert "secret-token" not in result.line()


async def test_twilio_unreachable() -> None:
    base_url = f"http://127.0.0.1:{free_port()}"
    result = await check_twilio(twilio_settings(base_url), timeout=3)
    assert result is not None
    assert not result.ok
    assert result.line() == f"FAIL  twilio      {base_url}: cannot connect: connection refused"


async def test_twilio_base_url_that_is_not_http() -> None:
    result = await check_twilio(twilio_settings("ftp://api.twilio.example"))
    assert result is not None
    assert not result.ok
    assert result.detail.startswith("ftp://api.twilio.example: not an http(s) URL (")
    assert result.detail.endswith("): fix CALNOTIFY_TWILIO_BASE_URL")


def test_twilio_not_configured_means_no_check() -> None:
    import asyncio

    assert asyncio.run(check_twilio(Settings(twilio_account_sid="AC123"))) is None


# --- public URL ---------------------------------------------------------------------------


def test_public_url_missing_with_twilio() -> None:
    result = check_public_url(twilio_settings("https://api.twilio.com", public_url=""))
    assert result is not None
    assert result.line() == (
        "FAIL  public_url  CALNOTIFY_PUBLIC_URL is not set: Twilio delivery status callbacks "
        "are off and action links point to http://localhost:8000 (set it to the address "
        "Twilio and recipients reach this service at, e.g. https://calnotify.example.com)"
    )


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("cal.example.com", "is not an http:// or https:// URL"),
        ("https://", "has no host"),
        ("https://cal.example:99999", "is not a URL (Port out of range 0-65535)"),
        ("https://cal.example/x?y=1", "must not have a query or fragment"),
        ("https://cal example", "contains whitespace"),
    ],
)
def test_malformed_public_url(url: str, problem: str) -> None:
    result = check_public_url(Settings(public_url=url))
    assert result is not None
    assert result.line() == (
        f"FAIL  public_url  CALNOTIFY_PUBLIC_URL {url!r} {problem}: give the address this "
        "service is reached at from outside, e.g. https://calnotify.example.com"
    )


def test_public_url_ok() -> None:
    result = check_public_url(twilio_settings("https://api.twilio.com"))
    assert result is not None
    assert result.line() == (
        "ok    public_url  https://cal.example: Twilio status callbacks go to "
        "https://cal.example/webhooks/twilio/status, action links to https://cal.example/a/…"
    )
    assert check_public_url(Settings(public_url="https://cal.example/")).line() == (
        "ok    public_url  https://cal.example/: action links go to https://cal.example/a/… "
        "(Twilio is not configured: no callbacks expected)"
    )


def test_public_url_unset_says_links_point_to_localhost() -> None:
    assert check_public_url(Settings()).line() == (
        "warn  public_url  not set: action links in messages point to http://localhost:8000 "
        "(set CALNOTIFY_PUBLIC_URL to the address recipients reach this service at)"
    )


# --- run_checks ---------------------------------------------------------------------------


async def test_everything_configured_and_working(sqlite_file: Path) -> None:
    with (
        smtp_server() as (_, smtp_port),
        twilio_server(auth_token="secret-token") as (_, base_url),
    ):
        settings = twilio_settings(
            base_url,
            database_url=f"sqlite:///{sqlite_file}",
            smtp_host="127.0.0.1",
            smtp_port=smtp_port,
            smtp_security="none",
        )
        results = await run_checks(settings)
    assert [(r.name, r.ok) for r in results] == [
        ("database", True),
        ("smtp", True),
        ("twilio", True),
        ("public_url", True),
    ], [r.line() for r in results]


async def test_nothing_configured_checks_the_database_and_says_where_links_point(
    sqlite_file: Path,
) -> None:
    results = await run_checks(Settings(database_url=f"sqlite:///{sqlite_file}"))
    assert [(r.name, r.ok) for r in results] == [("database", True), ("public_url", True)]
    assert "http://localhost:8000" in results[1].detail


async def test_one_failure_among_oks_is_bounded(sqlite_file: Path, silent_port: int) -> None:
    settings = smtp_settings(silent_port, database_url=f"sqlite:///{sqlite_file}")
    started = time.monotonic()
    results = await run_checks(settings, timeout=0.5)
    assert time.monotonic() - started < 3
    assert [(r.name, r.ok) for r in results] == [
        ("database", True),
        ("smtp", False),
        ("public_url", True),
    ]


# --- startup summary ----------------------------------------------------------------------


def test_startup_summary_with_providers() -> None:
    settings = Settings(
        database_url="postgresql://calnotify:hunter2@db.internal:5432/calnotify",
        smtp_host="mail.example.com",
        smtp_username="notify@example.com",
        smtp_password="smtp-secret",
        twilio_account_sid="AC123",
        twilio_auth_token="twilio-secret",
        twilio_from_number="+14155550000",
        public_url="https://cal.example.com/",
    )
    lines = startup_summary(settings, mode="API + dispatcher (2 loops)")
    assert lines == [
        f"calnotify {__version__}",
        "database: postgresql://calnotify:***@db.internal:5432/calnotify",
        "email: smtp mail.example.com:587 starttls as notify@example.com",
        "sms: twilio https://api.twilio.com from +14155550000",
        "whatsapp: twilio https://api.twilio.com from +14155550000",
        "inApp: inbox",
        "twilio status callbacks: https://cal.example.com/webhooks/twilio/status",
        "action links: https://cal.example.com/a/…",
        "mode: API + dispatcher (2 loops)",
    ]
    text = "\n".join(lines)
    assert "hunter2" not in text
    assert "secret" not in text


def test_startup_summary_with_the_outbox() -> None:
    lines = startup_summary(Settings(database_url="sqlite:///./calnotify.db"), mode="worker")
    assert lines == [
        f"calnotify {__version__}",
        f"database: sqlite:///./calnotify.db ({Path.cwd() / 'calnotify.db'})",
        "email: outbox (CALNOTIFY_SMTP_HOST not set)",
        "sms: outbox (CALNOTIFY_TWILIO_ACCOUNT_SID / CALNOTIFY_TWILIO_AUTH_TOKEN not set)",
        "whatsapp: outbox (CALNOTIFY_TWILIO_ACCOUNT_SID / CALNOTIFY_TWILIO_AUTH_TOKEN not set)",
        "inApp: inbox",
        "action links: http://localhost:8000/a/… (CALNOTIFY_PUBLIC_URL not set: links point "
        "to this machine)",
        "mode: worker",
    ]


def test_startup_summary_twilio_without_public_url_or_whatsapp_sender() -> None:
    settings = Settings(
        twilio_account_sid="AC123",
        twilio_auth_token="t",
        twilio_whatsapp_from="+14155559999",
    )
    lines = startup_summary(settings, mode="API only")
    assert (
        "sms: twilio https://api.twilio.com from nobody (CALNOTIFY_TWILIO_FROM_NUMBER not set)"
        in lines
    )
    assert "whatsapp: twilio https://api.twilio.com from +14155559999" in lines
    assert "twilio status callbacks: off (CALNOTIFY_PUBLIC_URL not set)" in lines
