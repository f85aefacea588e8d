"""A big database: the service's figures at --rows deliveries beside the same at --small.

    python bench/bigdb.py [--rows 10000000] [--small 10000] [--folder /tmp] [--seconds 10]

For each size, a fresh SQLite file in --folder is seeded by a raw seeder (``executemany``
on the driver, 200,000 rows a transaction, the indexes built at the end): one location,
90 % of the rows finished (sent, their content 340 bytes, finished uniformly over the last
90 days), 10 % scheduled over the next 30 days, and 1,000 due now. Then: the claim of a
batch of 200 (median of 30, ``deliveries.lifecycle.claim``, the dispatcher's own);
``calnotify serve`` started on it (its background pruner held off); ``GET /deliveries``
and the console's Outbox page for --seconds each under ``wrk`` (4 connections, p50/p95);
``GET /metrics`` and, for reference, ``GET /healthz`` (20 sequential requests each, median
and max); the serve process's RSS (after
start, after the load); then ``calnotify db prune`` with content kept
--retain-content-days (30) and rows --retain-deliveries-days (60) (by default about a
third of the rows go, the content of another third), its time, and the file's size before
and after. Targets: RSS < 200 MB and flat, claim and page times within 2x of the small
database, /metrics < 100 ms. The files are removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from bench.api import find_wrk, rss_mb
from bench.common import free_port, log, percentile, report, seed_tenant, wait_healthy
from bench.dispatch import claim_times
from calnotify.db.engine import Database
from calnotify.db.migrate import upgrade

CHUNK = 200_000
COLUMNS = (
    "id", "location_id", "calendar_id", "appointment_id", "instance_id", "master_event_id",
    "notification_id", "notification_type", "channel", "receiver_type", "trigger",
    "recipient_kind", "recipient_ref", "recipient", "sender", "status", "reason", "due_at",
    "run_at", "deadline_at", "sent_at", "attempts", "appointment_version",
    "notification_version", "dedupe_key", "last_error", "provider", "provider_message_id",
    "provider_status", "subject", "body", "created_at", "updated_at",
)  # fmt: skip
INSERT = (  # the column names are the constants above
    f"INSERT INTO deliveries ({', '.join(COLUMNS)}) "  # noqa: S608
    f"VALUES ({', '.join('?' * len(COLUMNS))})"
)
BODY = "Hello Rosa, this is a reminder of your cleaning tomorrow at 10:00. " * 4
LUA = """
done = function(summary, latency, requests)
  io.write(string.format("WRK %d %d %.3f %.3f %.3f\\n", summary.requests,
    summary.errors.status + summary.errors.connect + summary.errors.read
      + summary.errors.write + summary.errors.timeout,
    summary.duration / 1e6, latency:percentile(50) / 1000, latency:percentile(95) / 1000))
end
"""


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")  # as calnotify writes them on SQLite


def seed(path: str, tenant: Any, rows: int) -> None:
    """``rows`` deliveries written straight to the file (see the module)."""
    now = datetime.now(UTC)
    rng = random.Random(7)
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA synchronous=OFF")
    connection.execute("PRAGMA cache_size=-262144")
    # The indexes are built once at the end, from sorted data: much faster than kept up to
    # date row by row.
    indexes = connection.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'deliveries' "
        "AND sql IS NOT NULL"
    ).fetchall()
    for name, _ in indexes:
        connection.execute(f'DROP INDEX "{name}"')
    started = time.monotonic()
    fixed = (tenant.location, tenant.calendar, tenant.appointment, "", "", tenant.rule)
    for offset in range(0, rows, CHUNK):
        batch = []
        for i in range(offset, min(rows, offset + CHUNK)):
            if i < 1000:
                status, when, sent = "scheduled", now - timedelta(seconds=5), None
            elif i % 10 == 0:
                status, sent = "scheduled", None
                when = now + timedelta(seconds=rng.uniform(3600, 30 * 86400))
            else:
                status = "sent"
                when = now - timedelta(seconds=rng.uniform(60, 90 * 86400))
                sent = when
            batch.append(_row(i, fixed, status, when, sent))
        connection.execute("BEGIN")
        connection.executemany(INSERT, batch)
        connection.execute("COMMIT")
        done = min(rows, offset + CHUNK)
        rate = done / max(1e-9, time.monotonic() - started)
        log(f"seeded {done:,}/{rows:,} deliveries ({rate:,.0f}/s)")
    for _, sql in indexes:
        connection.execute(sql)
    log(f"indexes built ({time.monotonic() - started:,.0f} s in all)")
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()


# fmt: off
def _row(
    i: int, fixed: tuple[str, ...], status: str, when: datetime, sent: datetime | None
) -> tuple[Any, ...]:
    content = ("Reminder: cleaning tomorrow", BODY) if sent else ("", "")
    return (
        f"big{i:017d}", *fixed, "reminder", "email", "contact", "schedule", "contact", "",
        "rosa@bench.example", "", status, "", stamp(when), stamp(when),
        stamp(when + timedelta(days=1)), stamp(sent) if sent else None, 1 if sent else 0, 1,
        1, f"big{i}", "", "outbox" if sent else "", "", "", *content, stamp(when), stamp(when),
    )
# fmt: on


def size_mb(path: str) -> float:
    total = sum(os.path.getsize(p) for p in (path, f"{path}-wal") if os.path.exists(p))
    return round(total / 1e6, 1)


def run_wrk(wrk: str, folder: str, url: str, headers: dict[str, str], seconds: int) -> str:
    script = Path(folder) / "report.lua"
    script.write_text(LUA)
    command = [wrk, "-t2", "-c4", f"-d{seconds}s", "--timeout", "10s", "-s", str(script)]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    out = subprocess.run([*command, url], capture_output=True, text=True, check=False)
    line = next((x for x in out.stdout.splitlines() if x.startswith("WRK ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no result: {out.stdout}\n{out.stderr}")
    requests, errors, duration, p50, p95 = line.split()[1:]
    return (
        f"p50 {float(p50):.1f} ms, p95 {float(p95):.1f} ms, "
        f"{int(requests) / float(duration):,.0f}/s, {errors} errors"
    )


def console_cookie(base: str, token: str) -> str:
    with httpx.Client(base_url=base, timeout=60) as client:
        form = client.get("/console/sign-in")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf is not None
        signed = client.post("/console/sign-in", data={"csrf": csrf.group(1), "token": token})
        assert signed.status_code == 303, signed.text
        return "; ".join(f"{k}={v}" for k, v in client.cookies.items())


def measure(folder: str, rows: int, seconds: int, retain: dict[str, str]) -> dict[str, Any]:
    path = f"{folder}/bigdb-{rows}.db"
    url = f"sqlite:///{path}"
    upgrade(url)
    tenant = seed_tenant(url)
    seed(path, tenant, rows)
    figures: dict[str, Any] = {"deliveries": rows}

    async def claim() -> float:
        db = Database(url)
        try:
            return await claim_times(db)
        finally:
            await db.dispose()

    figures["claim_200_ms"] = round(asyncio.run(claim()) * 1000, 2)
    log(f"{rows:,}: claim {figures['claim_200_ms']} ms")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "CALNOTIFY_DATABASE_URL": url,
        "CALNOTIFY_LOG_LEVEL": "warning",
        "CALNOTIFY_PRUNE_INTERVAL_SECONDS": "86400",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "calnotify", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_healthy(base, timeout=120)
        time.sleep(2)
        figures["serve_rss_mb_at_start"] = round(rss_mb(server.pid), 1)
        api = {"Authorization": f"Bearer {tenant.token}", "Version": "2021-04-15"}
        wrk = find_wrk()
        figures["GET /deliveries"] = run_wrk(wrk, folder, f"{base}/deliveries", api, seconds)
        cookie = {"Cookie": console_cookie(base, tenant.token)}
        figures["console Outbox"] = run_wrk(wrk, folder, f"{base}/console/outbox", cookie, seconds)
        for route in ("/healthz", "/metrics"):  # /healthz: the machine's floor, for reference
            times = []
            for _ in range(20):
                started = time.perf_counter()
                assert httpx.get(f"{base}{route}", timeout=60).status_code == 200
                times.append((time.perf_counter() - started) * 1000)
            median, most = percentile(times, 50), max(times)
            figures[f"GET {route}"] = f"median {median:.1f} ms, max {most:.1f} ms"
        figures["serve_rss_mb_after_load"] = round(rss_mb(server.pid), 1)
        figures["size_mb_before_prune"] = size_mb(path)
        started = time.perf_counter()
        pruned = subprocess.run(
            [sys.executable, "-m", "calnotify", "db", "prune"],
            env={**env, **retain},
            capture_output=True,
            text=True,
            check=True,
        )
        figures["prune_seconds"] = round(time.perf_counter() - started, 1)
        figures["pruned"] = "; ".join(x for x in pruned.stdout.splitlines() if " 0 " not in x)
        figures["size_mb_after_prune"] = size_mb(path)
        figures["serve_rss_mb_after_prune"] = round(rss_mb(server.pid), 1)
    finally:
        server.terminate()
        server.wait(timeout=60)
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)
    for key, value in figures.items():
        log(f"{rows:,}: {key}: {value}")
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--folder", default=tempfile.gettempdir())
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--retain-content-days", type=int, default=30)
    parser.add_argument("--retain-deliveries-days", type=int, default=60)
    args = parser.parse_args()
    retain = {
        "CALNOTIFY_RETAIN_CONTENT_DAYS": str(args.retain_content_days),
        "CALNOTIFY_RETAIN_DELIVERIES_DAYS": str(args.retain_deliveries_days),
    }
    with tempfile.TemporaryDirectory(prefix="calnotify-bigdb-", dir=args.folder) as folder:
        small = measure(folder, args.small, args.seconds, retain)
        big = measure(folder, args.rows, args.seconds, retain)
    results = {"small": small, "big": big}
    results["claim_ratio"] = round(big["claim_200_ms"] / max(1e-9, small["claim_200_ms"]), 2)
    report("bigdb", results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
