"""HighLevel's official Node SDK, ``@gohighlevel/api-client``, against ``calnotify serve``.

The SDK is configured with nothing but a private integration token and the base URL; it
sends its own default ``Version`` header (``2023-02-21``). One Node process runs the whole
scenario and prints what it got back as JSON; this test checks those answers and then the
server's state over plain HTTP.

The SDK is npm-installed once per pinned version into a cache outside the repository
(``$XDG_CACHE_HOME/calnotify-tests/node-sdk/<version>``, else ``~/.cache/…``) and reused.
Without node/npm the test is skipped; when npm cannot install the SDK it is skipped too,
except under CI (``CI`` set), where that is a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.processes import Server, calnotify
from tests.spec import assert_conforms

SDK_PACKAGE = "@gohighlevel/api-client"
SDK_VERSION = "3.1.0"  # pinned: the version this test was written against
NODE_VERSION = "2023-02-21"  # what the SDK sends when no apiVersion is configured
MIN_NODE_MAJOR = 18  # the SDK's "engines"


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "calnotify-tests" / "node-sdk" / SDK_VERSION


def installed_version(root: Path) -> str | None:
    manifest = root / "node_modules" / "@gohighlevel" / "api-client" / "package.json"
    try:
        version: str = json.loads(manifest.read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None
    return version


def npm_problem(output: str) -> str:
    """The first line of npm's complaint, for the skip or failure message."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    first = next((line for line in lines if line.startswith(("npm error", "npm ERR!"))), None)
    return first or (lines[0] if lines else "npm failed without a message")


def install_sdk() -> Path:
    """The folder whose node_modules holds the pinned SDK, installing it when needed."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node/npm not found: Node SDK test skipped")
    version = subprocess.run(
        [node, "--version"], capture_output=True, text=True, timeout=30, check=False
    ).stdout.strip()
    major = version.lstrip("v").split(".")[0]
    if not major.isdigit() or int(major) < MIN_NODE_MAJOR:
        pytest.skip(f"node {version or '?'} is older than {MIN_NODE_MAJOR}: Node SDK test skipped")

    target = cache_dir()
    if installed_version(target) == SDK_VERSION:
        return target
    # Install beside the target and move it into place, so an interrupted or concurrent
    # install never leaves a half-filled cache behind.
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{SDK_VERSION}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        (staging / "package.json").write_text(
            json.dumps(
                {
                    "name": "calnotify-node-sdk-test",
                    "private": True,
                    "dependencies": {SDK_PACKAGE: SDK_VERSION},
                }
            )
        )
        result = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=staging,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if result.returncode != 0 or installed_version(staging) != SDK_VERSION:
            problem = npm_problem(result.stderr or result.stdout)
            message = f"npm could not install {SDK_PACKAGE}@{SDK_VERSION}: {problem}"
            if os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)
        if target.exists():
            shutil.rmtree(target, ignore_errors=True)  # a stale or broken install
        try:
            staging.rename(target)
        except OSError:
            if installed_version(target) != SDK_VERSION:  # not another run's install either
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


@pytest.fixture(scope="module")
def node_sdk() -> Path:
    return install_sdk()


# Everything the SDK is told: its token, and where the API is. The SDK has one base URL for
# every service (HighLevel.BASE_URL, https://services.leadconnectorhq.com), read when a
# client is constructed, so it is set before constructing one.
SCRIPT = r"""
const path = require("path");
const sdk = require(path.join(process.env.SDK_DIR, "node_modules", "@gohighlevel", "api-client"));
const { HighLevel } = sdk;

HighLevel.BASE_URL = process.env.CALNOTIFY_BASE_URL;
const ghl = new HighLevel({ privateIntegrationToken: process.env.CALNOTIFY_TOKEN });

const locationId = process.env.LOCATION_ID;
const userId = process.env.USER_ID;

async function failure(call) {
  try {
    await call();
    return { unexpected: "no error" };
  } catch (error) {
    return {
      name: error.name,
      code: error.code,
      statusCode: error.statusCode,
      message: error.message,
      response: error.response,
      isGHLError: error instanceof sdk.GHLError,
    };
  }
}

async function main() {
  const out = { apiVersion: ghl.getConfig().apiVersion };
  const calendar = await ghl.calendars.createCalendar({
    locationId,
    name: "Cleanings",
    slotDuration: 45,
    teamMembers: [{ userId, isPrimary: true }],
  });
  out.calendar = calendar;
  const calendarId = calendar.calendar.id;

  out.created = await ghl.calendars.createEventNotification({ calendarId }, [
    {
      receiverType: "contact",
      channel: "email",
      notificationType: "booked",
      subject: "See you, {{contact.first_name}}",
      body: "Booked for {{appointment.start_time}}",
    },
    {
      receiverType: "contact",
      channel: "email",
      notificationType: "reschedule",
      subject: "Moved",
    },
    {
      receiverType: "contact",
      channel: "email",
      notificationType: "reminder",
      beforeTime: [{ timeOffset: 1, unit: "hours" }],
    },
    {
      receiverType: "business",
      channel: "inApp",
      notificationType: "cancellation",
      selectedUsers: [userId],
    },
  ]);
  const [booked, reschedule, reminder, cancellation] = out.created.map((n) => n._id);

  out.page = await ghl.calendars.getEventNotification({
    calendarId, isActive: true, deleted: false, limit: 2, skip: 1,
  });
  out.updated = await ghl.calendars.updateEventNotification(
    { calendarId, notificationId: reschedule },
    { subject: "Moved to {{appointment.start_time}}", fromName: "Acme" },
  );
  out.found = await ghl.calendars.findEventNotification({ calendarId, notificationId: reschedule });
  out.deactivated = await ghl.calendars.updateEventNotification(
    { calendarId, notificationId: cancellation }, { isActive: false },
  );
  out.inactive = await ghl.calendars.getEventNotification({ calendarId, isActive: false });
  out.deleted = await ghl.calendars.deleteEventNotification({
    calendarId, notificationId: cancellation,
  });
  out.remaining = await ghl.calendars.getEventNotification({ calendarId });
  out.gone = await ghl.calendars.getEventNotification({ calendarId, deleted: true });
  out.deletedOne = await ghl.calendars.findEventNotification({
    calendarId, notificationId: cancellation,
  });

  const contact = await ghl.contacts.createContact({
    locationId, firstName: "Rosa", lastName: "Diaz", email: "rosa@example.com",
  });
  out.contact = contact;
  out.appointment = await ghl.calendars.createAppointment({
    calendarId,
    locationId,
    contactId: contact.contact.id,
    startTime: "2030-05-06T14:00:00Z",
    title: "Cleaning",
  });
  const eventId = out.appointment.id;
  out.rescheduled = await ghl.calendars.editAppointment(
    { eventId }, { startTime: "2030-05-07T15:00:00Z" },
  );
  out.event = await ghl.calendars.getAppointment({ eventId });

  out.invalid = await failure(() => ghl.calendars.createEventNotification({ calendarId }, [
    { receiverType: "guest", channel: "sms", notificationType: "booked" },
  ]));
  out.missing = await failure(() => ghl.calendars.findEventNotification({
    calendarId, notificationId: "AAAAAAAAAAAAAAAAAAAA",
  }));
  return out;
}

main().then(
  (out) => { process.stdout.write(JSON.stringify(out)); },
  (error) => {
    process.stdout.write(JSON.stringify({
      fatal: String(error && error.message),
      statusCode: error && error.statusCode,
      response: error && error.response,
    }));
    process.exitCode = 1;
  },
);
"""


def run_script(sdk_dir: Path, folder: Path, env: dict[str, str]) -> dict[str, Any]:
    script = folder / "node_sdk_scenario.js"
    script.write_text(SCRIPT)
    node = shutil.which("node")
    assert node is not None
    result = subprocess.run(
        [node, str(script)],
        env={**os.environ, **env, "SDK_DIR": str(sdk_dir)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    out: dict[str, Any] = json.loads(result.stdout)
    return out


def test_node_sdk_against_calnotify_serve(node_sdk: Path, server: Server, tmp_path: Path) -> None:
    location = calnotify(
        server.database_url,
        "locations",
        "create",
        "--name",
        "Acme Dental",
        "--timezone",
        "America/Chicago",
    )
    user = calnotify(
        server.database_url,
        "users",
        "create",
        "--location",
        str(location["id"]),
        "--email",
        "ann@example.com",
        "--first-name",
        "Ann",
        "--role",
        "admin",
    )
    token = str(
        calnotify(server.database_url, "tokens", "create", "--location", str(location["id"]))[
            "token"
        ]
    )

    out = run_script(
        node_sdk,
        tmp_path,
        {
            "CALNOTIFY_BASE_URL": server.base_url,
            "CALNOTIFY_TOKEN": token,
            "LOCATION_ID": str(location["id"]),
            "USER_ID": str(user["id"]),
        },
    )

    assert out["apiVersion"] == NODE_VERSION  # the SDK's own default, not configured
    calendar_id = out["calendar"]["calendar"]["id"]
    assert out["calendar"]["calendar"]["slotDuration"] == 45

    created = out["created"]
    assert [n["notificationType"] for n in created] == [
        "booked",
        "reschedule",
        "reminder",
        "cancellation",
    ]
    booked, reschedule, reminder, cancellation = (n["_id"] for n in created)
    assert all(n["calendarId"] == calendar_id and n["isActive"] for n in created)
    assert created[2]["beforeTime"] == [{"timeOffset": 1, "unit": "hours"}]
    assert created[3]["selectedUsers"] == [user["id"]]

    assert [n["_id"] for n in out["page"]] == [reschedule, reminder]
    assert out["updated"] == {"message": "Notification updated successfully"}
    assert out["found"]["_id"] == reschedule
    assert out["found"]["subject"] == "Moved to {{appointment.start_time}}"
    assert out["found"]["fromName"] == "Acme"
    assert out["deactivated"] == {"message": "Notification updated successfully"}
    assert [n["_id"] for n in out["inactive"]] == [cancellation]
    assert out["deleted"] == {"message": "Notification deleted successfully"}
    assert [n["_id"] for n in out["remaining"]] == [booked, reschedule, reminder]
    assert [n["_id"] for n in out["gone"]] == [cancellation]
    assert out["deletedOne"]["deleted"] is True

    contact_id = out["contact"]["contact"]["id"]
    appointment = out["appointment"]
    assert appointment["startTime"] == "2030-05-06T09:00:00-05:00"
    assert appointment["endTime"] == "2030-05-06T09:45:00-05:00"  # the calendar's 45 minutes
    assert appointment["assignedUserId"] == user["id"]
    event_id = appointment["id"]
    assert out["rescheduled"]["startTime"] == "2030-05-07T10:00:00-05:00"
    assert out["rescheduled"]["endTime"] == "2030-05-07T10:45:00-05:00"
    assert out["event"]["event"]["id"] == event_id
    assert out["event"]["event"]["contactId"] == contact_id

    invalid = out["invalid"]
    assert invalid["isGHLError"] is True
    assert (invalid["statusCode"], invalid["code"]) == (400, "VALIDATION")
    assert invalid["response"]["statusCode"] == 400
    assert "[0].receiverType" in invalid["response"]["message"]
    missing = out["missing"]
    assert (missing["statusCode"], missing["code"]) == (404, "NOT_FOUND")

    # What the server holds now, over plain HTTP with the Node SDK's Version.
    headers = {"Authorization": f"Bearer {token}", "Version": NODE_VERSION}
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=10) as http:
        listed = http.get(f"/calendars/{calendar_id}/notifications", params={"deleted": "1"})
        assert [n["_id"] for n in listed.json()] == [cancellation]
        assert_conforms("get-event-notification", listed, "v3")
        stored = http.get(f"/calendars/events/appointments/{event_id}").json()["event"]
        assert stored["startTime"] == "2030-05-07T10:00:00-05:00"
        deliveries = http.get("/deliveries", params={"appointmentId": event_id}).json()
        by_type = {d["notificationType"]: d for d in deliveries["deliveries"]}
        assert set(by_type) == {"booked", "reschedule", "reminder"}
        assert by_type["booked"]["notificationId"] == booked
        assert by_type["reschedule"]["notificationId"] == reschedule
        assert all(d["recipient"] == "rosa@example.com" for d in by_type.values())
        # The reminder follows the appointment: one hour before its new start.
        assert by_type["reminder"]["notificationId"] == reminder
        assert by_type["reminder"]["dueAt"] == "2030-05-07T14:00:00.000Z"
        assert by_type["reminder"]["status"] == "scheduled"
