"""Scale-out benchmark: sends/s with 1, 2 and 4 ``calnotify worker`` processes.

    python bench/scaleout.py [--database postgresql|sqlite] [--count 30000] [--workers 1,2,4]

Each round inserts --count email deliveries due now and starts N workers (each with the
default two dispatch loops) against one database, sending to an SMTP server in another
process; the rate is deliveries / time until all are sent. The reference is the 1-worker
round. On this 2-core machine the workers, the database and the SMTP server share the
same two cores, so more than two workers cannot add CPU, only overlap waiting.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text

from bench.common import (
    SmtpSink,
    calnotify,
    count_status,
    engine_for,
    fresh_database,
    insert_deliveries,
    log,
    report,
    seed_tenant,
)


def main(args: argparse.Namespace) -> None:
    counts = [int(n) for n in args.workers.split(",")]
    rates: dict[str, float] = {}
    duplicates: dict[str, int] = {}
    with fresh_database(args.database) as url, SmtpSink() as smtp:
        tenant = seed_tenant(url)
        for n in counts:
            prefix = f"w{n}_"
            insert_deliveries(
                url,
                tenant,
                [datetime.now(UTC)] * args.count,
                prefix=prefix,
                progress=f"{n} worker(s): deliveries",
            )
            env = {"CALNOTIFY_DATABASE_URL": url, **smtp.env}
            started = time.monotonic()
            workers = [calnotify("worker", env=env) for _ in range(n)]
            while True:
                time.sleep(0.5)
                states = count_status(url, prefix)
                if not states.get("scheduled") and not states.get("sending"):
                    break
            elapsed = time.monotonic() - started
            for worker in workers:
                worker.send_signal(signal.SIGTERM)
            for worker in workers:
                worker.wait(timeout=30)
            rate = args.count / elapsed
            rates[f"{n} worker(s)"] = round(rate)
            received = smtp.collect()
            duplicates[f"{n} worker(s)"] = sum(c - 1 for c in received.values() if c > 1)
            log(f"{n} worker(s): {rate:,.0f} sends/s ({elapsed:.1f}s)")
            engine = engine_for(url)
            with engine.begin() as conn:
                conn.execute(
                    text("DELETE FROM deliveries WHERE dedupe_key LIKE :p"), {"p": prefix + "%"}
                )
            engine.dispose()
    base = rates[f"{counts[0]} worker(s)"]
    report(
        f"scale-out ({args.database})",
        {
            "database": args.database,
            "deliveries_per_round": args.count,
            "sends_per_s": rates,
            "ratio_to_one_worker": {k: round(v / base, 2) for k, v in rates.items()},
            "duplicate_messages": duplicates,
            "note": "workers include process start-up (about 1 s); SMTP to aiosmtpd",
        },
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="postgresql")
    parser.add_argument("--count", type=int, default=30_000)
    parser.add_argument("--workers", default="1,2,4")
    main(parser.parse_args())
