"""Render processes: messages are composed off the event loop, each within a time budget.

A tenant's template is untrusted CPU work. :class:`ComposePool` keeps a few render
processes (:mod:`calnotify.compose.worker`; by default one per CPU and one more) and hands
each a batch of drafts of one location at a time. A message whose composing runs past its budget
(``CALNOTIFY_RENDER_BUDGET_SECONDS``, counted from when it started) has its process ended:
it fails with :class:`RenderBudgetExceeded` (its delivery fails with reason ``render``), the
rest of that batch goes to another process, and a new process takes the place of the old.
Nothing waits for a runaway render, and the event loop never shares an interpreter lock
with one.

Render processes run below the service's priority: on a busy machine a message may wait for
a CPU longer than its budget without being slow. One past its budget whose process had less
than a quarter of it on the CPU (:data:`STARVED_SHARE`) goes on, up to :data:`WALL_BUDGETS`
budgets (ending it would fail a legitimate message and count its location slow); a template
that computes is ended at its budget, busy machine or not (slowness: the same rule).

Fairness: locations take turns for free processes, and one location occupies at most
``per_location`` processes at once (by default all but one; :meth:`ComposePool.cap` lowers
that for a location found slow, which then also gets one draft per batch), so another
location's messages always find a process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import pickle
import time
import weakref
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from calnotify.channels.base import Message
from calnotify.compose.draft import Draft
from calnotify.compose.worker import main as worker_main
from calnotify.templates.errors import RenderError

log = logging.getLogger("calnotify.compose")

#: How much lower than the service a render process runs (``nice``).
NICE = 10
#: Past its budget, a message whose process had less than this share of it on the CPU
#: waits for a CPU rather than being slow (it may go on, up to WALL_BUDGETS).
STARVED_SHARE = 0.25
#: A message is ended after this many budgets of wall time, whatever CPU it has used.
WALL_BUDGETS = 5
#: A render process may use this much memory (address space).
MEMORY_BYTES = 1024 * 1024 * 1024


class RenderBudgetExceeded(RenderError):
    """Composing one message took longer than its budget."""

    def __init__(self, budget_seconds: float) -> None:
        super().__init__(f"rendering took longer than {budget_seconds:g} s")
        self.budget_seconds = budget_seconds


class PoolClosed(RuntimeError):
    """The pool was closed while the message waited."""


@dataclass(frozen=True, slots=True)
class Composed:
    message: Message
    seconds: float  # how long composing it took
    cpu: float = 0.0  # of which its process was on the CPU


#: Called once with a job's result: what was composed, or why it was not.
Deliver = Callable[["Composed | BaseException"], None]


@dataclass(eq=False, slots=True)
class Job:
    """A draft waiting for, or in, a render process; :meth:`cancel` drops it if it has not
    been handed to one yet."""

    location: str
    draft: Draft
    deliver: Deliver
    done: bool = False
    # Render processes that stopped while composing it (not by the budget).
    deaths: int = 0
    pool: ComposePool | None = None

    def settle(self, result: Composed | BaseException) -> None:
        if not self.done:
            self.done = True
            self.deliver(result)

    def cancel(self) -> None:
        """Drop the job if it is still queued; its ``deliver`` gets :class:`Cancelled`.
        (One already in a process runs to its end, and is delivered as usual.)"""
        if not self.done and self.pool is not None and self.pool._drop(self):
            self.settle(Cancelled())


class Cancelled(Exception):
    """The job was cancelled before a render process took it."""


@dataclass(eq=False)
class _Worker:
    process: BaseProcess
    connection: Connection  # drafts go out on it
    answers: Connection  # answers come in on it (read as raw frames, see _readable)
    jobs: deque[Job] = field(default_factory=deque)  # sent, not answered yet, in order
    buffer: bytearray = field(default_factory=bytearray)
    location: str = ""
    began: float = 0.0  # when the job at the head of ``jobs`` began
    clock: float = 0.0  # the process's CPU clock then (from its last answer)

    @property
    def busy(self) -> bool:
        return bool(self.jobs)


def _context() -> Any:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["calnotify.compose.worker"])
    return context


class ComposePool:
    """Render processes for :func:`~calnotify.compose.compose.compose` (see the module)."""

    def __init__(
        self,
        budget_seconds: float,
        *,
        processes: int | None = None,
        per_location: int | None = None,
        batch: int = 16,
    ) -> None:
        if budget_seconds <= 0:
            raise ValueError("budget_seconds must be positive")
        self.budget_seconds = budget_seconds
        # By default one per CPU, and one more: a location may use as many as there are
        # CPUs, and one is always left for the other locations.
        self.processes = max(1, processes or (os.cpu_count() or 1) + 1)
        self.per_location = max(1, per_location or self.processes - 1)
        self.batch = max(1, batch)
        self._queues: dict[str, deque[Job]] = {}
        self._turns: deque[str] = deque()  # locations with queued jobs, in turn order
        self._busy: Counter[str] = Counter()  # processes working for each location
        self._caps: dict[str, int] = {}
        self._workers: list[_Worker] = []
        self._idle = 0  # workers with nothing to do
        self._starting = 0
        self._closed = False
        self._watch: asyncio.Task[None] | None = None
        self._all_started = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        # Processes are ended with the pool, also when it is dropped without close().
        self._finalizer = weakref.finalize(self, _kill_all, self._workers)

    # --- the interface ---------------------------------------------------------------------

    async def compose(self, location_id: str, draft: Draft) -> Composed:
        """The message of ``draft``, composed in a render process within the budget.

        Raises :class:`~calnotify.templates.errors.RenderError` (a template that cannot be
        rendered, :class:`RenderBudgetExceeded`), or :class:`PoolClosed`."""
        future: asyncio.Future[Composed] = asyncio.get_running_loop().create_future()

        def deliver(result: Composed | BaseException) -> None:
            if future.done():
                return
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)

        job = self.submit(location_id, draft, deliver)
        try:
            return await future
        except asyncio.CancelledError:
            job.cancel()
            raise

    def submit(self, location_id: str, draft: Draft, deliver: Deliver) -> Job:
        """Queue ``draft`` for composing; ``deliver`` is called on the loop, once, with the
        :class:`Composed` message or the error (a :class:`~calnotify.templates.errors.
        RenderError`, :class:`PoolClosed`, :class:`Cancelled`). Must be called on the loop."""
        job = Job(location_id, draft, deliver, pool=self)
        if self._closed:
            job.settle(PoolClosed("the render pool is closed"))
            return job
        self._loop = asyncio.get_running_loop()
        queue = self._queues.get(location_id)
        if queue is None:
            queue = self._queues[location_id] = deque()
            self._turns.append(location_id)
        queue.append(job)
        if len(self._workers) + self._starting < self.processes:
            self._ensure_processes()
        if self._idle and self._busy[location_id] < self._caps.get(location_id, self.per_location):
            self._pump()
        return job

    def cap(self, location_id: str, processes: int | None) -> None:
        """Let ``location_id`` use at most ``processes`` processes at once, one draft per
        batch (None: the pool's ``per_location``, in full batches)."""
        if processes is None:
            self._caps.pop(location_id, None)
        else:
            self._caps[location_id] = max(1, min(processes, self.per_location))
        self._pump()

    def overdue(self, seconds: float) -> set[str]:
        """The locations a message of which has been composing for more than ``seconds``."""
        now = time.monotonic()
        return {w.location for w in self._workers if w.jobs and now - w.began > seconds}

    def warm(self) -> None:
        """Start the processes in the background now, so the first message does not wait
        for them (else they start with it)."""
        self._loop = asyncio.get_running_loop()
        self._ensure_processes()

    async def start(self) -> None:
        """Start the processes now, and wait until they run."""
        self.warm()
        await asyncio.wait_for(self._all_started.wait(), timeout=60)

    async def close(self) -> None:
        """End the processes; messages still waiting fail with :class:`PoolClosed`."""
        if self._closed:
            return
        self._closed = True
        if self._watch is not None:
            self._watch.cancel()
        for queue in self._queues.values():
            for job in queue:
                job.settle(PoolClosed("the render pool is closed"))
        self._queues.clear()
        self._turns.clear()
        for worker in list(self._workers):
            self._end(worker, PoolClosed("the render pool is closed"))
        await asyncio.to_thread(_reap, [w.process for w in self._workers])
        self._workers.clear()

    async def __aenter__(self) -> ComposePool:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    # --- processes -------------------------------------------------------------------------

    def _ensure_processes(self) -> None:
        missing = self.processes - len(self._workers) - self._starting
        loop = self._loop
        if missing <= 0 or self._closed or loop is None:
            return
        self._starting += missing
        for _ in range(missing):
            loop.create_task(self._add_process())
        if self._watch is None or self._watch.done():
            self._watch = loop.create_task(self._watchdog(), name="compose-watchdog")

    async def _add_process(self) -> None:
        try:
            process, connection, answers = await asyncio.to_thread(_spawn)
        except Exception:
            log.exception("compose: cannot start a render process")
            self._starting -= 1
            await asyncio.sleep(1.0)
            self._ensure_processes()
            return
        self._starting -= 1
        if self._closed:
            _stop(process, connection, answers)
            return
        worker = _Worker(process, connection, answers)
        os.set_blocking(answers.fileno(), False)
        self._workers.append(worker)
        self._idle += 1
        if len(self._workers) >= self.processes:
            self._all_started.set()
        assert self._loop is not None
        self._loop.add_reader(answers.fileno(), self._readable, worker)
        self._pump()

    def _end(self, worker: _Worker, error: BaseException | None) -> None:
        """End ``worker``'s process: its current job fails with ``error`` (None: it died of
        something else, a stop or a crash: the job is tried once more elsewhere), the rest
        of its batch goes back to the front of its location's queue."""
        if worker in self._workers:
            self._workers.remove(worker)
            self._idle -= not worker.busy
        if self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(worker.answers.fileno())
        _stop(worker.process, worker.connection, worker.answers)
        if worker.jobs:
            current = worker.jobs[0]
            current.deaths += error is None
            if error is not None or current.deaths > 1:
                worker.jobs.popleft()
                current.settle(error or RenderError("the render process stopped while rendering"))
            requeue = [j for j in worker.jobs if not j.done]
            worker.jobs.clear()
            if requeue and not self._closed:
                queue = self._queues.get(requeue[0].location)
                if queue is None:
                    queue = self._queues[requeue[0].location] = deque()
                    self._turns.appendleft(requeue[0].location)
                queue.extendleft(reversed(requeue))
        self._settle(worker)
        if not self._closed:
            self._ensure_processes()
            self._pump()

    def _settle(self, worker: _Worker) -> None:
        if worker.location:
            self._busy[worker.location] -= 1
            if self._busy[worker.location] <= 0:
                del self._busy[worker.location]
            worker.location = ""

    # --- handing out work ------------------------------------------------------------------

    def _pump(self) -> None:
        for worker in self._workers:
            if worker.busy or not self._turns:
                continue
            location = self._next_location()
            if location is None:
                return
            queue = self._queues[location]
            size = 1 if location in self._caps else self.batch
            jobs: list[Job] = []
            while queue and len(jobs) < size:
                job = queue.popleft()
                if not job.done:
                    jobs.append(job)
            if not queue:
                del self._queues[location]
                self._turns.remove(location)
            if not jobs:
                continue
            try:
                worker.connection.send_bytes(
                    pickle.dumps([j.draft for j in jobs], protocol=pickle.HIGHEST_PROTOCOL)
                )
            except Exception as exc:  # an unpicklable draft or a dead process
                for job in jobs:
                    job.settle(RenderError(f"cannot hand the message to a renderer: {exc!r}"))
                if isinstance(exc, OSError):
                    self._end(worker, None)
                    return
                continue
            worker.jobs.extend(jobs)
            worker.location = location
            worker.began = time.monotonic()
            self._busy[location] += 1
            self._idle -= 1

    def _next_location(self) -> str | None:
        for _ in range(len(self._turns)):
            location = self._turns[0]
            self._turns.rotate(-1)
            if self._busy[location] < self._caps.get(location, self.per_location):
                return location
        return None

    def _readable(self, worker: _Worker) -> None:
        """Read what the process has answered so far, in as few reads as it takes: each
        answer is a frame (a 4-byte length, then the pickled answer)."""
        buffer = worker.buffer
        fd = worker.answers.fileno()
        try:
            while True:
                data = os.read(fd, 1 << 20)
                if not data:  # the process is gone
                    self._end(worker, None)
                    return
                buffer += data
                if len(data) < 1 << 20:
                    break
        except BlockingIOError:
            pass
        except OSError:
            self._end(worker, None)
            return
        offset = 0
        while len(buffer) - offset >= 4 and worker.jobs:
            size = int.from_bytes(buffer[offset : offset + 4], "big")
            if len(buffer) - offset - 4 < size:
                break
            frame = bytes(buffer[offset + 4 : offset + 4 + size])
            offset += 4 + size
            ok, payload, seconds, cpu, clock = pickle.loads(frame)  # noqa: S301 - ours
            job = worker.jobs.popleft()
            worker.began, worker.clock = time.monotonic(), clock
            job.settle(Composed(payload, seconds, cpu) if ok else RenderError(payload))
        del buffer[:offset]
        if not worker.jobs:
            self._settle(worker)
            self._idle += 1
            self._pump()

    def _drop(self, job: Job) -> bool:
        """Take ``job`` out of its queue; whether it was still there."""
        queue = self._queues.get(job.location)
        if queue is None or job not in queue:
            return False
        queue.remove(job)
        if not queue:
            del self._queues[job.location]
            self._turns.remove(job.location)
        return True

    async def _watchdog(self) -> None:
        """Ends the processes whose current message is past its budget."""
        budget = self.budget_seconds
        tick = min(0.05, budget / 4)
        while not self._closed:
            await asyncio.sleep(tick)
            now = time.monotonic()
            for worker in list(self._workers):
                if worker.jobs and self._over_budget(worker, now):
                    log.warning(
                        "compose: a message of location %s ran past its budget; its render "
                        "process was ended",
                        worker.jobs[0].location,
                    )
                    self._end(worker, RenderBudgetExceeded(budget))

    def _over_budget(self, worker: _Worker, now: float) -> bool:
        """Whether ``worker``'s message is past its budget: a budget of wall time has
        passed and its process had a share of it on the CPU (:data:`STARVED_SHARE`, read
        only then), or :data:`WALL_BUDGETS` budgets have passed whatever it had."""
        budget = self.budget_seconds
        waited = now - worker.began
        if waited <= budget:
            return False
        if waited > budget * WALL_BUDGETS:
            return True
        used = _cpu_clock(worker.process.pid)
        return used is None or used - worker.clock >= budget * STARVED_SHARE


_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_clock(pid: int | None) -> float | None:
    """The CPU time process ``pid`` has used, in seconds (None where it cannot be read:
    not Linux, or the process is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _spawn() -> tuple[BaseProcess, Connection, Connection]:
    context = _context()
    drafts_in, drafts_out = context.Pipe(duplex=False)
    answers_in, answers_out = context.Pipe(duplex=False)
    process = context.Process(
        target=worker_main,
        args=(drafts_in, answers_out, NICE, MEMORY_BYTES),
        name="calnotify-render",
        daemon=True,
    )
    process.start()
    drafts_in.close()
    answers_out.close()
    return process, drafts_out, answers_in


def _stop(process: BaseProcess, *connections: Connection) -> None:
    with contextlib.suppress(Exception):
        process.kill()
    for connection in connections:
        with contextlib.suppress(Exception):
            connection.close()


def _reap(processes: list[BaseProcess]) -> None:
    for process in processes:
        with contextlib.suppress(Exception):
            process.join(1.0)


def _kill_all(workers: list[_Worker]) -> None:
    for worker in workers:
        _stop(worker.process, worker.connection, worker.answers)
