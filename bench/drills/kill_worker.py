"""Drill: kill -9 one of two workers sending 10,000 emails; count duplicates and losses.

    python bench/drills/kill_worker.py [--database sqlite|postgresql] [--count 10000]
                                       [--in-flight 32] [--smtp-delay 0.005]

The deliveries are emails to an SMTP server in another process that takes --smtp-delay
seconds per message and counts every message by its Message-ID (one per delivery). Two
workers send them; one is killed with SIGKILL a few seconds in; the other goes on, and
takes the dead worker's claims back when their 10 s lease runs out.

Counted: deliveries lost (never sent), messages received more than once (duplicates: the
dead worker's messages it had handed over and not yet recorded, which are sent again; at
most its in-flight window, CALNOTIFY_DISPATCH_IN_FLIGHT), and the time to drain. Passes
when none is lost and the duplicates are within the window (and at most 50).
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
    with fresh_database(args.database) as url, SmtpSink(delay=args.smtp_delay) as smtp:
        tenant = seed_tenant(url)
        insert_deliveries(
            url, tenant, [datetime.now(UTC)] * args.count, prefix="k", progress="deliveries"
        )
        env = {
            "CALNOTIFY_DATABASE_URL": url,
            "CALNOTIFY_DISPATCH_LEASE_SECONDS": "10",
            "CALNOTIFY_DISPATCH_IN_FLIGHT": str(args.in_flight),
            **smtp.env,
        }
        started = time.monotonic()
        victim = calnotify("worker", env=env)
        survivor = calnotify("worker", env=env)
        time.sleep(args.kill_after)
        before = len(smtp.collect())
        states = count_status(url, "k")
        log(f"killing one worker: {before:,} messages received, states {states}")
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait()
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            states = count_status(url, "k")
            received = smtp.collect()
            log(f"states {states}, {len(received):,} distinct messages received")
            if not states.get("scheduled") and not states.get("sending"):
                break
            time.sleep(2)
        elapsed = time.monotonic() - started
        survivor.send_signal(signal.SIGTERM)
        survivor.wait(timeout=30)
        time.sleep(1)
        received = smtp.collect()
        states = count_status(url, "k")
    duplicates = sum(n - 1 for n in received.values() if n > 1)
    lost = args.count - states.get("sent", 0)
    results = {
        "database": args.database,
        "deliveries": args.count,
        "in_flight_window": args.in_flight,
        "smtp_seconds_per_message": args.smtp_delay,
        "received_before_kill": before,
        "distinct_messages_received": len(received),
        "lost": lost,
        "duplicate_messages": duplicates,
        "final_states": states,
        "seconds_to_drain": round(elapsed, 1),
    }
    report(f"drill: kill -9 one of two workers ({args.database})", results)
    limit = min(args.in_flight, 50)
    ok = lost == 0 and duplicates <= limit and len(received) == args.count
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--in-flight", type=int, default=32)
    parser.add_argument("--smtp-delay", type=float, default=0.005)
    parser.add_argument("--kill-after", type=float, default=4.0)
    parser.add_argument("--timeout", type=float, default=300.0)
    sys.exit(main(parser.parse_args()))
