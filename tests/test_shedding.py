"""Sends before requests: write requests refused 503 at once while the writer's queue is
too long, or while the process's sends fall behind for want of its event loop."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
from starlette.types import Receive, Scope, Send

from calnotify.api.middleware import Shedding
from calnotify.channels.base import Message, Receipt
from calnotify.clock import ManualClock
from calnotify.db.engine import Database
from calnotify.db.gate import Priority, WriteGate
from calnotify.dispatch.pressure import SendPressure
from tests.conftest import NOW
from tests.engine import Scenario, ScriptedProvider


async def ok(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def client(gate: WriteGate, pressure: SendPressure | None) -> httpx.AsyncClient:
    app = Shedding(ok, gate=gate, pressure=pressure)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_writes_are_refused_while_sends_are_behind_on_a_busy_loop(db: Database) -> None:
    pressure = SendPressure(db, ManualClock(NOW))
    async with client(WriteGate(), pressure) as http:
        assert (await http.post("/calendars/events/appointments")).status_code == 200
        pressure.behind = 3.0  # behind, but the loop is idle: a slow provider
        assert (await http.post("/calendars/events/appointments")).status_code == 200
        pressure.lag = 0.2  # and the loop is busy: the requests are what is in the way
        refused = await http.post("/calendars/events/appointments")
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        assert refused.json()["message"] == "The service is busy: try again in a moment"
        # Reads, the console's forms and the providers' reports are never refused.
        assert (await http.get("/calendars/events/appointments")).status_code == 200
        assert (await http.post("/console/sign-in")).status_code == 200
        assert (await http.post("/webhooks/twilio/status")).status_code == 200
        pressure.behind = 0.0  # caught up
        assert (await http.post("/calendars/events/appointments")).status_code == 200


async def test_the_loop_watch_sees_a_blocked_loop(db: Database) -> None:
    pressure = SendPressure(db, ManualClock(NOW), interval=0.01)
    pressure.start()
    try:
        await asyncio.sleep(0.05)
        assert pressure.lag < 0.05
        for _ in range(3):
            await asyncio.sleep(0.02)  # let the timer be due, then hold the loop
            deadline = asyncio.get_running_loop().time() + 0.3
            while asyncio.get_running_loop().time() < deadline:
                pass
        assert pressure.lag >= 0.05
    finally:
        await pressure.stop()


async def test_requests_are_refused_while_the_writer_queue_is_too_long() -> None:
    gate = WriteGate(shed_after=0.05)
    await gate.acquire(Priority.SEND)
    waiting = asyncio.create_task(gate.acquire(Priority.REQUEST))
    await asyncio.sleep(0.08)
    async with client(gate, None) as http:
        assert (await http.post("/calendars/events/appointments")).status_code == 503
    gate.release()
    await waiting
    gate.release()
    async with client(gate, None) as http:
        assert (await http.post("/calendars/events/appointments")).status_code == 200


async def test_how_far_behind_is_read_from_the_queue(scenario: Scenario) -> None:
    """A reminder due ten minutes ago and not sent: the sends are 600 s behind."""
    await scenario.rules(
        {"receiverType": "contact", "channel": "email", "notificationType": "booked"}
    )
    await scenario.book(await scenario.tenant.add_contact(), NOW + timedelta(days=2))
    pressure = SendPressure(scenario.db, scenario.clock)
    scenario.clock.advance(minutes=10)
    await pressure._look()
    assert 599 <= pressure.behind <= 601
    # A location whose templates render slowly does not count: refusing requests would not
    # make its messages go sooner.
    pressure.slow = lambda: [scenario.tenant.location_id]
    await pressure._look()
    assert pressure.behind == 0.0
    pressure.slow = lambda: ["another-location"]
    await pressure._look()
    assert 599 <= pressure.behind <= 601
    await scenario.dispatcher.drain()
    await pressure._look()
    assert pressure.behind == 0.0


async def test_messages_claimed_and_not_yet_sent_count_as_behind(scenario: Scenario) -> None:
    """Claimed rows leave the queue: a dispatcher with a backlog in memory is behind too."""
    release = asyncio.Event()

    class Held(ScriptedProvider):
        async def send(self, message: Message) -> Receipt:
            await release.wait()
            return await super().send(message)

    scenario.dispatcher.channels["email"] = Held()
    await scenario.rules(
        {"receiverType": "contact", "channel": "email", "notificationType": "booked"}
    )
    await scenario.book(await scenario.tenant.add_contact(), NOW + timedelta(days=2))
    pressure = SendPressure(scenario.db, scenario.clock)
    scenario.clock.advance(minutes=10)
    batch = await scenario.dispatcher.claim_batch()
    work = asyncio.create_task(scenario.dispatcher.work(batch))
    try:
        await asyncio.sleep(0.2)
        await pressure._look()
        assert pressure.behind == 0.0  # nothing is scheduled: the queue alone says on time
        pressure.waiting = scenario.dispatcher.executor.oldest_waiting
        await pressure._look()
        assert 599 <= pressure.behind <= 601
    finally:
        release.set()
        await work
    await pressure._look()
    assert pressure.behind == 0.0


async def test_write_requests_beyond_those_in_flight_are_refused_while_sends_are_behind(
    db: Database,
) -> None:
    release = asyncio.Event()

    async def slow(scope: Scope, receive: Receive, send: Send) -> None:
        await release.wait()
        await ok(scope, receive, send)

    pressure = SendPressure(db, ManualClock(NOW))
    app = Shedding(slow, gate=WriteGate(), pressure=pressure, max_in_flight=2)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        path = "/calendars/events/appointments"
        held = [asyncio.create_task(http.post(path)) for _ in range(3)]
        await asyncio.sleep(0.05)
        assert app.in_flight == 3  # sends on time: no cap
        pressure.behind = 0.5  # behind (the loop need not be busy)
        refused = await http.post(path)
        assert (refused.status_code, refused.headers["retry-after"]) == (503, "1")
        # Reads are never counted nor refused.
        reading = asyncio.create_task(http.get(path))
        release.set()
        assert [r.status_code for r in await asyncio.gather(*held, reading)] == [200] * 4
        assert app.in_flight == 0
        assert (await http.post(path)).status_code == 200
