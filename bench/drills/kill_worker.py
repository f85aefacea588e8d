"""Drill: kill -9 a worker with 10,000 deliveries in flight, start another.

    python bench/drills/kill_worker.py [--database sqlite|postgresql] [--count 10000]

The deliveries are emails to an SMTP server in another process, which counts every message
by its Message-ID (one per delivery). The first worker claims everything at once (batches
of 5,000, two loops) and is killed with SIGKILL a few seconds in; the second starts at once.
With a 10 s lease, the second takes the dead worker's batch over when the lease expires.

Counted: deliveries lost (never sent), messages received more than once (duplicates: at most
the dead worker's in-flight messages that it sent but could not record), and the time to
drain.
"""

from __future__ import annotations

import argparse
import os
import signal
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


def main(args: argparse.Namespace) -> int:
    with fresh_database(args.database) as url, SmtpSink() as smtp:
        tenant = seed_tenant(url)
        insert_deliveries(
            url, tenant, [datetime.now(UTC)] * args.count, prefix="k", progress="deliveries"
        )
        env = {
            "CALNOTIFY_DATABASE_URL": url,
            "CALNOTIFY_DISPATCH_BATCH_SIZE": str(args.count // 2),
            "CALNOTIFY_DISPATCH_LEASE_SECONDS": "10",
            **smtp.env,
        }
        started = time.monotonic()
        first = calnotify("worker", env=env)
        time.sleep(args.kill_after)
        before = len(smtp.collect())
        states = count_status(url, "k")
        in_flight = states.get("sending", 0)
        log(
            f"killing the worker: {before:,} messages received, {in_flight:,} deliveries"
            f" claimed and not recorded, states {states}"
        )
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        second = calnotify("worker", env={**env, "CALNOTIFY_DISPATCH_BATCH_SIZE": "200"})
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            states = count_status(url, "k")
            received = smtp.collect()
            log(f"states {states}, {len(received):,} distinct messages received")
            if not states.get("scheduled") and not states.get("sending"):
                break
            time.sleep(2)
        elapsed = time.monotonic() - started
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=30)
        time.sleep(1)
        received = smtp.collect()
        states = count_status(url, "k")
    duplicates = sum(n - 1 for n in received.values() if n > 1)
    lost = args.count - states.get("sent", 0)
    results = {
        "database": args.database,
        "deliveries": args.count,
        "claimed_in_flight_at_kill": in_flight,
        "received_before_kill": before,
        "distinct_messages_received": len(received),
        "lost": lost,
        "duplicate_messages": duplicates,
        "final_states": states,
        "seconds_to_drain": round(elapsed, 1),
    }
    report(f"drill: kill -9 a worker ({args.database})", results)
    ok = lost == 0 and duplicates <= in_flight and len(received) == args.count
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--kill-after", type=float, default=4.0)
    parser.add_argument("--timeout", type=float, default=300.0)
    sys.exit(main(parser.parse_args()))
