"""Rule impact benchmark: what lengthening a reminder would do, on a calendar with 50,000
appointments, each with its pending reminder.

    python bench/impact.py [--database sqlite|postgresql] [--appointments 50000] [--calls 5]

Seeds a location with --appointments future appointments (a contact with an email each)
straight into the database, starts ``calnotify serve`` on a free port, creates a reminder
rule (email to the contact, 1 hour before) and waits until every reminder is planned
(background planning jobs). Then times ``POST …/notifications/{id}/impact`` with the rule
lengthened to 2 hours (every reminder re-timed), --calls times, and prints the median and
the longest, the counts it answered and how far they got, and that nothing changed
(appended to bench/results.jsonl). Target: ≤ 500 ms. Figures only, no assertion.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TARGET_MS = 500.0
REMINDER = {
    "receiverType": "contact",
    "channel": "email",
    "notificationType": "reminder",
    "beforeTime": [{"timeOffset": 1, "unit": "hours"}],
}
LONGER = {"beforeTime": [{"timeOffset": 2, "unit": "hours"}]}


def wait_planned(client: Any, calendar: str, rule_id: str, timeout: float = 600) -> None:
    from bench.common import log

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = client.get(f"/calendars/{calendar}/notifications/{rule_id}/planning").json()
        if state.get("state") == "planned":
            return
        time.sleep(0.5)
    log("planning did not finish in time")
    raise SystemExit(1)


def analyze(url: str) -> None:
    """Refresh PostgreSQL's statistics after the bulk planning, as autovacuum does on a
    default server (this machine's runs without it): the counting statement is planned by
    them, and statistics taken while ``deliveries`` was empty misjudge it."""
    from sqlalchemy import text

    from bench.common import engine_for

    engine = engine_for(url)
    with engine.connect() as connection:
        connection.execute(text("ANALYZE"))
        connection.commit()
    engine.dispose()


def measure(client: Any, calendar: str, rule_id: str, calls: int) -> dict[str, Any]:
    from bench.common import summary

    url = f"/calendars/{calendar}/notifications/{rule_id}/impact"
    times: list[float] = []
    answer: dict[str, Any] = {}
    for _ in range(calls):
        started = time.perf_counter()
        response = client.post(url, json=LONGER)
        times.append(time.perf_counter() - started)
        response.raise_for_status()
        answer = response.json()
    stats = summary(times)
    return {
        "impact_median_ms": round(stats["p50"] * 1000, 1),
        "impact_max_ms": round(max(times) * 1000, 1),
        "counts": {k: answer[k]["count"] for k in ("cancelled", "retimed", "planned")},
        # How far the last answer got (docs/api.md "Rule impact": bounded by its time).
        "complete": answer["complete"],
        "checked_until": answer["checkedUntil"],
    }


def run(kind: str, appointments: int, calls: int) -> dict[str, Any]:
    import httpx

    from bench.common import (
        calnotify,
        count_status,
        free_port,
        fresh_database,
        log,
        seed_tenant,
        wait_healthy,
    )
    from bench.replan import seed_big_calendar

    results: dict[str, Any] = {"database": kind, "appointments": appointments}
    with fresh_database(kind) as url:
        tenant = seed_tenant(url)
        log(f"seeding {appointments:,} appointments")
        seed_big_calendar(url, tenant, appointments)
        port = free_port()
        env = {**os.environ, "CALNOTIFY_DATABASE_URL": url, "CALNOTIFY_LOG_LEVEL": "warning"}
        server = calnotify("serve", "--port", str(port), env=env)
        base = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {tenant.token}", "Version": "2021-04-15"}
        try:
            wait_healthy(base)
            with httpx.Client(base_url=base, headers=headers, timeout=120) as client:
                created = client.post(
                    f"/calendars/{tenant.calendar}/notifications", json=[REMINDER]
                )
                created.raise_for_status()
                rule_id = created.json()[0]["_id"]
                log("planning the reminders")
                wait_planned(client, tenant.calendar, rule_id)
                if kind == "postgresql":
                    analyze(url)
                before = count_status(url)
                results |= measure(client, tenant.calendar, rule_id, calls)
                results["unchanged"] = count_status(url) == before
        finally:
            server.terminate()
            server.wait(timeout=30)
    results["target_ms"] = TARGET_MS
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--appointments", type=int, default=50_000)
    parser.add_argument("--calls", type=int, default=5)
    args = parser.parse_args()
    from bench.common import report

    report("impact", run(args.database, args.appointments, args.calls))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
