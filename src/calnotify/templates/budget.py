"""Bounded, off-loop execution of the CPU work done for one message.

Rendering a tenant's template (Liquid, HTML-to-text, MIME) is work on tenant-controlled
input: it runs in a worker thread of a :class:`RenderPool`, never on the event loop, with a
wall-clock budget (``CALNOTIFY_RENDER_BUDGET_SECONDS``) counted from the moment the work
starts running. A job over budget fails with :class:`RenderBudgetExceeded` (its delivery
fails with reason ``render``) and nobody else waits for it.

A thread cannot be killed, so the budget is also enforced *cooperatively*: the pool gives
the job a deadline (a context variable) that the long-running loops of rendering check
with :func:`check_deadline` (the Liquid output stream, every filter call and loop entry
in :mod:`calnotify.templates.liquid`, the tokenizer loop of
:func:`calnotify.templates.render.html_to_text`), so an abandoned job stops shortly after
its budget and gives its CPU back. Code that renders outside a pool can set the same
deadline with :func:`render_deadline`.

One location never occupies more than ``per_location`` threads: its further jobs queue
behind its own, while other locations' jobs go straight to the free threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextvars import ContextVar, copy_context
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from calnotify.templates.errors import RenderError

P = ParamSpec("P")
T = TypeVar("T")


class RenderBudgetExceeded(RenderError):
    """Rendering one message took longer than its budget."""

    def __init__(self, budget_seconds: float) -> None:
        super().__init__(f"rendering took longer than {budget_seconds:g} s")
        self.budget_seconds = budget_seconds


@dataclass(frozen=True, slots=True)
class _Deadline:
    at: float  # time.monotonic()
    budget_seconds: float


_deadline: ContextVar[_Deadline | None] = ContextVar("calnotify_render_deadline", default=None)


def check_deadline() -> None:
    """Raise :class:`RenderBudgetExceeded` when the current render is past its deadline.

    Cheap (a context variable and a clock read): call it from any loop whose length
    depends on tenant input. Without a deadline (outside a pool or
    :func:`render_deadline`), it does nothing.
    """
    current = _deadline.get()
    if current is not None and time.monotonic() > current.at:
        raise RenderBudgetExceeded(current.budget_seconds)


def remaining_seconds() -> float | None:
    """Seconds left before the current deadline (may be negative); ``None`` without one."""
    current = _deadline.get()
    return None if current is None else current.at - time.monotonic()


@contextlib.contextmanager
def render_deadline(budget_seconds: float) -> Iterator[None]:
    """Give the code inside a deadline ``budget_seconds`` from now (an enclosing, earlier
    deadline stays in force)."""
    at = time.monotonic() + budget_seconds
    current = _deadline.get()
    if current is not None and current.at <= at:
        yield
        return
    token = _deadline.set(_Deadline(at, budget_seconds))
    try:
        yield
    finally:
        _deadline.reset(token)


@dataclass(eq=False, slots=True)
class _Job:
    future: Future[Any]
    call: Callable[[], Any]


@dataclass(eq=False, slots=True)
class _Slot:
    semaphore: asyncio.Semaphore
    users: int = 0  # run() calls holding or waiting for the semaphore


class RenderPool:
    """Worker threads for per-message CPU work, with a time budget and a per-location cap.

    ``await pool.run(location_id, fn, *args, **kwargs)`` calls ``fn`` in a worker thread
    and returns its result (or raises its exception). At most ``per_location`` jobs of one
    location run at once (the others wait, in order); at most ``threads`` jobs run at all.
    A job that has not finished ``budget_seconds`` after it *started running* (time spent
    queued does not count) raises :class:`RenderBudgetExceeded` in the caller; its thread
    is abandoned, and stops at its next :func:`check_deadline`. Its location's slot is
    given back only when the thread has really finished, so a runaway template slows its
    own location, never the others.

    The threads are daemon threads: a job that never checks its deadline cannot keep
    the process from exiting.
    """

    def __init__(self, budget_seconds: float, threads: int = 4, per_location: int = 1) -> None:
        if budget_seconds <= 0:
            raise ValueError("budget_seconds must be positive")
        if threads < 1 or per_location < 1:
            raise ValueError("threads and per_location must be at least 1")
        self.budget_seconds = budget_seconds
        self.threads = threads
        self.per_location = per_location
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._workers: list[threading.Thread] = []
        # By location and the number of threads it may use (a location whose cap changes
        # gets a new slot; the old one drains by itself).
        self._slots: dict[tuple[str, int], _Slot] = {}
        self._caps: dict[str, int] = {}
        self._closed = False

    async def run(
        self, location_id: str, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """``fn(*args, **kwargs)`` in a worker thread, within the budget (see the class)."""
        if self._closed:
            raise RuntimeError("the render pool is closed")
        loop = asyncio.get_running_loop()
        key = (location_id, self._caps.get(location_id, self.per_location))
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = _Slot(asyncio.Semaphore(key[1]))
        slot.users += 1
        try:
            await slot.semaphore.acquire()
        except BaseException:
            self._leave(key, slot)
            raise
        if self._closed:  # closed while this job waited for its location's turn
            slot.semaphore.release()
            self._leave(key, slot)
            raise RuntimeError("the render pool is closed")

        budget = self.budget_seconds
        started: asyncio.Future[float] = loop.create_future()
        outcome: asyncio.Future[T] = loop.create_future()
        context = copy_context()  # the caller's context variables, plus the deadline

        def call() -> T:
            begin = time.monotonic()
            _call_soon(loop, _settle, started, begin)
            return context.run(_with_deadline, _Deadline(begin + budget, budget), fn, args, kwargs)

        future: Future[T] = Future()
        future.add_done_callback(
            lambda done: _call_soon(loop, self._finished, key, slot, done, outcome)
        )
        self._start_workers()
        self._jobs.put(_Job(future, call))
        try:
            await asyncio.wait((started, outcome), return_when=asyncio.FIRST_COMPLETED)
            if not outcome.done():
                remaining = started.result() + budget - time.monotonic()
                if remaining > 0:
                    await asyncio.wait((outcome,), timeout=remaining)
            if outcome.done():
                return outcome.result()
            raise RenderBudgetExceeded(budget)
        except BaseException:
            future.cancel()  # only takes effect while the job is still queued
            raise
        finally:
            # An abandoned job's late result or error goes nowhere.
            outcome.cancel()

    async def close(self) -> None:
        """Refuse new jobs, cancel queued ones, and wait (at most one budget) for running
        ones to stop; a thread that ignores its deadline is left behind (a daemon)."""
        if self._closed:
            return
        self._closed = True
        for _ in self._workers:
            self._jobs.put(None)
        await asyncio.to_thread(_join, self._workers, time.monotonic() + self.budget_seconds + 0.5)

    async def __aenter__(self) -> RenderPool:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    def _start_workers(self) -> None:
        while len(self._workers) < self.threads:
            worker = threading.Thread(
                target=self._work, name=f"calnotify-render-{len(self._workers)}", daemon=True
            )
            worker.start()
            self._workers.append(worker)

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            if self._closed:
                job.future.cancel()
                continue
            if not job.future.set_running_or_notify_cancel():
                continue
            try:
                result = job.call()
            except BaseException as exc:  # handed to the caller, like ThreadPoolExecutor
                job.future.set_exception(exc)
            else:
                job.future.set_result(result)
            del job

    def _finished(
        self, key: tuple[str, int], slot: _Slot, done: Future[T], outcome: asyncio.Future[T]
    ) -> None:
        """On the loop, once a job's thread is done with it (or it was cancelled)."""
        slot.semaphore.release()
        self._leave(key, slot)
        if outcome.done():  # the caller gave up on it
            return
        if done.cancelled():
            outcome.set_exception(RuntimeError("the render pool is closed"))
            return
        error = done.exception()
        if error is None:
            outcome.set_result(done.result())
        elif isinstance(error, StopIteration):  # asyncio futures refuse it
            outcome.set_exception(RuntimeError(f"StopIteration: {error}"))
        else:
            outcome.set_exception(error)

    def cap(self, location_id: str, threads: int | None) -> None:
        """Let ``location_id`` use at most ``threads`` threads from now on (None: the
        pool's ``per_location``)."""
        if threads is None:
            self._caps.pop(location_id, None)
        else:
            self._caps[location_id] = max(1, min(threads, self.per_location))

    def _leave(self, key: tuple[str, int], slot: _Slot) -> None:
        slot.users -= 1
        if slot.users == 0 and self._slots.get(key) is slot:
            del self._slots[key]


def _with_deadline(
    deadline: _Deadline, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> T:
    _deadline.set(deadline)  # inside the job's own copy of the context
    return fn(*args, **kwargs)


def _join(threads: list[threading.Thread], give_up: float) -> None:
    for thread in threads:
        thread.join(max(0.0, give_up - time.monotonic()))


def _settle(future: asyncio.Future[float], value: float) -> None:
    if not future.done():
        future.set_result(value)


def _call_soon(
    loop: asyncio.AbstractEventLoop, callback: Callable[..., object], *args: Any
) -> None:
    # From a worker thread; the loop may be gone already (process shutting down).
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(callback, *args)
