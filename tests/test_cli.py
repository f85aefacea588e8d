"""The ``calnotify`` command line."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import make_url

from calnotify import __version__
from calnotify.cli import build_parser, main
from calnotify.config import get_settings
from calnotify.db.migrate import current_head, script_directory, upgrade
from calnotify.db.urls import (
    DatabaseURLError,
    async_url,
    connect_args,
    database_url_without_password,
    sync_url,
)
from tests.conftest import PG_ENV, PG_SKIP_REASON


@pytest.fixture
def use_database(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("CALNOTIFY_DATABASE_URL", database_url)
    get_settings.cache_clear()
    yield database_url
    get_settings.cache_clear()


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, object], str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 and out.strip() else {}), err


def run_list(
    capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, list[dict[str, object]], str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 else []), err


def test_every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    commands = [
        [],
        ["serve"],
        ["db"],
        ["db", "upgrade"],
        ["locations"],
        ["locations", "create"],
        ["users"],
        ["users", "create"],
        ["tokens"],
        ["tokens", "create"],
        ["tokens", "revoke"],
        ["tokens", "list"],
        ["locations", "list"],
        ["locations", "update"],
        ["locations", "delete"],
        ["users", "list"],
        ["db", "backup"],
        ["db", "restore"],
        ["db", "mark-restored"],
        ["check"],
        ["worker"],
        ["senders"],
        ["senders", "add"],
        ["senders", "list"],
        ["senders", "remove"],
        ["contacts"],
        ["contacts", "erase"],
        ["webhooks"],
        ["webhooks", "add"],
        ["webhooks", "list"],
        ["webhooks", "remove"],
        ["secrets"],
        ["secrets", "rotate"],
    ]
    for command in commands:
        with pytest.raises(SystemExit) as exited:
            build_parser().parse_args([*command, "--help"])
        assert exited.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith("usage: calnotify"), command
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--help"])
    serve_help = capsys.readouterr().out
    assert "--host" in serve_help and "--port" in serve_help


def test_admin_flow(use_database: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, location, _ = run(
        capsys,
        "locations",
        "create",
        "--name",
        "Acme",
        "--email",
        "a@example.com",
        "--phone",
        "+14155550100",
        "--timezone",
        "Europe/Berlin",
    )
    assert code == 0
    assert location["name"] == "Acme" and location["timezone"] == "Europe/Berlin"
    assert len(str(location["id"])) == 20

    code, user, _ = run(
        capsys,
        "users",
        "create",
        "--location",
        str(location["id"]),
        "--email",
        "b@example.com",
        "--first-name",
        "Bea",
        "--last-name",
        "Lee",
        "--role",
        "admin",
    )
    assert code == 0
    assert user["name"] == "Bea Lee" and user["role"] == "admin"

    code, token, _ = run(capsys, "tokens", "create", "--location", str(location["id"]))
    assert code == 0
    assert set(token) >= {"id", "token", "scopes"}
    assert "calendars/events.write" in token["scopes"]  # type: ignore[operator]

    code, scoped, _ = run(
        capsys,
        "tokens",
        "create",
        "--location",
        str(location["id"]),
        "--scope",
        "calendars.readonly",
        "--scope",
        "calendars/events.readonly",
    )
    assert scoped["scopes"] == ["calendars.readonly", "calendars/events.readonly"]

    code, revoked, _ = run(capsys, "tokens", "revoke", str(token["id"]))
    assert code == 0 and revoked["revoked"] is True

    code, listed, _ = run_list(capsys, "tokens", "list", "--location", str(location["id"]))
    assert code == 0
    assert [t["id"] for t in listed] == [token["id"], scoped["id"]]
    assert listed[0]["revokedAt"] and listed[1]["revokedAt"] is None
    assert listed[1]["scopes"] == ["calendars.readonly", "calendars/events.readonly"]
    assert str(listed[0]["createdAt"]).endswith("Z")
    # The secret is never stored, so it can never be listed.
    assert all("token" not in t for t in listed)
    assert str(token["token"]) not in json.dumps(listed)

    code, locations, _ = run_list(capsys, "locations", "list")
    assert [loc["id"] for loc in locations] == [location["id"]]
    code, users, _ = run_list(capsys, "users", "list", "--location", str(location["id"]))
    assert [u["email"] for u in users] == ["b@example.com"]
    code, _, err = run_list(capsys, "users", "list", "--location", "AAAAAAAAAAAAAAAAAAAA")
    assert code == 1 and "no location AAAAAAAAAAAAAAAAAAAA" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["locations", "create", "--name", "A", "--email", "nope"], "email"),
        (["locations", "create", "--name", "A", "--phone", "555"], "phone"),
        (["locations", "create", "--name", "A", "--timezone", "Mars/Olympus"], "timezone"),
        (["locations", "create", "--name", "  "], "name"),
        (
            ["users", "create", "--location", "AAAAAAAAAAAAAAAAAAAA", "--email", "a@example.com"],
            "not found",
        ),
        (["tokens", "create", "--location", "AAAAAAAAAAAAAAAAAAAA"], "not found"),
        (["tokens", "revoke", "AAAAAAAAAAAAAAAAAAAA"], "not found"),
    ],
)
def test_admin_errors_go_to_stderr(
    use_database: str, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, _, err = run(capsys, *args)
    assert code == 1
    assert message in err
    assert "Traceback" not in err


def test_bad_user_fields(use_database: str, capsys: pytest.CaptureFixture[str]) -> None:
    _, location, _ = run(capsys, "locations", "create", "--name", "Acme")
    code, _, err = run(
        capsys,
        "users",
        "create",
        "--location",
        str(location["id"]),
        "--email",
        "x",
        "--phone",
        "12",
    )
    assert code == 1
    assert "email" in err and "phone" in err


def test_db_upgrade_creates_the_schema(
    use_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["db", "upgrade"]) == 0
    assert main(["db", "upgrade"]) == 0  # idempotent
    engine = create_engine(sync_url(use_database))
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    assert {"locations", "users", "api_tokens", "calendars", "notifications", "templates"} <= tables
    assert "alembic_version" in tables


def test_bad_database_url_is_reported(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CALNOTIFY_DATABASE_URL", "mysql://root@localhost/x")
    get_settings.cache_clear()
    try:
        assert main(["db", "upgrade"]) == 1
    finally:
        get_settings.cache_clear()
    assert "CALNOTIFY_DATABASE_URL" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("raw", "driver"),
    [
        ("sqlite:///./calnotify.db", "sqlite+aiosqlite"),
        ("sqlite:////var/lib/calnotify.db", "sqlite+aiosqlite"),
        ("postgresql://postgres@127.0.0.1:5432/calnotify", "postgresql+psycopg"),
        ("postgres://u:p@db/x", "postgresql+psycopg"),
    ],
)
def test_database_urls_pick_the_async_driver(raw: str, driver: str) -> None:
    assert async_url(raw).drivername == driver


@pytest.mark.parametrize("raw", ["mysql://x/y", "not a url", ""])
def test_unsupported_database_urls(raw: str) -> None:
    with pytest.raises(DatabaseURLError):
        async_url(raw)


def one_line_error(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Run a command that must fail; its error is one or two lines, never a traceback."""
    assert main(list(args)) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert 1 <= len(err.strip().splitlines()) <= 2, err
    return err


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("CALNOTIFY_SMTP_SECURITY", "ssl", "'none', 'starttls' or 'tls'"),
        ("CALNOTIFY_LOG_LEVEL", "verbose", "critical, error, warning, info, debug"),
        ("CALNOTIFY_SMTP_PORT", "smtp", "integer"),
        ("CALNOTIFY_DISPATCH_CONCURRENCY", "0", "greater than or equal to 1"),
    ],
)
def test_invalid_setting_names_the_variable_and_allowed_values(
    environment: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    variable: str,
    value: str,
    expected: str,
) -> None:
    environment.setenv(variable, value)
    err = one_line_error(capsys, "db", "upgrade")
    assert f"{variable}={value} is not valid" in err and expected in err


def test_secrets_are_not_echoed_in_setting_errors(
    environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    environment.setenv("CALNOTIFY_SMTP_PORT", "99999")
    environment.setenv("CALNOTIFY_SMTP_PASSWORD", "hunter2")
    assert "hunter2" not in one_line_error(capsys, "check")


def test_unreachable_postgresql_is_one_line_with_the_password_masked(
    environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    environment.setenv("CALNOTIFY_DATABASE_URL", "postgresql://cal:s3cret@127.0.0.1:1/cal")
    err = one_line_error(capsys, "db", "upgrade")
    assert "cannot reach the database at postgresql://cal:***@127.0.0.1:1/cal" in err
    assert "s3cret" not in err and "CALNOTIFY_DATABASE_URL" in err


def test_missing_postgresql_database_says_how_to_create_it(
    environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(PG_SKIP_REASON)
    url = make_url(base).set(database="calnotify_no_such_db").render_as_string(False)
    environment.setenv("CALNOTIFY_DATABASE_URL", url)
    err = one_line_error(capsys, "db", "upgrade")
    assert 'database "calnotify_no_such_db" does not exist' in err
    assert "createdb calnotify_no_such_db" in err


def test_sqlite_file_in_a_missing_folder(
    environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    environment.setenv("CALNOTIFY_DATABASE_URL", f"sqlite:///{tmp_path}/nowhere/cal.db")
    err = one_line_error(capsys, "db", "upgrade")
    assert f"the folder {tmp_path}/nowhere does not exist" in err


def test_debug_shows_the_traceback(
    environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    environment.setenv("CALNOTIFY_DATABASE_URL", "postgresql://cal@127.0.0.1:1/cal")
    assert main(["--debug", "db", "upgrade"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "cannot reach the database" in err.splitlines()[-1]


def test_admin_commands_never_create_a_database(
    environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    environment.chdir(tmp_path)
    environment.delenv("CALNOTIFY_DATABASE_URL", raising=False)
    for args in (["locations", "list"], ["tokens", "list", "--location", "x"]):
        err = one_line_error(capsys, *args)
        assert f"no database at {tmp_path.resolve()}/calnotify.db" in err
        assert "calnotify db upgrade" in err
    assert not (tmp_path / "calnotify.db").exists()
    assert main(["db", "upgrade"]) == 0
    assert (tmp_path / "calnotify.db").exists()
    code, locations, _ = run_list(capsys, "locations", "list")
    assert code == 0 and locations == []


def test_db_backup_copies_a_sqlite_database(
    environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    environment.setenv("CALNOTIFY_DATABASE_URL", f"sqlite:///{tmp_path}/live.db")
    assert main(["db", "upgrade"]) == 0
    run(capsys, "locations", "create", "--name", "Kept")
    target = tmp_path / "copy.db"
    assert main(["db", "backup", str(target)]) == 0
    assert "backed up" in capsys.readouterr().err
    environment.setenv("CALNOTIFY_DATABASE_URL", f"sqlite:///{target}")
    get_settings.cache_clear()
    code, locations, _ = run_list(capsys, "locations", "list")
    assert code == 0 and [loc["name"] for loc in locations] == ["Kept"]
    # Never overwrites.
    assert "already exists" in one_line_error(capsys, "db", "backup", str(target))


def test_db_backup_on_postgresql_points_to_pg_dump(
    environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    environment.setenv("CALNOTIFY_DATABASE_URL", "postgresql://cal:pw@db.example/cal")
    err = one_line_error(capsys, "db", "backup", "/tmp/x.dump")
    assert "`pg_dump --format=custom --file=calnotify.dump postgresql://cal@db.example/cal`" in err
    assert "PGPASSWORD or ~/.pgpass" in err
    assert "pw" not in err.replace("PGPASSWORD", "").replace(".pgpass", "")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("postgresql://cal:p@ss@db:5433/cal", "postgresql://cal@db:5433/cal"),
        ("postgres://cal@db/cal", "postgres://cal@db/cal"),
        ("postgresql+psycopg://cal:pw@db/cal", "postgresql://cal@db/cal"),
        (
            "postgresql://cal@db/cal?password=pw&sslmode=require",
            "postgresql://cal@db/cal?sslmode=require",
        ),
        ("postgresql://cal@db/cal?Password=pw", "postgresql://cal@db/cal"),
        ("sqlite:///./calnotify.db", "sqlite:///./calnotify.db"),
    ],
)
def test_database_url_without_password(raw: str, expected: str) -> None:
    assert database_url_without_password(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("postgresql://cal@db/cal", {"connect_timeout": 10}),
        ("postgresql://cal@db/cal?connect_timeout=3", {}),  # the URL's own wins
        ("sqlite:///./calnotify.db", {}),
    ],
)
def test_command_connections_to_postgresql_time_out(raw: str, expected: dict[str, int]) -> None:
    assert connect_args(async_url(raw)) == expected


def test_db_backup_of_a_path_with_uri_characters(
    environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    folder = tmp_path / "backups #1"  # a sqlite URI would end at the #
    folder.mkdir()
    environment.setenv("CALNOTIFY_DATABASE_URL", f"sqlite:///{folder}/live.db")
    assert main(["db", "upgrade"]) == 0
    run(capsys, "locations", "create", "--name", "Kept")
    assert main(["db", "backup", str(folder / "copy.db")]) == 0
    assert f"backed up {folder}/live.db" in capsys.readouterr().err
    with sqlite3.connect(folder / "copy.db") as conn:
        assert conn.execute("SELECT name FROM locations").fetchall() == [("Kept",)]
    conn.close()


def previous_revision() -> str:
    head = current_head()
    assert head is not None
    down = script_directory().get_revision(head).down_revision
    assert isinstance(down, str)
    return down


def test_db_upgrade_names_the_database_it_upgraded(
    environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    environment.chdir(tmp_path)
    environment.delenv("CALNOTIFY_DATABASE_URL", raising=False)
    assert main(["db", "upgrade"]) == 0
    assert capsys.readouterr().err == (
        f"upgraded sqlite:///./calnotify.db ({tmp_path.resolve()}/calnotify.db): "
        f"at the latest migration, {current_head()}\n"
    )


def test_admin_commands_do_not_migrate_an_old_database(
    environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "old.db"
    url = f"sqlite:///{path}"
    upgrade(url, previous_revision())
    environment.setenv("CALNOTIFY_DATABASE_URL", url)
    for args in (
        ["locations", "list"],
        ["users", "list", "--location", "L"],
        ["tokens", "create", "--location", "L"],
        ["senders", "list", "--location", "L"],
    ):
        err = one_line_error(capsys, *args)
        assert err == (
            f"calnotify: the database at {url} is at migration {previous_revision()}, this "
            f"calnotify needs {current_head()}: run `calnotify db upgrade`\n"
        )
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [
            (previous_revision(),)
        ]
    conn.close()
    assert main(["db", "upgrade"]) == 0
    code, locations, _ = run_list(capsys, "locations", "list")
    assert code == 0 and locations == []


def test_a_database_of_a_newer_calnotify_is_one_line(
    use_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    if not use_database.startswith("sqlite"):
        pytest.skip("SQLite only: the revision is set by hand")
    with sqlite3.connect(use_database.removeprefix("sqlite:///")) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    conn.close()
    for args in (["db", "upgrade"], ["locations", "list"]):
        err = one_line_error(capsys, *args)
        assert f"the database at {use_database} is at migration 9999, which calnotify" in err
        assert "run the calnotify version that migrated it, or a newer one" in err


def test_a_locked_sqlite_database_is_not_called_unopenable(
    use_database: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    if not use_database.startswith("sqlite"):
        pytest.skip("SQLite only")
    monkeypatch.setenv("CALNOTIFY_SQLITE_BUSY_TIMEOUT_MS", "50")
    get_settings.cache_clear()
    path = use_database.removeprefix("sqlite:///")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        err = one_line_error(capsys, "locations", "create", "--name", "Acme")
    finally:
        holder.close()
    assert f"the SQLite database {path} is locked" in err
    assert "cannot open" not in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["serve", "--port", "0"], "argument --port: 0 is not a TCP port (1 to 65535)"),
        (["serve", "--port", "65536"], "argument --port: 65536 is not a TCP port"),
        (["serve", "--port", "http"], "argument --port: 'http' is not a whole number"),
        (["serve", "--workers", "0"], "argument --workers: 0 is less than 1"),
        (["serve", "--concurrency", "-2"], "argument --concurrency: -2 is less than 1"),
        (["worker", "--concurrency", "0"], "argument --concurrency: 0 is less than 1"),
        (["check", "--timeout", "0"], "argument --timeout: 0 is not a positive number"),
        (["check", "--timeout", "nan"], "argument --timeout: nan is not a positive number"),
    ],
)
def test_out_of_range_arguments_are_two_lines(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(args)
    assert exited.value.code == 2
    first, second = capsys.readouterr().err.splitlines()
    assert first.startswith(f"calnotify {args[0]}: {message}")
    assert second == f"calnotify {args[0]}: see `calnotify {args[0]} --help`"


def test_debug_is_taken_before_or_after_the_command() -> None:
    parser = build_parser()
    assert parser.parse_args(["serve"]).debug is False
    assert parser.parse_args(["--debug", "serve"]).debug is True
    assert parser.parse_args(["serve", "--debug", "--port", "9000"]).debug is True
    assert parser.parse_args(["db", "upgrade", "--debug"]).debug is True
    assert parser.parse_args(["db", "--debug", "upgrade"]).debug is True
    assert parser.parse_args(["tokens", "list", "--location", "L", "--debug"]).debug is True


def test_debug_after_the_command_shows_the_traceback(
    environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    environment.setenv("CALNOTIFY_DATABASE_URL", "postgresql://cal@127.0.0.1:1/cal")
    assert main(["db", "upgrade", "--debug"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "cannot reach the database" in err.splitlines()[-1]


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"calnotify {__version__}"


def test_senders_add_list_remove(use_database: str, capsys: pytest.CaptureFixture[str]) -> None:
    _, location, _ = run(capsys, "locations", "create", "--name", "Acme")
    loc = str(location["id"])
    code, added, _ = run(
        capsys, "senders", "add", "--location", loc, "--email", "Desk@ACME.example"
    )
    assert code == 0
    assert (added["locationId"], added["kind"], added["value"]) == (
        loc,
        "email",
        "Desk@acme.example",
    )
    assert str(added["createdAt"]).endswith("Z")
    # Adding again is a no-op that shows the one there is.
    code, again, _ = run(
        capsys, "senders", "add", "--location", loc, "--email", "Desk@acme.EXAMPLE"
    )
    assert code == 0 and again == added
    code, idn, _ = run(
        capsys, "senders", "add", "--location", loc, "--email", "info@bücher.example"
    )
    assert idn["value"] == "info@xn--bcher-kva.example"
    code, number, _ = run(
        capsys, "senders", "add", "--location", loc, "--number", "+1 415 555 0100"
    )
    assert code == 0 and (number["kind"], number["value"]) == ("number", "+14155550100")

    code, listed, _ = run_list(capsys, "senders", "list", "--location", loc)
    assert code == 0
    assert [(s["kind"], s["value"]) for s in listed] == [
        ("email", "Desk@acme.example"),
        ("email", "info@xn--bcher-kva.example"),
        ("number", "+14155550100"),
    ]

    code, removed, _ = run(
        capsys, "senders", "remove", "--location", loc, "--email", "info@Bücher.example"
    )
    assert code == 0 and removed["removed"] is True and removed["id"] == idn["id"]
    code, removed, _ = run(
        capsys, "senders", "remove", "--location", loc, "--number", "+14155550100"
    )
    assert code == 0 and removed["value"] == "+14155550100"
    code, listed, _ = run_list(capsys, "senders", "list", "--location", loc)
    assert [s["value"] for s in listed] == ["Desk@acme.example"]
    err = one_line_error(capsys, "senders", "remove", "--location", loc, "--number", "+14155550100")
    assert "+14155550100 is not an allowed sender of location" in err
    assert f"calnotify senders list --location {loc}" in err

    # Another location's list is its own.
    _, other, _ = run(capsys, "locations", "create", "--name", "Globex")
    code, listed, _ = run_list(capsys, "senders", "list", "--location", str(other["id"]))
    assert code == 0 and listed == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["add", "--email", "not-an-address"], "--email: 'not-an-address' is not a valid email"),
        (["add", "--email", "a@b"], "is not a valid email address"),
        (["add", "--number", "14155550100"], "--number: '14155550100' is not an E.164"),
        (["remove", "--number", "+1-phone"], "is not an E.164 phone number"),
    ],
)
def test_senders_bad_values_are_one_line_errors(
    use_database: str, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    _, location, _ = run(capsys, "locations", "create", "--name", "Acme")
    action, *rest = args
    err = one_line_error(capsys, "senders", action, "--location", str(location["id"]), *rest)
    assert message in err


@pytest.mark.parametrize(
    "args",
    [
        ["add", "--email", "desk@acme.example"],
        ["add", "--number", "+14155550100"],
        ["remove", "--email", "desk@acme.example"],
        ["list"],
    ],
)
def test_senders_of_an_unknown_location(
    use_database: str, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    action, *rest = args
    err = one_line_error(capsys, "senders", action, "--location", "AAAAAAAAAAAAAAAAAAAA", *rest)
    assert "no location AAAAAAAAAAAAAAAAAAAA" in err


def test_senders_need_exactly_one_of_email_and_number(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for extra in ([], ["--email", "a@b.example", "--number", "+14155550100"]):
        with pytest.raises(SystemExit) as exited:
            build_parser().parse_args(["senders", "add", "--location", "L", *extra])
        assert exited.value.code == 2
    assert "--email" in capsys.readouterr().err
