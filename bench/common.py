"""Helpers shared by the benchmarks and drills: fresh databases, seeding, processes, stats."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, insert, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session

from calnotify.auth.scopes import ALL_SCOPES
from calnotify.db.migrate import upgrade
from calnotify.db.urls import sync_url
from calnotify.models import (
    ApiToken,
    Appointment,
    Calendar,
    Contact,
    Delivery,
    Location,
    Notification,
    User,
)

ROOT = Path(__file__).resolve().parent.parent
PG_SERVER = os.environ.get("CALNOTIFY_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


@contextmanager
def fresh_database(kind: str) -> Iterator[str]:
    """A new, migrated database of ``kind`` (sqlite or postgresql), removed afterwards."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="calnotify-bench-") as folder:
            url = f"sqlite:///{folder}/bench.db"
            upgrade(url)
            yield url
        return
    name = f"calnotify_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(sync_url(PG_SERVER), isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_SERVER).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def engine_for(url: str) -> Engine:
    return create_engine(sync_url(url), pool_pre_ping=True)


@dataclass
class Tenant:
    location: str
    user: str
    contact: str
    calendar: str
    rule: str
    appointment: str
    token: str


def seed_tenant(url: str, channel: str = "email") -> Tenant:
    """A location with a user, a contact, a calendar, one reminder rule, one appointment
    30 days ahead and a token with every scope, written directly (fast, no API)."""
    engine = engine_for(url)
    now = datetime.now(UTC)
    token = "cn_bench_" + uuid.uuid4().hex
    stamps = {"date_added": now, "date_updated": now}
    with Session(engine) as session, session.begin():
        location = Location(
            name="Bench",
            email="front@bench.example",
            phone="",
            timezone="America/New_York",
            **stamps,
        )
        session.add(location)
        session.flush()
        user = User(
            location_id=location.id,
            first_name="Ann",
            last_name="Lee",
            email="ann@bench.example",
            phone="+14155550100",
            role="admin",
            deleted=False,
            **stamps,
        )
        contact = Contact(
            location_id=location.id,
            first_name="Rosa",
            last_name="Diaz",
            email="rosa@bench.example",
            phone="+14155550123",
            timezone="Europe/Paris",
            dnd=False,
            dnd_settings={},
            tags=[],
            extra={},
            deleted=False,
            **stamps,
        )
        calendar = Calendar(
            location_id=location.id,
            name="Cleanings",
            team_members=[],
            extra={},
            deleted=False,
            **stamps,
        )
        session.add_all([user, contact, calendar])
        session.flush()
        rule = Notification(
            location_id=location.id,
            calendar_id=calendar.id,
            receiver_type="contact",
            channel=channel,
            notification_type="reminder",
            before_time=[{"timeOffset": 1, "unit": "days"}],
            version=1,
            **stamps,
        )
        appointment = Appointment(
            location_id=location.id,
            calendar_id=calendar.id,
            contact_id=contact.id,
            assigned_user_id=user.id,
            start_at=now + timedelta(days=30),
            end_at=now + timedelta(days=30, minutes=30),
            title="Cleaning",
            guests=[],
            extra={},
            version=1,
            deleted=False,
            **stamps,
        )
        session.add_all([rule, appointment])
        session.add(
            ApiToken(
                location_id=location.id,
                token_hash=hashlib.sha256(token.encode()).hexdigest(),
                scopes=list(ALL_SCOPES),
                **stamps,
            )
        )
        session.flush()
        tenant = Tenant(
            location.id, user.id, contact.id, calendar.id, rule.id, appointment.id, token
        )
    engine.dispose()
    return tenant


def insert_deliveries(
    url: str,
    tenant: Tenant,
    due: Sequence[datetime],
    *,
    channel: str = "email",
    prefix: str = "b",
    progress: str = "",
    first: int = 0,
) -> None:
    """Scheduled deliveries of the tenant's reminder rule, one per due time, in chunks."""
    engine = engine_for(url)
    total = len(due)
    chunk = 20_000
    started = time.monotonic()
    for offset in range(0, total, chunk):
        rows = []
        for i, when in enumerate(due[offset : offset + chunk], start=offset + first):
            rows.append(
                {
                    "id": prefix + str(i).zfill(20 - len(prefix)),
                    "location_id": tenant.location,
                    "calendar_id": tenant.calendar,
                    "appointment_id": tenant.appointment,
                    "notification_id": tenant.rule,
                    "notification_type": "reminder",
                    "channel": channel,
                    "receiver_type": "contact",
                    "trigger": "schedule",
                    "recipient_kind": "contact",
                    "recipient_ref": "",
                    "recipient": "rosa@bench.example",
                    "status": "scheduled",
                    "reason": "",
                    "due_at": when,
                    "run_at": when,
                    "deadline_at": when + timedelta(hours=24),
                    "attempts": 0,
                    "appointment_version": 1,
                    "notification_version": 1,
                    "dedupe_key": f"{prefix}{i}",
                    "last_error": "",
                    "provider": "",
                    "provider_message_id": "",
                    "provider_status": "",
                    "subject": "",
                    "body": "",
                    "created_at": when,
                    "updated_at": when,
                }
            )
        with engine.begin() as conn:
            conn.execute(insert(Delivery.__table__), rows)
        if progress:
            done = min(offset + chunk, total)
            rate = done / max(1e-9, time.monotonic() - started)
            log(f"{progress}: {done:,}/{total:,} rows ({rate:,.0f}/s)")
    engine.dispose()


def percentile(values: Sequence[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def summary(values: Sequence[float]) -> dict[str, float]:
    return {
        "p50": percentile(values, 50),
        "p99": percentile(values, 99),
        "max": max(values) if values else float("nan"),
        "mean": statistics.fmean(values) if values else float("nan"),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def calnotify(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "calnotify", *args],
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def wait_healthy(base_url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{base_url} did not become healthy")


def machine() -> str:
    return (
        f"{platform.node()} ({os.cpu_count()} cores, {platform.python_implementation()} "
        f"{platform.python_version()}, {platform.system()} {platform.release()})"
    )


def commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        return "unknown"


def report(name: str, results: dict[str, Any]) -> None:
    """Print the results as a block RESULTS.md can quote, and append them to results.jsonl."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    record = {"benchmark": name, "date": stamp, "commit": commit(), "machine": machine(), **results}
    print("\n=== " + name + " ===")
    for key, value in record.items():
        print(f"{key}: {value}")
    with open(ROOT / "bench" / "results.jsonl", "a") as out:
        out.write(json.dumps(record) + "\n")


def _smtp_sink(port: int, queue: Any, delay: float = 0.0) -> None:
    """An SMTP server (aiosmtpd) that reports the Message-ID of every message it accepts,
    each after ``delay`` seconds (a real server's time per message)."""
    import asyncio

    from aiosmtpd.controller import Controller

    class Handler:
        async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:
            if delay:
                await asyncio.sleep(delay)
            content: bytes = envelope.content
            start = content.find(b"Message-ID: <")
            end = content.find(b">", start)
            queue.put(content[start + 13 : end].decode() if start >= 0 else "")
            return "250 OK"

    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        while True:
            time.sleep(1)
    finally:
        controller.stop()


def wait_for_port(port: int, what: str, seconds: float = 10) -> None:
    """Until something accepts connections on 127.0.0.1:``port``; RuntimeError after
    ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not start")


class SmtpSink:
    """An SMTP server in a process of its own, counting what arrives, by Message-ID."""

    def __init__(self, delay: float = 0.0) -> None:
        import multiprocessing

        self.port = free_port()
        self.queue: Any = multiprocessing.Queue()
        self.process = multiprocessing.Process(
            target=_smtp_sink, args=(self.port, self.queue, delay), daemon=True
        )
        self.received: dict[str, int] = {}

    def __enter__(self) -> SmtpSink:
        self.process.start()
        wait_for_port(self.port, "the SMTP sink")
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.join(timeout=5)

    def collect(self) -> dict[str, int]:
        """Message-ID → how many times it arrived (so far)."""
        import queue as queue_module

        while True:
            try:
                message_id = self.queue.get_nowait()
            except queue_module.Empty:
                return self.received
            self.received[message_id] = self.received.get(message_id, 0) + 1

    @property
    def env(self) -> dict[str, str]:
        return {
            "CALNOTIFY_SMTP_HOST": "127.0.0.1",
            "CALNOTIFY_SMTP_PORT": str(self.port),
            "CALNOTIFY_SMTP_SECURITY": "none",
            "CALNOTIFY_SMTP_CONNECTIONS": "8",
        }


def count_status(url: str, prefix: str = "") -> dict[str, int]:
    engine = engine_for(url)
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT status, count(*) FROM deliveries WHERE dedupe_key LIKE :p GROUP BY status"
            ),
            {"p": prefix + "%"},
        ).all()
    engine.dispose()
    return {str(status): int(n) for status, n in rows}
