"""Console benchmark: every page of the operator console at 10,000 appointments.

    python bench/console.py [--database sqlite|postgresql] [--appointments 10000]
                            [--requests 30]

One location has one calendar with --appointments future appointments (a contact each), and
two deliveries per appointment: its booked email, sent within the last hour, and a scheduled
reminder; all seeded directly into the database. ``calnotify serve --no-worker`` runs on a
free port; the benchmark signs in as that location and requests each page --requests times,
one at a time, after three warm-up requests. It reports p50/p95/max milliseconds per page
and, as the reference measured in the same run, ``GET /healthz`` (one ``SELECT 1``), with
each page's p50 as a multiple of it. PASS when every page's p95 is under 100 ms.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from sqlalchemy import insert, select

from bench.common import (
    calnotify,
    engine_for,
    free_port,
    fresh_database,
    log,
    percentile,
    report,
    seed_tenant,
    wait_healthy,
)
from bench.replan import seed_big_calendar
from calnotify.models import Appointment, Delivery, Notification


def seed_deliveries(url: str, tenant: object) -> int:
    """A sent booked email and a scheduled reminder for every appointment of the calendar."""
    engine = engine_for(url)
    now = datetime.now(UTC)
    with engine.connect() as conn:
        rows = conn.execute(
            select(Appointment.id, Appointment.start_at, Appointment.contact_id).where(
                Appointment.calendar_id == tenant.calendar  # type: ignore[attr-defined]
            )
        ).all()
    rule_id = "rulebench00000000000"
    stamp = {"date_added": now, "date_updated": now}
    with engine.begin() as conn:  # the seeded calendar's rules were removed with its appointment
        conn.execute(
            insert(Notification),
            [
                {
                    "id": rule_id,
                    "location_id": tenant.location,  # type: ignore[attr-defined]
                    "calendar_id": tenant.calendar,  # type: ignore[attr-defined]
                    "receiver_type": "contact",
                    "channel": "email",
                    "notification_type": "booked",
                    "version": 1,
                    **stamp,
                }
            ],
        )
    total = 0
    for offset in range(0, len(rows), 5000):
        batch = []
        for i, (appointment_id, start, _contact) in enumerate(rows[offset : offset + 5000], offset):
            sent = now - timedelta(seconds=(i * 0.37) % 3500)
            common = {
                "location_id": tenant.location,  # type: ignore[attr-defined]
                "calendar_id": tenant.calendar,  # type: ignore[attr-defined]
                "appointment_id": appointment_id,
                "instance_id": "",
                "master_event_id": "",
                "notification_id": rule_id,
                "channel": "email",
                "receiver_type": "contact",
                "recipient_kind": "contact",
                "recipient_ref": "",
                "recipient": f"guest{i}@bench.example",
                "sender": "",
                "reason": "",
                "appointment_version": 1,
                "notification_version": 1,
                "provider": "",
                "provider_message_id": "",
                "provider_status": "",
                "last_error": "",
                "created_at": now,
                "updated_at": now,
            }
            batch.append(
                {
                    **common,
                    "id": f"db{i:018d}",
                    "notification_type": "booked",
                    "trigger": "event",
                    "status": "sent",
                    "due_at": sent - timedelta(seconds=0.2),
                    "run_at": sent,
                    "deadline_at": sent + timedelta(hours=24),
                    "sent_at": sent,
                    "attempts": 1,
                    "dedupe_key": f"db{i}",
                    "subject": "Booked: Cleaning",
                    "body": "See you soon.",
                }
            )
            due = start - timedelta(days=1)
            batch.append(
                {
                    **common,
                    "id": f"dr{i:018d}",
                    "notification_type": "reminder",
                    "trigger": "schedule",
                    "status": "scheduled",
                    "due_at": due,
                    "run_at": due,
                    "deadline_at": start,
                    "sent_at": None,
                    "attempts": 0,
                    "dedupe_key": f"dr{i}",
                    "subject": "",
                    "body": "",
                }
            )
        with engine.begin() as conn:
            conn.execute(insert(Delivery.__table__), batch)
        total += len(batch)
    engine.dispose()
    return total


def timed(client: httpx.Client, method: str, path: str, n: int, **kw: object) -> list[float]:
    for _ in range(3):
        client.request(method, path, **kw)  # type: ignore[arg-type]
    times = []
    for _ in range(n):
        started = time.perf_counter()
        response = client.request(method, path, **kw)  # type: ignore[arg-type]
        times.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise SystemExit(
                f"{method} {path} answered {response.status_code}: {response.text[:300]}"
            )
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--appointments", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=30)
    args = parser.parse_args()

    with fresh_database(args.database) as url:
        tenant = seed_tenant(url)
        seed_big_calendar(url, tenant, args.appointments)
        deliveries = seed_deliveries(url, tenant)
        log(f"seeded {args.appointments:,} appointments and {deliveries:,} deliveries")
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = calnotify(
            "serve", "--no-worker", "--port", str(port), env={"CALNOTIFY_DATABASE_URL": url}
        )
        try:
            wait_healthy(base)
            with httpx.Client(base_url=base, timeout=30) as client:
                form = client.get("/console/sign-in")
                csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
                assert csrf is not None
                signed = client.post(
                    "/console/sign-in", data={"csrf": csrf.group(1), "token": tenant.token}
                )
                assert signed.status_code == 303, signed.text
                page = client.get("/console/calendars")
                session_csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
                assert session_csrf is not None
                cal = tenant.calendar
                middle = f"ap{args.appointments // 2:018d}"
                day = (datetime.now(UTC) + timedelta(days=20)).date().isoformat()
                rule = {
                    "csrf": session_csrf.group(1),
                    "channel": "email",
                    "receiverType": "contact",
                    "notificationType": "reminder",
                    "subject": "Tomorrow: {{appointment.title}}",
                    "body": "Hello {{contact.first_name}}",
                    "offset0": "1",
                    "unit0": "days",
                    "when0": "before",
                    "isActive": "true",
                }
                pages = [
                    ("GET /healthz (reference)", "GET", "/healthz", {}),
                    ("Calendars", "GET", "/console/calendars", {}),
                    ("a calendar", "GET", f"/console/calendars/{cal}", {}),
                    ("new rule form", "GET", f"/console/calendars/{cal}/rules/new", {}),
                    ("rule preview", "POST", f"/console/calendars/{cal}/preview", {"data": rule}),
                    ("Appointments", "GET", "/console/appointments", {}),
                    ("search by name", "GET", "/console/appointments?q=guest+9999", {}),
                    ("search a day", "GET", f"/console/appointments?from={day}&to={day}", {}),
                    ("an appointment", "GET", f"/console/appointments/{middle}", {}),
                    ("Outbox", "GET", "/console/outbox", {}),
                    ("Inbox", "GET", "/console/inbox", {}),
                    ("Templates", "GET", "/console/templates", {}),
                    ("Health", "GET", "/console/health", {}),
                ]
                results: dict[str, object] = {
                    "database": args.database,
                    "appointments": args.appointments,
                    "deliveries": deliveries,
                }
                reference = 0.0
                worst = 0.0
                for name, method, path, kw in pages:
                    times = timed(client, method, path, args.requests, **kw)
                    p50, p95 = percentile(times, 50), percentile(times, 95)
                    if not reference:
                        reference = p50
                    else:
                        worst = max(worst, p95)
                    results[name] = (
                        f"p50 {p50:.1f} ms, p95 {p95:.1f} ms, max {max(times):.1f} ms "
                        f"({p50 / reference:.1f} x healthz)"
                    )
                    log(f"{name}: {results[name]}")
                results["verdict"] = "PASS" if worst < 100 else f"FAIL (worst p95 {worst:.0f} ms)"
        finally:
            server.terminate()
            server.wait(timeout=30)
    report("console", results)
    return 0 if results["verdict"] == "PASS" else 1


if __name__ == "__main__":
    raise SystemExit(main())
