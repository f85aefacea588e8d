"""SQLite's WAL stays small under steady traffic: the process's writer has it copied into
the database and started over, even though a reader is always reading."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from calnotify.db import sqlite_driver
from calnotify.db.sqlite_driver import InlineWriter, Step

pytestmark = pytest.mark.asyncio

LIMIT = 64 * 1024  # bytes of WAL past which the writer checkpoints (8 MB in production)


def _read_until(database: str, done: threading.Event, offset: float) -> None:
    """Read transactions of 2 ms one after another (two of these, offset by 1 ms, keep a
    reader in the WAL at nearly every moment)."""
    connection = sqlite3.connect(database, isolation_level=None)
    time.sleep(offset)
    try:
        while not done.is_set():
            connection.execute("BEGIN")
            connection.execute("SELECT count(*) FROM rows").fetchall()
            time.sleep(0.002)
            connection.execute("COMMIT")
    finally:
        connection.close()


async def _writes_under_readers(database: str, commits: int) -> int:
    """``commits`` transactions of 4 KB each while readers keep reading; the WAL's largest
    size."""
    checkpointer = await sqlite_driver.connect(database, busy_timeout=5.0)
    writer = InlineWriter(database, 5.0, checkpointer)
    writer.run([Step("CREATE TABLE rows (id INTEGER PRIMARY KEY, body BLOB)")])
    done = threading.Event()
    readers = [
        threading.Thread(target=_read_until, args=(database, done, i * 0.001)) for i in range(2)
    ]
    for reader in readers:
        reader.start()
    largest = 0
    try:
        for _ in range(commits):
            await writer.begin()
            writer.run([Step("INSERT INTO rows (body) VALUES (?)", (os.urandom(4096),))])
            writer.commit()
            largest = max(largest, os.stat(f"{database}-wal").st_size)
            await asyncio.sleep(0.0002)
    finally:
        done.set()
        for reader in readers:
            reader.join()
        await writer.close()
    return largest


async def test_the_wal_starts_over_while_readers_keep_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_driver, "CHECKPOINT_BYTES", LIMIT)
    monkeypatch.setattr(sqlite_driver, "RESTART_BYTES", 4 * LIMIT)
    largest = await _writes_under_readers(str(tmp_path / "db.sqlite"), commits=2000)
    # 2,000 commits write some 10 MB of pages; a checkpoint is asked for every 64 commits
    # (some 300 KB of WAL) once the file is past the limit.
    assert largest < 40 * LIMIT, f"the WAL grew to {largest:,} bytes"


async def test_a_passive_checkpoint_alone_lets_it_grow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the test above guards against: copying without starting over."""
    monkeypatch.setattr(sqlite_driver, "CHECKPOINT_BYTES", LIMIT)
    monkeypatch.setattr(
        sqlite_driver,
        "checkpoint",
        lambda c: c.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall(),
    )
    largest = await _writes_under_readers(str(tmp_path / "db.sqlite"), commits=2000)
    assert largest > 40 * LIMIT


async def test_a_long_reader_holds_writers_up_briefly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader that does not finish (a backup) makes the checkpoint give up after
    RESTART_WAIT_MS; the writer then goes on."""
    monkeypatch.setattr(sqlite_driver, "RESTART_BYTES", 0)
    database = str(tmp_path / "db.sqlite")
    checkpointer = await sqlite_driver.connect(database, busy_timeout=5.0)
    writer = InlineWriter(database, 5.0, checkpointer)
    writer.run([Step("CREATE TABLE rows (id INTEGER PRIMARY KEY, body BLOB)")])
    for _ in range(20):
        await writer.begin()
        writer.run([Step("INSERT INTO rows (body) VALUES (?)", (os.urandom(4096),))])
        writer.commit()
    reader = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM rows").fetchall()
    try:
        await writer.begin()
        writer.run([Step("INSERT INTO rows (body) VALUES (?)", (os.urandom(4096),))])
        writer.commit()
        started = time.monotonic()
        await checkpointer.call(sqlite_driver.checkpoint)  # the reader is in the WAL still
        assert time.monotonic() - started < 1.0  # not the connection's 5 s
        patience = await checkpointer.call(lambda c: c.execute("PRAGMA busy_timeout").fetchone())
        assert patience == (5000,)
        await writer.begin()
        writer.run([Step("INSERT INTO rows (body) VALUES (?)", (b"after",))])
        writer.commit()
    finally:
        reader.close()
        await writer.close()
