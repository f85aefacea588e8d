"""Reliability drill: fuzz calnotify's own OpenAPI document and report every 5xx.

The drill starts ``calnotify serve`` as a subprocess on a fresh database (a temporary SQLite
file, or a new PostgreSQL database that is dropped at the end), creates a tenant with the admin
commands (location, users, a token with every scope), loads ``/openapi.json`` from the running
server and lets schemathesis send positive and negative requests to every operation in its
examples, coverage and fuzzing phases (fixed seed, deterministic generation, a bounded number of
fuzzed examples per operation).

Every response is checked with ``not_a_server_error`` (no 5xx) and
``response_schema_conformance`` (a response whose status code the document declares matches the
declared schema; undocumented status codes are not failures).

Generated ids name nothing, so before each operation the drill creates fresh records through
the API (users, a calendar with notification rules, a contact, templates, a booked appointment
with its deliveries and an in-app inbox item) and, as each request is sent, swaps their real
ids into path parameters, id-valued query parameters and body fields three times out of four
(coverage cases: always, except for the one parameter the case probes). Fields the document
types only as strings (email addresses, phone numbers, time zones, appointment times) get
plausible values the same way, so that requests get past validation into the code behind it.
Fresh records per operation keep one operation's deletes from turning the next one's requests
into 404s. The swaps draw from a random generator seeded per operation, so a run repeats.

``GET /users/{userId}/inbox/stream`` streams forever; it is fuzzed with a short timeout (the
response is whatever the stream sent until then).

Run from the repository root with the project's virtualenv:

    .venv/bin/python bench/drills/fuzz_openapi.py [--database sqlite|postgresql] [--examples N]

Exit status: 0 when every check passed, 1 when a check failed or an operation could not be
tested. The whole run stops after ``--time-budget`` seconds (default 600) regardless.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn
from urllib.parse import urlsplit

import httpx
import psycopg
import requests
import schemathesis
from psycopg import sql
from schemathesis import Case
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup, ServerError
from schemathesis.core.parameters import ParameterLocation
from schemathesis.core.result import Ok
from schemathesis.generation import derive_operation_seed
from schemathesis.generation.hypothesis.builder import (
    HypothesisTestConfig,
    HypothesisTestMode,
    create_test,
)
from schemathesis.generation.meta import CoveragePhaseData
from schemathesis.generation.overrides import with_config_headers
from schemathesis.openapi.checks import JsonSchemaError
from schemathesis.schemas import APIOperation
from schemathesis.specs.openapi.checks import response_schema_conformance

AnyCase = Case[Any]
AnyOperation = APIOperation[Any, Any, Any, Any]

REPO = Path(__file__).resolve().parents[2]
VERSION = "2021-04-15"
DEFAULT_SEED = 20210415
DEFAULT_EXAMPLES = 30
DEFAULT_TIME_BUDGET = 600.0
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432"

REQUEST_TIMEOUT = 10.0
STREAM_TIMEOUT = 1.0  # how long a request to the never-ending inbox stream is read
STREAM_OPERATION = "GET /users/{userId}/inbox/stream"
CLEANUP_RESERVE = 20.0  # seconds of the budget no new operation starts in
HARD_STOP_RESERVE = 10.0  # seconds of the budget left for the report and cleanup after a hard stop
REAL_SHARE = 0.75
CHECKS = [not_a_server_error, response_schema_conformance]
MAX_SHOWN = 6000  # characters of a body or log excerpt shown in the report

# The kind of real value a path parameter, query parameter or body field takes: the ids of the
# records created for each operation, and plausible values for fields the document types only
# as strings (an email address, an E.164 number, a time zone...), so that generated requests
# get past validation into the code behind it.
PATH_FIELDS = {
    "calendarId": "calendar",
    "notificationId": "notification",
    "eventId": "event",
    "contactId": "contact",
    "userId": "user",
    "locationId": "location",
    "templateId": "template",
    "deliveryId": "delivery",
    "itemId": "item",
}
QUERY_FIELDS = {
    "locationId": "location",
    "calendarId": "calendar",
    "userId": "user",
    "contactId": "contact",
    "appointmentId": "event",
    "notificationId": "notification",
    "deliveryId": "delivery",
    "startTime": "range-start-ms",
    "endTime": "range-end-ms",
}
BODY_FIELDS = {
    "locationId": "location",
    "calendarId": "calendar",
    "contactId": "contact",
    "userId": "user",
    "assignedUserId": "user",
    "templateId": "template",
    "locationIds": "location-list",
    "selectedUsers": "user-list",
    "email": "email",
    "fromAddress": "email",
    "additionalEmailIds": "email-list",
    "phone": "phone",
    "fromNumber": "phone",
    "additionalPhoneNumbers": "phone-list",
    "timezone": "timezone",
    "country": "country",
    "role": "role",
    "slotDurationUnit": "slot-unit",
    "startTime": "start-time",
    "endTime": "end-time",
}
# Request headers left out of reproductions (the token) or of curl lines (set by curl itself).
SECRET_HEADERS = {"authorization"}
CURL_SKIPPED_HEADERS = {
    "authorization",
    "content-length",
    "user-agent",
    "accept-encoding",
    "accept",
    "connection",
}

RealValues = dict[str, list[Any]]


class DrillError(Exception):
    """The drill itself cannot go on (server gone, setup refused)."""


class TimeUp(BaseException):
    """The hard time limit passed; raised by a timer signal wherever the drill is."""


def arm_watchdog(seconds: float) -> None:
    """Raise ``TimeUp`` in the main thread after ``seconds`` (``0`` disarms)."""

    def expire(_signum: int, _frame: FrameType | None) -> None:
        raise TimeUp

    signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.0))


def log(message: str) -> None:
    print(message, flush=True)


# --- database ----------------------------------------------------------------------------------


def with_database(url: str, name: str) -> str:
    """``url`` (a PostgreSQL server URL) naming database ``name``."""
    return urlsplit(url)._replace(path=f"/{name}").geturl()


@contextlib.contextmanager
def fresh_database(kind: str, pg_url: str, workdir: Path) -> Iterator[str]:
    """A database URL for an empty database that exists for the duration of the block."""
    if kind == "sqlite":
        yield f"sqlite:///{workdir / 'calnotify.db'}"
        return
    name = f"calnotify_fuzz_{uuid.uuid4().hex[:10]}"
    admin_url = with_database(pg_url, "postgres")
    try:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.Error as exc:
        raise DrillError(f"cannot create a database on {pg_url}: {exc}") from exc
    log(f"created PostgreSQL database {name}")
    try:
        yield with_database(pg_url, name)
    finally:
        drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        try:
            with psycopg.connect(admin_url, autocommit=True) as admin:
                admin.execute(drop)
            log(f"dropped PostgreSQL database {name}")
        except psycopg.Error as exc:
            log(f"could not drop PostgreSQL database {name}: {exc}")


# --- server and admin commands -----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def calnotify_env(database_url: str) -> dict[str, str]:
    return {**os.environ, "CALNOTIFY_DATABASE_URL": database_url, "PYTHONUNBUFFERED": "1"}


def calnotify(database_url: str, *args: str) -> dict[str, Any]:
    """Run an admin command (``python -m calnotify ...``) and parse the JSON it prints."""
    result = subprocess.run(
        [sys.executable, "-m", "calnotify", *args],
        env=calnotify_env(database_url),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise DrillError(f"calnotify {' '.join(args[:2])} failed: {result.stderr.strip()}")
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


@dataclass
class Server:
    """``calnotify serve`` running as a subprocess, its output going to ``log_path``."""

    base_url: str
    log_path: Path
    process: subprocess.Popen[bytes]

    def is_running(self) -> bool:
        return self.process.poll() is None

    def log_size(self) -> int:
        return self.log_path.stat().st_size

    def log_since(self, offset: int) -> str:
        """What the server logged after ``offset``, once it stops growing (for up to 1 s)."""
        deadline = time.monotonic() + 1.0
        size = self.log_size()
        while time.monotonic() < deadline:
            time.sleep(0.05)
            now = self.log_size()
            if now == size:
                break
            size = now
        with self.log_path.open("rb") as file:
            file.seek(offset)
            return file.read().decode("utf-8", errors="replace")

    def log_tail(self, lines: int) -> str:
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])


@contextlib.contextmanager
def run_server(database_url: str, log_path: Path) -> Iterator[Server]:
    port = free_port()
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "calnotify", "serve", "--port", str(port)],
            env=calnotify_env(database_url),
            cwd=REPO,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    server = Server(base_url=f"http://127.0.0.1:{port}", log_path=log_path, process=process)
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{server.base_url}/healthz", timeout=2).status_code == 200:
                    break
            if not server.is_running() or time.monotonic() > deadline:
                raise DrillError(f"calnotify serve did not start:\n{server.log_tail(40)}")
            time.sleep(0.1)
        log(f"calnotify serve is up at {server.base_url} (pid {process.pid})")
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


# --- the tenant and its records ----------------------------------------------------------------


@dataclass(frozen=True)
class Tenant:
    location_id: str
    token: str
    admin_id: str
    user_id: str


def create_tenant(database_url: str) -> Tenant:
    """A location, an admin and a user, and a token with every scope, via the admin commands."""
    location = calnotify(
        database_url,
        *("locations", "create", "--name", "Fuzz Dental", "--email", "front@fuzz.example"),
        *("--phone", "+14155550100", "--timezone", "America/New_York"),
    )
    location_id = str(location["id"])
    admin = calnotify(
        database_url,
        *("users", "create", "--location", location_id, "--email", "admin@fuzz.example"),
        *("--first-name", "Ada", "--role", "admin"),
    )
    user = calnotify(
        database_url,
        *("users", "create", "--location", location_id, "--email", "user@fuzz.example"),
        *("--first-name", "Ben", "--phone", "+14155550101"),
    )
    token = calnotify(database_url, "tokens", "create", "--location", location_id)
    return Tenant(
        location_id=location_id,
        token=str(token["token"]),
        admin_id=str(admin["id"]),
        user_id=str(user["id"]),
    )


class Api:
    """The few API calls that create the records a fuzzed operation works on."""

    def __init__(self, base_url: str, tenant: Tenant) -> None:
        self.tenant = tenant
        self.client = httpx.Client(
            base_url=base_url,
            headers={"Authorization": f"Bearer {tenant.token}", "Version": VERSION},
            timeout=REQUEST_TIMEOUT,
        )

    def close(self) -> None:
        self.client.close()

    def call(self, method: str, path: str, expected: int, body: Any = None) -> Any:
        try:
            response = self.client.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise DrillError(f"setup request {method} {path} failed: {exc!r}") from exc
        if response.status_code != expected:
            raise DrillError(
                f"setup request {method} {path} answered {response.status_code}, not "
                f"{expected}: {response.text[:1000]}"
            )
        return response.json()

    def create_records(self, serial: int) -> RealValues:
        """Fresh users, calendar, rules, contact, templates and a booked appointment."""
        loc = self.tenant.location_id
        users = [
            self.call(
                "POST",
                "/users/",
                201,
                {
                    "email": f"staff-{serial}-{n}@fuzz.example",
                    "firstName": f"Staff{n}",
                    "phone": f"+1415555{serial % 1000:03d}{n}",
                    "role": "user",
                },
            )["id"]
            for n in range(2)
        ]
        calendar = self.call(
            "POST",
            "/calendars/",
            200,
            {
                "locationId": loc,
                "name": f"Cleanings {serial}",
                "teamMembers": [{"userId": users[0], "isPrimary": True}, {"userId": users[1]}],
            },
        )["calendar"]["id"]
        contact = self.call(
            "POST",
            "/contacts/",
            201,
            {
                "locationId": loc,
                "firstName": "Rosa",
                "lastName": "Diaz",
                "email": f"rosa-{serial}@fuzz.example",
                "phone": "+14155550123",
                "timezone": "Europe/Madrid",
            },
        )["contact"]["id"]
        sms_template = self.call(
            "POST",
            f"/locations/{loc}/templates",
            201,
            {"name": "Reminder", "type": "sms", "template": {"body": "Hi {{contact.first_name}}"}},
        )["id"]
        email_template = self.call(
            "POST",
            f"/locations/{loc}/templates",
            201,
            {
                "name": "Booked",
                "type": "email",
                "template": {
                    "subject": "Booked: {{appointment.title}}",
                    "html": "<p>See you {{appointment.only_start_date}}</p>",
                },
            },
        )["id"]
        rules = self.call(
            "POST",
            f"/calendars/{calendar}/notifications",
            200,
            [
                {
                    "receiverType": "contact",
                    "channel": "email",
                    "notificationType": "booked",
                    "subject": "See you {{appointment.only_start_date}}, {{contact.first_name}}",
                },
                {"receiverType": "assignedUser", "channel": "inApp", "notificationType": "booked"},
                {
                    "receiverType": "contact",
                    "channel": "sms",
                    "notificationType": "reminder",
                    "beforeTime": [{"timeOffset": 1, "unit": "hours"}],
                    "templateId": sms_template,
                },
                {
                    "receiverType": "emails",
                    "channel": "email",
                    "notificationType": "followup",
                    "additionalEmailIds": ["front@fuzz.example"],
                    "afterTime": [{"timeOffset": 2, "unit": "days"}],
                },
                {
                    "receiverType": "business",
                    "channel": "inApp",
                    "notificationType": "cancellation",
                    "selectedUsers": [users[1], "sub_account_admin"],
                },
                {
                    "receiverType": "phoneNumbers",
                    "channel": "whatsapp",
                    "notificationType": "confirmation",
                    "additionalPhoneNumbers": ["+14155550199"],
                },
            ],
        )
        start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=7)
        event = self.call(
            "POST",
            "/calendars/events/appointments",
            200,
            {
                "calendarId": calendar,
                "locationId": loc,
                "contactId": contact,
                "startTime": start.isoformat().replace("+00:00", "Z"),
                "title": "Cleaning",
                "guests": [{"email": "guest@fuzz.example", "name": "Gus"}],
            },
        )["id"]
        deliveries = self.call("GET", f"/deliveries?appointmentId={event}", 200)["deliveries"]
        return {
            **plausible_values(datetime.now(UTC)),
            "location": [loc],
            "user": users,
            "calendar": [calendar],
            "contact": [contact],
            "template": [sms_template, email_template],
            "notification": [rule["_id"] for rule in rules],
            "event": [event],
            "delivery": [delivery["id"] for delivery in deliveries],
            "item": self.wait_for_inbox(users[0]),
            "location-list": [[loc]],
            "user-list": [[users[0]], [users[1], "sub_account_admin"], [self.tenant.user_id]],
        }

    def wait_for_inbox(self, user_id: str) -> list[str]:
        """The in-app items of a user (the booked message arrives within a second)."""
        deadline = time.monotonic() + 5
        while True:
            items = self.call("GET", f"/users/{user_id}/inbox", 200)["items"]
            if items or time.monotonic() > deadline:
                return [item["id"] for item in items]
            time.sleep(0.05)


# --- real values in generated requests --------------------------------------------------------


def plausible_values(now: datetime) -> RealValues:
    """Valid values for fields the document types only loosely (see ``BODY_FIELDS``)."""
    start = now.replace(hour=14, minute=0, second=0, microsecond=0) + timedelta(days=10)
    end = start + timedelta(minutes=45)
    india, new_york = timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-5))
    epoch_ms = int(now.timestamp() * 1000)
    return {
        "email": ["pat@fuzz.example", "Pat.Smith+notes@Fuzz.Example"],
        "email-list": [["desk@fuzz.example"], ["a@fuzz.example", "b@fuzz.example"]],
        "phone": ["+14155550142", "+442071838750"],
        "phone-list": [["+14155550150"], ["+4915112345678", "+14155550151"]],
        "timezone": ["America/Chicago", "Asia/Kolkata", "UTC", "Australia/Lord_Howe"],
        "country": ["US", "de"],
        "role": ["admin", "user"],
        "slot-unit": ["mins", "hours"],
        # With an offset, in UTC, and without an offset (read in the location's zone).
        "start-time": [
            start.astimezone(india).isoformat(),
            start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            start.strftime("%Y-%m-%dT%H:%M:%S"),
        ],
        "end-time": [end.astimezone(new_york).isoformat(), end.strftime("%Y-%m-%dT%H:%M:%S")],
        "range-start-ms": [epoch_ms - 86_400_000, epoch_ms],
        "range-end-ms": [epoch_ms + 30 * 86_400_000, epoch_ms + 365 * 86_400_000],
    }


def use_real_values(case: AnyCase, real: RealValues, rnd: random.Random) -> None:
    """Swap real ids and plausible values into the known fields of ``case``, in place.

    Fuzzed and example cases get a real value with probability ``REAL_SHARE`` per field;
    coverage cases always, except for the one parameter the case probes.
    """
    meta = case.meta
    probed: tuple[ParameterLocation | None, str | None] | None = None
    share = REAL_SHARE
    if meta is not None and isinstance(meta.phase.data, CoveragePhaseData):
        probed = (meta.phase.data.parameter_location, meta.phase.data.parameter)
        share = 1.0

    def pick(kind: str, location: ParameterLocation, name: str, value: Any) -> Any:
        values = real.get(kind)
        if not values or probed == (location, name) or rnd.random() >= share:
            return value
        return rnd.choice(values)

    def swap(fields: dict[str, str], location: ParameterLocation, node: Any, top: bool) -> Any:
        if isinstance(node, dict):
            return {
                key: pick(fields[key], location, key if top else "", value)
                if key in fields
                else swap(fields, location, value, top=False)
                for key, value in node.items()
            }
        if isinstance(node, list):
            return [swap(fields, location, item, top=False) for item in node]
        return node

    path = swap(PATH_FIELDS, ParameterLocation.PATH, case.path_parameters, top=True)
    if path != case.path_parameters:
        case.path_parameters = path
    query = swap(QUERY_FIELDS, ParameterLocation.QUERY, case.query, top=True)
    if query != case.query:
        case.query = query
    if isinstance(case.body, (dict, list)):
        body = swap(BODY_FIELDS, ParameterLocation.BODY, case.body, top=True)
        if body != case.body:
            case.body = body


# --- findings ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SentRequest:
    """A request as it went on the wire, without its token."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None

    @classmethod
    def from_prepared(cls, request: requests.PreparedRequest) -> SentRequest:
        body = request.body
        if isinstance(body, str):
            body = body.encode()
        return cls(
            method=str(request.method),
            url=str(request.url),
            headers={
                name: value.decode("latin-1") if isinstance(value, bytes) else value
                for name, value in request.headers.items()
                if name.lower() not in SECRET_HEADERS
            },
            body=body if isinstance(body, bytes) else None,
        )

    @property
    def path_and_query(self) -> str:
        parts = urlsplit(self.url)
        return parts.path + (f"?{parts.query}" if parts.query else "")

    def curl(self, body_file: Path | None) -> str:
        """The request as a curl command; ``$BASE`` and ``$TOKEN`` name the server and token."""
        words = ["curl", "-sS", "-X", self.method, "-H", '"Authorization: Bearer $TOKEN"']
        for name, value in self.headers.items():
            if name.lower() not in CURL_SKIPPED_HEADERS:
                words += ["-H", shlex.quote(f"{name}: {value}")]
        if self.body is not None:
            data = f"@{body_file}" if body_file else self.body.decode("utf-8", "backslashreplace")
            words += ["--data-binary", shlex.quote(data)]
        words.append('"$BASE"' + shlex.quote(self.path_and_query))
        return " ".join(words)


@dataclass
class Finding:
    """One distinct failure, with the first request that showed it."""

    number: int
    operation: str
    title: str
    check: str
    message: str
    request: SentRequest | None
    body_file: Path | None
    status: int | None
    content_type: str
    response_body: str
    server_log: str
    count: int = 1

    def render(self, *, full: bool) -> str:
        """The finding as text: condensed for the console, or ``full`` for its file."""
        show = (lambda text: text) if full else preview
        times = f" (seen {self.count} times)" if self.count > 1 else ""
        lines = [f"FAILURE {self.number}: {self.operation}: {self.title}{times}"]
        lines.append(f"check: {self.check}")
        if self.message.strip():
            lines += ["details:", indent(show(self.message.strip()))]
        request = self.request
        if request is not None:
            parts = urlsplit(request.url)
            headers = ", ".join(f"{name}: {value}" for name, value in request.headers.items())
            body = "(none)"
            if request.body is not None:
                body = show(request.body.decode("utf-8", "backslashreplace"))
                if self.body_file is not None and not full:
                    body += f"\n(exact body: {self.body_file})"
            lines += [
                f"request: {request.method} {parts.path}",
                f"  query:   {parts.query or '(none)'}",
                f"  headers: {headers} (and Authorization: Bearer <token>)",
                "  body:",
                indent(body, 4),
                "  curl:",
                indent(request.curl(self.body_file), 4),
            ]
        if self.status is not None:
            lines += [
                f"response: {self.status} ({self.content_type or 'no content type'})",
                indent(show(self.response_body) or "(empty)"),
            ]
        if self.server_log.strip():
            log_text = self.server_log if full else condense_traceback(self.server_log)
            lines += ["server log during the request:", indent(show(log_text.rstrip()))]
        return "\n".join(lines)


@dataclass
class OperationStats:
    label: str
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    failures: int = 0
    skipped: int = 0
    seconds: float = 0.0
    error: str = ""

    def line(self) -> str:
        codes = " ".join(f"{code}x{count}" for code, count in sorted(self.statuses.items()))
        text = f"{self.requests:5d} requests  {self.seconds:6.1f}s  [{codes}]"
        if self.failures:
            text += f"  FAILURES: {self.failures}"
        if self.skipped:
            text += f"  (time budget: {self.skipped} cases not sent)"
        if self.error:
            text += f"  ERROR: {self.error}"
        return text


REPEATED = re.compile(r"(.)\1{31,}", re.DOTALL)


def preview(text: str, limit: int = MAX_SHOWN) -> str:
    """``text`` with long runs of one character abbreviated, and at most ``limit`` long."""
    text = REPEATED.sub(lambda run: f"{run[1] * 3}...[{len(run[0])} x {run[1]!r}]", text)
    if len(text) > limit:
        text = f"{text[:limit]}... ({len(text) - limit} more characters)"
    return text


def indent(text: str, width: int = 2) -> str:
    return textwrap.indent(text, " " * width)


def root_exception(server_log: str) -> str:
    """The exception line of the first traceback in ``server_log`` (its root cause)."""
    in_traceback = False
    for line in server_log.splitlines():
        if line.startswith("Traceback (most recent call last):"):
            in_traceback = True
        elif in_traceback and line and not line[0].isspace():
            return line.strip()
    return ""


UVICORN_TRACEBACK = "ERROR:    Exception in ASGI application"


def condense_traceback(server_log: str) -> str:
    """``server_log`` with the traceback frames outside calnotify's own code left out.

    uvicorn logs the traceback of an error the app already logged a second time; that copy
    is left out too.
    """
    lines: list[str] = []
    keep = True
    skipped = 0
    for line in server_log.splitlines():
        if line.startswith(UVICORN_TRACEBACK) and any(
            text.startswith("Traceback") for text in lines
        ):
            lines.append(f"{line} (the same traceback again)")
            break
        if line.startswith("  File "):
            keep = "/calnotify/" in line
        elif not line.startswith("    "):
            keep = True
        if not keep:
            skipped += line.startswith("  File ")
            continue
        if skipped:
            lines.append(f"  ... ({skipped} frames of libraries)")
            skipped = 0
        lines.append(line)
    return "\n".join(lines)


# --- the drill ---------------------------------------------------------------------------------


class Drill:
    """Fuzzes the operations of one running server and collects what fails."""

    def __init__(
        self,
        server: Server,
        tenant: Tenant,
        *,
        examples: int,
        seed: int,
        deadline: float,
        artifacts: Path,
    ) -> None:
        self.server = server
        self.tenant = tenant
        self.examples = examples
        self.seed = seed
        self.deadline = deadline
        self.artifacts = artifacts
        self.api = Api(server.base_url, tenant)
        self.session = requests.Session()
        self.stats: list[OperationStats] = []
        self.findings: dict[tuple[str, ...], Finding] = {}
        self.stopped_early = False

    def close(self) -> None:
        self.api.close()
        self.session.close()

    def load_operations(self, only: list[str]) -> list[AnyOperation]:
        """The operations of the server's own ``/openapi.json`` (those matching ``only``)."""
        config = schemathesis.Config.from_dict(
            {
                "seed": self.seed,
                "headers": {"Version": VERSION},
                "suppress-health-check": ["all"],
                "generation": {
                    "mode": "all",  # positive and negative (invalid-data) cases
                    "max-examples": self.examples,
                    "deterministic": True,
                    "database": "none",
                    # The token is sent with every request, never generated.
                    "with-security-parameters": False,
                },
                "phases": {
                    "examples": {"enabled": True},
                    "coverage": {"enabled": True},
                    "fuzzing": {"enabled": True},
                    "stateful": {"enabled": False},
                },
                "checks": {
                    "enabled": False,
                    "not_a_server_error": {"enabled": True},
                    "response_schema_conformance": {"enabled": True},
                },
            }
        )
        schema = schemathesis.openapi.from_url(
            f"{self.server.base_url}/openapi.json", config=config, timeout=REQUEST_TIMEOUT
        )
        operations: list[AnyOperation] = []
        for result in schema.get_all_operations():
            if not isinstance(result, Ok):
                raise DrillError(f"the server's OpenAPI document is invalid: {result.err()}")
            operation = result.ok()
            if not only or any(text in operation.label for text in only):
                operations.append(operation)
        return operations

    def run(self, operations: list[AnyOperation]) -> None:
        for index, operation in enumerate(operations):
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                self.stopped_early = True
                log(f"time budget spent: {len(operations) - index} operations not tested")
                break
            # A slow operation may take a few times its share, never the whole budget.
            share = max(30.0, 4 * remaining / (len(operations) - index))
            deadline = min(self.deadline, time.monotonic() + share)
            stats = OperationStats(label=operation.label)
            self.stats.append(stats)
            started = time.monotonic()
            try:
                self.run_operation(operation, stats, deadline, serial=index)
            except TimeUp:
                stats.error = "interrupted by the hard time limit"
                raise
            finally:
                stats.seconds = time.monotonic() - started
                log(f"[{index + 1:2d}/{len(operations)}] {operation.label:62s} {stats.line()}")
            if not self.server.is_running():
                raise DrillError(f"calnotify serve exited:\n{self.server.log_tail(60)}")

    def run_operation(
        self, operation: AnyOperation, stats: OperationStats, deadline: float, *, serial: int
    ) -> None:
        """Fresh records, then every generated case of ``operation`` until ``deadline``."""
        real = self.api.create_records(serial)
        rnd = random.Random(f"{self.seed}:{operation.label}")
        timeout = STREAM_TIMEOUT if operation.label == STREAM_OPERATION else REQUEST_TIMEOUT

        def run_case(case: AnyCase) -> None:
            if time.monotonic() > deadline:
                stats.skipped += 1
                return
            try:
                use_real_values(case, real, rnd)
                self.send(case, stats, timeout)
            except Exception as exc:  # a bug of the drill: report it, never let Hypothesis shrink
                stats.error = stats.error or f"{type(exc).__name__}: {exc}"

        config = operation.schema.config
        test = create_test(
            operation=operation,
            test_func=run_case,
            config=HypothesisTestConfig(
                project=config,
                modes=[
                    HypothesisTestMode.EXAMPLES,
                    HypothesisTestMode.COVERAGE,
                    HypothesisTestMode.FUZZING,
                ],
                settings=config.get_hypothesis_settings(
                    operation=operation, phase="fuzzing", apply_ci_profile=False
                ),
                explicit_setting_names=config.explicit_hypothesis_settings(
                    operation=operation, phase="fuzzing"
                ),
                apply_ci_profile=False,
                seed=derive_operation_seed(self.seed, operation.label),
                override=with_config_headers(config, operation=operation),
            ),
        )
        try:
            test()
        except Exception as exc:
            first_line = next(iter(str(exc).strip().splitlines()), "")
            stats.error = f"{type(exc).__name__}: {first_line}"

    def send(self, case: AnyCase, stats: OperationStats, timeout: float) -> None:
        """Send ``case``, run the checks on its response and record what fails."""
        label = case.operation.label
        offset = self.server.log_size()
        stats.requests += 1
        try:
            response = case.call(
                base_url=self.server.base_url,
                session=self.session,
                # Version too: over the coverage cases that drop or change the header.
                headers={"Authorization": f"Bearer {self.tenant.token}", "Version": VERSION},
                timeout=timeout,
            )
        except requests.RequestException as exc:
            stats.failures += 1
            prepared = exc.request if isinstance(exc.request, requests.PreparedRequest) else None
            self.record(
                key=(label, "network", type(exc).__name__),
                operation=label,
                title=f"no response ({type(exc).__name__})",
                check="network",
                message=str(exc),
                request=SentRequest.from_prepared(prepared) if prepared else None,
                response=None,
                server_log=self.server.log_since(offset),
            )
            return
        stats.statuses[response.status_code] += 1
        try:
            case.validate_response(response, checks=CHECKS)
        except FailureGroup as group:
            stats.failures += 1
            server_log = self.server.log_since(offset) if response.status_code >= 500 else ""
            cause = root_exception(server_log)
            for failure in group.exceptions:
                title = f"{failure.title} ({response.status_code})"
                if isinstance(failure, ServerError):
                    key: tuple[str, ...] = (label, "5xx", str(response.status_code), cause)
                    title += f": {cause}" if cause else ""
                elif isinstance(failure, JsonSchemaError):
                    schema_path = "/".join(map(str, failure.schema_path))
                    key = (label, "schema", str(response.status_code), schema_path)
                else:
                    key = (label, type(failure).__name__, failure.title)
                self.record(
                    key=key,
                    operation=label,
                    title=title,
                    check=next(iter(type(failure).checks), type(failure).__name__),
                    message=failure.message,
                    request=SentRequest.from_prepared(response.request),
                    response=response,
                    server_log=server_log,
                )

    def record(
        self,
        *,
        key: tuple[str, ...],
        operation: str,
        title: str,
        check: str,
        message: str,
        request: SentRequest | None,
        response: schemathesis.Response | None,
        server_log: str,
    ) -> None:
        known = self.findings.get(key)
        if known is not None:
            known.count += 1
            return
        number = len(self.findings) + 1
        body_file = None
        if request is not None and request.body is not None:
            body_file = self.artifacts / f"failure-{number}.body"
            body_file.write_bytes(request.body)
        finding = Finding(
            number=number,
            operation=operation,
            title=title,
            check=check,
            message=message,
            request=request,
            body_file=body_file,
            status=response.status_code if response is not None else None,
            content_type=(", ".join(response.headers.get("content-type", [])) if response else ""),
            response_body=(
                response.content.decode("utf-8", errors="replace") if response is not None else ""
            ),
            server_log=server_log,
        )
        self.findings[key] = finding
        log(f"  !! FAILURE {number}: {operation}: {title}")

    def report(self, *, started: float, database: str) -> bool:
        """Print the summary and write each finding in full; whether the run was clean."""
        tested = [stats for stats in self.stats if stats.requests]
        statuses: Counter[int] = Counter()
        for stats in self.stats:
            statuses.update(stats.statuses)
        errors = [stats for stats in self.stats if stats.error]
        cut_short = self.stopped_early or any(stats.skipped for stats in self.stats)
        log("")
        log("=" * 100)
        log(f"SUMMARY: {database}, {time.monotonic() - started:.0f}s")
        log(f"operations tested: {len(tested)} of {len(self.stats)} run")
        log(f"requests sent:     {sum(stats.requests for stats in self.stats)}")
        log("status codes:      " + ", ".join(f"{c}: {n}" for c, n in sorted(statuses.items())))
        if cut_short:
            log("time budget:       reached; the run was cut short")
        no_success = [
            stats.label for stats in tested if not any(200 <= c < 300 for c in stats.statuses)
        ]
        if no_success:
            log("never answered 2xx (no generated request got that far):")
            for label in no_success:
                log(f"  {label}")
        for stats in errors:
            log(f"could not test {stats.label}: {stats.error}")
        log(f"failures:          {len(self.findings)} distinct")
        for finding in self.findings.values():
            times = f" ({finding.count} requests)" if finding.count > 1 else ""
            log(f"  {finding.number}. {finding.operation}: {finding.title}{times}")
        if self.findings:
            log(
                f"In the curl lines BASE is the server ({self.server.base_url}, gone after the "
                "run), TOKEN a token with every scope; ids name records of the run's database."
            )
        for finding in self.findings.values():
            log("")
            log("-" * 100)
            log(finding.render(full=False))
            report_file = self.artifacts / f"failure-{finding.number}.txt"
            report_file.write_text(finding.render(full=True) + "\n", encoding="utf-8")
            log(f"(in full: {report_file})")
        if any(finding.status and finding.status >= 500 for finding in self.findings.values()):
            log("")
            log("-" * 100)
            log(f"server log tail ({self.server.log_path}):")
            log(self.server.log_tail(40))
        return not self.findings and not errors and not self.stopped_early


# --- command line ------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Fuzz calnotify's own OpenAPI document (every route) against a fresh "
        "`calnotify serve` and report every 5xx and response-schema violation.",
    )
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument(
        "--examples",
        type=int,
        default=DEFAULT_EXAMPLES,
        metavar="N",
        help=f"fuzzed examples per operation (default {DEFAULT_EXAMPLES}); the examples and "
        "coverage phases add their own cases",
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="generation seed")
    parser.add_argument(
        "--time-budget",
        type=float,
        default=DEFAULT_TIME_BUDGET,
        metavar="SECONDS",
        help=f"stop after this long, whatever is left (default {DEFAULT_TIME_BUDGET:.0f})",
    )
    parser.add_argument(
        "--pg-url",
        default=DEFAULT_PG_URL,
        help=f"PostgreSQL server to create the scratch database on (default {DEFAULT_PG_URL})",
    )
    parser.add_argument(
        "--operation",
        action="append",
        default=[],
        metavar="TEXT",
        help="only operations whose label ('POST /calendars') contains TEXT (repeatable)",
    )
    args = parser.parse_args(argv)
    if args.examples < 1:
        parser.error("--examples must be at least 1")
    if args.time_budget < 60:
        parser.error("--time-budget must be at least 60 seconds")
    return args


def fail(message: str) -> NoReturn:
    print(f"fuzz_openapi: {message}", file=sys.stderr, flush=True)
    raise SystemExit(1)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    log(
        f"fuzz_openapi: {args.database}, {args.examples} fuzzed examples per operation, "
        f"seed {args.seed}, time budget {args.time_budget:.0f}s"
    )
    # No operation starts after the soft deadline; the watchdog interrupts whatever still runs.
    deadline = started + args.time_budget - CLEANUP_RESERVE
    arm_watchdog(args.time_budget - HARD_STOP_RESERVE)
    # The server log, the SQLite file and the failing requests; kept when something failed.
    workdir = Path(tempfile.mkdtemp(prefix="calnotify-fuzz-"))
    clean = False
    try:
        with contextlib.ExitStack() as stack:
            database_url = stack.enter_context(fresh_database(args.database, args.pg_url, workdir))
            server = stack.enter_context(run_server(database_url, workdir / "server.log"))
            tenant = create_tenant(database_url)
            log(f"tenant: location {tenant.location_id}, users {tenant.admin_id} {tenant.user_id}")
            drill = Drill(
                server,
                tenant,
                examples=args.examples,
                seed=args.seed,
                deadline=deadline,
                artifacts=workdir,
            )
            stack.callback(drill.close)
            operations = drill.load_operations(args.operation)
            if not operations:
                fail("no operation matches --operation")
            log(f"{len(operations)} operations in {server.base_url}/openapi.json")
            try:
                drill.run(operations)
            except DrillError as exc:
                log(f"drill stopped: {exc}")
                drill.stopped_early = True
            except TimeUp:
                log("drill stopped: hard time limit reached")
                drill.stopped_early = True
            arm_watchdog(0)
            clean = drill.report(started=started, database=args.database)
    except DrillError as exc:
        fail(str(exc))
    except TimeUp:
        fail("the time budget ran out before fuzzing started")
    finally:
        arm_watchdog(0)
        if clean:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log(f"server log and failing requests kept in {workdir}")
    log(f"result: {'OK, no failures' if clean else 'FAILED'} ({time.monotonic() - started:.0f}s)")
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
