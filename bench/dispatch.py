"""Dispatch benchmark: how fast due deliveries are sent, and how late.

    python bench/dispatch.py [--database sqlite|postgresql] [--due 100000] [--far 1000000]
                             [--smtp 20000] [--spread 60]

1. Claim time while the table fills with far-future rows (100k → --far): a claim must not
   slow down as millions of reminders wait for next month.
2. Reference: the raw claim-and-mark-sent loop on the same database (no rendering, no
   sending): the engine's ceiling.
3. Outbox: --due deliveries all due now, sent by one in-process dispatcher (a worker's
   default two loops): sends/s and the ratio to the reference.
4. Lateness: --due deliveries coming due evenly over --spread seconds: sent_at - due_at.
5. SMTP: --smtp deliveries all due now, sent over SMTP to aiosmtpd in another process.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, select, text, update

from bench.common import (
    fresh_database,
    insert_deliveries,
    log,
    report,
    seed_tenant,
    summary,
)
from calnotify.channels.registry import build_channels
from calnotify.clock import SystemClock
from calnotify.config import Settings
from calnotify.db.engine import Database
from calnotify.deliveries.lifecycle import DeliveryStatus
from calnotify.deliveries.lifecycle import claim as claim_due_deliveries
from calnotify.dispatch.dispatcher import Dispatcher, DispatchSettings
from calnotify.models import Delivery

BATCH = 200


async def claim_times(db: Database, rounds: int = 30) -> float:
    """Median seconds of one claim of a batch, on a table with 1,000 due rows."""
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        batch = await claim_due_deliveries(db, datetime.now(UTC), BATCH, timedelta(seconds=60))
        times.append(time.perf_counter() - started)
        async with db.session() as session:  # give them back
            await session.execute(
                update(Delivery)
                .where(Delivery.id.in_([d.id for d in batch]))
                .values(status=DeliveryStatus.SCHEDULED, claim_token=None, lease_until=None)
            )
    return summary(times)["p50"]


async def reference_loop(db: Database) -> int:
    """Claim and mark sent, nothing else: the ceiling of the engine on this database."""
    done = 0
    while True:
        batch = await claim_due_deliveries(db, datetime.now(UTC), BATCH, timedelta(seconds=60))
        if not batch:
            return done
        now = datetime.now(UTC)
        async with db.session() as session:
            await session.execute(
                update(Delivery)
                .where(Delivery.id.in_([d.id for d in batch]))
                .values(status=DeliveryStatus.SENT, sent_at=now, claim_token=None)
            )
        done += len(batch)


async def drain(db: Database, settings: Settings, expected: int, label: str) -> float:
    """Run one worker's dispatcher until ``expected`` deliveries are done; seconds taken."""
    clock = SystemClock()
    channels = build_channels(settings, db, clock)
    dispatcher = Dispatcher(
        db, clock, channels, DispatchSettings(batch_size=BATCH, concurrency=2, poll_interval=0.05)
    )
    started = time.perf_counter()
    dispatcher.start()
    last = 0
    while True:
        await asyncio.sleep(1.0)
        left = await pending_due(db)
        done = expected - int(left or 0)
        elapsed = time.perf_counter() - started
        log(
            f"{label}: {done:,}/{expected:,} sent, {done / elapsed:,.0f}/s"
            f" (+{done - last:,} in the last second)"
        )
        last = done
        if not left:
            break
    await dispatcher.stop()
    for adapter in {id(a): a for a in channels.values()}.values():
        await adapter.close()
    return time.perf_counter() - started


async def pending_due(db: Database) -> int:
    """Deliveries due within a day and not finished, counted from the partial indexes (a
    count over the whole table would take the machine from the dispatcher being measured)."""
    async with db.session(write=False) as session:
        scheduled = await session.scalar(
            select(func.count())
            .select_from(Delivery)
            .where(
                Delivery.status == DeliveryStatus.SCHEDULED,
                Delivery.run_at <= datetime.now(UTC) + timedelta(days=1),
            )
        )
        sending = await session.scalar(
            select(func.count())
            .select_from(Delivery)
            .where(Delivery.status == DeliveryStatus.SENDING, Delivery.lease_until.is_not(None))
        )
    return int(scheduled or 0) + int(sending or 0)


async def lateness(db: Database, since: datetime) -> dict[str, float]:
    async with db.session(write=False) as session:
        rows = await session.execute(
            select(Delivery.due_at, Delivery.sent_at).where(
                Delivery.status == DeliveryStatus.SENT, Delivery.sent_at >= since
            )
        )
        values = [(sent - due).total_seconds() for due, sent in rows if sent is not None]
    return summary(values)


async def reset_sent(db: Database) -> None:
    async with db.session() as session:
        await session.execute(text("DELETE FROM deliveries WHERE status <> 'scheduled'"))
        await session.execute(text("DELETE FROM outbox_messages"))


def smtp_process(port: int, counter: multiprocessing.Value) -> None:  # type: ignore[type-arg]
    from aiosmtpd.controller import Controller

    class Handler:
        async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
            with counter.get_lock():
                counter.value += 1
            return "250 OK"

    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        while True:
            time.sleep(1)
    finally:
        controller.stop()


async def main(args: argparse.Namespace) -> None:
    results: dict[str, object] = {"database": args.database, "due": args.due, "far": args.far}
    with fresh_database(args.database) as url:
        settings = Settings(database_url=url)
        tenant = seed_tenant(url)
        db = Database(url)
        far_start = datetime.now(UTC) + timedelta(days=7)

        # 1. Claim time as far-future rows grow.
        insert_deliveries(url, tenant, [datetime.now(UTC)] * 1000, prefix="c")
        claim_by_far: dict[str, float] = {}
        inserted = 0
        for target in sorted({100_000, args.far // 2, args.far}):
            due = [far_start + timedelta(seconds=i) for i in range(inserted, target)]
            insert_deliveries(
                url, tenant, due, prefix="f", progress="far-future rows", first=inserted
            )
            inserted = target
            if args.database == "postgresql":
                async with db.session() as session:
                    await session.execute(text("ANALYZE deliveries"))
            claim_by_far[f"{target:,}"] = round(await claim_times(db) * 1000, 2)
            log(
                f"claim of {BATCH} with {target:,} far-future rows: "
                f"{claim_by_far[f'{target:,}']} ms (median)"
            )
        results["claim_ms_by_far_rows"] = claim_by_far
        async with db.session() as session:
            await session.execute(text("DELETE FROM deliveries WHERE dedupe_key LIKE 'c%'"))

        # 2. Reference loop.
        insert_deliveries(
            url, tenant, [datetime.now(UTC)] * args.due, prefix="r", progress="reference rows"
        )
        started = time.perf_counter()
        done = await reference_loop(db)
        reference = done / (time.perf_counter() - started)
        log(f"reference claim-and-mark loop: {reference:,.0f}/s")
        results["reference_per_s"] = round(reference)
        await reset_sent(db)

        # 3. Outbox throughput.
        insert_deliveries(
            url, tenant, [datetime.now(UTC)] * args.due, prefix="o", progress="outbox rows"
        )
        since = datetime.now(UTC)
        seconds = await drain(db, settings, args.due, "outbox")
        outbox_rate = args.due / seconds
        results["outbox_per_s"] = round(outbox_rate)
        results["outbox_ratio_to_reference"] = round(outbox_rate / reference, 2)
        results["outbox_lateness_s_all_due_at_once"] = {
            k: round(v, 3) for k, v in (await lateness(db, since)).items()
        }
        await reset_sent(db)

        # 4. Lateness with deliveries coming due over --spread seconds.
        start = datetime.now(UTC) + timedelta(seconds=5)
        spread = [start + timedelta(seconds=args.spread * i / args.due) for i in range(args.due)]
        insert_deliveries(url, tenant, spread, prefix="l", progress="spread rows")
        since = datetime.now(UTC)
        await drain(db, settings, args.due, f"due over {args.spread}s")
        results["lateness_s_spread"] = {
            k: round(v, 3) for k, v in (await lateness(db, since)).items()
        }
        await reset_sent(db)

        # 5. SMTP.
        if args.smtp:
            from bench.common import free_port

            port = free_port()
            counter = multiprocessing.Value("i", 0)
            server = multiprocessing.Process(target=smtp_process, args=(port, counter), daemon=True)
            server.start()
            await asyncio.sleep(1.0)
            smtp_settings = Settings(
                database_url=url,
                smtp_host="127.0.0.1",
                smtp_port=port,
                smtp_security="none",
                smtp_connections=8,
            )
            insert_deliveries(
                url, tenant, [datetime.now(UTC)] * args.smtp, prefix="s", progress="smtp rows"
            )
            since = datetime.now(UTC)
            seconds = await drain(db, smtp_settings, args.smtp, "smtp")
            results["smtp_per_s"] = round(args.smtp / seconds)
            results["smtp_received"] = counter.value
            results["smtp_lateness_s_all_due_at_once"] = {
                k: round(v, 3) for k, v in (await lateness(db, since)).items()
            }
            server.terminate()
        await db.dispose()
    report(f"dispatch ({args.database})", results)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--due", type=int, default=100_000)
    parser.add_argument("--far", type=int, default=1_000_000)
    parser.add_argument("--smtp", type=int, default=20_000)
    parser.add_argument("--spread", type=float, default=60.0)
    os.environ.setdefault("PYTHONHASHSEED", "0")
    asyncio.run(main(parser.parse_args()))
