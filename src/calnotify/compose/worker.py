"""A render process: composes the drafts it is sent, one after another.

Started by :class:`calnotify.compose.pool.ComposePool` (from multiprocessing's fork server,
which has this module imported already, so a new process is ready in milliseconds). It runs
at a lower scheduling priority than the service (``nice``), so rendering never takes the CPU
from requests and sends, and with a bound on its memory, so a template that builds something
huge fails alone. It ignores SIGINT (a Ctrl-C in a terminal reaches the whole process group;
its service stops it), ends on SIGTERM, and ends by itself when its service is gone.

The protocol, over two pipes: the pool sends a pickled list of drafts (a
:class:`~multiprocessing.connection.Connection` message); for each, in order, the process
answers a frame: a 4-byte big-endian length, then a pickled ``(ok, message or error text,
seconds, cpu, clock)``: the seconds the message took, of them on the CPU, and the process's
CPU clock when it was done (the pool reads every answer that has arrived in one read).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import resource
import signal
import time
from multiprocessing.connection import Connection
from typing import Any

from calnotify.compose.compose import compose
from calnotify.compose.draft import Draft
from calnotify.templates.errors import RenderError


def main(drafts_in: Connection, answers_out: Connection, nice: int, memory_bytes: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(OSError):
        os.nice(nice)
    if memory_bytes:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    fd = answers_out.fileno()
    while True:
        try:
            drafts: list[Draft] = pickle.loads(drafts_in.recv_bytes())  # noqa: S301 - from our parent
        except (EOFError, OSError):
            return  # the service is gone
        for draft in drafts:
            answer = _answer(draft)
            frame = memoryview(len(answer).to_bytes(4, "big") + answer)
            try:
                while frame:
                    frame = frame[os.write(fd, frame) :]
            except OSError:
                return


def _answer(draft: Draft) -> bytes:
    began, began_cpu = time.perf_counter(), time.process_time()
    ok: bool
    what: Any
    try:
        ok, what = True, compose(draft)
    except RenderError as exc:
        ok, what = False, str(exc) or type(exc).__name__
    except MemoryError:
        ok, what = False, "rendering ran out of memory"
    except Exception as exc:  # one message's fault is that message's own
        ok, what = False, f"cannot render: {type(exc).__name__}: {exc}"[:500]
    clock = time.process_time()
    took = (time.perf_counter() - began, clock - began_cpu, clock)
    try:
        return pickle.dumps((ok, what, *took), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        return pickle.dumps((False, f"cannot hand the message back: {exc!r}"[:500], *took))
