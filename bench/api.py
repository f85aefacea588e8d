"""API benchmark: calnotify serve against a minimal Starlette app on the same database.

    python bench/api.py [--database sqlite|postgresql] [--clients 16,64] [--seconds 10]

A separate load-generating process drives each operation for --seconds with N concurrent
clients (httpx, keep-alive): create a notification, list notifications, update one, book an
appointment; the reference does a single-row insert and a single-row select. SQLite runs one
API process; PostgreSQL two (``--workers 2``), the reference the same. Reports requests/s,
p50/p99 latency and the ratio of each calnotify operation to the reference operation of the
same kind (writes to the insert, reads to the select).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from sqlalchemy import text

from bench.common import (
    engine_for,
    free_port,
    fresh_database,
    log,
    report,
    seed_tenant,
    summary,
    wait_healthy,
)


def load(
    base_url: str,
    headers: dict[str, str],
    operation: str,
    context: dict[str, Any],
    clients: int,
    seconds: float,
    out: Any,
) -> None:
    """Run in a separate process: drive one operation, put (count, errors, latencies)."""

    async def run() -> tuple[int, int, list[float]]:
        latencies: list[float] = []
        errors = 0
        stop = time.monotonic() + seconds
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        async with httpx.AsyncClient(
            base_url=base_url, headers=headers, limits=limits, timeout=30
        ) as client:

            async def worker(n: int) -> None:
                nonlocal errors
                i = 0
                while time.monotonic() < stop:
                    i += 1
                    request = _request(operation, context, n, i)
                    started = time.perf_counter()
                    try:
                        response = await client.request(**request)
                    except httpx.TransportError:
                        # A keep-alive connection the server closed as it was reused.
                        errors += 1
                        continue
                    latencies.append(time.perf_counter() - started)
                    if response.status_code >= 400:
                        errors += 1

            await asyncio.gather(*(worker(n) for n in range(clients)))
        return len(latencies), errors, latencies

    out.put(asyncio.run(run()))


def _request(operation: str, context: dict[str, Any], n: int, i: int) -> dict[str, Any]:
    calendar = context.get("calendar", "")
    if operation == "create notification":
        return {
            "method": "POST",
            "url": f"/calendars/{calendar}/notifications",
            "json": [
                {
                    "receiverType": "contact",
                    "channel": "email",
                    "notificationType": "booked",
                    "subject": f"Hi {{{{contact.name}}}} {i}",
                }
            ],
        }
    if operation == "list notifications":
        return {
            "method": "GET",
            "url": f"/calendars/{calendar}/notifications",
            "params": {"limit": 20},
        }
    if operation == "update notification":
        rule = context["rules"][n % len(context["rules"])]
        return {
            "method": "PUT",
            "url": f"/calendars/{calendar}/notifications/{rule}",
            "json": {"subject": f"Subject {n}-{i}"},
        }
    if operation == "book appointment":
        start = context["start"] + timedelta(minutes=(n * 100_000 + i) % 500_000)
        return {
            "method": "POST",
            "url": "/calendars/events/appointments",
            "json": {
                "calendarId": context["booking_calendar"],
                "locationId": context["location"],
                "contactId": context["contact"],
                "startTime": start.isoformat(),
            },
        }
    if operation == "reference insert":
        return {"method": "POST", "url": "/rows", "json": {"n": n, "i": i}}
    if operation == "reference select":
        return {"method": "GET", "url": f"/rows/{context['row']}"}
    raise ValueError(operation)


def measure(
    base_url: str,
    headers: dict[str, str],
    operation: str,
    context: dict[str, Any],
    clients: int,
    seconds: float,
) -> dict[str, Any]:
    queue: Any = multiprocessing.Queue()
    process = multiprocessing.Process(
        target=load, args=(base_url, headers, operation, context, clients, seconds, queue)
    )
    process.start()
    count, errors, latencies = queue.get()
    process.join()
    stats = summary(latencies)
    result = {
        "rps": round(count / seconds),
        "p50_ms": round(stats["p50"] * 1000, 1),
        "p99_ms": round(stats["p99"] * 1000, 1),
        "errors": errors,
    }
    log(f"{operation} x{clients}: {result}")
    return result


def start(command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        command, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def main(args: argparse.Namespace) -> None:
    processes = 2 if args.database == "postgresql" else 1
    clients_list = [int(c) for c in args.clients.split(",")]
    results: dict[str, Any] = {
        "database": args.database,
        "api_processes": processes,
        "seconds_per_run": args.seconds,
    }
    with fresh_database(args.database) as url:
        tenant = seed_tenant(url)
        engine = engine_for(url)
        with engine.begin() as conn:
            conn.execute(
                text(
                    "CREATE TABLE bench_rows (id VARCHAR(20) PRIMARY KEY,"
                    " payload VARCHAR(255) NOT NULL)"
                )
            )
            conn.execute(text("INSERT INTO bench_rows (id, payload) VALUES ('r1', 'x')"))
        engine.dispose()
        env = {"CALNOTIFY_DATABASE_URL": url, "CALNOTIFY_LOG_LEVEL": "warning"}

        port = free_port()
        api = start(
            [
                sys.executable,
                "-m",
                "calnotify",
                "serve",
                "--port",
                str(port),
                "--no-worker",
                "--workers",
                str(processes),
            ],
            env,
        )
        base = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {tenant.token}", "Version": "2021-04-15"}
        try:
            wait_healthy(base)
            with httpx.Client(base_url=base, headers=headers) as client:
                # Rules are created and edited on a calendar of their own; appointments are
                # booked on the tenant's calendar, whose rules are a realistic set: a booked
                # email and reminders by email and SMS (3 deliveries per booking).
                scratch = client.post(
                    "/calendars/", json={"locationId": tenant.location, "name": "Scratch"}
                ).json()["calendar"]["id"]
                rules = client.post(
                    f"/calendars/{scratch}/notifications",
                    json=[
                        {
                            "receiverType": "contact",
                            "channel": "email",
                            "notificationType": "booked",
                        }
                        for _ in range(20)
                    ],
                ).json()
                client.post(
                    f"/calendars/{tenant.calendar}/notifications",
                    json=[
                        {
                            "receiverType": "contact",
                            "channel": "email",
                            "notificationType": "booked",
                        },
                        {
                            "receiverType": "assignedUser",
                            "channel": "sms",
                            "notificationType": "reminder",
                            "beforeTime": [{"timeOffset": 1, "unit": "hours"}],
                        },
                    ],
                )
            context = {
                "calendar": scratch,
                "booking_calendar": tenant.calendar,
                "location": tenant.location,
                "contact": tenant.contact,
                "rules": [r["_id"] for r in rules],
                "start": datetime.now(UTC) + timedelta(days=60),
            }
            for clients in clients_list:
                for operation in (
                    "create notification",
                    "list notifications",
                    "update notification",
                    "book appointment",
                ):
                    results[f"{operation} x{clients}"] = measure(
                        base, headers, operation, context, clients, args.seconds
                    )
        finally:
            api.terminate()
            api.wait(timeout=30)

        port = free_port()
        reference = start(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "bench.reference_app:app",
                "--port",
                str(port),
                "--workers",
                str(processes),
                "--log-level",
                "warning",
            ],
            env,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"{base}/rows/r1", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            for clients in clients_list:
                for operation in ("reference insert", "reference select"):
                    results[f"{operation} x{clients}"] = measure(
                        base, {}, operation, {"row": "r1"}, clients, args.seconds
                    )
        finally:
            reference.terminate()
            reference.wait(timeout=30)

    ratios = {}
    for clients in clients_list:
        insert = results[f"reference insert x{clients}"]["rps"] or 1
        select = results[f"reference select x{clients}"]["rps"] or 1
        for operation, base_rps in (
            ("create notification", insert),
            ("list notifications", select),
            ("update notification", insert),
            ("book appointment", insert),
        ):
            ratios[f"{operation} x{clients}"] = round(
                results[f"{operation} x{clients}"]["rps"] / base_rps, 2
            )
    results["ratio_to_reference"] = ratios
    report(f"api ({args.database})", results)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--clients", default="16,64")
    parser.add_argument("--seconds", type=float, default=10.0)
    main(parser.parse_args())
