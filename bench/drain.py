"""Drain benchmark: one ``calnotify worker`` sends N emails due at once, to the outbox.

    python bench/drain.py [--database sqlite|postgresql] [--count 10000] [--rounds 2]

The rate is measured from the deliveries' own ``sent_at`` (first to last), so the worker's
start-up does not count. Reference, in the same run on the same database: a plain
claim-and-mark loop on the raw driver (``sqlite3`` or ``psycopg``: claim 200 due rows,
mark them sent, commit, repeat), the most any dispatcher could do there. Prints both rates
and the ratio (target on SQLite: at least 3,000/s, at least 0.02 of the reference).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text

from bench.common import (
    calnotify,
    engine_for,
    fresh_database,
    insert_deliveries,
    log,
    report,
    seed_tenant,
)
from calnotify.db.urls import sqlite_path

BATCH = 200


def reference_sqlite(path: Path) -> float:
    """Claim-and-mark with sqlite3; rows per second."""
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    done = 0
    started = time.perf_counter()
    while True:
        now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        connection.execute("BEGIN IMMEDIATE")
        ids = [
            row[0]
            for row in connection.execute(
                "UPDATE deliveries SET status = 'sending', claim_token = 't' WHERE id IN "
                "(SELECT id FROM deliveries WHERE status = 'scheduled' AND run_at <= ? "
                "ORDER BY run_at LIMIT ?) RETURNING id",
                (now, BATCH),
            )
        ]
        connection.execute("COMMIT")
        if not ids:
            break
        connection.execute("BEGIN IMMEDIATE")
        connection.executemany(
            "UPDATE deliveries SET status = 'sent', sent_at = ?, claim_token = NULL "
            "WHERE id = ? AND claim_token = 't'",
            [(now, i) for i in ids],
        )
        connection.execute("COMMIT")
        done += len(ids)
    seconds = time.perf_counter() - started
    connection.close()
    return done / seconds


def reference_postgres(url: str) -> float:
    import psycopg

    conninfo = url.replace("postgresql+psycopg", "postgresql")
    done = 0
    started = time.perf_counter()
    with psycopg.connect(conninfo) as connection:
        while True:
            now = datetime.now(UTC)
            with connection.transaction():
                ids = [
                    row[0]
                    for row in connection.execute(
                        "UPDATE deliveries SET status = 'sending', claim_token = 't' WHERE id IN "
                        "(SELECT id FROM deliveries WHERE status = 'scheduled' AND run_at <= %s "
                        "ORDER BY run_at LIMIT %s FOR UPDATE SKIP LOCKED) RETURNING id",
                        (now, BATCH),
                    )
                ]
            if not ids:
                break
            with connection.transaction(), connection.cursor() as cursor:
                cursor.executemany(
                    "UPDATE deliveries SET status = 'sent', sent_at = %s, claim_token = NULL "
                    "WHERE id = %s AND claim_token = 't'",
                    [(now, i) for i in ids],
                )
            done += len(ids)
    return done / (time.perf_counter() - started)


def reset(url: str, prefix: str) -> None:
    engine = engine_for(url)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM deliveries WHERE dedupe_key LIKE :p"), {"p": prefix + "%"})
        conn.execute(text("DELETE FROM outbox_messages"))
    engine.dispose()


def sent_span(url: str, prefix: str) -> tuple[int, float]:
    """How many were sent, and the seconds from the first send to the last."""
    engine = engine_for(url)
    with engine.connect() as conn:
        count, first, last = conn.execute(
            text(
                "SELECT count(*), min(sent_at), max(sent_at) FROM deliveries "
                "WHERE dedupe_key LIKE :p AND status = 'sent'"
            ),
            {"p": prefix + "%"},
        ).one()
    engine.dispose()

    def instant(value: Any) -> datetime:
        return datetime.fromisoformat(value) if isinstance(value, str) else value

    if not count:
        return 0, float("nan")
    return int(count), (instant(last) - instant(first)).total_seconds()


def drain_with_worker(url: str, tenant: Any, count: int, prefix: str, timeout: float) -> float:
    insert_deliveries(url, tenant, [datetime.now(UTC)] * count, prefix=prefix)
    worker = calnotify("worker", env={"CALNOTIFY_DATABASE_URL": url})
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            sent, _ = sent_span(url, prefix)
            if sent >= count:
                break
            time.sleep(0.5)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    sent, seconds = sent_span(url, prefix)
    if sent < count:
        raise RuntimeError(f"only {sent:,} of {count:,} sent within {timeout:g} s")
    return sent / seconds


def main(args: argparse.Namespace) -> None:
    results: dict[str, Any] = {"database": args.database, "count": args.count}
    with fresh_database(args.database) as url:
        tenant = seed_tenant(url)
        rates, references = [], []
        for round_ in range(args.rounds):
            insert_deliveries(url, tenant, [datetime.now(UTC)] * args.count, prefix="r")
            path = sqlite_path(url)
            reference = reference_sqlite(path) if path else reference_postgres(url)
            reset(url, "r")
            log(f"round {round_ + 1}: reference claim-and-mark loop {reference:,.0f}/s")
            rate = drain_with_worker(url, tenant, args.count, f"w{round_}", args.timeout)
            reset(url, f"w{round_}")
            log(f"round {round_ + 1}: one calnotify worker {rate:,.0f}/s")
            rates.append(rate)
            references.append(reference)
        best = max(range(len(rates)), key=lambda i: rates[i])
        results["worker_per_s"] = round(rates[best])
        results["reference_per_s"] = round(references[best])
        results["ratio"] = round(rates[best] / references[best], 3)
        results["rounds"] = [
            {"worker_per_s": round(r), "reference_per_s": round(f)}
            for r, f in zip(rates, references, strict=True)
        ]
    report(f"drain ({args.database})", results)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=300.0)
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main(parser.parse_args())
