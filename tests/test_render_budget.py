"""Composing tenant messages costs bounded time, off the event loop (architecture §11).

- Everything that reads tenant text (HTML to text, the HTML test, the paragraph split,
  the Liquid lexer's inputs, iCalendar folding) is linear: hostile inputs that took the
  old regular expressions tens of seconds finish in milliseconds.
- ComposePool composes in render processes, with a budget counted from when a message
  starts: a message over budget has its process ended (never waited for), another process
  takes its place, one location never holds every process, and numbers are bounded.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from liquid.exceptions import LiquidError

from calnotify.channels.ics import _fold
from calnotify.channels.senders import NOTHING_ALLOWED
from calnotify.compose.compose import compose
from calnotify.compose.draft import Draft, Recipient, draft
from calnotify.compose.pool import (
    WALL_BUDGETS,
    ComposePool,
    PoolClosed,
    RenderBudgetExceeded,
)
from calnotify.config import Settings
from calnotify.dispatch.fairness import SLOW_RENDER_SECONDS, Fairness
from calnotify.models import Appointment, Calendar, Contact, Location, Notification
from calnotify.templates.liquid import MAX_BLANK_RUN, MAX_BRACKETS, parse, template_errors
from calnotify.templates.render import (
    RenderData,
    RenderError,
    _looks_like_html,
    html_to_text,
    text_to_html,
)

FAST = 0.5  # seconds: generous for linear code, hopeless for the quadratic versions

# --- HTML to text: linear on hostile markup -------------------------------------------

HOSTILE_HTML = {
    "20,000 unclosed <script> tags": "<script>" * 20_000,
    "50,000 '<'": "<" * 50_000,
    "50,000 '<a' and no '>'": "<a" * 50_000,
    "deeply nested tags": "<div><b>" * 10_000 + "x" + "</b></div>" * 10_000,
    "1 MB of '<a href=' garbage": "<a href=" * 125_000,
    "1 MB of '<a href=' garbage, then '>'": "<a href=" * 125_000 + ">",
    "unclosed quoted attributes": '<a href="x' * 100_000,
    "unclosed comments": "<!--" * 50_000,
    "comments closed by '>' only": "<!-- >" * 50_000,
    "unclosed end tags": "</a" * 50_000,
    "declarations": "<!x" * 50_000,
    "processing instructions": "<?x" * 50_000,
    "almost a script end": "<script>" + "</scrip" * 50_000,
    "closed scripts": "<script>x</script>" * 15_000,
    "links": '<a href="https://example.com/">book</a>' * 4_000,
    "character references": "&#" * 50_000 + "&a" * 50_000,
}


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


@pytest.mark.parametrize("markup", HOSTILE_HTML.values(), ids=HOSTILE_HTML.keys())
def test_html_to_text_is_linear_on_hostile_markup(markup: str) -> None:
    assert timed(lambda: html_to_text(markup)) < FAST
    assert timed(lambda: _looks_like_html(markup)) < FAST


@pytest.mark.parametrize(
    "text",
    ["\n" + " " * 200_000, ("\n" + " " * 1000 + "x") * 200, "\n \t" * 100_000, "\n\n" * 100_000],
)
def test_text_to_html_is_linear(text: str) -> None:
    assert timed(lambda: text_to_html(text)) < FAST


def test_ics_folding_is_linear() -> None:
    line = "DESCRIPTION:" + "é😀x" * 200_000
    assert timed(lambda: _fold(line)) < FAST
    assert all(len(part.encode()) <= 75 for part in _fold(line).split("\r\n"))


@pytest.mark.parametrize(
    ("markup", "text"),
    [
        ("<p>See you <b>soon</b></p>", "See you soon"),
        ("<p>A</p><p>B</p>", "A\nB"),
        ("<div><h1>Reminder</h1><p>Monday<br>10:00</p><ul><li>x</li><li>y</li></ul></div>",
         "Reminder\nMonday\n10:00\nx\ny"),
        ("<P>Upper</P><BR/>case", "Upper\ncase"),
        ("<p>  spaced \n  out  </p>\n\n<p>&nbsp;</p>", "spaced\nout"),
        ("<p>&lt;a href=&quot;x&quot;&gt; &amp; &#169; &#x41;</p>", '<a href="x"> & © A'),
        ("<style>p { color: red }</style><p>x</p><script>alert(1)</script>", "x"),
        ("<p>x</p><script>document.write('<p>hidden</p>')", "x"),  # unclosed: dropped
        ("<p>x</p><SCRIPT type=a>y</script >z", "x\nz"),
        ("<!-- note --><p>x</p><!-- unclosed <p>y</p>", "x"),
        ("a < b, c > d", "a < b, c > d"),
        ("<p>x <b", "x <b"),  # a '<' that starts no tag stays
        ('<a href="https://acme.example/r?a=1&amp;b=2">Reschedule</a>',
         "Reschedule (https://acme.example/r?a=1&b=2)"),
        ('<a href="https://acme.example/">https://acme.example/</a>', "https://acme.example/"),
        ('<a href="https://acme.example/"><img src="logo.png"></a>', "https://acme.example/"),
        ('<a href="mailto:a@acme.example">a@acme.example</a>', "a@acme.example"),
        ('<a href="javascript:x()">Click</a>', "Click"),
        ("<table><tr><td>Date</td><td>Monday</td></tr></table>", "Date Monday"),
    ],
)  # fmt: skip
def test_html_to_text_output(markup: str, text: str) -> None:
    assert html_to_text(markup) == text


# --- The Liquid lexer's quadratic shapes are refused in linear time -------------------

HOSTILE_SOURCES = {
    "unclosed '{{' repeated": "{{" * 32_000,
    "blanks after '{{'": "{{" + " " * 60_000,
    "a long tag name, unclosed": "{% " + "a" * 60_000,
    "blanks before '%}'": "{% a" + " " * 60_000 + "%}",
    "blanks inside '{{ }}'": "{{" + " " * 60_000 + "}}",
    "unclosed raw repeated": "{% raw %}" * 7_000,
    "unclosed doc repeated": "{% doc %}" * 7_000,
    "range literal scans": "{% for i in " + "(" * 30_000 + "1..2) %}{% endfor %}",
    "quoted index scans": "{{ contact" + '["a"' * 10_000 + " }}",
}


@pytest.mark.parametrize("source", HOSTILE_SOURCES.values(), ids=HOSTILE_SOURCES.keys())
def test_hostile_template_sources_are_refused_fast(source: str) -> None:
    parse.cache_clear()
    errors: list[Any] = []
    assert timed(lambda: errors.extend(template_errors("body", source))) < FAST
    assert errors and "is not a valid template" in errors[0].message


@pytest.mark.parametrize(
    "source",
    [
        "Hi {{ contact.first_name }}, see you {{appointment.start_time}}.",
        "{%- if contact.first_name -%}Hi {{ contact.first_name | upcase }}{%- endif -%}",
        "{% raw %}{{ not a field }} {{{% endraw %} {{ location.name }}",
        "{% comment %} {{ contact.name }} {% endcomment %}ok",
        "{% for i in (1..3) %}{{ i }}{% endfor %}",
        "{% liquid\n  if contact.first_name\n    echo contact.first_name\n  endif\n%}",
        "{{\n" + " " * (MAX_BLANK_RUN - 1) + "contact.first_name\n}}",
        "{{ contact.first_name | append: '" + "(" * MAX_BRACKETS + "' }}",
        "{% # a comment %}<p>x</p>",
    ],
)
def test_ordinary_templates_stay_valid(source: str) -> None:
    parse.cache_clear()
    assert template_errors("body", source) == []


@pytest.mark.parametrize(
    "source",
    [
        "{{ (1..30000000) | sort | size }}",  # one C call building 30 M integers
        "{{ (1..25000) | join: ',' | split: ',' | uniq | size }}",
    ],
)
def test_filters_refuse_huge_lists_before_building_them(source: str) -> None:
    """A filter over a huge range runs in C, where no deadline reaches it."""
    began = time.monotonic()
    with pytest.raises(LiquidError, match="too many items"):
        parse(source).render()
    assert time.monotonic() - began < 0.5


@pytest.mark.parametrize(
    "source",
    [
        "{{ 10 | times: 100000000000000000000 | times: 100000000000000000000 }}",
        "{{ 999999999999999999999999999999999999 | plus: 1 }}",
        "{% assign n = 2 %}{% for i in (1..300) %}{% assign n = n | times: n %}{% endfor %}",
        "{{ (1..99999999999999999999999999999999) | size }}",
    ],
)
def test_numbers_in_templates_are_bounded(source: str) -> None:
    """Arithmetic on an integer of thousands of digits is one long C call each."""
    began = time.monotonic()
    with pytest.raises((LiquidError, OverflowError, ValueError)):
        parse(source).render()
    assert time.monotonic() - began < 0.5


# --- ComposePool ----------------------------------------------------------------------


@pytest.fixture
async def ticks() -> AsyncIterator[list[float]]:
    """Gaps between the ticks of a 10 ms ticker that runs during the test.

    The objects the test session has made so far are frozen out of the garbage collector:
    a full collection of them (~200,000 objects, over 100 ms here) stops every thread,
    loop included, whatever the code under test does. (A server can do the same with
    ``gc.freeze()`` once it has started.)
    """
    gc.freeze()
    gaps: list[float] = []

    async def tick() -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(tick())
    await asyncio.sleep(0.02)
    yield gaps
    task.cancel()
    gc.unfreeze()


# Seconds of CPU in Liquid (about 9 here): 50,000 sorts of 9,999 items (each within every
# limit).
SLOW = "{% for i in (1..10000) %}" + "{{ (1..9999) | sort | size }}" * 5 + "{% endfor %}"
WHEN = datetime(2030, 3, 4, 15, 0, tzinfo=UTC)


def message(
    body: str, *, location: str = "loc", subject: str = "Hi {{contact.first_name}}"
) -> Draft:
    return draft(
        delivery_id="d1",
        wire_id="appt",
        notification_type="booked",
        rule=Notification(
            notification_type="booked", channel="email", subject=subject, body=body,
            from_name="", from_address="", from_number="",
        ),
        template=None,
        data=data_for(location),
        recipient=Recipient("contact", "r@x.io"),
        allowed=NOTHING_ALLOWED,
        senders=Settings(),
        now=WHEN,
    )  # fmt: skip


def data_for(location: str = "loc") -> RenderData:
    return RenderData(
        appointment=Appointment(
            id="appt", title="Checkup", status="booked", start_at=WHEN, version=1,
            end_at=WHEN + timedelta(minutes=30), address="", notes="", description="",
            master_id=None, rrule="",
        ),
        calendar=Calendar(id="cal", name="Dentist"),
        location=Location(
            id=location, name="Acme", email="", phone="", address="", city="", state="",
            postal_code="", country="", website="", timezone="UTC",
        ),
        contact=Contact(id="c", first_name="Rosa", last_name="P", email="r@x.io", timezone=""),
        user=None,
    )  # fmt: skip


async def test_a_slow_message_fails_at_its_budget_and_the_loop_keeps_ticking(
    ticks: list[float],
) -> None:
    async with ComposePool(budget_seconds=0.3, processes=2) as pool:
        await pool.start()
        started = time.perf_counter()
        with pytest.raises(RenderBudgetExceeded, match=r"longer than 0\.3 s"):
            await pool.compose("loc_a", message(SLOW, location="loc_a"))
        # 0.3 s of CPU; a little more of wall time on a busy machine, never past the
        # wall-time bound.
        assert time.perf_counter() - started < 0.3 * WALL_BUDGETS + 0.2
        # Its process was ended and another took its place: the pool goes on.
        composed = await pool.compose("loc_a", message("Hello {{ contact.first_name }}"))
        assert composed.message.body == "Hello Rosa"
    assert len(ticks) > 20
    assert max(ticks) < 0.1  # the loop never waited for the render


async def test_a_message_waiting_for_a_cpu_is_not_over_its_budget() -> None:
    """The budget is CPU time: a render process that gets no CPU for three budgets (a busy
    machine; here, stopped) composes its message when it runs again, and the message does
    not count as slow."""
    async with ComposePool(budget_seconds=0.3, processes=1) as pool:
        await pool.start()
        [worker] = pool._workers
        os.kill(worker.process.pid or 0, signal.SIGSTOP)
        try:
            waiting = asyncio.create_task(pool.compose("a", message("Hello", location="a")))
            await asyncio.sleep(0.9)
            assert not waiting.done()
        finally:
            os.kill(worker.process.pid or 0, signal.SIGCONT)
        composed = await waiting
        assert composed.message.body == "Hello"
        fairness = Fairness(pool, slots=8)
        fairness.took("a", composed)
        # A second to compose, a hundredth of it on the CPU: a busy machine, not slow.
        fairness.took("a", replace(composed, seconds=1.0, cpu=0.01))
        assert fairness.slow_now() == set()
        # The same second on the CPU: a slow template.
        fairness.took("a", replace(composed, seconds=1.0, cpu=1.0))
        assert fairness.slow_now() == {"a"}


async def test_a_message_that_gets_no_cpu_ends_after_a_few_budgets_of_wall_time() -> None:
    async with ComposePool(budget_seconds=0.2, processes=1) as pool:
        await pool.start()
        [worker] = pool._workers
        os.kill(worker.process.pid or 0, signal.SIGSTOP)
        started = time.perf_counter()
        with pytest.raises(RenderBudgetExceeded):
            await pool.compose("a", message("Hello", location="a"))
        waited = time.perf_counter() - started
        assert 0.2 * WALL_BUDGETS <= waited < 0.2 * WALL_BUDGETS + 0.5
        assert (await pool.compose("a", message("Again"))).message.body == "Again"


async def test_results_and_errors_come_back() -> None:
    async with ComposePool(budget_seconds=1, processes=1) as pool:
        composed = await pool.compose("loc", message("<p>Hello {{ contact.first_name }}</p>"))
        assert (composed.message.subject, composed.message.body) == ("Hi Rosa", "Hello Rosa")
        assert composed.message.html == "<p>Hello Rosa</p>"
        assert composed.message.attachments[0].filename == "invite.ics"
        with pytest.raises(RenderError, match="too many items"):
            await pool.compose("loc", message("{{ (1..30000000) | sort | size }}"))
    with pytest.raises(PoolClosed):
        await pool.compose("loc", message("x"))


async def test_one_location_never_holds_every_process() -> None:
    async with ComposePool(budget_seconds=0.5, processes=2) as pool:
        await pool.start()
        slow = [asyncio.create_task(pool.compose("a", message(SLOW))) for _ in range(2)]
        await asyncio.sleep(0.1)
        started = time.perf_counter()
        await pool.compose("b", message("Hello"))
        assert time.perf_counter() - started < 0.3  # B does not wait behind A
        for task in slow:
            with pytest.raises(RenderBudgetExceeded):
                await task


async def test_a_location_composing_for_long_counts_as_slow_before_its_message_ends() -> None:
    """Fairness (and so send pressure) sees a location slow as soon as one of its messages
    has composed longer than a slow one takes, not only when the message ends."""
    async with ComposePool(budget_seconds=2, processes=2) as pool:
        await pool.start()
        fairness = Fairness(pool, slots=8)
        slow = asyncio.create_task(pool.compose("a", message(SLOW, location="a")))
        await pool.compose("b", message("Hello", location="b"))
        assert fairness.slow_now() == set()  # a has just begun
        await asyncio.sleep(SLOW_RENDER_SECONDS + 0.1)
        assert pool.overdue(SLOW_RENDER_SECONDS) == {"a"}
        assert fairness.slow_now() == {"a"}
        with pytest.raises(RenderBudgetExceeded):
            await slow
        assert pool.overdue(SLOW_RENDER_SECONDS) == set()


async def test_a_cancelled_caller_frees_its_queued_message() -> None:
    async with ComposePool(budget_seconds=1, processes=1) as pool:
        await pool.start()
        busy = asyncio.create_task(pool.compose("a", message(SLOW)))
        await asyncio.sleep(0.05)
        queued = asyncio.create_task(pool.compose("b", message("x")))
        await asyncio.sleep(0.02)
        queued.cancel()
        with pytest.raises(asyncio.CancelledError):
            await queued
        with pytest.raises(RenderBudgetExceeded):
            await busy
        assert (await pool.compose("c", message("y"))).message.body == "y"


async def test_a_render_process_that_dies_is_replaced_and_its_message_tried_again() -> None:
    """A message never fails because its process stopped under it (a stop, a crash): it is
    composed again in the process that takes the old one's place."""
    somewhat_slow = "{% for i in (1..2000) %}{{ (1..9999) | sort | size }}{% endfor %}"
    async with ComposePool(budget_seconds=10, processes=1) as pool:
        await pool.start()
        busy = asyncio.create_task(pool.compose("a", message("x", subject=somewhat_slow)))
        await asyncio.sleep(0.2)
        [worker] = pool._workers
        os.kill(worker.process.pid or 0, signal.SIGKILL)
        composed = await busy
        assert composed.message.subject.startswith("99999999")
        [replacement] = pool._workers
        assert replacement.process.pid != worker.process.pid


# --- A hostile template, end to end ---------------------------------------------------

SCRIPTS = "{% for i in (1..10000) %}<script>{{ contact.first_name }}{% endfor %}"
UNCLOSED = "<p>Hi</p>{% for i in (1..100) %}{% for j in (1..100) %}<a href={% endfor %}{% endfor %}"
HEAVY = "<p>{% for i in (1..10000) %}{{ contact.name | append: i | upcase | split: '' | join: '-' }}{% endfor %}</p>"  # noqa: E501


@pytest.mark.parametrize("body", [SCRIPTS, UNCLOSED, HEAVY], ids=["scripts", "unclosed", "heavy"])
async def test_a_hostile_template_composes_within_budget_or_fails(
    body: str, ticks: list[float]
) -> None:
    async with ComposePool(budget_seconds=1.0, processes=1) as pool:
        await pool.start()
        started = time.perf_counter()
        try:
            composed = await pool.compose("loc", message(body))
        except RenderBudgetExceeded:
            pass
        else:
            assert "<script" not in composed.message.body
            assert composed.cpu < 1.0
        # Within its budget of CPU time; of wall time, within the bound for a busy machine.
        assert time.perf_counter() - started < 1.0 * WALL_BUDGETS + 0.5
    assert max(ticks) < 0.1  # rendering never shares the loop's interpreter lock


def test_hostile_scripts_render_to_an_empty_text() -> None:
    composed = compose(message(SCRIPTS))
    assert composed.html.startswith("<script>Rosa<script>")
    assert composed.body == ""


def test_a_rendered_subject_is_one_bounded_line() -> None:
    looping = "{% for i in (1..5000) %}{{ contact.first_name }}\n{% endfor %}"
    composed = compose(message("x", subject=looping))
    assert "\n" not in composed.subject
    assert len(composed.subject) <= 998
    assert composed.subject.startswith("Rosa Rosa")
