"""Drill: reschedule and cancel storms racing dispatch; no stale message may go out.

    python bench/drills/storms.py [--database sqlite|postgresql] [--appointments 300]

--appointments appointments are booked to start 61 s from now, each with an email reminder
1 minute before (due in about a second), on a server that dispatches in-process and sends
to an SMTP server in another process. As the reminders come due, clients move every other
appointment a day later and cancel the rest, as fast as they can.

A reminder is stale if its appointment's change had been answered (committed) before the
message reached the SMTP server by more than the time one send takes: those must be 0. The
drill also reports how many reminders went out before their change (legitimately: the
change came too late), and that every change was answered without error.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

import httpx
from sqlalchemy import text

from bench.common import (
    SmtpSink,
    calnotify,
    engine_for,
    free_port,
    fresh_database,
    log,
    report,
    seed_tenant,
    wait_healthy,
)


async def run(base: str, token: str, ids: dict[str, str], count: int) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}", "Version": "2021-04-15"}
    async with httpx.AsyncClient(
        base_url=base, headers=headers, timeout=60, limits=httpx.Limits(max_connections=32)
    ) as client:
        # Far enough ahead that every booking is in before the first reminder is due.
        start = datetime.now(UTC) + timedelta(seconds=63 + count * 0.05)
        booked: list[str] = []
        for i in range(count):
            response = await client.post(
                "/calendars/events/appointments",
                json={
                    "calendarId": ids["calendar"],
                    "locationId": ids["location"],
                    "contactId": ids["contact"],
                    "startTime": (start + timedelta(milliseconds=20 * i)).isoformat(),
                },
            )
            booked.append(response.json()["id"])
        log(f"booked {count}; reminders come due from {start - timedelta(minutes=1)}")
        wait = (start - timedelta(minutes=1) - datetime.now(UTC)).total_seconds()
        await asyncio.sleep(max(0.0, wait))
        answered: dict[str, float] = {}
        errors = 0
        gate = asyncio.Semaphore(32)

        async def change(i: int, appointment: str) -> None:
            nonlocal errors
            body: dict[str, Any] = (
                {"startTime": (start + timedelta(days=1)).isoformat()}
                if i % 2 == 0
                else {"appointmentStatus": "cancelled"}
            )
            async with gate:
                response = await client.put(
                    f"/calendars/events/appointments/{appointment}", json=body
                )
            if response.status_code == 200:
                answered[appointment] = time.time()
            else:
                errors += 1

        await asyncio.gather(*(change(i, a) for i, a in enumerate(booked)))
        return {"answered": answered, "errors": errors}


def main(args: argparse.Namespace) -> int:
    with fresh_database(args.database) as url, SmtpSink() as smtp:
        tenant = seed_tenant(url)
        port = free_port()
        server = calnotify(
            "serve",
            "--port",
            str(port),
            env={"CALNOTIFY_DATABASE_URL": url, "CALNOTIFY_LOG_LEVEL": "warning", **smtp.env},
        )
        base = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(base)
            headers = {"Authorization": f"Bearer {tenant.token}", "Version": "2021-04-15"}
            with httpx.Client(base_url=base, headers=headers) as client:
                response = client.post(
                    f"/calendars/{tenant.calendar}/notifications",
                    json=[
                        {
                            "receiverType": "contact",
                            "channel": "email",
                            "notificationType": "reminder",
                            "beforeTime": [{"timeOffset": 1, "unit": "minutes"}],
                        }
                    ],
                )
                rule = response.json()[0]["_id"]
                # The seeded rule plans a day ahead; only the new one-minute rule matters.
                client.put(
                    f"/calendars/{tenant.calendar}/notifications/{tenant.rule}",
                    json={"isActive": False},
                )
            ids = {
                "calendar": tenant.calendar,
                "location": tenant.location,
                "contact": tenant.contact,
            }
            outcome = asyncio.run(run(base, tenant.token, ids, args.appointments))
            time.sleep(5)
        finally:
            server.terminate()
            server.wait(timeout=30)
        received = smtp.collect()
        engine = engine_for(url)
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT id, appointment_id, status, reason, sent_at FROM deliveries"
                    " WHERE notification_id = :rule"
                ),
                {"rule": rule},
            ).all()
        engine.dispose()
    answered: dict[str, float] = outcome["answered"]
    sent = [r for r in rows if r.status == "sent"]
    stale = 0
    before_change = 0
    for row in sent:
        sent_at = row.sent_at
        if isinstance(sent_at, str):  # SQLite hands back text
            sent_at = datetime.fromisoformat(sent_at)
        if sent_at.tzinfo is None:
            sent_at = sent_at.replace(tzinfo=UTC)
        change_at = answered.get(row.appointment_id)
        if change_at is None:
            continue
        if sent_at.timestamp() > change_at + 0.05:
            stale += 1
        else:
            before_change += 1
    by_state: dict[str, int] = {}
    for row in rows:
        key = f"{row.status}/{row.reason}" if row.reason else row.status
        by_state[key] = by_state.get(key, 0) + 1
    results = {
        "database": args.database,
        "appointments": args.appointments,
        "changes_answered": len(answered),
        "change_errors": outcome["errors"],
        "reminders_by_state": by_state,
        "sent_before_their_change_was_answered": before_change,
        "stale_sent_after_change": stale,
        "smtp_messages_received": sum(received.values()),
    }
    report(f"drill: reschedule and cancel storms ({args.database})", results)
    ok = stale == 0 and outcome["errors"] == 0
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--appointments", type=int, default=300)
    sys.exit(main(parser.parse_args()))
