"""Drill: hostile templates from one location while another books; nobody else may notice.

    python bench/drills/hostile_templates.py [--database sqlite|postgresql]
        [--hostile-bookings 50] [--hostile-concurrency 4] [--calm-after 1]
        [--calm-seconds 20] [--calm-interval 0.5] [--budget 2] [--uniq 10000]
        [--gil-range 30000000] [--drain-timeout 300] [--no-measure]

`calnotify serve` (the API and, in-process, the dispatcher) sends email to an SMTP server
(aiosmtpd) in a process of its own, which records when each message arrived, for whom,
and its Message-ID (the delivery's id). Two locations:

- H (hostile) has one calendar per template in hostile_templates() below, each with an
  email `booked` rule to the contact whose subject and body are that template: Liquid the
  API accepts when the rule is saved (each is tried on its own; a refused one is reported,
  not used) but that is costly to render. H books --hostile-bookings appointments,
  --hostile-concurrency at a time, round-robin over its calendars: each booking plans one
  hostile delivery, due at once.
  Meanwhile H also asks for plan previews (`POST …/notifications/preview`) of draft rules
  made of the same templates, --hostile-concurrency at a time, without pause.
- B (calm) has a calendar with a plain `booked` email rule. --calm-after seconds after H
  starts booking (while H's deliveries are being composed), B books an appointment every
  --calm-interval seconds for --calm-seconds seconds, and asks for a preview of its own
  rule each time.

Throughout, a probe in another process polls `GET /healthz` every 100 ms (2 s timeout; a
timeout or error counts as a failure), and a thread counts H's pending deliveries every
second (so the report shows that H's work overlapped B's phase). The drill then waits (at
most --drain-timeout seconds) until none of H's deliveries is scheduled or sending.

With --measure (the default) each template is first composed once here, in a render
process of a pool with the --budget (`calnotify.compose.pool`), reporting the time taken,
the outcome and the longest stretch this process's event loop could not run meanwhile
(none: composing happens in another process). The `gil_range` template asks for a list of
--gil-range integers (about 40 bytes each: 30,000,000 would be 1.2 GB, built in one call)
and `uniq_runaway` for uniq's quadratic scan of --uniq strings; since filters refuse inputs
of more than MAX_ITEMS (10,000) items, the first fails at once and the second, at 10,000, is
the costliest one allowed. `big_integers` and `big_literal` do arithmetic on integers of
hundreds and thousands of digits (each one long C call): numbers are bounded (30 digits),
so they fail at once.

PASS when all of these hold:
- every `/healthz` answered 200 within 1 s (max < 1 s, no failure);
- every B booking and preview was answered 2xx, the slowest of them within 0.5 s, the
  bookings' p99 within 250 ms;
- every B booking's email reached the SMTP server within 3 s of the answer;
- no H delivery is left scheduled or sending (they end `failed`/`render`, or `sent` when
  the template rendered within its budget: counted per template);
- no message (Message-ID) reached the SMTP server twice;
- no API call of the drill was answered 5xx.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import queue as queue_module
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

import contextlib

import httpx

from bench.common import (
    free_port,
    fresh_database,
    log,
    percentile,
    report,
    seed_tenant,
    wait_for_port,
    wait_healthy,
)

HEALTH_LIMIT = 1.0  # seconds: the promise for /healthz
CALM_LIMIT = 0.5  # seconds: B's slowest request (a booking or a preview)
CALM_BOOKING_P99 = 0.25  # seconds: B's bookings at the 99th percentile
EMAIL_LIMIT = 3.0  # seconds from B's booking answer to its email at the SMTP server
HEALTH_EVERY = 0.1
HEALTH_TIMEOUT = 2.0
VERSION = "2021-04-15"
H_EMAIL = "hostile@h.example"
B_EMAIL = "calm@b.example"


@dataclass(frozen=True)
class Hostile:
    name: str
    subject: str
    body: str
    what: str


def hostile_templates(uniq: int, gil_range: int) -> list[Hostile]:
    text = "abcdefghij" * 6000  # 60,000 characters: under the 64 KiB of local variables
    return [
        Hostile(
            "script_flood",
            "{% for i in (1..10000) %}{{ contact.first_name }} <script> {% endfor %}",
            "<p>Hello {{ contact.first_name }}</p>"
            "{% for i in (1..8000) %}<script>{{ appointment.title }}<!--{% endfor %}",
            "8,000 unclosed <script> tags and comments (HTML body); a 140 KB subject",
        ),
        Hostile(
            "deep_nesting",
            "{{ contact.first_name }}{{ contact.first_name }}",
            "<div><i><a href='https://x.example/'>" * 1500
            + "{{ contact.first_name }}"
            + "<table><tr><td>" * 500
            + "<style>",
            "1,500 x <div><i><a> and 500 x <table><tr><td>, never closed, then <style>",
        ),
        Hostile(
            "output_limit",
            "{{ appointment.start_time }}",
            '{% for i in (1..2800) %}<p><a href="https://example.com/{{ i }}">'
            "{{ appointment.start_time }} {{ contact.name }}</a></p>{% endfor %}",
            "about 250 KB of links, just under the 256 KiB output limit",
        ),
        Hostile(
            "replace_loop",
            "{{ contact.first_name }}",
            "{% capture s %}" + text + "{% endcapture %}"
            "{% for i in (1..100) %}{% for j in (1..100) %}"
            "{% assign s = s | replace: 'a', 'b' | replace: 'b', 'a'"
            " | replace: 'c', 'd' | replace: 'd', 'c' %}"
            "{% endfor %}{% endfor %}{{ s.size }}",
            "10,000 loop iterations of 4 replace calls on 60,000 characters",
        ),
        Hostile(
            "uniq_runaway",
            "{{ contact.first_name }}",
            f"{{{{ (1..{uniq}) | join: ',' | split: ',' | uniq | size }}}}",
            f"uniq over {uniq:,} distinct strings: one quadratic filter call",
        ),
        Hostile(
            "gil_range",
            "{{ contact.first_name }}",
            f"{{{{ (1..{gil_range}) | sort | size }}}}",
            f"sort of a {gil_range:,}-integer range: one C call building the list",
        ),
        Hostile(
            "big_integers",
            "{{ contact.first_name }}",
            "{% assign n = 7 %}{% for i in (1..40) %}{% assign n = n | times: n %}{% endfor %}"
            "{{ n | divided_by: 3 | modulo: 1000 }}",
            "an integer squared 40 times (2^40 bits): each times one long C call",
        ),
        Hostile(
            "big_literal",
            "{{ contact.first_name }}",
            "{{ " + "9" * 4000 + " | times: " + "9" * 4000 + " | divided_by: 7 }}",
            "arithmetic on 4,000-digit integer literals",
        ),
    ]


# --- offline measurement -------------------------------------------------------------------


def measure(templates: list[Hostile], budget: float) -> dict[str, dict[str, Any]]:
    """Compose each template once here, in a render process, within ``budget``; and the
    longest this process's event loop could not run meanwhile."""
    import asyncio

    from calnotify.compose.pool import ComposePool
    from calnotify.templates.merge_fields import MERGE_FIELDS

    values: dict[str, Any] = {
        root: dict.fromkeys(names, "x") for root, names in MERGE_FIELDS.items()
    }
    values["contact"].update(first_name="Rosa", name="Rosa Diaz")
    values["appointment"].update(title="Cleaning", start_time="Monday, March 4, 2030 10:00 AM")

    async def run() -> dict[str, dict[str, Any]]:
        from calnotify.channels.senders import SenderChoice
        from calnotify.compose.draft import Draft

        out: dict[str, dict[str, Any]] = {}
        async with ComposePool(budget, processes=1) as pool:
            await pool.start()
            for t in templates:
                draft = Draft(
                    delivery_id="measure", location_id="h", appointment_id="a",
                    calendar_id="c", notification_type="booked", channel="email",
                    to="rosa@h.example", subject_source=t.subject, body_source=t.body,
                    values=values, sender=SenderChoice(), appointment_version=1,
                )  # fmt: skip
                gaps: list[float] = []
                stop = asyncio.Event()

                async def tick(gaps: list[float] = gaps, stop: asyncio.Event = stop) -> None:
                    last = time.perf_counter()
                    while not stop.is_set():
                        await asyncio.sleep(0.002)
                        now = time.perf_counter()
                        gaps.append(now - last)
                        last = now

                ticker = asyncio.create_task(tick())
                began = time.perf_counter()
                try:
                    composed = await pool.compose("h", draft)
                    outcome = f"ok ({len(composed.message.body):,} chars)"
                except Exception as exc:  # what the dispatcher would fail the delivery with
                    text = str(exc).splitlines()[0][:60] if str(exc) else ""
                    outcome = f"{type(exc).__name__}: {text}"
                took = time.perf_counter() - began
                stop.set()
                await ticker
                out[t.name] = {
                    "compose_seconds": round(took, 3),
                    "outcome": outcome,
                    "longest_loop_stall_seconds": round(max(gaps, default=0.0) - 0.002, 3),
                }
                log(f"offline compose {t.name}: {took:.2f} s, {outcome}")
        return out

    return asyncio.run(run())


# --- the SMTP server and the health probe (processes of their own) ---------------------------


def _child_signals() -> None:
    """A child is stopped by the drill (terminate), not by Ctrl-C, nor by the drill's own
    SIGTERM handler (inherited through fork)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _smtp_recorder(port: int, events: Any) -> None:
    from aiosmtpd.controller import Controller

    _child_signals()

    class Handler:
        async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:
            content: bytes = envelope.content
            start = content.find(b"Message-ID: <")
            end = content.find(b">", start)
            message_id = content[start + 13 : end].decode() if start >= 0 else ""
            events.put((time.time(), message_id, list(envelope.rcpt_tos), len(content)))
            return "250 OK"

    controller = Controller(
        Handler(), hostname="127.0.0.1", port=port, data_size_limit=64 * 1024 * 1024
    )
    controller.start()
    try:
        while True:
            time.sleep(1)
    finally:
        controller.stop()


class SmtpRecorder:
    def __init__(self) -> None:
        self.port = free_port()
        self.events: Any = multiprocessing.Queue()
        self.process = multiprocessing.Process(
            target=_smtp_recorder, args=(self.port, self.events), daemon=True
        )
        self.arrivals: list[tuple[float, str, list[str], int]] = []

    def __enter__(self) -> SmtpRecorder:
        self.process.start()
        try:
            wait_for_port(self.port, "the SMTP server", seconds=15)
        except RuntimeError:
            self.process.terminate()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.collect()
        self.process.terminate()
        self.process.join(timeout=5)

    def collect(self) -> list[tuple[float, str, list[str], int]]:
        while True:
            try:
                self.arrivals.append(self.events.get_nowait())
            except queue_module.Empty:
                return self.arrivals

    def to(self, address: str) -> int:
        return sum(1 for _, _, rcpts, _ in self.collect() if address in rcpts)


def _health_probe(base: str, results: Any, stop: Any) -> None:
    """GET /healthz every HEALTH_EVERY s; puts (time, seconds or None, status) per poll."""
    _child_signals()
    with httpx.Client(base_url=base, timeout=HEALTH_TIMEOUT) as client:
        following = time.monotonic()
        while not stop.is_set():
            at = time.time()
            began = time.perf_counter()
            try:
                status = client.get("/healthz").status_code
                results.put((at, time.perf_counter() - began, status))
            except httpx.HTTPError as exc:
                results.put((at, None, type(exc).__name__))
            following += HEALTH_EVERY
            pause = following - time.monotonic()
            if pause > 0:
                stop.wait(pause)
            else:
                following = time.monotonic()


class HealthProbe:
    def __init__(self, base: str) -> None:
        self.results: Any = multiprocessing.Queue()
        self.stop_event: Any = multiprocessing.Event()
        self.process = multiprocessing.Process(
            target=_health_probe, args=(base, self.results, self.stop_event), daemon=True
        )
        self.polls: list[tuple[float, float | None, Any]] = []

    def start(self) -> None:
        self.process.start()

    def collect(self) -> list[tuple[float, float | None, Any]]:
        while True:
            try:
                self.polls.append(self.results.get_nowait())
            except queue_module.Empty:
                return self.polls

    def stop(self) -> None:
        if self.process.pid is None:
            return
        self.stop_event.set()
        deadline = time.monotonic() + HEALTH_TIMEOUT + 3
        while self.process.is_alive() and time.monotonic() < deadline:
            self.collect()  # a child blocks on exit while its queue is not drained
            self.process.join(timeout=0.1)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=5)
        self.collect()


# --- the API ----------------------------------------------------------------------------------


class Api:
    """One location's client; remembers every status code it got."""

    def __init__(self, base: str, token: str) -> None:
        self.client = httpx.Client(
            base_url=base,
            headers={"Authorization": f"Bearer {token}", "Version": VERSION},
            timeout=30,
        )
        self.codes: Counter[int] = Counter()
        self.server_errors: list[str] = []
        self.lock = threading.Lock()  # several threads share one client

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self.client.request(method, path, **kwargs)
        with self.lock:
            self.codes[response.status_code] += 1
            if response.status_code >= 500:
                self.server_errors.append(
                    f"{method} {path}: {response.status_code} {response.text[:200]}"
                )
        return response

    def close(self) -> None:
        self.client.close()


def booked_rule(subject: str, body: str) -> dict[str, Any]:
    return {
        "receiverType": "contact",
        "channel": "email",
        "notificationType": "booked",
        "subject": subject,
        "body": body,
    }


def book(api: Api, location: str, calendar: str, contact: str, start: datetime) -> httpx.Response:
    return api.call(
        "POST",
        "/calendars/events/appointments",
        json={
            "calendarId": calendar,
            "locationId": location,
            "contactId": contact,
            "startTime": start.isoformat(),
        },
    )


def deliveries(api: Api, **filters: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for _ in range(100):  # at most 10,000 rows
        response = api.call(
            "GET", "/deliveries", params={**filters, "limit": 100, "skip": len(out)}
        )
        response.raise_for_status()
        page = response.json()
        out += page["deliveries"]
        if len(out) >= page["total"] or not page["deliveries"]:
            break
    return out


def pending(api: Api) -> int:
    """The location's deliveries scheduled or sending (H's seeded reminder is cancelled
    when its rule is deactivated: what is left are the hostile ones)."""
    n = 0
    for status in ("scheduled", "sending"):
        response = api.call("GET", "/deliveries", params={"status": status, "limit": 1})
        response.raise_for_status()
        n += int(response.json()["total"])
    return n


class HostileBooker(threading.Thread):
    """Books H's appointments, --hostile-concurrency at a time, round-robin over its
    calendars, then samples how many of H's deliveries are pending every second until
    told to stop."""

    def __init__(
        self, api: Api, location: str, calendars: list[str], contact: str, count: int, workers: int
    ) -> None:
        super().__init__(daemon=True)
        self.api, self.location, self.calendars, self.contact = api, location, calendars, contact
        self.count, self.workers = count, workers
        self.booked: list[str] = []
        self.codes: Counter[int] = Counter()
        self.began = time.time()
        self.done_at: float | None = None
        self.samples: list[tuple[float, int]] = []  # (time, pending)
        self.stopping = threading.Event()

    def one(self, i: int, start: datetime) -> None:
        try:
            response = book(
                self.api,
                self.location,
                self.calendars[i % len(self.calendars)],
                self.contact,
                start + timedelta(minutes=30 * i),
            )
        except httpx.HTTPError:
            self.codes[0] += 1
            return
        self.codes[response.status_code] += 1
        if response.status_code < 300:
            self.booked.append(response.json()["id"])

    def run(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        sampler = threading.Thread(target=self.sample, daemon=True)
        sampler.start()
        start = datetime.now(UTC) + timedelta(days=3)
        self.began = time.time()
        with ThreadPoolExecutor(self.workers) as pool:
            for future in [pool.submit(self.one, i, start) for i in range(self.count)]:
                if self.stopping.is_set():
                    future.cancel()
                else:
                    future.result()
        self.done_at = time.time()
        sampler.join()

    def sample(self) -> None:
        while not self.stopping.is_set():
            with contextlib.suppress(httpx.HTTPError):
                self.samples.append((time.time(), pending(self.api)))
            self.stopping.wait(1.0)


class HostilePreviewer(threading.Thread):
    """Asks for previews of H's hostile templates as draft rules, ``workers`` at a time,
    until told to stop."""

    def __init__(self, api: Api, calendar: str, templates: list[Hostile], workers: int) -> None:
        super().__init__(daemon=True)
        self.api, self.calendar, self.templates, self.workers = api, calendar, templates, workers
        self.codes: Counter[int] = Counter()
        self.stopping = threading.Event()

    def one(self, i: int) -> None:
        t = self.templates[i % len(self.templates)]
        start = datetime.now(UTC) + timedelta(days=2)
        with contextlib.suppress(httpx.HTTPError):
            response = self.api.call(
                "POST",
                f"/calendars/{self.calendar}/notifications/preview",
                json={
                    "startTime": start.isoformat(),
                    "endTime": (start + timedelta(minutes=30)).isoformat(),
                    "notifications": [booked_rule(t.subject, t.body)],
                },
            )
            self.codes[response.status_code] += 1

    def run(self) -> None:
        def loop(offset: int) -> None:
            i = offset
            while not self.stopping.is_set():
                self.one(i)
                i += self.workers

        threads = [
            threading.Thread(target=loop, args=(n,), daemon=True) for n in range(self.workers)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()


# --- the drill --------------------------------------------------------------------------------


def start_server(
    url: str, port: int, env: dict[str, str], logfile: Path
) -> subprocess.Popen[bytes]:
    with open(logfile, "wb") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "calnotify",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            env={**os.environ, "CALNOTIFY_DATABASE_URL": url, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def stop_server(server: subprocess.Popen[bytes]) -> int | None:
    if server.poll() is not None:
        return server.returncode
    server.send_signal(signal.SIGTERM)
    try:
        return server.wait(timeout=40)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(timeout=10)
        return None


def stats(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50": round(percentile(values, 50), 3),
        "p99": round(percentile(values, 99), 3),
        "max": round(max(values), 3),
    }


def main(args: argparse.Namespace) -> int:
    def interrupted(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    templates = hostile_templates(args.uniq, args.gil_range)
    offline = measure(templates, args.budget) if args.measure else {}
    violations: dict[str, list[str]] = {}
    with (
        fresh_database(args.database) as url,
        SmtpRecorder() as smtp,
        tempfile.TemporaryDirectory(prefix="calnotify-hostile-") as folder,
    ):
        h, b = seed_tenant(url), seed_tenant(url)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        logfile = Path(folder) / "serve.log"
        env = {
            "CALNOTIFY_LOG_LEVEL": "warning",
            "CALNOTIFY_RENDER_BUDGET_SECONDS": f"{args.budget:g}",
            "CALNOTIFY_SMTP_HOST": "127.0.0.1",
            "CALNOTIFY_SMTP_PORT": str(smtp.port),
            "CALNOTIFY_SMTP_SECURITY": "none",
            "CALNOTIFY_SMTP_CONNECTIONS": "8",
            "CALNOTIFY_SMTP_TIMEOUT": "10",
        }
        server = start_server(url, port, env, logfile)
        probe = HealthProbe(base)
        hapi, bapi = Api(base, h.token), Api(base, b.token)
        accepted: dict[str, str] = {}  # template → calendar
        refused: dict[str, str] = {}
        h_rules: dict[str, str] = {}  # rule id → template
        calm_window = [0.0, 0.0]  # when B's phase began and ended (epoch)
        hostile: HostileBooker | None = None
        previewer: HostilePreviewer | None = None
        b_bookings: list[dict[str, Any]] = []  # id, answered (epoch), seconds, status
        b_previews: list[tuple[float, int]] = []  # seconds, status
        exit_code: int | None = None
        try:
            wait_healthy(base)
            # Setup: the seeded reminder rules off, one address per location.
            for api, tenant, address in ((hapi, h, H_EMAIL), (bapi, b, B_EMAIL)):
                api.call(
                    "PUT",
                    f"/calendars/{tenant.calendar}/notifications/{tenant.rule}",
                    json={"isActive": False},
                ).raise_for_status()
                api.call(
                    "PUT", f"/contacts/{tenant.contact}", json={"email": address}
                ).raise_for_status()
            for t in templates:
                response = hapi.call(
                    "POST", "/calendars/", json={"locationId": h.location, "name": t.name}
                )
                response.raise_for_status()
                calendar = response.json()["calendar"]["id"]
                response = hapi.call(
                    "POST",
                    f"/calendars/{calendar}/notifications",
                    json=[booked_rule(t.subject, t.body)],
                )
                if response.status_code == 200:
                    accepted[t.name] = calendar
                    h_rules[response.json()[0]["_id"]] = t.name
                else:
                    refused[t.name] = f"{response.status_code} {response.text[:160]}"
                log(f"rule {t.name}: {response.status_code} ({len(t.body.encode()):,} bytes)")
            response = bapi.call(
                "POST",
                f"/calendars/{b.calendar}/notifications",
                json=[
                    booked_rule(
                        "Booked: {{ appointment.title }}",
                        "Hello {{ contact.first_name }}, see you {{ appointment.start_time }}.",
                    )
                ],
            )
            response.raise_for_status()
            b_rule = response.json()[0]["_id"]

            probe.start()
            time.sleep(2)  # a baseline before anything hostile happens
            h_calendars = list(accepted.values())
            hostile = HostileBooker(
                hapi,
                h.location,
                h_calendars,
                h.contact,
                args.hostile_bookings if h_calendars else 0,
                args.hostile_concurrency,
            )
            hostile_began = time.time()
            hostile.start()
            usable = [t for t in templates if t.name in accepted]
            if usable:
                previewer = HostilePreviewer(hapi, h_calendars[0], usable, args.hostile_concurrency)
                previewer.start()
            time.sleep(args.calm_after)  # H's first deliveries are being rendered

            calm_began = time.monotonic()
            calm_window[0] = time.time()
            start = datetime.now(UTC) + timedelta(days=60)
            for i in range(max(1, round(args.calm_seconds / args.calm_interval))):
                due = calm_began + i * args.calm_interval
                time.sleep(max(0.0, due - time.monotonic()))
                began = time.perf_counter()
                try:
                    response = book(
                        bapi, b.location, b.calendar, b.contact, start + timedelta(hours=i)
                    )
                    status = response.status_code
                    ident = response.json().get("id", "") if status < 300 else ""
                except httpx.HTTPError as exc:
                    status, ident = 0, type(exc).__name__
                b_bookings.append(
                    {
                        "id": ident,
                        "answered": time.time(),
                        "seconds": time.perf_counter() - began,
                        "status": status,
                    }
                )
                began = time.perf_counter()
                try:
                    status = bapi.call(
                        "POST",
                        f"/calendars/{b.calendar}/notifications/preview",
                        json={
                            "startTime": (start + timedelta(hours=i)).isoformat(),
                            "endTime": (start + timedelta(hours=i, minutes=30)).isoformat(),
                        },
                    ).status_code
                except httpx.HTTPError:
                    status = 0
                b_previews.append((time.perf_counter() - began, status))
            calm_window[1] = time.time()
            if previewer is not None:
                previewer.stopping.set()
            log(
                f"B booked {len(b_bookings)} in {time.monotonic() - calm_began:.1f} s;"
                f" H booked {len(hostile.booked)} so far"
            )

            # B's emails: all should be in by now; give stragglers a bounded while.
            wanted = sum(1 for x in b_bookings if 200 <= x["status"] < 300)
            until = time.monotonic() + 2 * EMAIL_LIMIT + 5
            while smtp.to(B_EMAIL) < wanted and time.monotonic() < until:
                time.sleep(0.2)

            until = time.monotonic() + args.drain_timeout
            while hostile.done_at is None and time.monotonic() < until:
                probe.collect()
                time.sleep(0.5)
            log(
                f"H booked {len(hostile.booked)} ({dict(hostile.codes)}) in"
                f" {(hostile.done_at or time.time()) - hostile_began:.1f} s"
                f" over {len(h_calendars)} hostile calendars"
            )
            drain_until = time.monotonic() + args.drain_timeout
            last_log = 0.0
            while time.monotonic() < drain_until:
                probe.collect()
                fresh = [n for at, n in hostile.samples if at > (hostile.done_at or 0)]
                if fresh and fresh[-1] == 0:
                    break
                if time.monotonic() - last_log > 10:
                    last_log = time.monotonic()
                    log(f"H deliveries still pending: {fresh[-1] if fresh else '?'}")
                time.sleep(1)
            hostile.stopping.set()
            hostile.join(timeout=35)
            h_drained_at = next(
                (at for at, n in hostile.samples if at > (hostile.done_at or 0) and n == 0), None
            )
            time.sleep(1)
            probe.stop()
            h_rows = [row for c in h_calendars for row in deliveries(hapi, calendarId=c)]
            b_rows = deliveries(bapi, calendarId=b.calendar, notificationId=b_rule)
        finally:
            if hostile is not None:
                hostile.stopping.set()
            if previewer is not None:
                previewer.stopping.set()
                previewer.join(timeout=35)
            probe.stop()
            exit_code = stop_server(server)
            hapi.close()
            bapi.close()
            smtp.collect()
        server_log = logfile.read_text(errors="replace")

    # --- judging -------------------------------------------------------------------------
    arrivals: dict[str, list[float]] = {}
    for at, message_id, _, _ in smtp.arrivals:
        arrivals.setdefault(message_id.partition("@")[0], []).append(at)
    twice = sorted(m for m, times in arrivals.items() if len(times) > 1)

    polls = probe.polls
    latencies = [s for _, s, status in polls if s is not None and status == 200]
    failed_polls = [(at, s, status) for at, s, status in polls if s is None or status != 200]
    slow_polls = [(at, s) for at, s, status in polls if s is not None and s >= HEALTH_LIMIT]
    worst = max(polls, key=lambda p: HEALTH_TIMEOUT if p[1] is None else p[1], default=None)

    by_appointment = {row["appointmentId"]: row for row in b_rows}
    b_email: list[float] = []
    b_late: list[str] = []
    for x in b_bookings:
        if x["status"] >= 300 or x["status"] == 0:
            continue
        row = by_appointment.get(x["id"])
        times = arrivals.get(row["id"], []) if row else []
        if not times:
            state = f"{row['status']}/{row['reason']}" if row else "no delivery"
            b_late.append(f"{x['id']}: no email ({state})")
            continue
        took = min(times) - x["answered"]
        b_email.append(took)
        if took > EMAIL_LIMIT:
            b_late.append(
                f"{x['id']} (answered at {x['answered'] - hostile_began:+.1f} s): {took:.2f} s"
            )

    per_template: dict[str, Counter[str]] = {name: Counter() for name in accepted}
    h_stuck: list[str] = []
    h_sent_arrived = 0
    for row in h_rows:
        name = h_rules.get(row["notificationId"], "?")
        state = f"{row['status']}/{row['reason']}" if row["reason"] else row["status"]
        per_template.setdefault(name, Counter())[state] += 1
        if row["status"] in ("scheduled", "sending"):
            h_stuck.append(row["id"])
        if row["status"] == "sent" and arrivals.get(row["id"]):
            h_sent_arrived += 1
    render_errors = Counter(row["lastError"][:70] for row in h_rows if row["reason"] == "render")

    if failed_polls or slow_polls:
        violations[f"/healthz not answered 200 within {HEALTH_LIMIT:g} s"] = [
            f"{at - hostile_began:+.1f} s: {s if s is None else round(s, 3)} {status}"
            for at, s, status in failed_polls
        ] + [f"{at - hostile_began:+.1f} s: {s:.3f} s" for at, s in slow_polls]
    bad_bookings = [f"{x['status']} {x['id']}" for x in b_bookings if not 200 <= x["status"] < 300]
    bad_bookings += [f"preview {code}" for _, code in b_previews if not 200 <= code < 300]
    if bad_bookings:
        violations["B booking or preview not answered 2xx"] = bad_bookings
    b_seconds = [x["seconds"] for x in b_bookings] + [seconds for seconds, _ in b_previews]
    slow = [round(x, 3) for x in b_seconds if x >= CALM_LIMIT]
    if slow:
        violations[f"B request slower than {CALM_LIMIT:g} s"] = slow
    booking_p99 = percentile([x["seconds"] for x in b_bookings], 99) if b_bookings else 0.0
    if booking_p99 > CALM_BOOKING_P99:
        violations[f"B bookings p99 over {CALM_BOOKING_P99:g} s"] = [f"{booking_p99:.3f} s"]
    if b_late:
        violations[f"B email not at the SMTP server within {EMAIL_LIMIT:g} s"] = b_late
    if h_stuck:
        violations["H delivery left scheduled/sending"] = h_stuck
    if twice:
        violations["message reached the SMTP server more than once"] = twice
    server_errors = hapi.server_errors + bapi.server_errors
    if server_errors:
        violations["API answered 5xx"] = server_errors
    if not accepted:
        violations["no hostile template was accepted (nothing tested)"] = list(refused)

    print(f"\n{'template':<14} {'offline compose':>22}  final states of H's deliveries")
    for t in templates:
        m = offline.get(t.name, {})
        cost = (
            f"{m['compose_seconds']:.2f} s, loop {m['longest_loop_stall_seconds']:.2f} s"
            if m
            else "-"
        )
        if t.name in refused:
            final = "refused at save: " + refused[t.name]
        else:
            final = ", ".join(f"{k} {v}" for k, v in sorted(per_template.get(t.name, {}).items()))
        print(f"{t.name:<14} {cost:>22}  {final}")
    print()
    for check, items in violations.items():
        print(f"{check}: {len(items)}, e.g. {items[:5]}")

    def since(at: float | None) -> float | None:
        return None if at is None else round(at - hostile_began, 1)

    healthz = stats(latencies)
    healthz["failures"] = len(failed_polls)
    healthz["over_1s"] = len(slow_polls)
    if worst is not None:
        healthz["worst_at"] = since(worst[0])
    during_calm = stats(
        [s for at, s, status in polls if calm_window[0] <= at <= calm_window[1] and s is not None]
    )
    in_calm = [n for at, n in hostile.samples if calm_window[0] <= at <= calm_window[1]]
    timeline = {
        "calm_phase": [since(calm_window[0]), since(calm_window[1])],
        "hostile_bookings_answered": since(hostile.done_at),
        "hostile_deliveries_all_finished": since(h_drained_at),
        "hostile_pending_during_calm_phase": (
            {"first": in_calm[0], "max": max(in_calm), "last": in_calm[-1]} if in_calm else None
        ),
    }
    results = {
        "database": args.database,
        "render_budget_seconds": args.budget,
        "hostile_bookings": len(hostile.booked),
        "hostile_booking_codes": dict(hostile.codes),
        "hostile_booking_concurrency": args.hostile_concurrency,
        "templates": {t.name: t.what for t in templates},
        "templates_refused": refused,
        "offline_render": offline,
        "calm_bookings": len(b_bookings),
        "calm_booking_api_seconds": stats([x["seconds"] for x in b_bookings]),
        "calm_preview_api_seconds": stats([seconds for seconds, _ in b_previews]),
        "hostile_preview_codes": dict(previewer.codes) if previewer else {},
        "calm_email_seconds_after_answer": stats(b_email),
        "healthz_seconds": healthz,
        "healthz_seconds_during_calm_phase": during_calm,
        "timeline_seconds_after_first_hostile_booking": timeline,
        "h_final_states": {k: dict(v) for k, v in per_template.items()},
        "h_render_errors": dict(render_errors),
        "h_sent_that_arrived": h_sent_arrived,
        "smtp_messages": len(smtp.arrivals),
        "messages_arrived_twice": len(twice),
        "api_status_codes": {str(k): v for k, v in sorted((hapi.codes + bapi.codes).items())},
        "server_log_tracebacks": server_log.count("Traceback"),
        "server_log_warnings": sum(1 for line in server_log.splitlines() if "WARNING" in line),
        "server_exit_code": exit_code,
        "violations": {check: len(items) for check, items in violations.items()},
    }
    report(f"drill: hostile templates ({args.database})", results)
    if server_log.count("Traceback"):
        print("\nthe server log's last lines:")
        print("\n".join(server_log.splitlines()[-20:]))
    ok = not violations
    print("PASS" if ok else "FAIL: " + "; ".join(f"{k} ({len(v)})" for k, v in violations.items()))
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Templates: "
        + "; ".join(f"{t.name}: {t.what}" for t in hostile_templates(10_000, 30_000_000)),
    )
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--hostile-bookings", type=int, default=50, help="H's bookings (50)")
    parser.add_argument(
        "--hostile-concurrency", type=int, default=4, help="H's bookings in flight at once (4)"
    )
    parser.add_argument(
        "--calm-after",
        type=float,
        default=1.0,
        help="seconds after H starts booking before B starts (1)",
    )
    parser.add_argument("--calm-seconds", type=float, default=20.0, help="B books for (20 s)")
    parser.add_argument("--calm-interval", type=float, default=0.5, help="B books every (0.5 s)")
    parser.add_argument(
        "--budget", type=float, default=2.0, help="CALNOTIFY_RENDER_BUDGET_SECONDS (2)"
    )
    parser.add_argument(
        "--uniq",
        type=int,
        default=10_000,
        help="uniq_runaway's list (10000: the most items a filter takes, MAX_ITEMS)",
    )
    parser.add_argument(
        "--gil-range", type=int, default=30_000_000, help="gil_range's integers (30000000)"
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=300.0,
        help="seconds to wait for H's deliveries to finish (300)",
    )
    parser.add_argument(
        "--no-measure", dest="measure", action="store_false", help="skip the offline renders"
    )
    sys.exit(main(parser.parse_args()))
