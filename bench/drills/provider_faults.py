"""Drill: misbehaving email and SMS providers; every delivery's fate is known in advance.

    python bench/drills/provider_faults.py [--database sqlite|postgresql] [--count 10000]
        [--workers 1|2] [--kill]

An SMTP server (aiosmtpd) and a Twilio-shaped HTTP server run in a process of their own on
127.0.0.1 and misbehave by recipient. Each delivery has an address of its own (an email
address, or a phone number for SMS), and the address decides what its provider does (FAULTS
below): answer at once; answer after 1-2.5 s; never answer; answer 2xx with garbage; 429 with
Retry-After; 5xx; a 4xx that is final; SMTP 451 or 550 to the recipient; hang up once the
message has arrived; refuse the first attempt only. The servers count, per delivery, every
call for it (SMTP RCPT, Twilio POST), every copy of the message that arrived, and every copy
they accepted (answered 2xx).

--count deliveries, half email and half SMS, come due over --spread seconds and are sent by
--workers `calnotify worker` processes with a 10 s lease, at most 4 attempts, retries 1, 2
and 4 s apart, and providers timing out after 4 s. With --kill the first worker is killed
with SIGKILL halfway through the spread, and another started at once.

PASS when all of these hold:
- no delivery is left scheduled or sending;
- no provider was called for a delivery more often than its recorded attempts (at most 4);
- every delivery its provider accepts (healthy, slow, garbage 2xx, refused once) was accepted
  exactly once, except a delivery whose attempt a killed worker lost (recorded `unknown`),
  which may have one more copy per lost attempt (counted, and reported separately);
- every delivery ended as docs/engine.md "Provider answers" says for its fault, with the
  attempts it says (a delivery with a lost attempt may also end failed/abandoned);
- every attempt is listed (attempt rows = attempts), and the failed attempts of timeouts and
  hang-ups after the message went out say "the provider may have acted on it";
- retries waited their back-off (at least 0.8 x 1 s x 2^(n-1)) and 429's Retry-After (3 s).

Also reported: p50/p99 lateness (sent_at - due_at) of the healthy deliveries, from the
database and from the time the provider accepted them; final states per fault; the worker
processes' exit status. On a FAIL, a few offending deliveries are shown as
GET /deliveries/{id} returns them.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing
import os
import queue as queue_module
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

import httpx
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from bench.common import (
    Tenant,
    engine_for,
    free_port,
    fresh_database,
    log,
    percentile,
    report,
    seed_tenant,
    wait_for_port,
    wait_healthy,
)
from calnotify.models import Delivery, DeliveryAttempt, Notification

MAX_ATTEMPTS = 4
RETRY_BASE = 1.0
LEASE = 10
PROVIDER_TIMEOUT = 4.0
RETRY_AFTER = 3
SLOW = (1.0, 2.5)  # seconds; well under PROVIDER_TIMEOUT
HANG = 30.0  # how long a hanging server waits for the client to give up
ACCOUNT, AUTH_TOKEN, FROM_NUMBER = "ACfaults0000000000000000000000000", "secret", "+15550000000"
MAYBE = "may have acted"
EXHAUSTED = "failed/retries_exhausted"


@dataclass(frozen=True)
class Fault:
    name: str  # channel/behaviour
    share: float  # of its channel's deliveries (healthy: the rest)
    accepts: bool  # the provider takes the message in the end: exactly one copy
    fate: str  # the final status/reason docs/engine.md gives
    attempts: int  # the attempts that takes
    what: str
    maybe_sent: bool = False  # its failed attempts must say the provider may have acted


FAULTS = [
    Fault("email/healthy", 0, True, "sent", 1, "250 at once"),
    Fault("email/slow", 0.06, True, "sent", 1, "250 after 1-2.5 s"),
    Fault("email/flaky", 0.05, True, "sent", 2, "451 to the first RCPT, then 250"),
    Fault("email/451", 0.04, False, EXHAUSTED, MAX_ATTEMPTS, "451 to every RCPT"),
    Fault("email/550", 0.04, False, "failed/permanent", 1, "550 to RCPT"),
    Fault(
        "email/drop",
        0.03,
        False,
        EXHAUSTED,
        MAX_ATTEMPTS,
        "hangs up once the message (DATA) arrived, unanswered",
        maybe_sent=True,
    ),
    Fault(
        "email/hang",
        0.004,
        False,
        EXHAUSTED,
        MAX_ATTEMPTS,
        "never answers the message (DATA)",
        maybe_sent=True,
    ),
    Fault("sms/healthy", 0, True, "sent", 1, "201 with a sid"),
    Fault("sms/slow", 0.06, True, "sent", 1, "201 after 1-2.5 s"),
    Fault(
        "sms/garbage",
        0.06,
        True,
        "sent",
        1,
        "200 with an HTML body, 201 JSON without a sid, or 200 empty",
    ),
    Fault("sms/flaky", 0.05, True, "sent", 2, "503 first, then 201"),
    Fault("sms/429", 0.04, False, EXHAUSTED, MAX_ATTEMPTS, f"429, Retry-After: {RETRY_AFTER}"),
    Fault("sms/5xx", 0.04, False, EXHAUSTED, MAX_ATTEMPTS, "500, 502, 503, no Retry-After"),
    Fault("sms/400", 0.03, False, "failed/permanent", 1, "400, code 21211 (invalid number)"),
    Fault(
        "sms/drop",
        0.03,
        False,
        EXHAUSTED,
        MAX_ATTEMPTS,
        "closes the connection without answering",
        maybe_sent=True,
    ),
    Fault("sms/hang", 0.004, False, EXHAUSTED, MAX_ATTEMPTS, "never answers", maybe_sent=True),
]
BY_NAME = {f.name: f for f in FAULTS}
HEALTHY = ("email/healthy", "sms/healthy")


@dataclass(frozen=True)
class Planned:
    id: str
    channel: str
    fault: str
    address: str
    due: datetime
    delay: float  # slow: seconds before answering; garbage: the variant


def make_plan(count: int, base: datetime, spread: float, seed: int) -> list[Planned]:
    """``count`` deliveries, alternately email and SMS, each fault's share of its channel
    spread evenly (shuffled) over the due times."""
    rng = random.Random(seed)
    per_channel: dict[str, list[str]] = {}
    for channel in ("email", "sms"):
        n = (count + (1 if channel == "email" else 0)) // 2
        faults = [f for f in FAULTS if f.name.startswith(channel + "/")]
        names: list[str] = []
        for f in faults[1:]:
            names += [f.name] * round(f.share * n)
        names += [faults[0].name] * (n - len(names))
        rng.shuffle(names)
        per_channel[channel] = names
    plan: list[Planned] = []
    codes = {f.name: i for i, f in enumerate(FAULTS)}
    for i in range(count):
        channel = "email" if i % 2 == 0 else "sms"
        fault = per_channel[channel].pop()
        short = fault.partition("/")[2]
        if channel == "email":
            address = f"{short}-{i:07d}@faults.example"
        else:
            address = f"+1555{codes[fault]:02d}{i:07d}"
        delay = SLOW[0] + (SLOW[1] - SLOW[0]) * rng.random() if short == "slow" else i % 3
        due = base + timedelta(seconds=spread * i / max(1, count))
        plan.append(Planned(f"pf{i:018d}", channel, fault, address, due, delay))
    return plan


# --- the providers (a process of their own) ------------------------------------------------


def _providers(
    plan: dict[str, tuple[str, str, float]], smtp_port: int, http_port: int, events: Any
) -> None:
    """Runs the SMTP server (aiosmtpd, in its thread) and the Twilio server (asyncio) until
    terminated. ``plan``: address → (delivery id, fault, delay). Puts (kind, delivery id,
    time, detail) on ``events``: ``call`` (RCPT / POST), ``arrived`` (the message's content
    arrived), ``accepted`` (answered 2xx), ``stray`` (an address not in the plan)."""
    from aiosmtpd.controller import Controller

    calls: Counter[str] = Counter()

    def emit(kind: str, delivery: str, detail: str = "") -> None:
        events.put((kind, delivery, time.time(), detail))

    class Smtp:
        async def handle_RCPT(
            self, server: Any, session: Any, envelope: Any, address: str, options: Any
        ) -> str:
            entry = plan.get(address.lower())
            if entry is None:
                emit("stray", "", address)
                return "550 5.1.1 unknown recipient"
            delivery, fault, _ = entry
            emit("call", delivery)
            calls[delivery] += 1
            if fault == "email/451" or (fault == "email/flaky" and calls[delivery] == 1):
                return "451 4.3.0 mailbox busy, try again later"
            if fault == "email/550":
                return "550 5.1.1 no such mailbox"
            envelope.rcpt_tos.append(address)
            return "250 OK"

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            content: bytes = envelope.content
            start = content.find(b"Message-ID: <")
            message_id = (
                content[start + 13 : content.find(b">", start)].decode() if start >= 0 else ""
            )
            delivery, fault, delay = plan[envelope.rcpt_tos[0].lower()]
            emit("arrived", delivery, message_id)
            if fault == "email/drop":
                server.transport.close()
                return "451 never heard"
            if fault == "email/hang":
                await asyncio.sleep(HANG)
                return "451 too late"
            if fault == "email/slow":
                await asyncio.sleep(delay)
            emit("accepted", delivery)
            return "250 Message accepted for delivery"

    controller = Controller(Smtp(), hostname="127.0.0.1", port=smtp_port)
    controller.start()
    auth = "Basic " + base64.b64encode(f"{ACCOUNT}:{AUTH_TOKEN}".encode()).decode()
    account = f"/2010-04-01/Accounts/{ACCOUNT}.json"
    path = f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json"

    def answer(status: int, body: bytes, kind: str = "application/json", extra: str = "") -> bytes:
        reason = {200: "OK", 201: "Created", 400: "Bad Request", 401: "Unauthorized"}.get(
            status, "Error"
        )
        head = f"HTTP/1.1 {status} {reason}\r\nContent-Type: {kind}\r\n"
        head += f"Content-Length: {len(body)}\r\n{extra}\r\n"
        return head.encode() + body

    def error(status: int, code: int, message: str) -> bytes:
        return json.dumps({"code": code, "message": message, "status": status}).encode()

    async def twilio(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                headers: dict[str, str] = {}
                while True:
                    raw = await reader.readline()
                    if raw in (b"\r\n", b"\n", b""):
                        break
                    key, _, value = raw.decode("latin-1").partition(":")
                    headers[key.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                method, target = line.decode("latin-1").split()[:2]
                if method == "GET" and target == account:  # `calnotify worker` checks it
                    answer_body = json.dumps({"sid": ACCOUNT, "status": "active"}).encode()
                    writer.write(answer(200, answer_body))
                    continue
                form = dict(parse_qsl(body.decode()))
                entry = plan.get(form.get("To", ""))
                if entry is None or method != "POST" or target != path:
                    emit("stray", "", f"{line!r} {form.get('To')}")
                    writer.write(answer(404, error(404, 20404, "Not found")))
                    continue
                if headers.get("authorization") != auth:
                    emit("stray", entry[0], "bad credentials")
                    writer.write(answer(401, error(401, 20003, "Authenticate")))
                    continue
                delivery, fault, delay = entry
                emit("call", delivery)
                emit("arrived", delivery)
                calls[delivery] += 1
                n = calls[delivery]
                if fault == "sms/drop":
                    return
                if fault == "sms/hang":
                    await asyncio.wait_for(reader.read(), HANG)
                    return
                if fault == "sms/slow":
                    await asyncio.sleep(delay)
                sid = json.dumps({"sid": f"SM{delivery}n{n}", "status": "queued"}).encode()
                if fault == "sms/429":
                    out = answer(
                        429,
                        error(429, 20429, "Too Many Requests"),
                        extra=f"Retry-After: {RETRY_AFTER}\r\n",
                    )
                elif fault == "sms/5xx":
                    status = (500, 502, 503)[n % 3]
                    out = answer(status, b"<html>upstream trouble</html>", "text/html")
                elif fault == "sms/flaky" and n == 1:
                    out = answer(503, error(503, 20500, "Internal Server Error"))
                elif fault == "sms/400":
                    out = answer(400, error(400, 21211, "The 'To' number is not valid."))
                elif fault == "sms/garbage":
                    out = (
                        answer(200, b"<html><body>OK</body></html>", "text/html"),
                        answer(201, b'{"status": "queued"}'),
                        answer(200, b""),
                    )[int(delay)]
                else:
                    out = answer(201, sid)
                if out.startswith(b"HTTP/1.1 2"):
                    emit("accepted", delivery)
                writer.write(out)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            return
        finally:
            writer.close()

    async def serve() -> None:
        server = await asyncio.start_server(twilio, "127.0.0.1", http_port, backlog=256)
        events.put(("ready", "", time.time(), ""))
        async with server:
            await server.serve_forever()

    try:
        asyncio.run(serve())
    finally:
        controller.stop()


@dataclass
class Seen:
    calls: list[float] = field(default_factory=list)
    arrived: int = 0
    accepted: list[float] = field(default_factory=list)
    message_ids: set[str] = field(default_factory=set)


class Providers:
    """The misbehaving servers, in a process of their own, and what they counted."""

    def __init__(self, plan: list[Planned]) -> None:
        self.smtp_port, self.http_port = free_port(), free_port()
        self.events: Any = multiprocessing.Queue()
        mapping = {p.address.lower(): (p.id, p.fault, p.delay) for p in plan}
        self.process = multiprocessing.Process(
            target=_providers,
            args=(mapping, self.smtp_port, self.http_port, self.events),
            daemon=True,
        )
        self.seen: dict[str, Seen] = defaultdict(Seen)
        self.stray: list[str] = []

    def __enter__(self) -> Providers:
        self.process.start()
        kind = self.events.get(timeout=30)[0]
        if kind != "ready":
            raise RuntimeError("the providers did not start")
        wait_for_port(self.smtp_port, "the SMTP server")
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.join(timeout=5)

    def collect(self) -> dict[str, Seen]:
        while True:
            try:
                kind, delivery, at, detail = self.events.get_nowait()
            except queue_module.Empty:
                return self.seen
            if kind == "stray":
                self.stray.append(f"{delivery} {detail}".strip())
                continue
            seen = self.seen[delivery]
            if kind == "call":
                seen.calls.append(at)
            elif kind == "arrived":
                seen.arrived += 1
                if detail:
                    seen.message_ids.add(detail)
            elif kind == "accepted":
                seen.accepted.append(at)

    @property
    def env(self) -> dict[str, str]:
        return {
            "CALNOTIFY_SMTP_HOST": "127.0.0.1",
            "CALNOTIFY_SMTP_PORT": str(self.smtp_port),
            "CALNOTIFY_SMTP_SECURITY": "none",
            "CALNOTIFY_SMTP_CONNECTIONS": "8",
            "CALNOTIFY_SMTP_TIMEOUT": str(PROVIDER_TIMEOUT),
            "CALNOTIFY_TWILIO_ACCOUNT_SID": ACCOUNT,
            "CALNOTIFY_TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "CALNOTIFY_TWILIO_BASE_URL": f"http://127.0.0.1:{self.http_port}",
            "CALNOTIFY_TWILIO_FROM_NUMBER": FROM_NUMBER,
            "CALNOTIFY_TWILIO_TIMEOUT": str(PROVIDER_TIMEOUT),
        }


# --- the database --------------------------------------------------------------------------


def add_rules(url: str, tenant: Tenant) -> dict[str, str]:
    """An email and an SMS reminder rule addressed to literal recipients; channel → id."""
    engine = engine_for(url)
    now = datetime.now(UTC)
    rules: dict[str, str] = {}
    with Session(engine) as session, session.begin():
        for channel, receiver in (("email", "emails"), ("sms", "phoneNumbers")):
            rule = Notification(
                location_id=tenant.location,
                calendar_id=tenant.calendar,
                receiver_type=receiver,
                channel=channel,
                notification_type="reminder",
                before_time=[{"timeOffset": 1, "unit": "days"}],
                version=1,
                date_added=now,
                date_updated=now,
            )
            session.add(rule)
            session.flush()
            rules[channel] = rule.id
    engine.dispose()
    return rules


def insert_plan(url: str, tenant: Tenant, rules: dict[str, str], plan: list[Planned]) -> None:
    """The planned deliveries, as the planner writes a reminder to a literal address."""
    engine = engine_for(url)
    for offset in range(0, len(plan), 5000):
        rows = [
            {
                "id": p.id,
                "location_id": tenant.location,
                "calendar_id": tenant.calendar,
                "appointment_id": tenant.appointment,
                "notification_id": rules[p.channel],
                "notification_type": "reminder",
                "channel": p.channel,
                "receiver_type": "emails" if p.channel == "email" else "phoneNumbers",
                "trigger": "schedule",
                "recipient_kind": "address",
                "recipient_ref": p.address,
                "recipient": p.address,
                "status": "scheduled",
                "reason": "",
                "due_at": p.due,
                "run_at": p.due,
                "deadline_at": p.due + timedelta(hours=24),
                "attempts": 0,
                "appointment_version": 1,
                "notification_version": 1,
                "dedupe_key": p.id,
                "last_error": "",
                "provider": "",
                "provider_message_id": "",
                "provider_status": "",
                "subject": "",
                "body": "",
                "created_at": p.due,
                "updated_at": p.due,
            }
            for p in plan[offset : offset + 5000]
        ]
        with engine.begin() as conn:
            conn.execute(insert(Delivery.__table__), rows)
    engine.dispose()


def states(url: str) -> dict[str, int]:
    engine = engine_for(url)
    with engine.connect() as conn:
        rows = conn.execute(
            select(Delivery.status, func.count())
            .where(Delivery.id.like("pf%"))
            .group_by(Delivery.status)
        ).all()
    engine.dispose()
    return {str(status): int(n) for status, n in rows}


def handed_over_in_flight(url: str) -> int:
    """Deliveries in ``sending`` with an attempt in progress (handed to the provider)."""
    engine = engine_for(url)
    with engine.connect() as conn:
        n = conn.execute(
            select(func.count())
            .select_from(Delivery)
            .where(Delivery.status == "sending", Delivery.handed_over_at.is_not(None))
        ).scalar_one()
    engine.dispose()
    return int(n)


@dataclass
class Row:
    status: str
    reason: str
    attempts: int
    due_at: datetime
    sent_at: datetime | None
    last_error: str
    provider_message_id: str
    tries: list[tuple[int, str, str]] = field(default_factory=list)  # number, outcome, error


def read_outcomes(url: str) -> dict[str, Row]:
    engine = engine_for(url)
    d, a = Delivery.__table__.c, DeliveryAttempt.__table__.c
    with engine.connect() as conn:
        rows = {
            r.id: Row(
                r.status,
                r.reason,
                r.attempts,
                r.due_at,
                r.sent_at,
                r.last_error,
                r.provider_message_id,
            )
            for r in conn.execute(
                select(
                    d.id,
                    d.status,
                    d.reason,
                    d.attempts,
                    d.due_at,
                    d.sent_at,
                    d.last_error,
                    d.provider_message_id,
                ).where(d.id.like("pf%"))
            )
        }
        for t in conn.execute(
            select(a.delivery_id, a.number, a.outcome, a.error).order_by(a.number, a.at)
        ):
            if t.delivery_id in rows:
                rows[t.delivery_id].tries.append((t.number, t.outcome, t.error))
    engine.dispose()
    return rows


# --- workers ---------------------------------------------------------------------------------


def start_worker(env: dict[str, str], logs: Path, n: int) -> tuple[subprocess.Popen[bytes], Path]:
    path = logs / f"worker-{n}.log"
    with open(path, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "calnotify", "worker"],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return process, path


# --- judging ---------------------------------------------------------------------------------


def judge(
    plan: list[Planned], rows: dict[str, Row], seen: dict[str, Seen], kill: bool
) -> tuple[dict[str, list[str]], dict[str, dict[str, Any]], dict[str, int]]:
    """(violations by check → delivery ids, a summary per fault, counts of lost attempts)."""
    violations: dict[str, list[str]] = defaultdict(list)
    per_fault: dict[str, dict[str, Any]] = {}
    lost = {"deliveries_with_lost_attempt": 0, "lost_attempts": 0, "extra_copies_accepted": 0}
    for p in plan:
        fault = BY_NAME[p.fault]
        row = rows.get(p.id)
        s = seen.get(p.id, Seen())
        summary = per_fault.setdefault(
            p.fault,
            {
                "deliveries": 0,
                "final": Counter(),
                "attempts": Counter(),
                "provider_calls": 0,
                "arrived": 0,
                "accepted": 0,
            },
        )
        summary["deliveries"] += 1
        summary["provider_calls"] += len(s.calls)
        summary["arrived"] += s.arrived
        summary["accepted"] += len(s.accepted)
        if row is None:
            violations["missing from the database"].append(p.id)
            continue
        state = f"{row.status}/{row.reason}" if row.reason else row.status
        summary["final"][state] += 1
        summary["attempts"][row.attempts] += 1
        unknown = sum(1 for _, outcome, _ in row.tries if outcome == "unknown")
        if unknown:
            lost["deliveries_with_lost_attempt"] += 1
            lost["lost_attempts"] += unknown
        if row.status in ("scheduled", "sending"):
            violations["stuck in scheduled/sending"].append(p.id)
        if row.attempts > MAX_ATTEMPTS:
            violations["more attempts than the maximum"].append(p.id)
        if len(s.calls) > row.attempts or s.arrived > row.attempts:
            violations["provider called more often than the attempts recorded"].append(p.id)
        if fault.accepts:
            extra = len(s.accepted) - 1
            if extra > 0:
                lost["extra_copies_accepted"] += extra
            if not s.accepted:
                violations["accepted by its provider 0 times"].append(p.id)
            elif extra > (unknown if kill else 0):
                violations["accepted by its provider more than once"].append(p.id)
        expected = {fault.fate} | ({"failed/abandoned"} if unknown else set())
        if state not in expected:
            violations["final state not the documented one"].append(p.id)
        elif not unknown and row.attempts != fault.attempts:
            violations["attempts not the documented number"].append(p.id)
        if row.status == "sent":
            if row.sent_at is None or row.last_error:
                violations["sent without sent_at, or with an error"].append(p.id)
            wanted = "" if p.fault == "sms/garbage" else p.id
            if (wanted and wanted not in row.provider_message_id) or (
                not wanted and row.provider_message_id
            ):
                violations["provider message id not the provider's"].append(p.id)
        if p.channel == "email" and s.message_ids - {f"{p.id}@calnotify.invalid"}:
            violations["Message-ID not the delivery's"].append(p.id)
        if len(row.tries) != row.attempts:
            violations["attempt rows != attempts"].append(p.id)
        if fault.maybe_sent and any(
            outcome in ("retry", "failed") and MAYBE not in error for _, outcome, error in row.tries
        ):
            violations["timeout/hang-up not marked 'may have acted'"].append(p.id)
        if not unknown and (not fault.accepts or p.fault.endswith("flaky")):
            calls = sorted(s.calls)
            for k in range(1, len(calls)):
                least = 0.8 * RETRY_BASE * 2 ** (k - 1)
                if p.fault == "sms/429":
                    least = max(least, RETRY_AFTER)
                if calls[k] - calls[k - 1] < least - 0.05:
                    violations["retried before its back-off or Retry-After"].append(p.id)
                    break
    return violations, per_fault, lost


def lateness(plan: list[Planned], rows: dict[str, Row], seen: dict[str, Seen]) -> dict[str, Any]:
    """sent_at - due_at (database) and first acceptance - due_at (provider), in seconds."""
    out: dict[str, Any] = {}
    for label, names in (("healthy", HEALTHY), ("email", HEALTHY[:1]), ("sms", HEALTHY[1:])):
        db: list[float] = []
        provider: list[float] = []
        recorded: list[float] = []  # sent_at - when the provider accepted it
        for p in plan:
            row = rows.get(p.id)
            if p.fault not in names or row is None or row.sent_at is None:
                continue
            db.append((row.sent_at - p.due).total_seconds())
            accepted = seen.get(p.id, Seen()).accepted
            if accepted:
                provider.append(min(accepted) - p.due.timestamp())
                recorded.append(row.sent_at.timestamp() - min(accepted))
        out[label] = {
            "n": len(db),
            "db_p50": round(percentile(db, 50), 3),
            "db_p99": round(percentile(db, 99), 3),
            "db_max": round(max(db), 3) if db else None,
            "provider_p50": round(percentile(provider, 50), 3),
            "provider_p99": round(percentile(provider, 99), 3),
            "sent_at_after_acceptance_p50": round(percentile(recorded, 50), 3),
            "sent_at_after_acceptance_max": round(max(recorded), 3) if recorded else None,
        }
    return out


def show_examples(
    url: str,
    token: str,
    violations: dict[str, list[str]],
    plan: list[Planned],
    seen: dict[str, Seen],
) -> None:
    """Print a few offending deliveries as GET /deliveries/{id} answers them."""
    faults = {p.id: p.fault for p in plan}
    port = free_port()
    with tempfile.TemporaryFile() as out:
        api = subprocess.Popen(
            [sys.executable, "-m", "calnotify", "serve", "--no-worker", "--port", str(port)],
            env={**os.environ, "CALNOTIFY_DATABASE_URL": url, "CALNOTIFY_LOG_LEVEL": "warning"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(base)
            headers = {"Authorization": f"Bearer {token}"}
            with httpx.Client(base_url=base, headers=headers, timeout=10) as client:
                for check, ids in violations.items():
                    print(f"\n{check}: {len(ids)} deliveries, e.g.")
                    for delivery in ids[:3]:
                        body = client.get(f"/deliveries/{delivery}").json()
                        s = seen.get(delivery, Seen())
                        print(
                            f"  {delivery} ({faults.get(delivery)}): status {body.get('status')}"
                            f" reason {body.get('reason')!r} attemptCount"
                            f" {body.get('attemptCount')}; at the provider: {len(s.calls)}"
                            f" calls, {s.arrived} arrived, {len(s.accepted)} accepted"
                        )
                        for attempt in body.get("attempts", []):
                            print(
                                f"    #{attempt['number']} {attempt['at']} {attempt['outcome']}"
                                f" {attempt['error'][:150]!r} {attempt['providerId']!r}"
                            )
        finally:
            api.terminate()
            api.wait(timeout=30)


# --- the drill -------------------------------------------------------------------------------


def main(args: argparse.Namespace) -> int:
    lead = 6.0 + args.count / 4000
    base = datetime.now(UTC) + timedelta(seconds=lead)
    plan = make_plan(args.count, base, args.spread, args.seed)
    last_due = plan[-1].due
    title = f"{args.database}, {args.workers} worker(s)" + (", kill -9" if args.kill else "")
    with (
        fresh_database(args.database) as url,
        Providers(plan) as providers,
        tempfile.TemporaryDirectory(prefix="calnotify-faults-") as folder,
    ):
        logs = Path(folder)
        tenant = seed_tenant(url)
        rules = add_rules(url, tenant)
        insert_plan(url, tenant, rules, plan)
        log(f"{args.count:,} deliveries due from {base:%H:%M:%S} over {args.spread:.0f} s")
        env = {
            "CALNOTIFY_DATABASE_URL": url,
            "CALNOTIFY_LOG_LEVEL": "warning",
            "CALNOTIFY_DISPATCH_LEASE_SECONDS": str(LEASE),
            "CALNOTIFY_DISPATCH_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
            "CALNOTIFY_DISPATCH_RETRY_BASE_SECONDS": str(RETRY_BASE),
            **providers.env,
            # A relay takes many connections at once; with a few, the slow and hanging
            # answers occupy them all and healthy messages queue behind them.
            "CALNOTIFY_SMTP_CONNECTIONS": str(args.smtp_connections),
        }
        workers = [start_worker(env, logs, n) for n in range(args.workers)]
        killed: dict[str, Any] = {}
        kill_at = base + timedelta(seconds=args.spread / 2)
        crashed: list[int] = []  # workers that exited without being told to
        victim_pid = 0
        deadline = time.monotonic() + lead + args.spread + args.timeout
        current: dict[str, int] = {}
        while time.monotonic() < deadline:
            time.sleep(2)
            current = states(url)
            seen = providers.collect()
            accepted = sum(len(s.accepted) for s in seen.values())
            calls = sum(len(s.calls) for s in seen.values())
            log(f"states {current}; provider calls {calls:,}, accepted {accepted:,}")
            for process, _ in workers:
                gone = process.poll() is not None and process.pid != victim_pid
                if gone and process.pid not in crashed:
                    crashed.append(process.pid)
                    log(f"worker {process.pid} exited by itself with {process.returncode}")
            if args.kill and not killed and datetime.now(UTC) >= kill_at:
                victim, _ = workers[0]
                victim_pid = victim.pid
                in_flight = handed_over_in_flight(url)
                os.kill(victim.pid, signal.SIGKILL)
                victim.wait()
                workers.append(start_worker(env, logs, len(workers)))
                killed = {
                    "at_seconds_after_first_due": round(
                        (datetime.now(UTC) - base).total_seconds(), 1
                    ),
                    "handed_over_in_flight_at_kill": in_flight,
                    "states_at_kill": current,
                }
                log(
                    f"killed worker {victim.pid} with SIGKILL ({in_flight} deliveries handed"
                    " over and not recorded, all workers); started another"
                )
            if (
                datetime.now(UTC) > last_due
                and not current.get("scheduled")
                and not current.get("sending")
            ):
                break
        drained = (datetime.now(UTC) - last_due).total_seconds()
        took = (datetime.now(UTC) - base).total_seconds()
        exits: list[int | None] = []
        for process, _ in workers:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        for process, _ in workers:
            try:
                exits.append(process.wait(timeout=40))
            except subprocess.TimeoutExpired:
                process.kill()
                exits.append(None)
        time.sleep(1)
        seen = providers.collect()
        rows = read_outcomes(url)
        violations, per_fault, lost = judge(plan, rows, seen, args.kill)
        if providers.stray:
            violations["message to an address nobody was sent"] = providers.stray
        stopped = [
            code
            for (process, _), code in zip(workers, exits, strict=True)
            if process.pid != victim_pid
        ]
        if crashed or any(code != 0 for code in stopped):
            violations["worker died, or did not exit 0 on SIGTERM"] = [str(exits)]
        log_text = "".join(path.read_text(errors="replace") for _, path in workers)
        if violations:
            show_examples(url, tenant.token, violations, plan, seen)
            tracebacks = log_text.count("Traceback")
            if tracebacks:
                print(f"\n{tracebacks} tracebacks in the worker logs; the last lines:")
                print("\n".join(log_text.splitlines()[-30:]))
        late = lateness(plan, rows, seen)
    print(
        f"\n{'fault':<14} {'n':>5}  {'calls':>6} {'arrived':>7} {'accepted':>8}  final (attempts)"
    )
    for name, s in per_fault.items():
        final = ", ".join(f"{k} {v}" for k, v in sorted(s["final"].items()))
        tries = ", ".join(f"{k}x{v}" for k, v in sorted(s["attempts"].items()))
        print(
            f"{name:<14} {s['deliveries']:>5}  {s['provider_calls']:>6} {s['arrived']:>7}"
            f" {s['accepted']:>8}  {final} ({tries})"
        )
    results = {
        "database": args.database,
        "deliveries": args.count,
        "workers": args.workers,
        "smtp_connections": args.smtp_connections,
        "kill": killed or None,
        "spread_seconds": args.spread,
        "drained_seconds_after_last_due": round(drained, 1),
        "finished_per_second": round(args.count / took, 1),
        "final_states": current,
        "lost_attempts": lost,
        "healthy_lateness_seconds": late,
        "per_fault": {
            name: {
                **{k: v for k, v in s.items() if k not in ("final", "attempts")},
                "final": dict(s["final"]),
                "attempts": {str(k): v for k, v in sorted(s["attempts"].items())},
            }
            for name, s in per_fault.items()
        },
        "violations": {check: len(ids) for check, ids in violations.items()},
        "worker_exit_codes": exits,
        "worker_log_tracebacks": log_text.count("Traceback"),
    }
    report(f"drill: provider faults ({title})", results)
    ok = not violations
    print("PASS" if ok else "FAIL: " + "; ".join(f"{k} ({len(v)})" for k, v in violations.items()))
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Faults: " + "; ".join(f"{f.name}: {f.what}" for f in FAULTS),
    )
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--count", type=int, default=10_000, help="deliveries (default 10000)")
    parser.add_argument("--workers", type=int, choices=[1, 2], default=1)
    parser.add_argument(
        "--kill", action="store_true", help="SIGKILL the first worker halfway, start another"
    )
    parser.add_argument(
        "--spread", type=float, default=60.0, help="seconds over which they come due (60)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="seconds to wait after the last due time before reporting what is stuck (300)",
    )
    parser.add_argument("--seed", type=int, default=1, help="which delivery gets which fault")
    parser.add_argument(
        "--smtp-connections",
        type=int,
        default=32,
        help="CALNOTIFY_SMTP_CONNECTIONS of the workers (32)",
    )
    sys.exit(main(parser.parse_args()))
