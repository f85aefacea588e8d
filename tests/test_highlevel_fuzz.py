"""Fuzz our server with HighLevel's own OpenAPI document (schemathesis).

The vendored ``calendars.json`` is HighLevel's published spec. Restricted to the five
"Calendar Notifications" operations and ``get-calendar``, schemathesis sends positive and
negative (invalid-data) requests in its examples, coverage and fuzzing phases to a live
uvicorn server, and checks that:

* no response is a 5xx;
* a response whose status code HighLevel documents matches HighLevel's response schema and
  content type (404 and 413 are ours only, so undocumented codes are not failures);
* every response is JSON.

Requests carry the tenant's token and ``Version: 2021-04-15``; path parameters are often
swapped for the tenant's real calendar id and real notification ids, so requests get past
the 404 and reach validation and the database.

The server runs in a thread with its own event loop and owns its own ``Database``: the
async engines are never shared between event loops.
"""

from __future__ import annotations

import itertools
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
import uvicorn
from hypothesis import strategies as st
from schemathesis import Case, CheckContext, HookContext, Response
from schemathesis.core.parameters import ParameterLocation
from schemathesis.generation.meta import TestPhase

from calnotify.app import create_app
from calnotify.config import Settings
from tests.factories import VERSION, Tenant, notification

AnyCase = Case[Any]

SPEC_DIR = Path(__file__).parent / "reference" / "highlevel-openapi"
COMMON_REF = "../common/common-schemas.json#/components/schemas/"
OPERATION_IDS = [
    "get-calendar",
    "get-event-notification",
    "create-event-notification",
    "find-event-notification",
    "update-event-notification",
    "delete-event-notification",
]
MAX_EXAMPLES = 40
SEED = 20210415

# Created before fuzzing each operation, so notificationId can name real notifications.
SEED_NOTIFICATIONS = [
    notification(),
    notification(
        channel="sms",
        notificationType="reminder",
        beforeTime=[{"timeOffset": 1, "unit": "hours"}],
    ),
    notification(
        receiverType="emails",
        notificationType="followup",
        additionalEmailIds=["front@example.com"],
        afterTime=[{"timeOffset": 2, "unit": "days"}],
    ),
    notification(receiverType="assignedUser", channel="inApp", notificationType="confirmation"),
    notification(channel="whatsapp", notificationType="cancellation"),
]


def load_highlevel_spec() -> dict[str, Any]:
    """``calendars.json`` with its ``../common/common-schemas.json`` refs made local."""
    spec: dict[str, Any] = json.loads((SPEC_DIR / "calendars.json").read_text())
    common = json.loads((SPEC_DIR / "common-schemas.json").read_text())
    schemas: dict[str, Any] = spec["components"]["schemas"]
    for name, schema in common["components"]["schemas"].items():
        assert name not in schemas or schemas[name] == schema, f"conflicting schema {name}"
        schemas[name] = schema

    def localize(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith(COMMON_REF):
                return {**node, "$ref": "#/components/schemas/" + ref.removeprefix(COMMON_REF)}
            return {key: localize(value) for key, value in node.items()}
        if isinstance(node, list):
            return [localize(item) for item in node]
        return node

    localized: dict[str, Any] = localize(spec)
    assert "../common/" not in json.dumps(localized)
    return localized


CONFIG = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        "headers": {"Version": VERSION},
        "generation": {
            "mode": "all",  # positive and negative (invalid-data) cases
            "max-examples": MAX_EXAMPLES,
            "deterministic": True,
            "database": "none",
            # The token is sent with every request, never generated: auth has its own tests.
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
            "content_type_conformance": {"enabled": True},
        },
    }
)
schema = schemathesis.openapi.from_dict(load_highlevel_spec(), config=CONFIG).include(
    operation_id=OPERATION_IDS
)


# Hooks run while tests are collected (explicit examples and coverage cases are built then),
# before any database exists: they pick *which* path parameters name real records through
# these placeholders, and the test resolves them to the ids of its own tenant.
# (URL-safe: schemathesis percent-encodes path parameters as it generates them.)
REAL_CALENDAR = "real-calendar-id"
REAL_NOTIFICATIONS = [f"real-notification-id-{i}" for i in range(len(SEED_NOTIFICATIONS))]


@dataclass(frozen=True)
class Target:
    """The live server of one test and the real ids behind the placeholders."""

    base_url: str
    token: str
    real_ids: dict[str, str]

    def resolve(self, path_parameters: dict[str, Any]) -> dict[str, Any]:
        return {name: self.real_ids.get(value, value) for name, value in path_parameters.items()}


@pytest.fixture
def live_server(settings: Settings) -> Iterator[str]:
    """Our app under uvicorn on 127.0.0.1 and a free port, in a background thread."""
    # No ``database`` argument: the app creates its own and disposes of it in its lifespan,
    # so every connection is opened and closed on the server thread's event loop.
    app = create_app(settings)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, lifespan="on", log_config=None, access_log=False, log_level="warning")
    )
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="uvicorn", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            pytest.fail("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()
        assert not thread.is_alive(), "uvicorn did not shut down"


@pytest.fixture
def target(live_server: str, tenant: Tenant) -> Target:
    response = httpx.post(
        f"{live_server}/calendars/{tenant.calendar_id}/notifications",
        json=SEED_NOTIFICATIONS,
        headers=tenant.headers(),
        timeout=10,
    )
    assert response.status_code == 200, response.text
    real_ids = {REAL_CALENDAR: tenant.calendar_id}
    for placeholder, created in zip(REAL_NOTIFICATIONS, response.json(), strict=True):
        real_ids[placeholder] = created["_id"]
    return Target(base_url=live_server, token=tenant.token, real_ids=real_ids)


@schema.hook
def flatmap_path_parameters(
    _context: HookContext, path_parameters: dict[str, Any]
) -> st.SearchStrategy[dict[str, Any]]:
    """Generated cases: the real calendar 3 times out of 4, a real notification 5 of 6."""
    choices: dict[str, st.SearchStrategy[Any]] = {}
    if "calendarId" in path_parameters:
        generated = path_parameters["calendarId"]
        choices["calendarId"] = st.sampled_from([REAL_CALENDAR] * 3 + [generated])
    if "notificationId" in path_parameters:
        generated = path_parameters["notificationId"]
        choices["notificationId"] = st.sampled_from([*REAL_NOTIFICATIONS, generated])
    return st.fixed_dictionaries(choices).map(lambda drawn: {**path_parameters, **drawn})


_coverage_notifications = itertools.cycle([*REAL_NOTIFICATIONS, None])


@schema.hook
def map_case(_context: HookContext, case: AnyCase) -> AnyCase:
    """Coverage: the cases that probe the body, query or headers get real path ids."""
    meta = case.meta
    if meta is None or meta.phase.name != TestPhase.COVERAGE:
        return case
    if meta.phase.data.parameter_location == ParameterLocation.PATH:
        return case
    path_parameters = dict(case.path_parameters)
    if "calendarId" in path_parameters:
        path_parameters["calendarId"] = REAL_CALENDAR
    if "notificationId" in path_parameters:
        real = next(_coverage_notifications)
        if real is not None:
            path_parameters["notificationId"] = real
    case.path_parameters = path_parameters
    return case


def json_responses(_ctx: CheckContext, response: Response, _case: AnyCase) -> None:
    """Every answer, documented status code or not (404, 405, 413...), is a JSON body."""
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type.split(";")[0].strip() == "application/json", (
        f"{response.status_code} answered with Content-Type {content_type!r}"
    )
    response.json()


@schema.parametrize()
# One server per operation and backend, shared by its examples on purpose.
@hypothesis.settings(suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture])
def test_highlevel_spec(case: AnyCase, target: Target) -> None:
    case.path_parameters = target.resolve(case.path_parameters)
    case.call_and_validate(
        base_url=target.base_url,
        headers={"Authorization": f"Bearer {target.token}"},
        additional_checks=[json_responses],
        timeout=10,
    )
