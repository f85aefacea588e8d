"""Rendering tenant templates costs bounded time, off the event loop (architecture §11).

- Everything that reads tenant text (HTML to text, the HTML test, the paragraph split,
  the Liquid lexer's inputs, iCalendar folding) is linear: hostile inputs that took the
  old regular expressions tens of seconds finish in milliseconds.
- RenderPool runs the work in threads, with a budget counted from when it starts, a cap
  per location, and a cooperative deadline that stops an abandoned job soon.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from liquid.exceptions import LiquidError

from calnotify.channels.ics import _fold
from calnotify.models import Appointment, Calendar, Contact, Location, Notification
from calnotify.templates.budget import (
    RenderBudgetExceeded,
    RenderPool,
    check_deadline,
    render_deadline,
)
from calnotify.templates.liquid import MAX_BLANK_RUN, MAX_BRACKETS, parse, template_errors
from calnotify.templates.render import (
    RenderData,
    RenderError,
    _looks_like_html,
    html_to_text,
    render_notification,
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


def test_html_to_text_checks_the_deadline() -> None:
    with render_deadline(0.0), pytest.raises(RenderBudgetExceeded):
        html_to_text("<b>x</b>" * 10_000)


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


def test_the_deadline_reaches_liquid_rendering() -> None:
    template = parse("{% for i in (1..10000) %}{{ i | append: 'x' | upcase }}{% endfor %}")
    assert len(template.render()) > 10_000  # no deadline: renders
    with render_deadline(0.0), pytest.raises(RenderBudgetExceeded):
        template.render()
    quiet = parse("{% for i in (1..10000) %}{% capture x %}{{ i }}{% endcapture %}{% endfor %}")
    with render_deadline(0.0), pytest.raises(RenderBudgetExceeded):
        quiet.render()


# --- RenderPool -----------------------------------------------------------------------


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


def spin(stopped: threading.Event, seconds: float) -> None:
    """CPU work for ``seconds`` that checks its deadline, like rendering does."""
    try:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            sum(range(200))
            check_deadline()
    finally:
        stopped.set()


async def test_a_slow_job_fails_at_its_budget_and_the_loop_keeps_ticking(
    ticks: list[float],
) -> None:
    async with RenderPool(budget_seconds=0.2) as pool:
        started = time.perf_counter()
        with pytest.raises(RenderBudgetExceeded, match=r"longer than 0\.2 s"):
            await pool.run("loc_a", time.sleep, 5)  # ignores its deadline: abandoned
        assert time.perf_counter() - started < 0.5

        stopped = threading.Event()
        started = time.perf_counter()
        with pytest.raises(RenderBudgetExceeded):
            await pool.run("loc_b", spin, stopped, 5)
        assert time.perf_counter() - started < 0.5
        # The abandoned thread saw its deadline and stopped: its CPU is given back.
        assert await asyncio.to_thread(stopped.wait, 0.5)
    assert len(ticks) > 20
    assert max(ticks) < 0.1


async def test_results_and_errors_come_back() -> None:
    def fails() -> None:
        raise RenderError("no")

    async with RenderPool(budget_seconds=1) as pool:
        assert await pool.run("loc", pow, 2, 10) == 1024
        assert await pool.run("loc", int, "ff", base=16) == 255
        with pytest.raises(RenderError, match="no"):
            await pool.run("loc", fails)
    with pytest.raises(RuntimeError, match="closed"):
        await pool.run("loc", pow, 2, 10)


async def test_one_location_never_holds_more_than_its_threads() -> None:
    running: dict[str, int] = {"a": 0, "b": 0}
    most = dict(running)
    lock = threading.Lock()

    def job(location: str, seconds: float) -> float:
        with lock:
            running[location] += 1
            most[location] = max(most[location], running[location])
        time.sleep(seconds)
        with lock:
            running[location] -= 1
        return time.perf_counter()

    async with RenderPool(budget_seconds=0.6, threads=4, per_location=1) as pool:
        started = time.perf_counter()
        slow_1 = asyncio.create_task(pool.run("a", job, "a", 0.4))
        slow_2 = asyncio.create_task(pool.run("a", job, "a", 0.4))
        await asyncio.sleep(0.05)
        fast = await pool.run("b", job, "b", 0.0)
        assert fast - started < 0.2  # B does not wait behind A
        first, second = await slow_1, await slow_2
    assert most == {"a": 1, "b": 1}
    # A's second job queued behind its first; its budget (0.6 s) counted from its start,
    # not from its 0.4 s in the queue.
    assert second - first >= 0.35
    assert second - started >= 0.75


async def test_a_runaway_keeps_its_location_slot_until_it_stops() -> None:
    async with RenderPool(budget_seconds=0.1, threads=2, per_location=1) as pool:
        stopped = threading.Event()
        with pytest.raises(RenderBudgetExceeded):
            await pool.run("a", time.sleep, 0.4)
        # The thread still sleeps: location A waits for it, location B does not.
        started = time.perf_counter()
        await pool.run("b", stopped.set)
        assert time.perf_counter() - started < 0.1
        await pool.run("a", pow, 2, 2)
        assert time.perf_counter() - started > 0.2


async def test_a_cancelled_caller_frees_its_queued_job() -> None:
    async with RenderPool(budget_seconds=1, threads=1) as pool:
        busy = asyncio.create_task(pool.run("a", time.sleep, 0.2))
        await asyncio.sleep(0.02)
        ran = threading.Event()
        queued = asyncio.create_task(pool.run("b", ran.set))
        await asyncio.sleep(0.02)
        queued.cancel()
        with pytest.raises(asyncio.CancelledError):
            await queued
        await busy
        await pool.run("c", pow, 1, 1)
        assert not ran.is_set()


# --- A hostile template, end to end ---------------------------------------------------

WHEN = datetime(2030, 3, 4, 15, 0, tzinfo=UTC)


@pytest.fixture
def data() -> RenderData:
    return RenderData(
        appointment=Appointment(
            id="appt", title="Checkup", status="booked", start_at=WHEN,
            end_at=WHEN + timedelta(minutes=30), address="", notes="", description="",
        ),
        calendar=Calendar(id="cal", name="Dentist"),
        location=Location(
            id="loc", name="Acme", email="", phone="", address="", city="", state="",
            postal_code="", country="", website="", timezone="UTC",
        ),
        contact=Contact(id="c", first_name="Rosa", last_name="P", email="r@x.io"),
        user=None,
    )  # fmt: skip


def rule(body: str, subject: str = "Hi {{ contact.first_name }}") -> Notification:
    return Notification(notification_type="booked", subject=subject, body=body)


SCRIPTS = "{% for i in (1..10000) %}<script>{{ contact.first_name }}{% endfor %}"
UNCLOSED = "<p>Hi</p>{% for i in (1..100) %}{% for j in (1..100) %}<a href={% endfor %}{% endfor %}"
HEAVY = "<p>{% for i in (1..10000) %}{{ contact.name | append: i | upcase | split: '' | join: '-' }}{% endfor %}</p>"  # noqa: E501


@pytest.mark.parametrize("body", [SCRIPTS, UNCLOSED, HEAVY], ids=["scripts", "unclosed", "heavy"])
async def test_a_hostile_template_renders_within_budget_or_fails(
    body: str, data: RenderData, ticks: list[float]
) -> None:
    async with RenderPool(budget_seconds=1.0) as pool:
        started = time.perf_counter()
        try:
            rendered = await pool.run(
                "loc", render_notification, rule(body), None, data, ZoneInfo("UTC"),
                for_customer=True,
            )  # fmt: skip
        except RenderBudgetExceeded:
            pass
        else:
            assert "<script" not in rendered.body
        assert time.perf_counter() - started < 1.5
    # Never frozen. (The bound is looser than the 10 ms ticker's 0.1 s above: rendering
    # shares the interpreter lock with the loop, on a machine that may be busy.)
    assert max(ticks) < 0.25


async def test_a_template_over_budget_fails_with_render_budget_exceeded(
    data: RenderData,
) -> None:
    async with RenderPool(budget_seconds=0.01) as pool:
        with pytest.raises(RenderBudgetExceeded):
            await pool.run(
                "loc", render_notification, rule(HEAVY), None, data, ZoneInfo("UTC"),
                for_customer=True,
            )  # fmt: skip


def test_hostile_scripts_render_to_an_empty_text(data: RenderData) -> None:
    rendered = render_notification(rule(SCRIPTS), None, data, ZoneInfo("UTC"), for_customer=True)
    assert rendered.html.startswith("<script>Rosa<script>")
    assert rendered.body == ""


def test_a_rendered_subject_is_one_bounded_line(data: RenderData) -> None:
    looping = "{% for i in (1..5000) %}{{ contact.first_name }}\n{% endfor %}"
    rendered = render_notification(
        rule("x", subject=looping), None, data, ZoneInfo("UTC"), for_customer=True
    )
    assert "\n" not in rendered.subject
    assert len(rendered.subject) <= 998
    assert rendered.subject.startswith("Rosa Rosa")
