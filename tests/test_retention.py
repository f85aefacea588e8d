"""Retention (semantics §10): `calnotify db prune`, the background pruner, what a delivery
says once its content is gone, and SQLite's file giving the space back."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy import func, select

from calnotify.cli import main
from calnotify.clock import ManualClock
from calnotify.config import Settings, get_settings
from calnotify.db.engine import Database
from calnotify.db.migrate import upgrade
from calnotify.db.tx import Tx
from calnotify.db.urls import sqlite_path
from calnotify.deliveries import service as delivery_service
from calnotify.ids import new_id
from calnotify.models import (
    AppointmentEvent,
    DeliveryAttempt,
    InboundMessage,
    InboxItem,
    PlanningJob,
)
from calnotify.ops import pruner, retention
from calnotify.ops.retention import Retention, prune, would_prune
from tests.conftest import NOW
from tests.engine import Scenario, by_status
from tests.factories import Tenant
from tests.processes import Server
from tests.test_console import signed_in
from tests.test_processes import book, setup_location

START = NOW + timedelta(days=30)
SOON = {"beforeTime": [{"timeOffset": 1, "unit": "days"}]}
NOTHING = dict.fromkeys(retention.NAMES, 0)
# Appointment events are stamped with the real time, years before the tests' clock.
FOREVER = timedelta(days=36_500)


def rule(receiver: str, channel: str, kind: str = "booked", **fields: Any) -> dict[str, Any]:
    return {
        "receiverType": receiver,
        "channel": channel,
        "notificationType": kind,
        "subject": "Booked {{contact.name}}",
        "body": "See you, {{contact.name}}",
        **fields,
    }


async def booked_and_sent(scenario: Scenario) -> str:
    """A booking whose immediate messages went out (email to the outbox, SMS to the outbox,
    an in-app notice) and whose reminder a day before waits; the appointment's id."""
    await scenario.rules(
        rule("contact", "sms"),
        rule("assignedUser", "email"),
        rule("assignedUser", "inApp"),
        rule("contact", "sms", "reminder", **SOON),
    )
    contact = await scenario.tenant.add_contact(email="ana@example.com", phone="+14155550123")
    appointment = await scenario.book(contact, START, assignedUserId=scenario.tenant.user_id)
    assert await scenario.dispatcher.drain() == 3
    return str(appointment["id"])


async def count(db: Database, model: Any) -> int:
    async with db.session(write=False) as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_content_retention_of_zero_removes_content_and_deliveries_say_so(
    scenario: Scenario, db: Database
) -> None:
    await booked_and_sent(scenario)
    now = scenario.clock.advance(seconds=1)
    keep_rows = Retention(content=timedelta(0), events=FOREVER)

    assert (await would_prune(db, keep_rows, now))["message content"] == 3
    removed = await prune(db, keep_rows, now)
    assert removed == {**NOTHING, "message content": 3}

    deliveries = await scenario.deliveries()
    sent = by_status(deliveries, "sent")
    assert len(sent) == 3
    for d in sent:  # status, times and counts stay; the content goes, and they say so
        assert (d["subject"], d["body"], d["attempts"]) == ("", "", 1)
        assert d["sentAt"] and d["contentRemovedAt"]
        assert d["contentRemoved"] == "content removed after 0 days"
    [waiting] = by_status(deliveries, "scheduled")  # pending work is never pruned
    assert (waiting["contentRemovedAt"], waiting["contentRemoved"]) == (None, "")
    assert all((m["subject"], m["body"]) == ("", "") for m in await scenario.outbox())
    detail = await scenario.client.get(f"/deliveries/{sent[0]['id']}", headers=scenario.headers)
    assert detail.json()["contentRemoved"] == "content removed after 0 days"
    assert await prune(db, keep_rows, now) == NOTHING  # nothing is done twice


async def test_content_is_kept_for_its_days_then_removed(scenario: Scenario, db: Database) -> None:
    await booked_and_sent(scenario)
    month = Retention(content=timedelta(days=30), events=FOREVER)
    assert await prune(db, month, NOW + timedelta(days=29)) == NOTHING
    removed = await prune(db, month, NOW + timedelta(days=31))
    assert removed["message content"] == 3
    shown = {d["contentRemoved"] for d in by_status(await scenario.deliveries(), "sent")}
    assert shown == {"content removed after 31 days"}


async def test_finished_rows_expire_with_what_hangs_off_them(
    scenario: Scenario, db: Database
) -> None:
    await booked_and_sent(scenario)
    assert await count(db, DeliveryAttempt) == 3
    day = timedelta(days=1)
    removed = await prune(db, Retention(deliveries=day, events=day), NOW + 2 * day)
    assert removed == {
        **NOTHING,
        "deliveries": 3,
        "attempts": 3,
        "outbox messages": 1,  # the SMS (email went to the scripted provider)
        "in-app notices": 1,
        "appointment events": 1,
    }
    assert [d["status"] for d in await scenario.deliveries()] == ["scheduled"]
    assert await scenario.outbox() == []
    for model in (DeliveryAttempt, InboxItem, AppointmentEvent):
        assert await count(db, model) == 0


async def test_replies_inbox_notices_and_planning_jobs_have_their_own_ages(
    scenario: Scenario, db: Database
) -> None:
    await booked_and_sent(scenario)
    async with db.session() as session:
        session.add(_reply(scenario.tenant, NOW - timedelta(days=10), "YES"))
        session.add(_reply(scenario.tenant, NOW, "C"))
        session.add(_job(scenario.tenant, "done", NOW - timedelta(days=10)))
        session.add(_job(scenario.tenant, "pending", None))
        notice = (await session.scalars(select(InboxItem))).one()
        notice.read_at = NOW - timedelta(days=10)
    week = timedelta(days=7)
    removed = await prune(db, Retention(content=week, deliveries=week * 100, events=week), NOW)
    assert removed == {
        **NOTHING,
        "in-app notice content": 1,
        "reply text": 1,
        "appointment events": 1,
        "planning jobs": 1,
    }
    async with db.session(write=False) as session:
        replies = sorted(r.body for r in await session.scalars(select(InboundMessage)))
        notice = (await session.scalars(select(InboxItem))).one()
        jobs = [j.status for j in await session.scalars(select(PlanningJob))]
    assert replies == ["", "C"] and (notice.title, notice.body) == ("", "")
    assert jobs == ["pending"]  # unfinished work is never pruned
    removed = await prune(db, Retention(deliveries=week, events=FOREVER), NOW)
    assert removed["replies"] == 1 and await count(db, InboundMessage) == 1


def _reply(tenant: Tenant, at: datetime, body: str) -> InboundMessage:
    return InboundMessage(
        id=new_id(),
        location_id=tenant.location_id,
        channel="sms",
        from_number="+14155550123",
        to_number="+14155550100",
        body=body,
        received_at=at,
    )


def _job(tenant: Tenant, status: str, finished_at: datetime | None) -> PlanningJob:
    return PlanningJob(
        id=new_id(),
        location_id=tenant.location_id,
        calendar_id=tenant.calendar_id,
        kind="rule",
        status=status,
        created_at=NOW - timedelta(days=20),
        updated_at=NOW - timedelta(days=20),
        finished_at=finished_at,
    )


async def test_prune_works_in_bounded_pages(scenario: Scenario, db: Database) -> None:
    await booked_and_sent(scenario)
    pages: list[int] = []

    async def counting(_tx: Tx) -> bool:
        pages.append(1)
        return True

    keep_rows = Retention(content=timedelta(0), events=FOREVER)
    removed = await prune(db, keep_rows, NOW + timedelta(seconds=1), page=2, leader=counting)
    assert removed["message content"] == 3
    # 3 rows in pages of 2: two pages, then a page per other kind that finds nothing.
    assert len(pages) == 2 + len(retention.KINDS) - 1

    async def elsewhere(_tx: Tx) -> bool:
        return False  # another process prunes

    day = timedelta(days=1)
    assert (
        await prune(db, Retention(deliveries=day, events=day), NOW + 2 * day, leader=elsewhere)
        == NOTHING
    )


async def test_only_one_process_prunes_at_a_time_on_postgresql(
    scenario: Scenario, db: Database, database_url: str
) -> None:
    if db.is_sqlite:
        pytest.skip("SQLite has one writer: one pruner at a time by nature")
    await booked_and_sent(scenario)
    now = scenario.clock.advance(seconds=1)
    keep_rows = Retention(content=timedelta(0), events=FOREVER)
    conninfo = db.url.set(drivername="postgresql").render_as_string(hide_password=False)
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as other:
        await other.execute("SELECT pg_advisory_lock(%s)", (pruner.LOCK_KEY,))
        assert await pruner.prune_now(db, keep_rows, ManualClock(now), 1.0) == NOTHING
    removed = await pruner.prune_now(db, keep_rows, ManualClock(now), 1.0)
    assert removed["message content"] == 3


async def test_the_console_timeline_says_content_was_removed(
    scenario: Scenario, client: httpx.AsyncClient, tenant: Tenant, db: Database
) -> None:
    appointment = await booked_and_sent(scenario)
    await prune(
        db, Retention(content=timedelta(0), events=FOREVER), scenario.clock.advance(seconds=1)
    )
    await signed_in(client, tenant)
    page = await client.get(f"/console/appointments/{appointment}")
    assert page.status_code == 200
    assert page.text.count("Content removed after 0 days (retention).") == 3
    assert "See you" not in page.text


@pytest.fixture
def use_database(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("CALNOTIFY_DATABASE_URL", database_url)
    monkeypatch.setenv("CALNOTIFY_RETAIN_CONTENT_DAYS", "0")
    get_settings.cache_clear()
    yield database_url
    get_settings.cache_clear()


async def test_the_command_prunes_and_prints_each_kind(
    scenario: Scenario, use_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario.clock.set(datetime.now(UTC) - timedelta(hours=1))  # the command's clock is real
    await booked_and_sent(scenario)
    await scenario.db.dispose()

    assert await asyncio.to_thread(main, ["db", "prune", "--dry-run"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert "would remove 3 message content" in printed
    assert "would remove 0 deliveries" in printed
    assert all(d["subject"] for d in by_status(await scenario.deliveries(), "sent"))

    assert await asyncio.to_thread(main, ["db", "prune"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "removed 3 message content"
    assert len(printed) == len(retention.NAMES)
    for d in by_status(await scenario.deliveries(), "sent"):
        assert (d["subject"], d["contentRemoved"]) == ("", "content removed after 0 days")


def test_settings_default_to_what_a_clinic_can_defend() -> None:
    defaults = Retention.of(Settings())
    assert (defaults.content, defaults.deliveries, defaults.events) == (
        timedelta(days=30),
        timedelta(days=400),
        timedelta(days=400),
    )


# --- SQLite: the file stops growing -------------------------------------------------------


def _fill(path: Path, rows: int) -> None:
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("CREATE TABLE filler (x TEXT)")
    connection.execute("BEGIN")
    connection.executemany("INSERT INTO filler VALUES (?)", [("x" * 2000,)] * rows)
    connection.execute("COMMIT")
    connection.execute("DELETE FROM filler")
    connection.close()


def test_a_new_sqlite_database_gives_freed_space_back(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    upgrade(f"sqlite:///{path}")
    _fill(path, 5_000)
    before = path.stat().st_size
    assert pruner.reclaim_space(str(path), 1.0) > 0
    connection = sqlite3.connect(path)
    assert connection.execute("PRAGMA auto_vacuum").fetchone() == (2,)  # incremental
    assert connection.execute("PRAGMA freelist_count").fetchone() == (0,)
    connection.close()
    assert path.stat().st_size < before / 4


def test_db_vacuum_turns_it_on_for_an_older_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "old.db"
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE made_before (x TEXT)")  # auto-vacuum off, as it was
    connection.close()
    upgrade(f"sqlite:///{path}")
    # A database made before incremental auto-vacuum: the pragma only records the wish.
    assert sqlite3.connect(path).execute("PRAGMA auto_vacuum").fetchone() == (0,)
    _fill(path, 2_000)
    assert pruner.reclaim_space(str(path), 1.0) == 0
    monkeypatch.setenv("CALNOTIFY_DATABASE_URL", f"sqlite:///{path}")
    get_settings.cache_clear()
    try:
        assert main(["db", "vacuum"]) == 0
    finally:
        get_settings.cache_clear()
    assert "incremental auto-vacuum on" in capsys.readouterr().out
    assert sqlite3.connect(path).execute("PRAGMA auto_vacuum").fetchone() == (2,)


async def test_live_inbox_streams_never_keep_the_wal_from_being_truncated(
    server: Server,
) -> None:
    path = sqlite_path(server.database_url)
    if path is None:
        pytest.skip("SQLite's write-ahead log")
    client, ids = await setup_location(server)
    async with contextlib.aclosing(client):
        stream_url = f"/users/{ids['user']}/inbox/stream"
        async with client.stream("GET", stream_url, timeout=30) as stream:
            assert stream.status_code == 200
            await asyncio.sleep(1.5)  # a few polls of the stream, between writes
            await book(client, ids, datetime.now(UTC) + timedelta(days=1))
            await asyncio.sleep(1.5)
            connection = sqlite3.connect(path, timeout=0.1, isolation_level=None)
            try:
                busy, frames, _ = connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            finally:
                connection.close()
    assert (busy, frames) == (0, 0)  # no reader pinned the log: it was emptied


async def test_the_background_pruner_prunes_every_interval(
    scenario: Scenario, db: Database
) -> None:
    await booked_and_sent(scenario)
    scenario.clock.advance(seconds=1)
    keep_rows = Retention(content=timedelta(0), events=FOREVER)
    running = pruner.Pruner(db, scenario.clock, keep_rows, timedelta(seconds=0.05), 1.0)
    running.start()
    try:
        for _ in range(100):
            await asyncio.sleep(0.05)
            if not any(d["subject"] for d in await scenario.deliveries()):
                break
    finally:
        await running.stop()
    assert {d["contentRemoved"] for d in by_status(await scenario.deliveries(), "sent")} == {
        "content removed after 0 days"
    }


async def test_list_totals_are_counted_up_to_a_limit(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    await booked_and_sent(scenario)
    monkeypatch.setattr(delivery_service, "TOTAL_LIMIT", 2)
    answer = await scenario.client.get("/deliveries", headers=scenario.headers)
    assert answer.json()["total"] == 2 and len(answer.json()["deliveries"]) == 4


async def test_a_prune_pass_leaves_sqlites_wal_empty(
    scenario: Scenario, db: Database, database_url: str
) -> None:
    path = sqlite_path(database_url)
    if path is None:
        pytest.skip("SQLite's write-ahead log")
    await booked_and_sent(scenario)
    now = scenario.clock.advance(seconds=1)
    keep_rows = Retention(content=timedelta(0), events=FOREVER)
    removed = await pruner.prune_now(db, keep_rows, ManualClock(now), 1.0)
    assert removed["message content"] == 3
    wal = await asyncio.to_thread(os.path.getsize, f"{path}-wal")
    assert wal == 0  # checkpointed and truncated
