"""``/metrics``: the metrics token, and a queue reading that is bounded, shared and cached."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import Select, event, text, update

from calnotify.api import ops
from calnotify.app import create_app
from calnotify.clock import ManualClock
from calnotify.config import Settings
from calnotify.db.engine import Database
from calnotify.deliveries.lifecycle import DeliveryStatus
from calnotify.models import Delivery
from tests.conftest import NOW
from tests.engine import Scenario
from tests.factories import Tenant

START = NOW + timedelta(days=2)
BOOKED = {"receiverType": "contact", "channel": "email", "notificationType": "booked"}
REMINDER = {
    "receiverType": "contact",
    "channel": "sms",
    "notificationType": "reminder",
    "beforeTime": [{"timeOffset": 1, "unit": "hours"}],
}
TOKEN = "a-metrics-token-of-some-length"
REFUSED = {
    "statusCode": 401,
    "message": "Invalid metrics token: send Authorization: Bearer <CALNOTIFY_METRICS_TOKEN>",
    "error": "Unauthorized",
}


@pytest.fixture
async def guarded(
    settings: Settings, db: Database, clock: ManualClock
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(
        settings.model_copy(update={"metrics_token": SecretStr(TOKEN)}), database=db, clock=clock
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://calnotify.test") as c:
        yield c


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer wrong",
        f"Basic {TOKEN}",
        TOKEN,
        f"Bearer {TOKEN}x",
        b"Bearer \xe9",
    ],
)
async def test_with_a_metrics_token_set_metrics_needs_it(
    guarded: httpx.AsyncClient, authorization: str | bytes | None
) -> None:
    headers: list[tuple[bytes, bytes]] = []
    if authorization is not None:
        raw = authorization if isinstance(authorization, bytes) else authorization.encode()
        headers.append((b"Authorization", raw))
    response = await guarded.get("/metrics", headers=headers)
    assert response.status_code == 401
    assert response.json() == REFUSED
    assert response.headers["www-authenticate"] == 'Bearer realm="metrics"'


async def test_the_right_metrics_token_opens_metrics(guarded: httpx.AsyncClient) -> None:
    for scheme in ("Bearer", "bearer"):
        response = await guarded.get("/metrics", headers={"Authorization": f"{scheme} {TOKEN}"})
        assert response.status_code == 200
        assert "# TYPE calnotify_queue_depth gauge" in response.text
    assert (await guarded.get("/healthz")).status_code == 200  # the health check stays open


async def test_without_a_metrics_token_metrics_are_open(client: httpx.AsyncClient) -> None:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert 'calnotify_deliveries{status="scheduled"} 0' in response.text


def value(metrics: str, name: str) -> str:
    [line] = [line for line in metrics.splitlines() if line.startswith(name + " ")]
    return line.split(" ", 1)[1]


async def test_the_queue_is_read_once_per_interval_however_many_scrape(
    client: httpx.AsyncClient, tenant: Tenant, clock: ManualClock, db: Database, settings: Settings
) -> None:
    scenario = Scenario(client, tenant, clock, db, settings)
    await scenario.rules(BOOKED, REMINDER)
    await scenario.book(await tenant.add_contact(), START)  # booked: due now; reminder: later

    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "deliveries" in statement:
            statements.append(statement)

    event.listen(db.read_engine.sync_engine, "before_cursor_execute", seen)
    try:
        scrapes = await asyncio.gather(*(client.get("/metrics") for _ in range(20)))
        assert len(statements) == 4  # scheduled, sending, due, oldest: one reading for all
        assert all("status = '" in s for s in statements)  # each from a partial index
    finally:
        event.remove(db.read_engine.sync_engine, "before_cursor_execute", seen)
    metrics = scrapes[0].text
    assert {s.text for s in scrapes} == {metrics}
    assert value(metrics, 'calnotify_deliveries{status="scheduled"}') == "2"
    assert value(metrics, 'calnotify_deliveries{status="sending"}') == "0"
    assert value(metrics, "calnotify_queue_depth") == "1"
    assert value(metrics, "calnotify_oldest_due_age_seconds") == "0.000"
    assert "# HELP calnotify_deliveries Deliveries still in the queue" in metrics
    assert 'status="sent"' not in metrics.split("calnotify_sends_total")[0]

    # Within the interval: the same reading.
    await scenario.book(await tenant.add_contact(email="b@example.com"), START + timedelta(1))
    assert (await client.get("/metrics")).text == metrics

    # Later: read again.
    clock.advance(seconds=6)
    metrics = (await client.get("/metrics")).text
    assert value(metrics, 'calnotify_deliveries{status="scheduled"}') == "4"
    assert value(metrics, "calnotify_queue_depth") == "2"
    assert value(metrics, "calnotify_oldest_due_age_seconds") == "6.000"

    # A claimed delivery counts as sending; a finished one leaves the queue.
    async with db.session() as session:
        ids = (await session.scalars(text("SELECT id FROM deliveries ORDER BY run_at"))).all()
        lease = clock.now() + timedelta(minutes=1)
        await session.execute(
            update(Delivery)
            .where(Delivery.id == ids[0])
            .values(status=DeliveryStatus.SENDING, lease_until=lease)
        )
        await session.execute(
            update(Delivery).where(Delivery.id == ids[1]).values(status=DeliveryStatus.SENT)
        )
    clock.advance(seconds=6)
    metrics = (await client.get("/metrics")).text
    assert value(metrics, 'calnotify_deliveries{status="scheduled"}') == "2"
    assert value(metrics, 'calnotify_deliveries{status="sending"}') == "1"
    assert value(metrics, "calnotify_queue_depth") == "0"
    assert value(metrics, "calnotify_oldest_due_age_seconds") == "0.000"


async def test_queue_counts_stop_at_the_limit(
    client: httpx.AsyncClient,
    tenant: Tenant,
    clock: ManualClock,
    db: Database,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ops, "QUEUE_COUNT_LIMIT", 1)
    scenario = Scenario(client, tenant, clock, db, settings)
    await scenario.rules(BOOKED, REMINDER)
    await scenario.book(await tenant.add_contact(), START)
    await scenario.book(await tenant.add_contact(email="b@example.com"), START)
    metrics = (await client.get("/metrics")).text
    assert value(metrics, 'calnotify_deliveries{status="scheduled"}') == "1"
    assert value(metrics, "calnotify_queue_depth") == "1"


async def test_queue_counts_read_the_partial_indexes_on_sqlite(db: Database) -> None:
    """EXPLAIN QUERY PLAN: every queue statement reads its partial index, none the table."""
    if not db.is_sqlite:
        pytest.skip("EXPLAIN QUERY PLAN is SQLite's; PostgreSQL chooses with statistics")
    statements: dict[str, list[Select[Any]]] = {
        "ix_deliveries_due": [
            ops.count_in_status(DeliveryStatus.SCHEDULED, sqlite=True),
            ops.count_due(NOW, sqlite=True),
            ops.oldest_scheduled(sqlite=True),
        ],
        "ix_deliveries_leased": [ops.count_in_status(DeliveryStatus.SENDING, sqlite=True)],
    }
    async with db.session(write=False) as session:
        connection = await session.connection()
        for index, selects in statements.items():
            for statement in selects:
                compiled = statement.compile(
                    dialect=connection.dialect, compile_kwargs={"literal_binds": True}
                )
                plan = (await session.execute(text(f"EXPLAIN QUERY PLAN {compiled}"))).all()
                details = [row[-1] for row in plan]
                reads = [
                    d for d in details if d.startswith(("SCAN deliveries", "SEARCH deliveries"))
                ]
                assert reads, details
                assert all(f"INDEX {index}" in d for d in reads), details
