"""Outbound webhooks (docs/semantics.md §8, "Outbound webhooks"): endpoints per location
through the API and the command line, events written with the change that caused them,
sent signed per Standard Webhooks through the deliveries' lifecycle, verified here with the
scheme's reference algorithm, on both databases."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import pytest

from calnotify.channels.twilio import signature as twilio_signature
from calnotify.cli import main
from calnotify.clock import ManualClock
from calnotify.config import Settings, get_settings
from calnotify.db.engine import Database
from calnotify.hooks.channel import WebhookAdapter
from calnotify.hooks.urls import WebhookURLError, check_url
from tests.conftest import NOW
from tests.engine import Scenario, ScriptedProvider
from tests.factories import Tenant

URL = "https://hooks.example.com/calnotify?source=test"
PUBLIC_ADDRESS = "93.184.216.34"
START = NOW + timedelta(days=2)
ALL = ["AppointmentCreate", "AppointmentUpdate", "AppointmentDelete", "InboundMessage"]


# --- the Standard Webhooks reference verification ------------------------------------------


def verify(secret: str, headers: httpx.Headers, body: bytes) -> bool:
    """The scheme's verification, written from its specification: the secret's bytes are
    the base64 after ``whsec_``; the signature is base64(HMAC-SHA256(secret, "id.ts.body"));
    the header holds one or more space-separated ``v1,<sig>``."""
    key = base64.b64decode(secret.split("_", 1)[1])
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.{body.decode()}"
    expected = base64.b64encode(hmac.new(key, signed.encode(), hashlib.sha256).digest()).decode()
    for candidate in headers["webhook-signature"].split(" "):
        version, _, given = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(given, expected):
            return True
    return False


# --- an endpoint double --------------------------------------------------------------------


@dataclass
class Receiver:
    """What the endpoints were sent; each answers the next scripted answer (default 200):
    a status, "hang", or an exception to raise."""

    answers: list[Any] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if self.answers else 200
        if answer == "hang":
            await asyncio.sleep(30)
        if isinstance(answer, BaseException):
            raise answer
        # A garbage body: never read, never a problem.
        return httpx.Response(answer, content=b"\x00\xff not json", headers={"retry-after": "1"})

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests]


@dataclass
class Hooks:
    scenario: Scenario
    receiver: Receiver
    addresses: dict[str, list[str]]

    async def add(self, tenant: Tenant | None = None, **body: Any) -> dict[str, Any]:
        tenant = tenant or self.scenario.tenant
        response = await self.scenario.client.post(
            f"/locations/{tenant.location_id}/webhooks",
            json={"url": URL, **body},
            headers=tenant.headers(),
        )
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    async def webhooks(self) -> list[dict[str, Any]]:
        found = await self.scenario.deliveries(channel="webhook")
        assert all(d["channel"] == "webhook" and d["notificationId"] == "" for d in found)
        return found


def adapter(settings: Settings, db: Database, clock: ManualClock, hooks: Hooks) -> WebhookAdapter:
    async def resolver(host: str, port: int) -> list[str]:
        return hooks.addresses.get(host, [PUBLIC_ADDRESS])

    transport = httpx.MockTransport(hooks.receiver.handle)
    return WebhookAdapter(settings, db, clock, transport=transport, resolver=resolver)


@pytest.fixture
async def hooks(scenario: Scenario, settings: Settings) -> AsyncIterator[Hooks]:
    found = Hooks(scenario, Receiver(), {})
    channels = scenario.dispatcher.channels
    await channels["webhook"].close()
    channels["webhook"] = adapter(settings, scenario.db, scenario.clock, found)
    yield found
    await channels["webhook"].close()


async def contact(scenario: Scenario) -> str:
    return await scenario.tenant.add_contact()


# --- the API -------------------------------------------------------------------------------


async def test_add_list_and_remove_through_the_api(hooks: Hooks) -> None:
    client, tenant = hooks.scenario.client, hooks.scenario.tenant
    created = await hooks.add()
    assert created["url"] == URL and created["events"] == ALL
    assert created["locationId"] == tenant.location_id and created["disabled"] is False
    secret = created["secret"]
    assert secret.startswith("whsec_") and 24 <= len(base64.b64decode(secret[6:])) <= 64
    only = await hooks.add(events=["AppointmentDelete", "AppointmentCreate"])
    assert only["events"] == ["AppointmentCreate", "AppointmentDelete"]

    path = f"/locations/{tenant.location_id}/webhooks"
    listed = (await client.get(path, headers=tenant.headers())).json()["webhooks"]
    assert [w["id"] for w in listed] == [created["id"], only["id"]]
    assert all("secret" not in w for w in listed)  # shown once

    removed = await client.delete(f"{path}/{created['id']}", headers=tenant.headers())
    assert removed.status_code == 200 and removed.json() == {"succeeded": True}
    again = await client.delete(f"{path}/{created['id']}", headers=tenant.headers())
    assert again.status_code == 404
    listed = (await client.get(path, headers=tenant.headers())).json()["webhooks"]
    assert [w["id"] for w in listed] == [only["id"]]


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://hooks.example.com/x", "must use https"),
        ("ftp://hooks.example.com/x", "https:// URL"),
        ("https://user:pw@hooks.example.com/x", "user name or password"),
        ("https://hooks.example.com/" + "a" * 400, "at most 320"),
        ("https://10.1.2.3/x", "public address"),
        ("https://169.254.169.254/latest/meta-data", "public address"),
        ("https://[::1]/x", "public address"),
        ("http://localhost:8080/x", "public address"),
        ("https://hooks.example.com:99999/x", "not a valid URL"),
        ("https:///x", "https:// URL"),
        ("https://hooks.example.com/a b", "spaces"),
        ("https://bücher.example/x", "IDNA"),
    ],
)
async def test_bad_urls_are_a_400_naming_url(hooks: Hooks, url: str, says: str) -> None:
    tenant = hooks.scenario.tenant
    response = await hooks.scenario.client.post(
        f"/locations/{tenant.location_id}/webhooks", json={"url": url}, headers=tenant.headers()
    )
    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["field"] == "url"
    assert says in response.json()["message"]


def test_private_addresses_and_http_to_localhost_when_the_deployment_allows_them() -> None:
    assert check_url("http://localhost:8080/x", allow_private=True) == "http://localhost:8080/x"
    assert check_url("https://10.1.2.3/x", allow_private=True) == "https://10.1.2.3/x"
    with pytest.raises(WebhookURLError, match="https"):
        check_url("http://10.1.2.3/x", allow_private=True)  # http: only to this machine


async def test_bad_bodies_scopes_and_other_locations(hooks: Hooks, other_tenant: Tenant) -> None:
    client, tenant = hooks.scenario.client, hooks.scenario.tenant
    path = f"/locations/{tenant.location_id}/webhooks"
    unknown = await client.post(
        path, json={"url": URL, "events": ["AppointmentMoved"]}, headers=tenant.headers()
    )
    assert unknown.status_code == 400 and "AppointmentMoved" in unknown.json()["message"]
    wrong = await client.post(path, json={"url": 5}, headers=tenant.headers())
    assert wrong.status_code == 400

    reader = await tenant.token_with("locations.readonly")
    refused = await client.post(path, json={"url": URL}, headers=tenant.headers(reader))
    assert refused.status_code == 401 and refused.json()["scope"] == "locations.write"
    assert (await client.get(path, headers=tenant.headers(reader))).status_code == 200
    nothing = await tenant.token_with("calendars.readonly")
    assert (await client.get(path, headers=tenant.headers(nothing))).status_code == 401

    theirs = await hooks.add(other_tenant)
    foreign = f"/locations/{other_tenant.location_id}/webhooks"
    assert (await client.get(foreign, headers=tenant.headers())).status_code == 403
    gone = await client.delete(f"{path}/{theirs['id']}", headers=tenant.headers())
    assert gone.status_code == 404  # another location's webhook is one that does not exist
    listed = await client.get(foreign, headers=other_tenant.headers())
    assert [w["id"] for w in listed.json()["webhooks"]] == [theirs["id"]]


# --- events and their sending --------------------------------------------------------------


async def test_appointment_events_are_sent_signed_in_highlevels_shape(hooks: Hooks) -> None:
    scenario = hooks.scenario
    secret = (await hooks.add())["secret"]
    booked = await scenario.book(await contact(scenario), START, title="Cleaning")
    await scenario.change(booked["id"], appointmentStatus="confirmed")
    await scenario.delete(booked["id"])
    # Nothing was sent yet: a later change takes no earlier event back.
    await scenario.run_at(NOW)

    requests = hooks.receiver.requests
    assert len({r.headers["webhook-id"] for r in requests}) == len(requests) == 3
    bodies = sorted(hooks.receiver.bodies(), key=lambda b: ALL.index(b["type"]))
    assert [b["type"] for b in bodies] == ALL[:3]
    for request in requests:
        assert verify(secret, request.headers, request.content)
        assert request.headers["host"] == "hooks.example.com"
        assert request.url.host == PUBLIC_ADDRESS  # the address that was checked
        assert request.url.path == "/calnotify" and request.url.params["source"] == "test"
        assert request.headers["content-type"] == "application/json"
        assert abs(int(request.headers["webhook-timestamp"]) - NOW.timestamp()) < 5
    created, updated, deleted = bodies
    assert created["locationId"] == scenario.tenant.location_id
    assert created["timestamp"].endswith("Z")
    shape = created["appointment"]
    assert shape["id"] == booked["id"] and shape["title"] == "Cleaning"
    assert shape["calendarId"] == scenario.tenant.calendar_id
    assert shape["startTime"] == booked["startTime"]
    assert shape["appointmentStatus"] == "new"
    assert updated["appointment"]["appointmentStatus"] == "confirmed"
    assert deleted["appointment"]["id"] == booked["id"]

    webhooks = await hooks.webhooks()
    assert {(d["status"], d["attempts"], d["recipient"]) for d in webhooks} == {("sent", 1, URL)}
    assert {d["id"] for d in webhooks} == {r.headers["webhook-id"] for r in requests}
    assert {d["appointmentId"] for d in webhooks} == {booked["id"]}


async def test_a_rotated_secret_signs_with_both_for_a_day(
    hooks: Hooks, other_tenant: Tenant
) -> None:
    scenario = hooks.scenario
    created = await hooks.add()
    path = f"/locations/{scenario.tenant.location_id}/webhooks/{created['id']}/rotate"
    foreign = f"/locations/{other_tenant.location_id}/webhooks/{created['id']}/rotate"
    assert (await scenario.client.post(foreign, headers=other_tenant.headers())).status_code == 404
    reader = await scenario.tenant.token_with("locations.readonly")
    refused = await scenario.client.post(path, headers=scenario.tenant.headers(reader))
    assert refused.status_code == 401
    rotated = await scenario.client.post(path, headers=scenario.headers)
    assert rotated.status_code == 200, rotated.text
    new, old = rotated.json()["secret"], created["secret"]
    assert new.startswith("whsec_") and new != old
    assert rotated.json()["previousSecretUntil"].startswith("2030-01-02T")  # NOW + 24 h
    listed = (await scenario.client.get(path.rsplit("/", 2)[0], headers=scenario.headers)).json()
    assert all("secret" not in w for w in listed["webhooks"])

    booked = await scenario.book(await contact(scenario), START)
    await scenario.run_at(NOW + timedelta(hours=23))
    [during] = hooks.receiver.requests
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    assert verify(new, during.headers, during.content)
    assert verify(old, during.headers, during.content)  # a receiver not switched yet

    await scenario.change(booked["id"], title="After the grace period")
    await scenario.run_at(NOW + timedelta(hours=24, minutes=1))
    [_, after] = hooks.receiver.requests
    assert verify(new, after.headers, after.content)
    assert not verify(old, after.headers, after.content)
    unknown = path.replace(created["id"], "nosuchwebhook0000000")
    assert (await scenario.client.post(unknown, headers=scenario.headers)).status_code == 404


async def test_an_endpoint_gets_only_the_events_it_asked_for(hooks: Hooks) -> None:
    scenario = hooks.scenario
    await hooks.add(events=["AppointmentDelete"])
    booked = await scenario.book(await contact(scenario), START)
    await scenario.change(booked["id"], title="Moved")
    await scenario.run_at(NOW)
    assert hooks.receiver.requests == []
    await scenario.delete(booked["id"])
    await scenario.run_at(NOW)
    assert [b["type"] for b in hooks.receiver.bodies()] == ["AppointmentDelete"]


async def test_a_failing_endpoint_is_retried_with_the_same_id_and_attempts_recorded(
    hooks: Hooks,
) -> None:
    scenario = hooks.scenario
    secret = (await hooks.add())["secret"]
    hooks.receiver.answers = [503, httpx.ConnectError("refused")]
    await scenario.book(await contact(scenario), START)
    await scenario.run_at(NOW)
    [delivery] = await hooks.webhooks()
    assert (delivery["status"], delivery["reason"]) == ("scheduled", "retrying")
    assert "503" in delivery["lastError"]
    await scenario.run_at(NOW + timedelta(minutes=1))
    await scenario.run_at(NOW + timedelta(minutes=5))
    [delivery] = await hooks.webhooks()
    assert delivery["status"] == "sent" and delivery["attempts"] == 3
    ids = {r.headers["webhook-id"] for r in hooks.receiver.requests}
    assert ids == {delivery["id"]} and len(hooks.receiver.requests) == 3
    assert all(verify(secret, r.headers, r.content) for r in hooks.receiver.requests)
    detail = await scenario.client.get(f"/deliveries/{delivery['id']}", headers=scenario.headers)
    outcomes = [a["outcome"] for a in detail.json()["attempts"]]
    assert outcomes == ["retry", "retry", "sent"]


async def test_a_client_error_fails_at_once(hooks: Hooks) -> None:
    scenario = hooks.scenario
    await hooks.add()
    hooks.receiver.answers = [400]
    await scenario.book(await contact(scenario), START)
    await scenario.run_at(NOW)
    await scenario.run_at(NOW + timedelta(hours=1))
    [delivery] = await hooks.webhooks()
    assert (delivery["status"], delivery["reason"], delivery["attempts"]) == (
        "failed",
        "permanent",
        1,
    )
    assert len(hooks.receiver.requests) == 1
    resent = await scenario.client.post(
        f"/deliveries/{delivery['id']}/resend", headers=scenario.headers
    )
    assert resent.status_code == 409
    assert "never resent by hand" in resent.json()["message"]


async def test_410_disables_the_endpoint(hooks: Hooks) -> None:
    scenario = hooks.scenario
    created = await hooks.add()
    hooks.receiver.answers = [410]
    booked = await scenario.book(await contact(scenario), START)
    await scenario.change(booked["id"], title="Second")  # pending when the 410 comes
    await scenario.run_at(NOW)
    await scenario.run_at(NOW + timedelta(minutes=1))
    outcomes = sorted((d["status"], d["reason"]) for d in await hooks.webhooks())
    assert ("failed", "permanent") in outcomes
    assert len(hooks.receiver.requests) <= 2
    path = f"/locations/{scenario.tenant.location_id}/webhooks"
    [shown] = (await scenario.client.get(path, headers=scenario.headers)).json()["webhooks"]
    assert shown["id"] == created["id"] and shown["disabled"] is True and shown["disabledAt"]
    sent = len(hooks.receiver.requests)
    await scenario.change(booked["id"], title="Third")
    await scenario.run_at(NOW + timedelta(minutes=2))
    assert len(hooks.receiver.requests) == sent  # nothing more to a disabled endpoint
    assert all(d["status"] != "scheduled" for d in await hooks.webhooks())


async def test_a_removed_endpoints_pending_webhooks_are_skipped(hooks: Hooks) -> None:
    scenario = hooks.scenario
    created = await hooks.add()
    await scenario.book(await contact(scenario), START)
    path = f"/locations/{scenario.tenant.location_id}/webhooks/{created['id']}"
    assert (await scenario.client.delete(path, headers=scenario.headers)).status_code == 200
    await scenario.run_at(NOW)
    assert hooks.receiver.requests == []
    [delivery] = await hooks.webhooks()
    assert (delivery["status"], delivery["reason"]) == ("skipped", "inactive")


async def test_a_name_resolving_to_a_private_address_is_never_called(hooks: Hooks) -> None:
    scenario = hooks.scenario
    await hooks.add()
    hooks.addresses["hooks.example.com"] = [PUBLIC_ADDRESS, "10.0.0.7"]  # DNS rebinding
    await scenario.book(await contact(scenario), START)
    await scenario.run_at(NOW)
    assert hooks.receiver.requests == []
    [delivery] = await hooks.webhooks()
    assert (delivery["status"], delivery["reason"]) == ("failed", "permanent")
    # Connection details are the operator's (docs/semantics.md §9).
    assert delivery["lastError"].startswith("the webhook endpoint could not be reached")


async def test_a_hanging_endpoint_holds_back_no_other_send(
    scenario: Scenario, settings: Settings, provider: ScriptedProvider
) -> None:
    quick = Settings(database_url=settings.database_url, webhook_timeout=0.2)
    found = Hooks(scenario, Receiver(answers=["hang", "hang"]), {})
    channels = scenario.dispatcher.channels
    await channels["webhook"].close()
    channels["webhook"] = adapter(quick, scenario.db, scenario.clock, found)
    try:
        await scenario.rules(
            {"receiverType": "contact", "channel": "email", "notificationType": "booked"}
        )
        await found.add()
        await scenario.book(await contact(scenario), START)
        started = asyncio.get_running_loop().time()
        await scenario.run_at(NOW)
        # Far below the 30 s the endpoint hangs (slack for a busy machine).
        assert asyncio.get_running_loop().time() - started < 15
        assert len(provider.sent) == 1  # the email went out meanwhile
        [delivery] = await found.webhooks()
        assert (delivery["status"], delivery["reason"]) == ("scheduled", "retrying")
        assert "may have acted" in delivery["lastError"]
    finally:
        await channels["webhook"].close()


async def test_tenants_see_only_their_own_events(hooks: Hooks, other_tenant: Tenant) -> None:
    scenario = hooks.scenario
    mine = await hooks.add()
    theirs = await scenario.client.post(
        f"/locations/{other_tenant.location_id}/webhooks",
        json={"url": "https://other.example.net/hook"},
        headers=other_tenant.headers(),
    )
    assert theirs.status_code == 201
    await scenario.book(await contact(scenario), START)
    await scenario.run_at(NOW)
    [request] = hooks.receiver.requests
    assert request.headers["host"] == "hooks.example.com"
    assert verify(mine["secret"], request.headers, request.content)
    assert not verify(theirs.json()["secret"], request.headers, request.content)
    listed = await scenario.client.get("/deliveries", headers=other_tenant.headers())
    assert listed.json()["deliveries"] == []


async def test_an_inbound_reply_is_sent_as_inbound_message(
    settings: Settings, db: Database, clock: ManualClock, tenant: Tenant
) -> None:
    from calnotify.app import create_app

    configured = Settings(
        database_url=settings.database_url,
        twilio_account_sid="AC123",
        twilio_auth_token="secret",
        twilio_from_number="+14155550000",
        public_url="https://cal.example",
    )
    app = create_app(configured, database=db, clock=clock)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://calnotify.test"
    ) as client:
        scenario = Scenario(client, tenant, clock, db, configured)
        found = Hooks(scenario, Receiver(), {})
        channels = scenario.dispatcher.channels
        for old in {id(a): a for a in channels.values()}.values():
            await old.close()
        channels["webhook"] = adapter(configured, db, clock, found)
        secret = (await found.add(events=["InboundMessage"]))["secret"]
        contact_id = await tenant.add_contact()
        await scenario.book(contact_id, START)  # no webhook: not asked for
        form = {
            "From": "+14155550123",
            "To": "+14155550000",
            "Body": "Running late",
            "MessageSid": "SM9",
        }
        url = "https://cal.example/webhooks/twilio/inbound"
        headers = {"X-Twilio-Signature": twilio_signature("secret", url, form)}
        answered = await client.post("/webhooks/twilio/inbound", data=form, headers=headers)
        assert answered.status_code == 200
        await scenario.run_at(NOW)
        await channels["webhook"].close()
    [request] = found.receiver.requests
    assert verify(secret, request.headers, request.content)
    body = json.loads(request.content)
    assert body["type"] == "InboundMessage" and body["locationId"] == tenant.location_id
    message = body["message"]
    assert (message["body"], message["from"], message["messageType"]) == (
        "Running late",
        "+14155550123",
        "SMS",
    )
    assert message["direction"] == "inbound" and message["providerMessageId"] == "SM9"


# --- the command line ----------------------------------------------------------------------


def test_webhooks_commands(
    database_url: str,
    tenant: Tenant,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CALNOTIFY_DATABASE_URL", database_url)
    get_settings.cache_clear()
    try:
        location = tenant.location_id
        assert main(["webhooks", "add", "--location", location, "--url", URL]) == 0
        added = json.loads(capsys.readouterr().out)
        assert set(added) >= {"id", "url", "events", "secret"}
        assert added["events"] == ALL and added["secret"].startswith("whsec_")
        args = ["webhooks", "add", "--location", location, "--url", URL + "&b=1"]
        assert main([*args, "--event", "InboundMessage"]) == 0
        second = json.loads(capsys.readouterr().out)
        assert second["events"] == ["InboundMessage"]

        assert main(["webhooks", "list", "--location", location]) == 0
        listed = json.loads(capsys.readouterr().out)
        assert [w["id"] for w in listed] == [added["id"], second["id"]]
        assert all("secret" not in w for w in listed)

        assert main(["webhooks", "rotate", added["id"]]) == 0
        rotated = json.loads(capsys.readouterr().out)
        assert rotated["id"] == added["id"] and rotated["previousSecretUntil"]
        assert rotated["secret"].startswith("whsec_") and rotated["secret"] != added["secret"]
        assert main(["webhooks", "rotate", "nosuchwebhook0000000"]) == 1
        assert "no webhook" in capsys.readouterr().err

        assert main(["webhooks", "remove", added["id"]]) == 0
        assert json.loads(capsys.readouterr().out)["removed"] is True
        assert main(["webhooks", "list"]) == 0
        assert [w["id"] for w in json.loads(capsys.readouterr().out)] == [second["id"]]

        assert main(["webhooks", "remove", added["id"]]) == 1
        assert "no webhook" in capsys.readouterr().err
        assert main(["webhooks", "add", "--location", location, "--url", "http://x.example"]) == 1
        assert "must use https" in capsys.readouterr().err
        with pytest.raises(SystemExit):
            main(["webhooks", "add", "--location", location, "--url", URL, "--event", "Nope"])
    finally:
        get_settings.cache_clear()


async def test_the_console_shows_an_appointments_webhooks(hooks: Hooks) -> None:
    from tests.test_console import signed_in, text_of

    scenario = hooks.scenario
    await hooks.add()
    booked = await scenario.book(await contact(scenario), START)
    await scenario.run_at(NOW)
    await signed_in(scenario.client, scenario.tenant)
    page = await scenario.client.get(f"/console/appointments/{booked['id']}")
    assert page.status_code == 200
    assert URL.split("?")[0] in text_of(page.text)
