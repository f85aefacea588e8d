"""Drill: PostgreSQL restarts while a worker is sending.

    python bench/drills/postgres_restart.py [--count 20000]

Needs root (it runs ``pg_ctlcluster <version> main restart``) and a local cluster, as on
the development machines. A worker drains --count email deliveries to an SMTP server in
another process; a few seconds in, PostgreSQL is restarted (every connection is cut). The
worker must reconnect by itself and finish: counted are deliveries lost and duplicates.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

from bench.common import (
    SmtpSink,
    calnotify,
    count_status,
    fresh_database,
    insert_deliveries,
    log,
    report,
    seed_tenant,
)


def restart_postgres() -> float:
    versions = sorted(os.listdir("/etc/postgresql"))
    started = time.monotonic()
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "restart"],
        check=True,
    )
    return time.monotonic() - started


def main(args: argparse.Namespace) -> int:
    with fresh_database("postgresql") as url, SmtpSink() as smtp:
        tenant = seed_tenant(url)
        insert_deliveries(
            url, tenant, [datetime.now(UTC)] * args.count, prefix="p", progress="deliveries"
        )
        env = {"CALNOTIFY_DATABASE_URL": url, "CALNOTIFY_DISPATCH_LEASE_SECONDS": "10", **smtp.env}
        worker = calnotify("worker", env=env)
        started = time.monotonic()
        time.sleep(args.restart_after)
        log(f"before the restart: {count_status(url, 'p')}")
        downtime = restart_postgres()
        log(f"PostgreSQL restarted in {downtime:.1f}s")
        deadline = time.monotonic() + args.timeout
        states: dict[str, int] = {}
        while time.monotonic() < deadline:
            try:
                states = count_status(url, "p")
            except Exception as exc:  # the database may still be starting
                log(f"waiting for PostgreSQL: {type(exc).__name__}")
                time.sleep(1)
                continue
            log(f"states {states}, {len(smtp.collect()):,} distinct messages received")
            if not states.get("scheduled") and not states.get("sending"):
                break
            time.sleep(2)
        elapsed = time.monotonic() - started
        alive = worker.poll() is None
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=30)
        time.sleep(1)
        received = smtp.collect()
        states = count_status(url, "p")
    duplicates = sum(n - 1 for n in received.values() if n > 1)
    lost = args.count - states.get("sent", 0)
    results = {
        "deliveries": args.count,
        "restart_seconds": round(downtime, 1),
        "worker_survived": alive,
        "worker_exit_code": code,
        "lost": lost,
        "duplicate_messages": duplicates,
        "distinct_messages_received": len(received),
        "final_states": states,
        "seconds_to_drain": round(elapsed, 1),
    }
    report("drill: PostgreSQL restart mid-dispatch", results)
    ok = alive and lost == 0 and len(received) == args.count
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--restart-after", type=float, default=5.0)
    parser.add_argument("--timeout", type=float, default=300.0)
    sys.exit(main(parser.parse_args()))
