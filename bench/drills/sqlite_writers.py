"""Drill: 50 concurrent API writers on SQLite while the same process dispatches.

    python bench/drills/sqlite_writers.py [--writers 50] [--seconds 30]

``calnotify serve`` on a SQLite file, with its in-process dispatcher, takes bookings,
rule edits and appointment changes from 50 concurrent clients (a separate process). Every
booking plans deliveries the dispatcher sends meanwhile. Counted: answers by status, and
any answer that mentions "database is locked" (there must be none), plus the dispatcher's
progress.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

import httpx

from bench.common import (
    calnotify,
    count_status,
    free_port,
    fresh_database,
    log,
    report,
    seed_tenant,
    summary,
    wait_healthy,
)


async def storm(
    base: str, token: str, ids: dict[str, str], writers: int, seconds: float
) -> tuple[Counter[int], int, list[float]]:
    statuses: Counter[int] = Counter()
    locked = 0
    latencies: list[float] = []
    headers = {"Authorization": f"Bearer {token}", "Version": "2021-04-15"}
    limits = httpx.Limits(max_connections=writers)
    stop = time.monotonic() + seconds
    async with httpx.AsyncClient(
        base_url=base, headers=headers, limits=limits, timeout=60
    ) as client:

        async def writer(n: int) -> None:
            nonlocal locked
            i = 0
            mine: list[str] = []
            while time.monotonic() < stop:
                i += 1
                start = datetime.now(UTC) + timedelta(minutes=2 + (n * 1000 + i) % 5000)
                kind = i % 4
                if kind == 0 or not mine:
                    request = client.post(
                        "/calendars/events/appointments",
                        json={
                            "calendarId": ids["calendar"],
                            "locationId": ids["location"],
                            "contactId": ids["contact"],
                            "startTime": start.isoformat(),
                        },
                    )
                elif kind == 1:
                    request = client.put(
                        f"/calendars/events/appointments/{mine[-1]}",
                        json={"startTime": start.isoformat()},
                    )
                elif kind == 2:
                    request = client.put(
                        f"/calendars/events/appointments/{mine[-1]}",
                        json={"appointmentStatus": "confirmed"},
                    )
                else:
                    request = client.put(
                        f"/calendars/{ids['calendar']}/notifications/{ids['rule']}",
                        json={"subject": f"Reminder {n}-{i}"},
                    )
                began = time.perf_counter()
                response = await request
                latencies.append(time.perf_counter() - began)
                statuses[response.status_code] += 1
                if "locked" in response.text.lower():
                    locked += 1
                if kind == 0 and response.status_code == 200:
                    mine.append(response.json()["id"])

        await asyncio.gather(*(writer(n) for n in range(writers)))
    return statuses, locked, latencies


def main(args: argparse.Namespace) -> int:
    with fresh_database("sqlite") as url:
        tenant = seed_tenant(url)
        port = free_port()
        server = calnotify(
            "serve",
            "--port",
            str(port),
            env={"CALNOTIFY_DATABASE_URL": url, "CALNOTIFY_LOG_LEVEL": "warning"},
        )
        base = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(base)
            headers = {"Authorization": f"Bearer {tenant.token}", "Version": "2021-04-15"}
            with httpx.Client(base_url=base, headers=headers) as client:
                client.post(
                    f"/calendars/{tenant.calendar}/notifications",
                    json=[
                        {"receiverType": "contact", "channel": "email", "notificationType": kind}
                        for kind in ("booked", "confirmation", "reschedule")
                    ],
                )
            ids = {
                "calendar": tenant.calendar,
                "location": tenant.location,
                "contact": tenant.contact,
                "rule": tenant.rule,
            }
            log(f"{args.writers} writers for {args.seconds:.0f}s")
            statuses, locked, latencies = asyncio.run(
                storm(base, tenant.token, ids, args.writers, args.seconds)
            )
            time.sleep(3)
            states = count_status(url)
        finally:
            server.terminate()
            stderr = server.communicate(timeout=30)[1].decode(errors="replace")
    stats = summary(latencies)
    results = {
        "writers": args.writers,
        "seconds": args.seconds,
        "requests": sum(statuses.values()),
        "requests_per_s": round(sum(statuses.values()) / args.seconds),
        "answers_by_status": dict(statuses),
        "answers_mentioning_locked": locked,
        "server_log_mentions_locked": stderr.lower().count("database is locked"),
        "latency_ms": {k: round(v * 1000, 1) for k, v in stats.items()},
        "deliveries_by_status": states,
    }
    report("drill: 50 concurrent writers on SQLite with dispatch", results)
    ok = locked == 0 and not any(code >= 500 for code in statuses)
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writers", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30.0)
    sys.exit(main(parser.parse_args()))
