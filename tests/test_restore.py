"""Backups record their instant; a restore sends nothing twice (semantics §10)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from calnotify.cli import main
from calnotify.clock import SystemClock
from calnotify.config import get_settings
from calnotify.db.engine import Database
from calnotify.db.urls import sqlite_path
from calnotify.deliveries import lifecycle
from calnotify.ops.backups import (
    BackupError,
    backup_instant,
    backup_sqlite,
    mark_restored,
    restore_sqlite,
)
from calnotify.ops.presence import Presence
from tests.conftest import NOW
from tests.engine import Scenario, ScriptedProvider

REMINDER = {
    "receiverType": "contact",
    "channel": "email",
    "notificationType": "reminder",
    "beforeTime": [{"timeOffset": 1, "unit": "hours"}],
}
BOOKED = {"receiverType": "contact", "channel": "email", "notificationType": "booked"}


def sqlite_only(database_url: str) -> Path:
    path = sqlite_path(database_url)
    if path is None:
        pytest.skip("db restore copies SQLite files; PostgreSQL restores with pg_restore")
    return path


async def booked_then_backed_up(scenario: Scenario, backup: Path) -> None:
    """Two bookings whose booked emails went out, then a backup: the first one's reminder
    is due in an hour, the second's in three days."""
    await scenario.rules(BOOKED, REMINDER)
    contact = await scenario.tenant.add_contact()
    await scenario.book(contact, NOW + timedelta(hours=2))
    await scenario.book(contact, NOW + timedelta(days=3))
    assert await scenario.dispatcher.drain() == 2
    source = sqlite_only(scenario.settings.database_url)
    backup_sqlite(source, backup, scenario.clock.now(), busy_timeout=5)


def reminders(deliveries: list[dict[str, object]]) -> list[tuple[object, object]]:
    return sorted(
        (d["status"], d["reason"]) for d in deliveries if d["notificationType"] == "reminder"
    )


async def test_a_restore_skips_what_was_due_since_the_backup(
    scenario: Scenario, provider: ScriptedProvider, tmp_path: Path
) -> None:
    backup = tmp_path / "backup.db"
    await booked_then_backed_up(scenario, backup)
    assert backup_instant(backup) == NOW
    # The first reminder goes out after the backup was taken; then the database is lost.
    assert await scenario.run_at(NOW + timedelta(hours=1, minutes=5)) == 1
    assert len(provider.sent) == 3

    restored = await restore_sqlite(
        scenario.settings.database_url,
        backup,
        scenario.clock.now(),
        resend_missed=False,
        busy_timeout=5,
    )
    assert (restored.taken_at, restored.missed.due, restored.missed.later) == (NOW, 1, 1)
    assert reminders(await scenario.deliveries()) == [("scheduled", ""), ("skipped", "restored")]
    assert await scenario.dispatcher.drain() == 0
    assert len(provider.sent) == 3  # nothing sent twice
    # The copy's own record of its instant is not part of the restored schema.
    with sqlite3.connect(sqlite_only(scenario.settings.database_url)) as connection:
        names = {r[0] for r in connection.execute("SELECT name FROM sqlite_master")}
    connection.close()
    assert "backup_info" not in names


async def test_resend_missed_leaves_them_scheduled(
    scenario: Scenario, provider: ScriptedProvider, tmp_path: Path
) -> None:
    backup = tmp_path / "backup.db"
    await booked_then_backed_up(scenario, backup)
    scenario.clock.set(NOW + timedelta(hours=1, minutes=5))
    restored = await restore_sqlite(
        scenario.settings.database_url,
        backup,
        scenario.clock.now(),
        resend_missed=True,
        busy_timeout=5,
    )
    assert (restored.missed.due, restored.missed.later) == (1, 1)
    assert reminders(await scenario.deliveries()) == [("scheduled", ""), ("scheduled", "")]
    assert await scenario.dispatcher.drain() == 1


async def test_a_restore_is_refused_while_a_worker_runs(
    scenario: Scenario, db: Database, tmp_path: Path
) -> None:
    backup = tmp_path / "backup.db"
    await booked_then_backed_up(scenario, backup)
    worker = Presence(db, scenario.clock, "worker")
    await worker.start()
    try:
        with pytest.raises(BackupError, match=r"in use by calnotify worker \(pid \d+ on "):
            await restore_sqlite(
                scenario.settings.database_url,
                backup,
                scenario.clock.now(),
                resend_missed=False,
                busy_timeout=5,
            )
    finally:
        await worker.stop()
    # Stopped, it is gone; one that stopped beating long ago is no obstacle either.
    scenario.clock.set(NOW + timedelta(minutes=1))
    await restore_sqlite(
        scenario.settings.database_url,
        backup,
        scenario.clock.now(),
        resend_missed=False,
        busy_timeout=5,
    )


async def test_a_restore_is_refused_while_deliveries_are_being_sent(
    scenario: Scenario, db: Database, tmp_path: Path
) -> None:
    backup = tmp_path / "backup.db"
    await booked_then_backed_up(scenario, backup)
    due = NOW + timedelta(hours=1)
    assert await lifecycle.claim(db, due, 10, timedelta(minutes=1))
    with pytest.raises(BackupError, match="1 deliveries are being sent right now"):
        await restore_sqlite(
            scenario.settings.database_url, backup, due, resend_missed=False, busy_timeout=5
        )


async def test_what_was_being_sent_when_the_backup_was_taken_is_skipped(
    scenario: Scenario, db: Database
) -> None:
    await scenario.rules(REMINDER)
    contact = await scenario.tenant.add_contact()
    await scenario.book(contact, NOW + timedelta(hours=2))
    later = NOW + timedelta(hours=1)
    [claimed] = await lifecycle.claim(db, later, 10, timedelta(minutes=1))
    # Its lease has long run out when the restored database is marked.
    restored = await mark_restored(db, later + timedelta(minutes=1), later + timedelta(hours=1))
    assert (restored.missed.due, restored.missed.in_flight) == (0, 1)
    [delivery] = await scenario.deliveries()
    assert (delivery["id"], delivery["status"], delivery["reason"]) == (
        claimed.id,
        "skipped",
        "restored",
    )
    with pytest.raises(BackupError, match="in the future"):
        await mark_restored(db, later + timedelta(days=1), later)


async def test_a_backup_without_its_instant_is_refused(tmp_path: Path) -> None:
    plain = tmp_path / "plain.db"
    sqlite3.connect(plain).close()
    with pytest.raises(BackupError, match="does not say when it was taken"):
        backup_instant(plain)


# --- the commands ------------------------------------------------------------------------


@pytest.fixture
def use_database(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("CALNOTIFY_DATABASE_URL", database_url)
    get_settings.cache_clear()
    yield database_url
    get_settings.cache_clear()


def cli(*args: str) -> asyncio.Future[int]:
    """The command, run beside the test's event loop."""
    return asyncio.ensure_future(asyncio.to_thread(main, list(args)))


async def test_mark_restored_skips_what_was_due_since(
    scenario: Scenario, use_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    real_now = datetime.now(UTC)
    scenario.clock.set(real_now - timedelta(hours=3))
    await scenario.rules(REMINDER)
    contact = await scenario.tenant.add_contact()
    await scenario.book(contact, real_now - timedelta(hours=1))  # its reminder: 2 h ago
    await scenario.book(contact, real_now + timedelta(days=3))
    since = (real_now - timedelta(hours=4)).isoformat()

    worker = Presence(scenario.db, SystemClock(), "worker")
    await worker.start()
    try:
        assert await cli("db", "mark-restored", "--since", since) == 1
        assert "nothing marked: the database is in use by calnotify worker" in (
            capsys.readouterr().err
        )
    finally:
        await worker.stop()

    assert await cli("db", "mark-restored", "--since", since) == 0
    out = capsys.readouterr().out
    assert "skipped (reason restored): 1 due since" in out
    assert "still scheduled: 1 due later" in out
    assert reminders(await scenario.deliveries()) == [("scheduled", ""), ("skipped", "restored")]

    with pytest.raises(SystemExit) as exited:
        main(["db", "mark-restored", "--since", "2030-01-01T00:00:00"])
    assert exited.value.code == 2
    assert "has no time zone" in capsys.readouterr().err


async def test_the_restore_command(
    scenario: Scenario, use_database: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    if sqlite_path(use_database) is None:
        assert await cli("db", "restore", str(tmp_path / "x.db")) == 1
        err = capsys.readouterr().err
        assert "pg_restore" in err and "calnotify db mark-restored --since" in err
        return
    backup = tmp_path / "backup.db"
    assert await cli("db", "backup", str(backup)) == 0
    assert "taken at " in capsys.readouterr().err
    assert datetime.now(UTC) - backup_instant(backup) < timedelta(minutes=1)

    worker = Presence(scenario.db, SystemClock(), "serve")
    await worker.start()
    try:
        assert await cli("db", "restore", str(backup)) == 1
        err = capsys.readouterr().err
        assert "not restored: the database is in use by calnotify serve (pid" in err
    finally:
        await worker.stop()
    assert await cli("db", "restore", str(backup)) == 0
    out = capsys.readouterr().out
    assert f"restored {backup} (taken at " in out
    assert "skipped (reason restored): 0 due since" in out
    assert await cli("db", "restore", str(tmp_path / "missing.db")) == 1
    assert "no backup at" in capsys.readouterr().err
