"""API benchmark: calnotify serve against the bare minimum a Python service can do.

    python bench/api.py [--database sqlite|postgresql] [--connections 16,32] [--seconds 8]
                        [--rounds 2]
                        [--ops create,list,get,update,book,reschedule]

Load comes from ``wrk`` (a compiled generator, Debian package ``wrk``), in a process of
its own, two threads, keep-alive, for --seconds per operation and connection count. The
requests of each operation are built by a Lua script written to a temporary folder: it
varies the rule subject, the booking's start time and the appointment rescheduled per
request (a per-thread counter), so that no two bookings share a slot.

calnotify runs as ``calnotify serve --no-worker``: one process on SQLite, two
(``--workers 2``) on PostgreSQL. The reference (bench/reference_app.py: Starlette and one
aiosqlite connection, or a few psycopg connections per process, the same process count)
runs in the same invocation and does the single-row work of each operation: an insert
(create, book), a ten-row select (list), a one-row select (get), a one-row update (update,
reschedule). Both servers run at once, idle but for the one under load, and each
operation is measured --rounds times in turns with its reference (this machine's speed
drifts over minutes): reported are the best round's req/s, p50, p99 and errors, and the
median of the rounds' ratios to the reference.

The dispatcher under load (bookings while reminders come due) is bench/soak.py.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from sqlalchemy import text

from bench.common import (
    Tenant,
    engine_for,
    free_port,
    fresh_database,
    log,
    report,
    seed_tenant,
    wait_healthy,
)

OPERATIONS = ("create", "list", "get", "update", "book", "reschedule")
REFERENCE_OF = {
    "create": "insert",
    "list": "select10",
    "get": "select1",
    "update": "update",
    "book": "book",
    "reschedule": "reschedule",
}
REFERENCE_CALENDAR = "refcal00000000000000"
LIST_LIMIT = 10
SLOT_SECONDS = 1800
# Each wrk thread books and reschedules in a range of slots of its own.
SLOTS_PER_THREAD = 200_000


def find_wrk() -> str:
    """The wrk binary; installed with apt-get when missing (root), else a clear error."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        log("wrk not found: installing the Debian package")
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=False)
        found = shutil.which("wrk")
        if found:
            return found
    raise SystemExit("bench/api.py needs wrk: `apt-get install wrk` (Debian/Ubuntu)")


# ---------------------------------------------------------------------------- Lua scripts

LUA_COMMON = """
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
{make}
request = function()
  counter = counter + 1
  local method, path, body = make(tid or 0, counter)
  return wrk.format(method, path, nil, body)
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


def lua_string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid Lua string literal here (ASCII)


def lua_list(values: list[str]) -> str:
    return "{" + ", ".join(lua_string(v) for v in values) + "}"


def lua_script(make: str, headers: dict[str, str]) -> str:
    lines = [f"wrk.headers[{lua_string(k)}] = {lua_string(v)}" for k, v in headers.items()]
    return LUA_COMMON.format(headers="\n".join(lines), make=make)


def calnotify_make(operation: str, context: dict[str, Any]) -> str:
    """The Lua ``make(tid, n)`` of one calnotify operation: method, path, body."""
    rules = f"/calendars/{context['list_calendar']}/notifications"
    if operation == "create":
        path = f"/calendars/{context['scratch_calendar']}/notifications"
        return f"""
function make(tid, n)
  return "POST", {lua_string(path)}, string.format(
    '[{{"receiverType":"contact","channel":"email","notificationType":"booked",'
    .. '"subject":"Hi {{{{contact.name}}}} %d-%d"}}]', tid, n)
end"""
    if operation == "list":
        return f"""
function make(tid, n)
  return "GET", {lua_string(f"{rules}?limit={LIST_LIMIT}")}, nil
end"""
    if operation == "get":
        return f"""
local ids = {lua_list(context["rules"])}
function make(tid, n)
  return "GET", {lua_string(rules + "/")} .. ids[(n % #ids) + 1], nil
end"""
    if operation == "update":
        return f"""
local ids = {lua_list(context["rules"])}
function make(tid, n)
  return "PUT", {lua_string(rules + "/")} .. ids[((tid * 7 + n) % #ids) + 1],
    string.format('{{"subject":"Subject %d-%d"}}', tid, n)
end"""
    slot_base = f"{context['slot_base']} + (tid * {SLOTS_PER_THREAD} + n) * {SLOT_SECONDS}"
    if operation == "book":
        return f"""
local calendar = {lua_string(context["booking_calendar"])}
local location = {lua_string(context["location"])}
local contact = {lua_string(context["contact"])}
function make(tid, n)
  return "POST", "/calendars/events/appointments", string.format(
    '{{"calendarId":"%s","locationId":"%s","contactId":"%s","startTime":"%s"}}',
    calendar, location, contact, iso({slot_base}))
end"""
    if operation == "reschedule":
        return f"""
local ids = {lua_list(context["appointments"])}
function make(tid, n)
  return "PUT", "/calendars/events/appointments/" .. ids[((tid * 97 + n) % #ids) + 1],
    string.format('{{"startTime":"%s"}}', iso({slot_base} + {SLOT_SECONDS // 2}))
end"""
    raise ValueError(operation)


def reference_make(kind: str, context: dict[str, Any]) -> str:
    base = f"/rows/{REFERENCE_CALENDAR}"
    if kind == "insert":
        return f"""
function make(tid, n)
  return "POST", {lua_string(base)}, string.format('{{"subject":"Hi %d-%d"}}', tid, n)
end"""
    if kind == "select10":
        return f"""
function make(tid, n)
  return "GET", {lua_string(f"{base}?limit={LIST_LIMIT}")}, nil
end"""
    ids = lua_list(context["reference_rows"])
    if kind == "select1":
        return f"""
local ids = {ids}
function make(tid, n)
  return "GET", {lua_string(base + "/")} .. ids[(n % #ids) + 1], nil
end"""
    if kind == "update":
        return f"""
local ids = {ids}
function make(tid, n)
  return "PUT", {lua_string(base + "/")} .. ids[((tid * 7 + n) % #ids) + 1],
    string.format('{{"subject":"Subject %d-%d"}}', tid, n)
end"""
    slot = f"{context['slot_base']} + (tid * {SLOTS_PER_THREAD} + n) * {SLOT_SECONDS}"
    if kind == "book":
        return f"""
function make(tid, n)
  return "POST", {lua_string(f"/book/{REFERENCE_CALENDAR}")},
    string.format('{{"startTime":"%s"}}', iso({slot}))
end"""
    if kind == "reschedule":
        return f"""
local ids = {ids}
function make(tid, n)
  return "PUT", {lua_string(f"/book/{REFERENCE_CALENDAR}/")} .. ids[((tid * 97 + n) % #ids) + 1],
    string.format('{{"startTime":"%s"}}', iso({slot} + {SLOT_SECONDS // 2}))
end"""
    raise ValueError(kind)


def cpu_seconds(pid: int) -> float:
    """CPU time (user and system) used so far by ``pid`` and its descendants."""
    total = 0
    for member in family(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def run_wrk(
    wrk: str,
    folder: Path,
    name: str,
    script: str,
    url: str,
    connections: int,
    seconds: float,
    server: int | None = None,
) -> dict[str, Any]:
    """One wrk run; with ``server`` (a pid), also the server's CPU time per request: a
    steadier figure than req/s on a machine whose speed drifts."""
    path = folder / f"{name.replace(' ', '_')}.lua"
    path.write_text(script)
    command = [
        wrk,
        f"-t{min(2, connections)}",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--timeout",
        "10s",
        "-s",
        str(path),
        url,
    ]
    cpu_before = cpu_seconds(server) if server is not None else 0.0
    out = subprocess.run(command, capture_output=True, text=True, check=False)
    cpu = cpu_seconds(server) - cpu_before if server is not None else None
    line = next((x for x in out.stdout.splitlines() if x.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no result for {name}: {out.stdout}\n{out.stderr}")
    raw = json.loads(line.removeprefix("WRKJSON "))
    result = {
        "rps": round(raw["requests"] / (raw["duration_us"] / 1e6)),
        "p50_ms": round(raw["p50_us"] / 1000, 1),
        "p99_ms": round(raw["p99_us"] / 1000, 1),
        "errors": raw["status_errors"] + raw["socket_errors"],
    }
    if cpu is not None and raw["requests"]:
        result["server_cpu_us_per_request"] = round(cpu * 1e6 / raw["requests"])
    log(f"{name} x{connections}: {result}")
    return result


# ------------------------------------------------------------------------------- profile

AREAS = (
    ("sqlalchemy", "SQLAlchemy"),
    ("aiosqlite", "aiosqlite"),
    ("psycopg", "psycopg"),
    ("fastapi", "FastAPI"),
    ("starlette", "Starlette"),
    ("pydantic", "pydantic"),
    ("uvicorn", "uvicorn"),
    ("h11", "h11"),
    ("httptools", "httptools"),
    ("calnotify", "calnotify"),
    ("asyncio", "asyncio"),
    ("greenlet", "greenlet"),
)


#: Where the raw samples are kept (py-spy's collapsed stacks, one line per stack).
PROFILES = Path(__file__).resolve().parent


def start_profile(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling every thread of ``pid`` (and its workers) holding the GIL."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        raise SystemExit("--profile needs py-spy: `.venv/bin/pip install py-spy`")
    return subprocess.Popen(
        [
            spy,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(int(seconds)),
            "--rate",
            "250",
            "--format",
            "raw",
            "--nolineno",
            "--gil",
            "--subprocesses",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def summarise_profile(raw: Path, top: int = 25) -> dict[str, Any]:
    """Top functions by own and by inclusive samples, and the share of each library."""
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    areas: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += count
        leaf = frames[-1]
        own[leaf] = own.get(leaf, 0) + count
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + count
        where = next((name for key, name in AREAS if key in leaf), "other")
        areas[where] = areas.get(where, 0) + count

    def share(table: dict[str, int]) -> list[tuple[str, float]]:
        ranked = sorted(table.items(), key=lambda kv: -kv[1])[:top]
        return [(name, round(100 * n / max(total, 1), 1)) for name, n in ranked]

    return {
        "samples": total,
        "own_percent_by_library": dict(share(areas)),
        "own_percent_top": share(own),
        "inclusive_percent_top": share(inclusive),
    }


# ------------------------------------------------------------------------------ processes


def wait_reference(base: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/rows/{REFERENCE_CALENDAR}", timeout=1).is_success:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"the reference app did not answer at {base}")


def start(command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        command, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def serve(url: str, port: int, processes: int, *, dispatch: bool) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "calnotify", "serve", "--port", str(port)]
    command += ["--workers", str(processes)]
    if not dispatch:
        command.append("--no-worker")
    return start(command, {"CALNOTIFY_DATABASE_URL": url, "CALNOTIFY_LOG_LEVEL": "warning"})


def family(pid: int) -> list[int]:
    """``pid`` and its descendants (uvicorn's worker processes)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def largest_rss_mb(pid: int) -> float:
    """The resident memory of the largest process serving requests (MB)."""
    return round(max(rss_mb(p) for p in family(pid)), 1)


@contextmanager
def rss_sampler(pid: int) -> Iterator[Callable[[], float]]:
    """Samples the server's largest process every half second; yields the peak so far."""
    peak = [0.0]
    stopping = threading.Event()

    def sample() -> None:
        while not stopping.wait(0.5):
            peak[0] = max(peak[0], largest_rss_mb(pid))

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield lambda: round(max(peak[0], largest_rss_mb(pid)), 1)
    finally:
        stopping.set()
        thread.join()


# ---------------------------------------------------------------------------------- setup

API_HEADERS = {"Version": "2021-04-15", "Content-Type": "application/json"}


def prepare_reference(url: str) -> list[str]:
    """The reference's table: REFERENCE_CALENDAR with 20 rows; their ids."""
    engine = engine_for(url)
    ids = [f"ref{i:017d}" for i in range(20)]
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE bench_rows (id VARCHAR(20) PRIMARY KEY,"
                " calendar_id VARCHAR(20) NOT NULL, payload VARCHAR(255) NOT NULL,"
                " created_at VARCHAR(40) NOT NULL)"
            )
        )
        conn.execute(text("CREATE INDEX ix_bench_rows ON bench_rows (calendar_id, created_at, id)"))
        # A booking's deliveries: as calnotify's, looked up by appointment when it changes.
        conn.execute(
            text(
                "CREATE TABLE bench_deliveries (id VARCHAR(20) PRIMARY KEY,"
                " appointment_id VARCHAR(20) NOT NULL, kind VARCHAR(20) NOT NULL,"
                " due_at VARCHAR(40) NOT NULL, status VARCHAR(20) NOT NULL)"
            )
        )
        conn.execute(text("CREATE INDEX ix_bench_deliveries ON bench_deliveries (appointment_id)"))
        now = datetime.now(UTC)
        for i, row_id in enumerate(ids):
            conn.execute(
                text("INSERT INTO bench_rows VALUES (:id, :calendar, :payload, :created)"),
                {
                    "id": row_id,
                    "calendar": REFERENCE_CALENDAR,
                    "payload": "{'subject': 'Hi'}",
                    "created": (now + timedelta(microseconds=i)).isoformat(),
                },
            )
            for kind in ("booked", "reminder"):
                conn.execute(
                    text("INSERT INTO bench_deliveries VALUES (:id, :row, :kind, :due, 'sent')"),
                    {"id": f"{kind[:3]}{row_id[3:]}", "row": row_id, "kind": kind, "due": ""},
                )
    engine.dispose()
    return ids


def prepare_calnotify(base: str, tenant: Tenant, appointments: int) -> dict[str, Any]:
    """Calendars and rules through the API; what the Lua scripts need."""
    headers = {"Authorization": f"Bearer {tenant.token}", **API_HEADERS}
    booked = {"receiverType": "contact", "channel": "email", "notificationType": "booked"}
    with httpx.Client(base_url=base, headers=headers, timeout=60) as client:

        def calendar(name: str) -> str:
            answer = client.post("/calendars/", json={"locationId": tenant.location, "name": name})
            answer.raise_for_status()
            return str(answer.json()["calendar"]["id"])

        # Rules are created on a calendar of their own, listed, read and edited on another
        # (20 rules, so the list always answers 10); appointments are booked on the
        # tenant's calendar, whose rules are a realistic set: a booked email to the contact
        # and an SMS reminder to the assigned user an hour before.
        scratch, listed = calendar("Scratch"), calendar("Listed")
        answer = client.post(f"/calendars/{listed}/notifications", json=[booked] * 20)
        answer.raise_for_status()
        rules = [r["_id"] for r in answer.json()]
        client.post(
            f"/calendars/{tenant.calendar}/notifications",
            json=[
                booked,
                {
                    "receiverType": "assignedUser",
                    "channel": "sms",
                    "notificationType": "reminder",
                    "beforeTime": [{"timeOffset": 1, "unit": "hours"}],
                },
            ],
        ).raise_for_status()
        # Appointments to reschedule, in slots of their own (before the booking range).
        slot_base = int(
            (datetime.now(UTC) + timedelta(days=60)).replace(minute=0, second=0).timestamp()
        )
        ids = []
        for i in range(appointments):
            start = datetime.fromtimestamp(slot_base - (i + 1) * SLOT_SECONDS * 2, UTC)
            answer = client.post(
                "/calendars/events/appointments",
                json={
                    "calendarId": tenant.calendar,
                    "locationId": tenant.location,
                    "contactId": tenant.contact,
                    "startTime": start.isoformat(),
                },
            )
            answer.raise_for_status()
            ids.append(answer.json()["id"])
    return {
        "scratch_calendar": scratch,
        "list_calendar": listed,
        "rules": rules,
        "booking_calendar": tenant.calendar,
        "location": tenant.location,
        "contact": tenant.contact,
        "appointments": ids,
        "slot_base": slot_base,
    }


# ----------------------------------------------------------------------------------- main


def main(args: argparse.Namespace) -> None:
    wrk = find_wrk()
    processes = 2 if args.database == "postgresql" else 1
    connections_list = [int(c) for c in args.connections.split(",")]
    operations = [o for o in args.ops.split(",") if o]
    unknown = set(operations) - set(OPERATIONS)
    if unknown:
        raise SystemExit(f"unknown operations: {', '.join(sorted(unknown))}")
    results: dict[str, Any] = {
        "database": args.database,
        "api_processes": processes,
        "seconds_per_run": args.seconds,
        "load": "wrk, 2 threads, keep-alive",
    }
    with fresh_database(args.database) as url, tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        tenant = seed_tenant(url)
        reference_rows = prepare_reference(url)

        port = free_port()
        api = serve(url, port, processes, dispatch=False)
        base = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {tenant.token}", **API_HEADERS}
        reference_port = free_port()
        reference = start(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "bench.reference_app:app",
                "--port",
                str(reference_port),
                "--workers",
                str(processes),
                "--log-level",
                "warning",
            ],
            {"CALNOTIFY_DATABASE_URL": url},
        )
        reference_base = f"http://127.0.0.1:{reference_port}"
        try:
            wait_healthy(base)
            context = prepare_calnotify(base, tenant, args.appointments)
            context["reference_rows"] = reference_rows
            wait_reference(reference_base)
            # Warm up: the first requests of a process import and build what they need.
            run_wrk(
                wrk,
                folder,
                "warm-up",
                lua_script(calnotify_make("list", context), headers),
                base,
                4,
                2,
            )
            run_wrk(
                wrk,
                folder,
                "warm-up",
                lua_script(reference_make("select10", context), {}),
                reference_base,
                4,
                2,
            )
            ratios: dict[str, float] = {}
            for connections in connections_list:
                for operation in operations:
                    name, kind = f"{operation} x{connections}", REFERENCE_OF[operation]
                    script = lua_script(calnotify_make(operation, context), headers)
                    reference_script = lua_script(
                        reference_make(kind, context), {"Content-Type": "application/json"}
                    )
                    # calnotify and the reference in turns, so that both see the same
                    # machine (its speed drifts over minutes); the ratio is the median
                    # of the rounds', each figure the best round's.
                    rounds, references, per_round = [], [], []
                    for turn in range(args.rounds):
                        spy = None
                        if (
                            turn == 0
                            and operation in args.profile.split(",")
                            and connections == connections_list[0]
                        ):
                            raw = PROFILES / f"profile-{args.database}-{operation}.raw"
                            spy = start_profile(api.pid, args.seconds, raw)
                        ours = run_wrk(
                            wrk, folder, operation, script, base, connections, args.seconds, api.pid
                        )
                        if spy is not None:
                            spy.wait()
                            profile = summarise_profile(raw)
                            results[f"profile {name}"] = profile
                            log(f"profile of {operation}: {json.dumps(profile, indent=1)}")
                        bare = run_wrk(
                            wrk,
                            folder,
                            f"reference {kind}",
                            reference_script,
                            reference_base,
                            connections,
                            args.seconds,
                            reference.pid,
                        )
                        rounds.append(ours)
                        references.append(bare)
                        per_round.append(ours["rps"] / (bare["rps"] or 1))
                    results[name] = max(rounds, key=lambda r: r["rps"])
                    results[f"reference {kind} for {name}"] = max(
                        references, key=lambda r: r["rps"]
                    )
                    ratios[name] = round(statistics.median(per_round), 2)
            results["rss_mb_after_load"] = largest_rss_mb(api.pid)
        finally:
            stop(api)
            stop(reference)

        results["ratio_to_reference"] = ratios
        log(f"ratios: {ratios}")
    report(f"api ({args.database})", results)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--connections", default="16,32")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument(
        "--rounds", type=int, default=2, help="turns of calnotify and the reference per operation"
    )
    parser.add_argument("--ops", default=",".join(OPERATIONS))
    parser.add_argument("--appointments", type=int, default=200, help="to reschedule")
    parser.add_argument(
        "--profile",
        default="",
        metavar="OPS",
        help="sample the server with py-spy during these operations (first connection count)",
    )
    main(parser.parse_args())
