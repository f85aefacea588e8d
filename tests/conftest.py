"""Test fixtures: every database test runs on SQLite and, when
``CALNOTIFY_TEST_DATABASE_URL`` names a PostgreSQL server, on PostgreSQL too."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from calnotify.app import create_app
from calnotify.clock import ManualClock
from calnotify.config import Settings
from calnotify.db.base import Base
from calnotify.db.engine import Database
from calnotify.db.migrate import upgrade
from calnotify.db.urls import sync_url
from tests.engine import Scenario, ScriptedProvider
from tests.factories import Tenant, make_tenant
from tests.processes import Server, start_server

PG_ENV = "CALNOTIFY_TEST_DATABASE_URL"
PG_SKIP_REASON = f"PostgreSQL half skipped: set {PG_ENV}=postgresql://user@host:port/db to run it"


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for every test."""
    path = tmp_path_factory.mktemp("template") / "calnotify.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test session, dropped afterwards."""
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(PG_SKIP_REASON)
    admin_url = sync_url(base)
    name = f"calnotify_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(base).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        path = tmp_path / "calnotify.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("pg_database")
    engine = create_engine(sync_url(url))
    with engine.begin() as conn:
        tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
        conn.execute(text(f"TRUNCATE {tables} CASCADE"))
    engine.dispose()
    return url


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url)


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    database = Database(settings.database_url)
    yield database
    await database.dispose()


NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> ManualClock:
    """The time as the API and the dispatcher see it; tests move it with ``advance``."""
    return ManualClock(NOW)


@pytest.fixture
async def client(
    settings: Settings, db: Database, clock: ManualClock
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, database=db, clock=clock)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://calnotify.test") as c:
        yield c


@pytest.fixture
async def tenant(db: Database) -> Tenant:
    return await make_tenant(db, name="Acme Dental")


@pytest.fixture
async def other_tenant(db: Database) -> Tenant:
    return await make_tenant(db, name="Globex Clinic")


@pytest.fixture
def server(database_url: str) -> Iterator[Server]:
    """``calnotify serve`` in a process of its own, on the test database."""
    with start_server(database_url) as running:
        yield running


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not os.environ.get(PG_ENV):
        terminalreporter.write_sep("!", PG_SKIP_REASON, yellow=True, bold=True)
    if terminalreporter.stats.get("skipped") and not shutil.which("chromium"):
        reason = "console browser tests skipped: no Chromium found (apt-get install chromium)"
        terminalreporter.write_sep("!", reason, yellow=True, bold=True)


@pytest.fixture
def provider() -> ScriptedProvider:
    """The email channel's provider of :func:`scenario`: answers as each test scripts it."""
    return ScriptedProvider()


@pytest.fixture
def scenario(
    client: httpx.AsyncClient,
    tenant: Tenant,
    clock: ManualClock,
    db: Database,
    settings: Settings,
    provider: ScriptedProvider,
) -> Scenario:
    """A tenant's API, dispatcher and clock, sending through :func:`provider` (a test file
    may define its own)."""
    return Scenario(client, tenant, clock, db, settings, provider=provider)
