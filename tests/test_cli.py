"""The ``calnotify`` command line."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, inspect

from calnotify.cli import build_parser, main
from calnotify.config import get_settings
from calnotify.db.engine import DatabaseURLError, async_url, sync_url


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
