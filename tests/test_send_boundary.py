"""The send boundary, whatever fails: slow and hanging providers, exceptions, crashes, expired
leases. Each message reaches its provider at most the maximum attempts, exactly once when the
provider accepted it, and every delivery ends."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from calnotify.channels.base import (
    ChannelAdapter,
    Message,
    PermanentSendError,
    Receipt,
    RetryableSendError,
)
from calnotify.clock import ManualClock
from calnotify.config import Settings
from calnotify.db.engine import Database
from calnotify.deliveries import lifecycle
from calnotify.deliveries.lifecycle import TRANSITIONS, DeliveryStatus, IllegalTransition
from calnotify.dispatch.dispatcher import Dispatcher, DispatchSettings
from calnotify.models import Delivery
from tests.conftest import NOW
from tests.engine import Scenario
from tests.factories import Tenant

START = NOW + timedelta(days=2)
# A template the API accepts that takes seconds of CPU to render: 10,000 sorts of 9,999 items.
SLOW_BODY = "{% for i in (1..10000) %}{{ (1..9999) | sort | size }}{% endfor %}"
BOOKED = {"receiverType": "contact", "channel": "email", "notificationType": "booked"}


class Provider(ChannelAdapter):
    """Counts every hand-over per delivery and answers as its ``answer`` says."""

    provider = "fake"

    def __init__(self, answer: Any = None, concurrency: int = 16) -> None:
        self.answer = answer
        self.concurrency = concurrency
        self.calls: Counter[str] = Counter()

    async def send(self, message: Message) -> Receipt:
        self.calls[message.delivery_id] += 1
        if self.answer is not None:
            result = self.answer(message)
            if asyncio.iscoroutine(result):
                result = await result
            if isinstance(result, BaseException):
                raise result
        return Receipt(self.provider, f"id-{message.delivery_id}")


@pytest.fixture
def scenario(
    client: httpx.AsyncClient, tenant: Tenant, clock: ManualClock, db: Database, settings: Settings
) -> Scenario:
    return Scenario(client, tenant, clock, db, settings)


def dispatcher(scenario: Scenario, provider: ChannelAdapter, **options: Any) -> Dispatcher:
    settings = DispatchSettings(
        **{"lease": timedelta(seconds=60), "backoff_base": 10, "max_attempts": 3, **options}
    )
    return Dispatcher(scenario.db, scenario.clock, {"email": provider}, settings)


async def book_many(scenario: Scenario, n: int) -> None:
    await scenario.rules(BOOKED)
    contact = await scenario.tenant.add_contact()
    for i in range(n):
        await scenario.book(contact, START + timedelta(hours=i))


async def detail(scenario: Scenario, delivery_id: str) -> dict[str, Any]:
    response = await scenario.client.get(f"/deliveries/{delivery_id}", headers=scenario.headers)
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


async def test_one_exception_fails_only_its_own_message(scenario: Scenario) -> None:
    await book_many(scenario, 4)
    victim: list[str] = []

    def answer(message: Message) -> BaseException | None:
        if not victim:
            victim.append(message.delivery_id)
            return KeyError("a bug in an adapter")
        return None

    provider = Provider(answer)
    await dispatcher(scenario, provider).drain()
    deliveries = {d["id"]: d for d in await scenario.deliveries()}
    failed = deliveries.pop(victim[0])
    assert (failed["status"], failed["reason"]) == ("failed", "permanent")
    assert "KeyError" in failed["lastError"] and "may have acted" in failed["lastError"]
    assert {(d["status"], d["attempts"]) for d in deliveries.values()} == {("sent", 1)}
    assert set(provider.calls.values()) == {1}


async def test_an_adapter_that_raises_for_the_whole_batch(scenario: Scenario) -> None:
    await book_many(scenario, 3)

    class Broken(Provider):
        async def send_many(self, messages: Any) -> Any:
            raise RuntimeError("adapter bug")

    await dispatcher(scenario, Broken()).drain()
    assert {(d["status"], d["reason"]) for d in await scenario.deliveries()} == {
        ("failed", "permanent")
    }


async def test_retry_after_is_honoured_and_every_attempt_is_kept(scenario: Scenario) -> None:
    await book_many(scenario, 1)
    answers = [RetryableSendError("429 Too Many Requests", retry_after=600), None]
    provider = Provider(lambda _m: answers.pop(0))
    worker = dispatcher(scenario, provider)
    await worker.drain()
    [delivery] = await scenario.deliveries()
    assert (delivery["status"], delivery["reason"]) == ("scheduled", "retrying")
    assert delivery["lastError"] == "429 Too Many Requests"
    # Not before the provider's Retry-After (the back-off alone would be ~10 s).
    scenario.clock.set(NOW + timedelta(seconds=590))
    assert await worker.drain() == 0
    scenario.clock.set(NOW + timedelta(seconds=601))
    assert await worker.drain() == 1
    sent = await detail(scenario, delivery["id"])
    assert (sent["status"], sent["attemptCount"]) == ("sent", 2)
    # A sent delivery shows no old error as current; the history keeps it.
    assert sent["lastError"] == ""
    assert [(a["number"], a["outcome"], a["error"]) for a in sent["attempts"]] == [
        (1, "retry", "429 Too Many Requests"),
        (2, "sent", ""),
    ]


async def test_a_rescue_past_the_maximum_fails_the_delivery(scenario: Scenario) -> None:
    """Workers that die mid-send: each lost attempt counts, and the last ends it."""
    await book_many(scenario, 1)
    for round_ in range(2):
        # A worker claims, hands the message over, and dies before recording anything.
        [claimed] = await lifecycle.claim(
            scenario.db, scenario.clock.now(), 10, timedelta(seconds=60)
        )
        held = await lifecycle.hand_over(
            scenario.db,
            [claimed.id],
            claimed.claim_token or "",
            scenario.clock.now(),
            scenario.clock.now() + timedelta(seconds=60),
            2,
        )
        assert held == {claimed.id}, round_
        scenario.clock.advance(seconds=61)
        # Another worker takes it back.
        await lifecycle.rescue(scenario.db, scenario.clock.now(), 2)
    [delivery] = await scenario.deliveries()
    assert (delivery["status"], delivery["reason"], delivery["attempts"]) == (
        "failed",
        "abandoned",
        2,
    )
    history = await detail(scenario, delivery["id"])
    assert [a["outcome"] for a in history["attempts"]] == ["unknown", "unknown"]
    assert "may have received" in history["attempts"][0]["error"]


async def test_hand_over_never_exceeds_the_maximum(scenario: Scenario) -> None:
    await book_many(scenario, 1)
    [claimed] = await lifecycle.claim(scenario.db, NOW, 10, timedelta(seconds=60))
    token = claimed.claim_token or ""
    until = NOW + timedelta(seconds=60)
    assert await lifecycle.hand_over(scenario.db, [claimed.id], token, NOW, until, 2)
    assert await lifecycle.hand_over(scenario.db, [claimed.id], token, NOW, until, 2)
    assert await lifecycle.hand_over(scenario.db, [claimed.id], token, NOW, until, 2) == set()
    # A claim that lost its token cannot hand anything over.
    assert await lifecycle.hand_over(scenario.db, [claimed.id], "stolen", NOW, until, 9) == set()


class RunningClock:
    """Real time, starting where the test clock stands (leases expire by themselves)."""

    def __init__(self, start: datetime) -> None:
        self.start, self.began = start, time.monotonic()

    def now(self) -> datetime:
        return self.start + timedelta(seconds=time.monotonic() - self.began)


async def test_slow_provider_and_a_second_worker_send_each_message_once(
    scenario: Scenario,
) -> None:
    """The provider takes longer per batch than the lease lasts; the heartbeat keeps the
    lease, so the other worker never takes the batch back and nothing goes out twice."""
    await book_many(scenario, 6)

    async def slow(_message: Message) -> None:
        await asyncio.sleep(0.5)

    provider = Provider(slow, concurrency=1)  # 6 x 0.5 s = 3 s per batch, lease 1 s
    clock = RunningClock(scenario.clock.now())
    options = DispatchSettings(lease=timedelta(seconds=1), max_attempts=3)
    first = Dispatcher(scenario.db, clock, {"email": provider}, options)  # type: ignore[arg-type]
    second = Dispatcher(scenario.db, clock, {"email": provider}, options)  # type: ignore[arg-type]
    busy = asyncio.create_task(first.run_once())
    await asyncio.sleep(0.1)
    for _ in range(30):  # the other worker keeps looking (and rescuing) for 3 s
        await second.run_once()
        await asyncio.sleep(0.1)
    assert await busy == 6
    assert sorted(provider.calls.values()) == [1] * 6
    deliveries = await scenario.deliveries()
    assert {(d["status"], d["attempts"]) for d in deliveries} == {("sent", 1)}


async def test_a_lost_lease_stops_the_batch_before_sending_more(scenario: Scenario) -> None:
    await book_many(scenario, 4)
    sent_before_loss: list[str] = []

    async def lose_lease(message: Message) -> None:
        sent_before_loss.append(message.delivery_id)
        # Meanwhile another worker took every row back (this worker's lease had run out).
        scenario.clock.advance(seconds=61)
        await lifecycle.rescue(scenario.db, scenario.clock.now(), 3)

    worker = dispatcher(scenario, Provider(lose_lease, concurrency=1), chunk_size=2)
    await worker.run_once()
    # The first chunk was handed over; the second never was.
    assert len(sent_before_loss) <= 2


def test_illegal_transitions_raise() -> None:
    with pytest.raises(IllegalTransition):
        lifecycle.check("record_sent", DeliveryStatus.SCHEDULED, DeliveryStatus.SENT)
    with pytest.raises(IllegalTransition):
        lifecycle.check("cancel", DeliveryStatus.SENT, DeliveryStatus.CANCELLED)
    lifecycle.check("rescue", DeliveryStatus.SENDING, DeliveryStatus.FAILED)


async def test_cancel_takes_only_known_reasons(db: Database) -> None:
    with pytest.raises(IllegalTransition):
        async with db.transaction() as tx:
            lifecycle.cancel(tx, "because", ["d1"], NOW)


def test_the_engine_doc_lifecycle_table_matches_the_code() -> None:
    text = (Path(__file__).resolve().parent.parent / "docs" / "engine.md").read_text()
    section = text[text.index("### Transitions") : text.index("### Provider answers")]
    rows = re.findall(r"^\| `(\w+)` \| ([^|]+) \| ([^|]+) \|", section, re.MULTILINE)
    documented = {
        name: (
            tuple(s.strip() for s in sources.split(",")),
            tuple(s.strip() for s in targets.split(",")),
        )
        for name, sources, targets in rows
    }
    in_code = {
        name: (
            tuple("(new)" if s is None else s.value for s in sources),
            tuple(t.value for t in targets),
        )
        for name, (sources, targets) in TRANSITIONS.items()
    }
    assert documented == in_code


async def test_provider_answers_classified(scenario: Scenario) -> None:
    """One row per answer class of docs/engine.md's "Provider answers" table."""
    await book_many(scenario, 3)
    answers = {
        0: PermanentSendError("550 5.1.1 no such user"),
        1: RetryableSendError("timed out after the request was sent", maybe_sent=True),
        2: None,
    }
    order: list[str] = []

    def answer(message: Message) -> BaseException | None:
        order.append(message.delivery_id)
        return answers[len(order) - 1]

    await dispatcher(scenario, Provider(answer, concurrency=1)).drain()
    by_id = {d["id"]: d for d in await scenario.deliveries()}
    permanent, maybe, ok = (by_id[i] for i in order)
    assert (permanent["status"], permanent["reason"]) == ("failed", "permanent")
    assert (maybe["status"], maybe["reason"]) == ("scheduled", "retrying")
    assert maybe["lastError"].endswith("(the provider may have acted on it)")
    assert ok["status"] == "sent"


async def test_no_message_goes_out_when_its_attempt_cannot_be_counted(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database fails at the hand-over: nothing is sent, nothing is lost."""
    await book_many(scenario, 2)
    real = lifecycle.hand_over
    broken = [True]

    async def flaky(*args: Any, **kwargs: Any) -> set[str]:
        if broken[0]:
            raise OperationalError("UPDATE deliveries", {}, Exception("database is locked"))
        return await real(*args, **kwargs)

    monkeypatch.setattr(lifecycle, "hand_over", flaky)
    provider = Provider()
    worker = dispatcher(scenario, provider)
    assert await worker.run_once() == 2
    assert provider.calls == Counter()
    assert {(d["status"], d["attempts"]) for d in await scenario.deliveries()} == {("scheduled", 0)}
    broken[0] = False  # the database is back
    await worker.drain()
    assert sorted(provider.calls.values()) == [1, 1]
    assert {(d["status"], d["attempts"]) for d in await scenario.deliveries()} == {("sent", 1)}


async def test_an_adapter_that_answers_the_wrong_number_of_messages(scenario: Scenario) -> None:
    await book_many(scenario, 3)

    class Short(Provider):
        async def send_many(self, messages: Any) -> Any:
            return []

    await dispatcher(scenario, Short()).drain()
    deliveries = await scenario.deliveries()
    assert {(d["status"], d["reason"], d["attempts"]) for d in deliveries} == {
        ("failed", "permanent", 1)
    }
    assert all("may have acted" in d["lastError"] for d in deliveries)


async def test_a_provider_that_never_answers_is_cut_off(scenario: Scenario) -> None:
    await book_many(scenario, 2)

    async def hang(_message: Message) -> None:
        await asyncio.sleep(3600)

    provider = Provider(hang)
    provider.send_timeout = 0.2
    started = time.monotonic()
    await dispatcher(scenario, provider).run_once()
    assert time.monotonic() - started < 5
    deliveries = await scenario.deliveries()
    assert {(d["status"], d["reason"], d["attempts"]) for d in deliveries} == {
        ("scheduled", "retrying", 1)
    }
    for d in deliveries:
        # A location is told the provider could not be reached, and that it may have the
        # message; the operator's console has the details ("no answer within 0.2 s").
        assert d["lastError"] == (
            "the email provider could not be reached; the operator has been told "
            "(the provider may have acted on it)"
        )
    async with scenario.db.session(write=False) as session:
        stored = await session.scalars(select(Delivery.last_error))
        assert all("no answer within 0.2 s" in e for e in stored)


async def test_a_worker_that_lost_its_claim_records_nothing(scenario: Scenario) -> None:
    await book_many(scenario, 1)
    db, now = scenario.db, scenario.clock.now()
    [mine] = await lifecycle.claim(db, now, 10, timedelta(seconds=60))
    later = now + timedelta(seconds=61)
    await lifecycle.rescue(db, later, 3)  # the lease ran out; another worker took it back
    [theirs] = await lifecycle.claim(db, later, 10, timedelta(seconds=60))
    assert theirs.claim_token != mine.claim_token
    late = lifecycle.Outcome(mine, DeliveryStatus.SENT, handed_over=True, provider_id="x")
    assert await lifecycle.record(db, [late], later) == 0
    history = await detail(scenario, theirs.id)
    assert (history["status"], history["attempts"]) == ("sending", [])


async def test_a_renewal_racing_the_record_keeps_the_rest_of_the_batch(
    scenario: Scenario,
) -> None:
    from calnotify.dispatch.heartbeat import Heartbeat

    await book_many(scenario, 2)
    batch = await lifecycle.claim(scenario.db, scenario.clock.now(), 10, timedelta(seconds=60))
    first, second = batch
    lease = Heartbeat(scenario.db, scenario.clock, timedelta(seconds=60), batch)
    lease.recording([first.id])
    # The outcome of the first row commits just before the renewal runs.
    sent = lifecycle.Outcome(first, DeliveryStatus.SENT, handed_over=True)
    assert await lifecycle.record(scenario.db, [sent], scenario.clock.now()) == 1
    await lease.renew()
    assert not lease.lost
    assert second.id in lease.held


async def test_stopping_gives_back_what_was_not_started(scenario: Scenario) -> None:
    await book_many(scenario, 4)
    holder: list[Dispatcher] = []

    def stop_after_first(_message: Message) -> None:
        holder[0]._stopping = True  # SIGTERM arrives while the first chunk is being sent

    provider = Provider(stop_after_first)
    worker = dispatcher(scenario, provider, chunk_size=1)
    holder.append(worker)
    assert await worker.run_once() == 4
    deliveries = await scenario.deliveries()
    assert sorted((d["status"], d["attempts"]) for d in deliveries) == [
        ("scheduled", 0),
        ("scheduled", 0),
        ("scheduled", 0),
        ("sent", 1),
    ]
    assert sum(provider.calls.values()) == 1


async def test_retry_after_beyond_the_backoff_cap_is_still_honoured(scenario: Scenario) -> None:
    await book_many(scenario, 1)
    answers = [RetryableSendError("429", retry_after=600), None]
    worker = dispatcher(scenario, Provider(lambda _m: answers.pop(0)), backoff_cap=60)
    await worker.drain()
    scenario.clock.set(NOW + timedelta(seconds=590))
    assert await worker.drain() == 0
    scenario.clock.set(NOW + timedelta(seconds=601))
    assert await worker.drain() == 1


async def test_a_slow_location_does_not_hold_back_another(
    scenario: Scenario, other_tenant: Tenant
) -> None:
    """One location's messages each take longer than the render budget (a hostile
    template); another location's booking, made while both loops are busy with the first
    location's batches, goes out within seconds (3 at most); the hostile ones end failed."""
    await scenario.rules({**BOOKED, "body": SLOW_BODY})
    contact = await scenario.tenant.add_contact()
    for i in range(40):
        await scenario.book(contact, START + timedelta(hours=i))
    calm = Scenario(scenario.client, other_tenant, scenario.clock, scenario.db, scenario.settings)
    await calm.rules(BOOKED)
    calm_contact = await other_tenant.add_contact()

    arrived = asyncio.Event()

    def note(message: Message) -> None:
        if message.location_id == other_tenant.location_id:
            arrived.set()

    provider = Provider(note)
    clock = RunningClock(scenario.clock.now())
    options = DispatchSettings(
        batch_size=20, chunk_size=10, concurrency=2, render_budget_seconds=0.3, poll_interval=0.05
    )
    worker = Dispatcher(scenario.db, clock, {"email": provider}, options)  # type: ignore[arg-type]
    worker.start()
    try:
        await asyncio.sleep(0.2)  # both loops are now working on the hostile batches
        booked_at = time.monotonic()
        await calm.book(calm_contact, START)
        worker.wake()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(arrived.wait(), timeout=10)
        waited = time.monotonic() - booked_at
        assert arrived.is_set(), "the other location's message never went out"
        assert waited < 3.0, f"the other location waited {waited:.1f} s"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            states = {(d["status"], d["reason"]) for d in await scenario.deliveries()}
            if states == {("failed", "render")}:
                break
            await asyncio.sleep(0.2)
        assert states == {("failed", "render")}
    finally:
        await worker.stop()
    [calm_delivery] = await calm.deliveries()
    assert calm_delivery["status"] == "sent"
