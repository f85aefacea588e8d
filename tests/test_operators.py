"""Operator tokens (docs/semantics.md §9): the console of every location for the people who
run the deployment, its health worst first, provider checks for them alone, and never the
HighLevel-shaped API."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from calnotify.auth.tokens import issue_operator_token
from calnotify.cli import main
from calnotify.clock import ManualClock
from calnotify.db.engine import Database
from calnotify.models import Calendar, Location
from tests.conftest import NOW
from tests.factories import Tenant, create_notifications, notification
from tests.test_cli import run, run_list, use_database  # noqa: F401 - a fixture
from tests.test_console import csrf_of, sign_in, signed_in, text_of


async def operator_token(db: Database) -> str:
    async with db.session() as session:
        return (await issue_operator_token(session)).token


def test_tokens_create_operator(
    capsys: pytest.CaptureFixture[str],
    use_database: str,  # noqa: F811 - the fixture
) -> None:
    assert main(["db", "upgrade"]) == 0
    capsys.readouterr()
    code, created, _ = run(capsys, "tokens", "create", "--operator")
    assert code == 0 and created["operator"] is True and str(created["token"]).startswith("cn_")
    code, listed, _ = run_list(capsys, "tokens", "list", "--operator")
    assert code == 0 and [t["id"] for t in listed] == [created["id"]]
    assert listed[0]["operator"] is True and "locationId" not in listed[0]
    code, _, err = run(capsys, "tokens", "create", "--operator", "--scope", "users.readonly")
    assert code != 0 and "every scope" in err
    with pytest.raises(SystemExit):
        main(["tokens", "create"])
    assert "--location" in capsys.readouterr().err
    code, revoked, _ = run(capsys, "tokens", "revoke", str(created["id"]))
    assert code == 0 and revoked["revoked"] is True


async def test_an_operator_token_is_refused_by_the_api(
    client: httpx.AsyncClient, tenant: Tenant, db: Database
) -> None:
    token = await operator_token(db)
    for path in (f"/calendars/{tenant.calendar_id}/notifications", "/calendars/"):
        response = await client.get(
            path, params={"locationId": tenant.location_id}, headers=tenant.headers(token)
        )
        assert response.status_code == 401, response.text
        assert "operator token" in response.json()["message"]


async def second_location(db: Database, name: str) -> str:
    async with db.session() as session:
        location = Location(name=name, email="", phone="", timezone="Europe/Berlin")
        session.add(location)
        await session.flush()
        session.add(Calendar(location_id=location.id, name=f"{name} calendar"))
        return location.id


async def test_an_operator_sees_every_location_worst_first_and_switches(
    client: httpx.AsyncClient, tenant: Tenant, db: Database, clock: ManualClock
) -> None:
    quiet = await second_location(db, "AAA Quiet Clinic")  # first by name
    await create_notifications(client, tenant, notification())
    booked = await client.post(
        "/calendars/events/appointments",
        json={
            "calendarId": tenant.calendar_id,
            "locationId": tenant.location_id,
            "contactId": await tenant.add_contact(),
            "startTime": (NOW + timedelta(days=1)).isoformat(),
        },
        headers=tenant.headers(),
    )
    assert booked.status_code == 200
    clock.advance(minutes=5)  # its booked email is now 5 minutes overdue

    assert (await sign_in(client, await operator_token(db))).status_code == 303
    home = await client.get("/console/calendars")
    assert home.status_code == 200
    assert "AAA Quiet Clinic calendar" in home.text  # the first location, by name
    assert "Deployment" in home.text
    page = await client.get("/console/deployment")
    assert page.status_code == 200
    rows = text_of(page.text)
    rows = rows[rows.index("Failures, last hour") :]  # the table, after the header's name
    assert "AAA Quiet Clinic" in rows
    assert "300.0 s ago" in rows  # the overdue booked email, shown as its age
    overdue_row = rows.index("300.0 s ago")
    assert overdue_row < rows.index("AAA Quiet Clinic")  # worst first
    switched = await client.post(
        "/console/location",
        data={"csrf": csrf_of(page.text), "location": tenant.location_id},
        follow_redirects=True,
    )
    assert switched.status_code == 200
    assert "AAA Quiet Clinic calendar" not in switched.text
    refused = await client.post(
        "/console/location", data={"csrf": "wrong", "location": quiet}, follow_redirects=False
    )
    assert refused.status_code == 403


async def test_tenants_get_no_deployment_page_and_no_provider_checks(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    csrf = await signed_in(client, tenant)
    deployment = await client.get("/console/deployment")
    assert deployment.status_code == 403 and "operator token" in deployment.text
    checks = await client.post("/console/health/checks", data={"csrf": csrf})
    assert checks.status_code == 403
    health = await client.get("/console/health")
    assert health.status_code == 200 and "Provider checks" not in health.text


async def test_provider_checks_run_at_most_once_a_minute_for_operators(
    client: httpx.AsyncClient, tenant: Tenant, db: Database, clock: ManualClock
) -> None:
    assert (await sign_in(client, await operator_token(db))).status_code == 303
    csrf = csrf_of((await client.get("/console/health")).text)
    first = await client.post("/console/health/checks", data={"csrf": csrf})
    assert first.status_code == 200
    shown = text_of(first.text)
    assert ("database ok" in shown and "sqlite" in shown.lower()) or "postgresql" in shown.lower()
    app_checks = client._transport.app.state.provider_checks  # type: ignore[attr-defined]
    results = app_checks.results
    again = await client.post("/console/health/checks", data={"csrf": csrf})
    assert again.status_code == 200 and app_checks.results is results  # not run again
    clock.advance(seconds=61)
    await client.post("/console/health/checks", data={"csrf": csrf})
    assert app_checks.results is not results
