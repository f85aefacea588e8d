"""calnotify serve and calnotify worker as real processes, on the real clock."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import create_engine, func, insert, select, text

from calnotify.db.urls import sync_url
from calnotify.models import Delivery, OutboxMessage, ServiceProcess
from tests.processes import Server, calnotify, start_server
from tests.providers import smtp_server, twilio_server


def iso(when: datetime) -> str:
    return when.isoformat()


async def setup_location(server: Server) -> tuple[httpx.AsyncClient, dict[str, str]]:
    location = calnotify(
        server.database_url,
        "locations",
        "create",
        "--name",
        "Acme",
        "--email",
        "front@example.com",
        "--timezone",
        "America/New_York",
    )
    user = calnotify(
        server.database_url,
        "users",
        "create",
        "--location",
        str(location["id"]),
        "--email",
        "ann@example.com",
        "--phone",
        "+14155550100",
    )
    token = calnotify(server.database_url, "tokens", "create", "--location", str(location["id"]))
    client = httpx.AsyncClient(
        base_url=server.base_url,
        headers={"Authorization": f"Bearer {token['token']}", "Version": "2021-04-15"},
        timeout=10,
    )
    calendar = (
        await client.post(
            "/calendars/",
            json={
                "locationId": location["id"],
                "name": "Cleanings",
                "teamMembers": [{"userId": user["id"]}],
            },
        )
    ).json()["calendar"]
    contact = (
        await client.post(
            "/contacts/",
            json={
                "locationId": location["id"],
                "firstName": "Rosa",
                "email": "rosa@example.com",
                "phone": "+14155550123",
            },
        )
    ).json()["contact"]
    ids = {
        "location": str(location["id"]),
        "calendar": calendar["id"],
        "contact": contact["id"],
        "user": str(user["id"]),
    }
    return client, ids


async def book(client: httpx.AsyncClient, ids: dict[str, str], start: datetime) -> dict[str, Any]:
    """Book an appointment of the location's contact on its calendar at ``start``."""
    response = await client.post(
        "/calendars/events/appointments",
        json={
            "calendarId": ids["calendar"],
            "locationId": ids["location"],
            "contactId": ids["contact"],
            "startTime": start.isoformat(),
        },
    )
    assert response.status_code == 200, response.text
    booked: dict[str, Any] = response.json()
    return booked


async def wait_for(check: Any, within: float, step: float = 0.02) -> float:
    """Poll ``check`` until it returns something truthy; the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        if await check():
            return time.monotonic() - started
        await asyncio.sleep(step)
    raise AssertionError(f"not within {within}s")


async def test_booked_at_once_reminder_on_time_reschedule_and_cancel(server: Server) -> None:
    assert [kind for kind, _ in running_processes(server.database_url)] == ["serve"]
    client, ids = await setup_location(server)
    async with contextlib.aclosing(client):
        rules = await client.post(
            f"/calendars/{ids['calendar']}/notifications",
            json=[
                {"receiverType": "contact", "channel": "email", "notificationType": "booked"},
                {
                    "receiverType": "assignedUser",
                    "channel": "sms",
                    "notificationType": "reminder",
                    "beforeTime": [{"timeOffset": 1, "unit": "minutes"}],
                },
            ],
        )
        assert rules.status_code == 200
        start = datetime.now(UTC) + timedelta(seconds=64)  # the reminder is due in ~4 s
        booked = await book(client, ids, start)

        async def outbox(channel: str) -> list[dict[str, Any]]:
            response = await client.get(
                "/outbox", params={"appointmentId": booked["id"], "channel": channel}
            )
            messages: list[dict[str, Any]] = response.json()["messages"]
            return messages

        took = await wait_for(lambda: outbox("email"), within=1.0)
        assert took < 1.0
        deliveries = (
            await client.get("/deliveries", params={"appointmentId": booked["id"]})
        ).json()["deliveries"]
        reminder = next(d for d in deliveries if d["notificationType"] == "reminder")
        assert reminder["status"] == "scheduled"
        due = datetime.fromisoformat(reminder["dueAt"])
        await wait_for(lambda: outbox("sms"), within=10)

        async def recorded() -> dict[str, Any] | None:
            # The outbox row is the send; the outcome is written a moment later.
            row: dict[str, Any] = (await client.get(f"/deliveries/{reminder['id']}")).json()
            return row if row["status"] == "sent" else None

        await wait_for(recorded, within=5)
        sent = await recorded()
        assert sent is not None
        lateness = (datetime.fromisoformat(sent["sentAt"]) - due).total_seconds()
        assert 0 <= lateness < 1.0, lateness

        # A second appointment: rescheduled, then cancelled; its reminder never goes out.
        start = datetime.now(UTC) + timedelta(seconds=63)
        second = await book(client, ids, start)
        moved = start + timedelta(seconds=2)
        await client.put(
            f"/calendars/events/appointments/{second['id']}", json={"startTime": iso(moved)}
        )
        found = (
            await client.get(
                "/deliveries", params={"appointmentId": second["id"], "channel": "sms"}
            )
        ).json()["deliveries"]
        assert sorted((d["status"], d["dueAt"][:19]) for d in found) == sorted(
            [
                ("cancelled", iso(start - timedelta(minutes=1)).replace("+00:00", "")[:19]),
                ("scheduled", iso(moved - timedelta(minutes=1)).replace("+00:00", "")[:19]),
            ]
        )
        await client.put(
            f"/calendars/events/appointments/{second['id']}",
            json={"appointmentStatus": "cancelled"},
        )
        await asyncio.sleep(5)
        found = (
            await client.get(
                "/deliveries", params={"appointmentId": second["id"], "channel": "sms"}
            )
        ).json()["deliveries"]
        assert {d["status"] for d in found} == {"cancelled"}
        assert (
            await client.get("/outbox", params={"appointmentId": second["id"], "channel": "sms"})
        ).json()["total"] == 0
        metrics = await client.get("/metrics")
        assert 'calnotify_sends_total{channel="sms",status="sent"} 1' in metrics.text


def seed_due_deliveries(
    database_url: str, ids: dict[str, str], appointment_id: str, rule_id: str, count: int
) -> None:
    now = datetime.now(UTC)
    rows = [
        {
            "id": f"d{i:019d}",
            "location_id": ids["location"],
            "calendar_id": ids["calendar"],
            "appointment_id": appointment_id,
            "notification_id": rule_id,
            "notification_type": "reminder",
            "channel": "sms",
            "receiver_type": "contact",
            "trigger": "schedule",
            "recipient_kind": "contact",
            "recipient_ref": "",
            "recipient": "+14155550123",
            "status": "scheduled",
            "reason": "",
            "due_at": now,
            "run_at": now,
            "deadline_at": now + timedelta(hours=1),
            "attempts": 0,
            "appointment_version": 1,
            "notification_version": 1,
            "dedupe_key": f"k{i}",
            "last_error": "",
            "provider": "",
            "provider_message_id": "",
            "subject": "",
            "body": "",
            "created_at": now,
            "updated_at": now,
        }
        for i in range(count)
    ]
    engine = create_engine(sync_url(database_url))
    with engine.begin() as conn:
        conn.execute(insert(Delivery.__table__), rows)
    engine.dispose()


def start_worker(database_url: str, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "calnotify", "worker", *extra],
        env={**os.environ, "CALNOTIFY_DATABASE_URL": database_url},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


COUNT = 3000


async def test_two_workers_drain_everything_exactly_once(database_url: str) -> None:
    with start_server(database_url, "--no-worker") as server:
        client, ids = await setup_location(server)
        async with contextlib.aclosing(client):
            [rule] = (
                await client.post(
                    f"/calendars/{ids['calendar']}/notifications",
                    json=[
                        {
                            "receiverType": "contact",
                            "channel": "sms",
                            "notificationType": "reminder",
                            "beforeTime": [{"timeOffset": 1, "unit": "days"}],
                        }
                    ],
                )
            ).json()
            appointment = await book(client, ids, datetime.now(UTC) + timedelta(days=30))
        seed_due_deliveries(database_url, ids, appointment["id"], rule["_id"], COUNT)
        await asyncio.sleep(1.0)
        engine = create_engine(sync_url(database_url))
        with engine.connect() as conn:
            # --no-worker: the server itself sends nothing.
            assert conn.scalar(select(func.count()).select_from(OutboxMessage)) == 0
        workers = [start_worker(database_url), start_worker(database_url)]
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                with engine.connect() as conn:
                    left = conn.scalar(
                        text(
                            "SELECT count(*) FROM deliveries WHERE dedupe_key LIKE 'k%'"
                            " AND status IN ('scheduled', 'sending')"
                        )
                    )
                if left == 0:
                    break
                await asyncio.sleep(0.25)
        finally:
            for worker in workers:
                worker.send_signal(signal.SIGTERM)
            codes = [w.wait(timeout=30) for w in workers]
        with engine.connect() as conn:
            states = dict(
                conn.execute(text("SELECT status, count(*) FROM deliveries GROUP BY status")).all()
            )
            attempts = dict(
                conn.execute(
                    text(
                        "SELECT attempts, count(*) FROM deliveries WHERE dedupe_key LIKE 'k%' "
                        "GROUP BY attempts"
                    )
                ).all()
            )
            outbox = conn.scalar(select(func.count()).select_from(OutboxMessage))
        engine.dispose()
        assert codes == [0, 0], [w.stdout.read().decode() if w.stdout else "" for w in workers]
        assert states.get("sent") == COUNT
        assert attempts == {1: COUNT}  # each claimed once: never sent twice
        assert outbox == COUNT


def running_processes(database_url: str) -> list[tuple[str, int]]:
    engine = create_engine(sync_url(database_url))
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(ServiceProcess.kind, ServiceProcess.pid)).all()
    finally:
        engine.dispose()
    return [(kind, pid) for kind, pid in rows]


async def test_sigterm_stops_a_worker_cleanly(database_url: str) -> None:
    from calnotify.db.migrate import upgrade

    upgrade(database_url)
    worker = start_worker(database_url, "--concurrency", "3")
    try:

        async def registered() -> bool:  # its heartbeat row (a loaded machine starts slowly)
            assert worker.poll() is None
            return running_processes(database_url) == [("worker", worker.pid)]

        await wait_for(registered, within=30, step=0.2)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=15) == 0
    finally:
        # A worker left running would go on sending the next tests' deliveries.
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert running_processes(database_url) == []
    output = worker.stdout.read().decode() if worker.stdout else ""
    assert "finishing messages in flight" in output
    assert "Traceback" not in output


async def test_real_providers_on_the_real_clock(database_url: str) -> None:
    with smtp_server() as (inbox, port), twilio_server() as (twilio, base_url):
        env = {
            "CALNOTIFY_SMTP_HOST": "127.0.0.1",
            "CALNOTIFY_SMTP_PORT": str(port),
            "CALNOTIFY_SMTP_SECURITY": "none",
            "CALNOTIFY_EMAIL_FROM": "Bookings <bookings@calnotify.example>",
            "CALNOTIFY_TWILIO_ACCOUNT_SID": "AC123",
            "CALNOTIFY_TWILIO_AUTH_TOKEN": "secret",
            "CALNOTIFY_TWILIO_FROM_NUMBER": "+14155550000",
            "CALNOTIFY_TWILIO_BASE_URL": base_url,
        }
        with start_server(database_url, env=env) as server:
            client, ids = await setup_location(server)
            async with contextlib.aclosing(client):
                await client.post(
                    f"/calendars/{ids['calendar']}/notifications",
                    json=[
                        {
                            "receiverType": "contact",
                            "channel": "email",
                            "notificationType": "booked",
                        },
                        {
                            "receiverType": "contact",
                            "channel": "email",
                            "notificationType": "reminder",
                            "beforeTime": [{"timeOffset": 1, "unit": "minutes"}],
                        },
                        {
                            "receiverType": "assignedUser",
                            "channel": "sms",
                            "notificationType": "reminder",
                            "beforeTime": [{"timeOffset": 1, "unit": "minutes"}],
                        },
                    ],
                )
                start = datetime.now(UTC) + timedelta(seconds=64)
                booked = await book(client, ids, start)

                async def emails() -> int:
                    return len(inbox.to("rosa@example.com"))

                took = await wait_for(emails, within=1.0)
                assert took < 1.0
                first = inbox.to("rosa@example.com")[0]
                # From the operator's domain in the location's name; replies to the location.
                assert first["From"] == "Acme <bookings@calnotify.example>"
                assert first["Reply-To"] == "front@example.com"

                async def reminders() -> bool:
                    return len(inbox.to("rosa@example.com")) == 2 and len(twilio.messages()) == 1

                await wait_for(reminders, within=10)

                async def recorded() -> list[dict[str, Any]]:
                    # A message reaches the provider a moment before its outcome is written.
                    answer = await client.get("/deliveries", params={"appointmentId": booked["id"]})
                    rows: list[dict[str, Any]] = answer.json()["deliveries"]
                    return rows if all(d["status"] == "sent" for d in rows) else []

                await wait_for(recorded, within=5)
                found = await recorded()
                for delivery in found:
                    assert delivery["status"] == "sent"
                    late = datetime.fromisoformat(delivery["sentAt"]) - datetime.fromisoformat(
                        delivery["dueAt"]
                    )
                    assert timedelta(0) <= late < timedelta(seconds=1), delivery
                assert {d["provider"] for d in found} == {"smtp", "twilio"}
                assert twilio.messages()[0]["To"] == "+14155550100"


async def test_links_point_to_the_port_serve_listens_on(database_url: str) -> None:
    # Without CALNOTIFY_PUBLIC_URL, a message's links reach this machine at serve's port.
    with start_server(database_url, env={"CALNOTIFY_PUBLIC_URL": ""}) as server:
        client, ids = await setup_location(server)
        async with contextlib.aclosing(client):
            answer = await client.post(
                f"/calendars/{ids['calendar']}/notifications",
                json=[
                    {
                        "receiverType": "contact",
                        "channel": "email",
                        "notificationType": "booked",
                        "subject": "Booked",
                        "body": "Confirm: {{appointment.confirmation_link}}",
                    }
                ],
            )
            assert answer.status_code == 200, answer.text
            await book(client, ids, datetime.now(UTC) + timedelta(days=1))

            async def sent() -> list[dict[str, Any]]:
                found = await client.get("/outbox")
                messages: list[dict[str, Any]] = found.json()["messages"]
                return messages

            await wait_for(sent, within=10)
            [message] = await sent()
    port = server.base_url.rsplit(":", 1)[1]
    assert f"Confirm: http://localhost:{port}/a/" in message["body"], message["body"]
