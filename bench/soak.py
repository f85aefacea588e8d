"""Soak: bookings at a steady rate while reminders come due, on one ``calnotify serve``.

    python bench/soak.py [--database sqlite|postgresql] [--rate 40] [--seconds 60]
                         [--reminders 3000] [--overload 2.0] [--big-rows N]

``calnotify serve`` (API and dispatcher in one process; two API processes on PostgreSQL)
is offered --rate bookings a second by ``wrk`` for --seconds (each wrk connection books,
then waits its turn: --connections connections each pacing one booking every
connections/rate seconds), while --reminders reminders come due evenly over the same
time. The calendar has a ``booked`` email rule, so every booking also plans an email that
is due at once. Reported:

* bookings: answered per second, p50/p99/max latency, answers other than 2xx (503s are the
  server shedding load);
* reminders: how many were sent, lateness (``sent_at - due_at``) p50/p99/max;
* booked emails: time from the booking's commit to the email's send, p50/p99;
* the server's peak resident memory.

With --overload F, a second soak offers F times what the process can book (measured first:
``wrk`` closed-loop for 10 s): reminders must still go out on time, and the excess must be
answered 503 at once. With --big-rows N, N far-future deliveries are added first (the
deliveries table as a big calendar has it): the same figures must hold.

Targets (SQLite, 40/s for 60 s, 3,000 reminders): every reminder sent, lateness p99 <= 1 s,
booked emails p99 <= 2 s after booking, bookings p99 <= 150 ms; at twice the capacity:
reminders p99 <= 1 s, the excess answered 503 within 100 ms.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text

from bench.api import (
    API_HEADERS,
    SLOT_SECONDS,
    find_wrk,
    largest_rss_mb,
    lua_script,
    rss_sampler,
    serve,
    stop,
)
from bench.common import (
    Tenant,
    engine_for,
    free_port,
    fresh_database,
    insert_deliveries,
    log,
    report,
    seed_tenant,
    summary,
    wait_healthy,
)
from calnotify.ids import new_id

PACED = """
local counter = 0
local threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end
{headers}
local function iso(seconds)
  return os.date("!%Y-%m-%dT%H:%M:%SZ", seconds)
end
local statuses = {{}}
request = function()
  counter = counter + 1
  local slot = {slot_base} + ((tid or 0) * 1000000 + counter) * {slot_seconds}
  return wrk.format("POST", "/calendars/events/appointments", nil, string.format(
    '{{"calendarId":"{calendar}","locationId":"{location}","contactId":"{contact}",'
    .. '"startTime":"%s"}}', iso(slot)))
end
function delay()
  return {delay_ms}
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRKJSON {{\\"requests\\": %d, \\"duration_us\\": %d, \\"p50_us\\": %d, "
    .. "\\"p99_us\\": %d, \\"max_us\\": %d, \\"status_errors\\": %d, "
    .. "\\"socket_errors\\": %d}}\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, e.status, e.connect + e.read + e.write + e.timeout))
end
"""


def add_booked_rule(url: str, tenant: Tenant) -> None:
    """A booked email to the contact on the tenant's calendar (written directly)."""
    engine = engine_for(url)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO notifications (id, location_id, calendar_id, receiver_type, "
                "channel, notification_type, is_active, deleted, template_id, body, subject, "
                "after_time, before_time, additional_email_ids, additional_phone_numbers, "
                "selected_users, from_address, from_name, from_number, version, "
                "planned_version, batch_index, date_added, date_updated) VALUES (:id, :loc, "
                ":cal, 'contact', 'email', 'booked', :yes, :no, '', '', '', '[]', '[]', '[]', "
                "'[]', '[]', '', '', '', 1, 1, 0, :now, :now)"
            ),
            {
                "id": new_id(),
                "loc": tenant.location,
                "cal": tenant.calendar,
                "now": now,
                "yes": True,
                "no": False,
            },
        )
    engine.dispose()


def wrk_paced(
    wrk: str, folder: Path, url: str, tenant: Tenant, rate: float, seconds: float,
    connections: int, slot_base: int,
) -> dict[str, Any]:  # fmt: skip
    """Bookings at about ``rate`` a second: each connection books every connections/rate
    seconds (wrk waits that long after each answer)."""
    headers = {"Authorization": f"Bearer {tenant.token}", **API_HEADERS}
    lines = [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()]
    script = PACED.format(
        headers="\n".join(lines),
        slot_base=slot_base,
        slot_seconds=SLOT_SECONDS,
        calendar=tenant.calendar,
        location=tenant.location,
        contact=tenant.contact,
        delay_ms=max(0, round(connections / rate * 1000)),
    )
    path = folder / "paced.lua"
    path.write_text(script)
    command = [wrk, f"-t{min(2, connections)}", f"-c{connections}", f"-d{seconds:g}s"]
    command += ["--timeout", "10s", "-s", str(path), url]
    out = subprocess.run(command, capture_output=True, text=True, check=False)
    line = next((x for x in out.stdout.splitlines() if x.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no result: {out.stdout}\n{out.stderr}")
    raw = json.loads(line.removeprefix("WRKJSON "))
    return {
        "offered_per_s": rate,
        "answered_per_s": round(raw["requests"] / (raw["duration_us"] / 1e6), 1),
        "p50_ms": round(raw["p50_us"] / 1000, 1),
        "p99_ms": round(raw["p99_us"] / 1000, 1),
        "max_ms": round(raw["max_us"] / 1000, 1),
        "not_2xx": raw["status_errors"],
        "socket_errors": raw["socket_errors"],
    }


def capacity(wrk: str, folder: Path, url: str, tenant: Tenant, slot_base: int) -> float:
    """Bookings a second the server answers when offered as many as it takes (10 s, four
    connections: enough to keep it busy, too few to be shed)."""
    from bench.api import calnotify_make

    context = {
        "list_calendar": tenant.calendar,
        "booking_calendar": tenant.calendar,
        "location": tenant.location,
        "contact": tenant.contact,
        "slot_base": slot_base,
    }
    headers = {"Authorization": f"Bearer {tenant.token}", **API_HEADERS}
    script = lua_script(calnotify_make("book", context), headers)
    path = folder / "capacity.lua"
    path.write_text(script)
    out = subprocess.run(
        [wrk, "-t2", "-c4", "-d10s", "-s", str(path), url],
        capture_output=True,
        text=True,
        check=False,
    )
    line = next(x for x in out.stdout.splitlines() if x.startswith("WRKJSON "))
    raw = json.loads(line.removeprefix("WRKJSON "))
    answered = raw["requests"] - raw["status_errors"]  # booked (2xx), not shed
    return float(answered / (raw["duration_us"] / 1e6))


def probe(url: str, tenant: Tenant, seconds: float, slot_base: int, out: list[Any]) -> None:
    """A booking every 100 ms beside the load, each timed with its status: how long a
    refused (503) and an admitted booking took. (Measures single requests; the load is
    wrk's.)"""
    import httpx

    headers = {"Authorization": f"Bearer {tenant.token}", **API_HEADERS}
    give_up = time.monotonic() + seconds
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        i = 0
        while time.monotonic() < give_up:
            i += 1
            start = datetime.fromtimestamp(slot_base - i * SLOT_SECONDS, UTC)
            began = time.perf_counter()
            try:
                status = client.post(
                    "/calendars/events/appointments",
                    json={
                        "calendarId": tenant.calendar,
                        "locationId": tenant.location,
                        "contactId": tenant.contact,
                        "startTime": start.isoformat(),
                    },
                ).status_code
            except httpx.HTTPError:
                status = 0
            out.append((status, time.perf_counter() - began))
            time.sleep(0.1)


def instant(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def sends(url: str, prefix: str, since: datetime) -> dict[str, Any]:
    engine = engine_for(url)
    with engine.connect() as conn:
        reminders = conn.execute(
            text("SELECT due_at, sent_at FROM deliveries WHERE dedupe_key LIKE :p"),
            {"p": prefix + "%"},
        ).all()
        booked = conn.execute(
            text(
                "SELECT d.sent_at, a.date_added FROM deliveries d JOIN appointments a "
                "ON a.id = d.appointment_id WHERE d.notification_type = 'booked' "
                "AND a.date_added >= :since"
            ),
            {"since": since.replace(tzinfo=None) if "sqlite" in url else since},
        ).all()
    engine.dispose()
    late = [(instant(s) - instant(d)).total_seconds() for d, s in reminders if s is not None]
    after = [(instant(s) - instant(a)).total_seconds() for s, a in booked if s is not None]
    late_stats, after_stats = summary(late), summary(after)
    return {
        "reminders": len(reminders),
        "reminders_sent": len(late),
        "reminder_lateness_s": {k: round(v, 3) for k, v in late_stats.items() if k != "mean"},
        "booked_emails": len(booked),
        "booked_emails_sent": len(after),
        "booked_email_after_booking_s": {
            k: round(v, 3) for k, v in after_stats.items() if k != "mean"
        },
    }


def soak(
    url: str, tenant: Tenant, args: argparse.Namespace, label: str, rate: float | None
) -> dict[str, Any]:
    wrk = find_wrk()
    prefix = f"soak{label}"
    processes = 2 if args.database == "postgresql" else 1
    port = free_port()
    server = serve(url, port, processes, dispatch=True)
    base = f"http://127.0.0.1:{port}"
    slot_base = int(time.time()) + 86_400 * (30 + 400 * (ord(label) - ord("a")))
    result: dict[str, Any] = {}
    try:
        wait_healthy(base)
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            if rate is None:
                measured = capacity(wrk, folder, base, tenant, slot_base)
                rate = round(measured * args.overload, 1)
                result["capacity_bookings_per_s"] = round(measured, 1)
                slot_base += 86_400 * 100
                time.sleep(3)  # the capacity run's booked emails
            due_from = datetime.now(UTC) + timedelta(seconds=3)
            spread = args.seconds
            due = [
                due_from + timedelta(seconds=spread * i / args.reminders)
                for i in range(args.reminders)
            ]
            insert_deliveries(url, tenant, due, prefix=prefix)
            time.sleep(max(0.0, (due_from - datetime.now(UTC)).total_seconds()))
            since = datetime.now(UTC)
            connections = max(4, min(256, round(rate * (1.0 if label == "a" else 0.5))))
            probed: list[Any] = []
            prober = threading.Thread(
                target=probe, args=(base, tenant, args.seconds, slot_base, probed), daemon=True
            )
            with rss_sampler(server.pid) as peak:
                prober.start()
                result["bookings"] = wrk_paced(
                    wrk, folder, base, tenant, rate, args.seconds, connections, slot_base
                )
                prober.join()
                time.sleep(3)  # the last reminders' and emails' sends
                result["rss_mb_peak"] = peak()
            refused = [s for code, s in probed if code == 503]
            admitted = [s for code, s in probed if 200 <= code < 300]
            result["probe"] = {
                "bookings": len(probed),
                "admitted": len(admitted),
                "admitted_s": {k: round(v, 3) for k, v in summary(admitted).items()},
                "refused_503": len(refused),
                "refused_s": {k: round(v, 3) for k, v in summary(refused).items()},
                "other": len(probed) - len(refused) - len(admitted),
            }
        result.update(sends(url, prefix, since))
    finally:
        result["rss_mb_end"] = largest_rss_mb(server.pid)
        stop(server)
    log(f"soak {label}: {json.dumps(result)}")
    return result


def main(args: argparse.Namespace) -> None:
    results: dict[str, Any] = {
        "database": args.database,
        "rate": args.rate,
        "seconds": args.seconds,
        "reminders": args.reminders,
    }
    with fresh_database(args.database) as url:
        tenant = seed_tenant(url)
        add_booked_rule(url, tenant)
        if args.big_rows:
            far = datetime.now(UTC) + timedelta(days=400)
            insert_deliveries(
                url,
                tenant,
                [far + timedelta(seconds=i) for i in range(args.big_rows)],
                prefix="far",
                progress="far-future rows",
            )
            results["far_future_rows"] = args.big_rows
        results[f"at {args.rate:g} bookings/s"] = soak(url, tenant, args, "a", args.rate)
        if args.overload:
            results[f"at {args.overload:g}x capacity"] = soak(url, tenant, args, "b", None)
    report(f"soak ({args.database})", results)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--rate", type=float, default=40.0, help="bookings offered a second")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--reminders", type=int, default=3000)
    parser.add_argument(
        "--overload",
        type=float,
        default=2.0,
        help="a second soak at this many times capacity (0: none)",
    )
    parser.add_argument("--big-rows", type=int, default=0)
    main(parser.parse_args())
