"""Work that must not hold the event loop for long, taken in turn from every connection that has some.

A small request is answered at once, inside the callback that read it. Anything bigger — a request with a large
body, a check of many codes (`Steps`), requests pipelined behind another — waits here: each turn of the event loop
runs one slice of work from each waiting connection in round-robin order until `budget` seconds are spent, then
yields to the loop, so sockets are read between turns and a till's one-code check never waits behind a bulk
request for more than a turn. A connection that hangs up is skipped (its work is dropped, see `http/`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Protocol

log = logging.getLogger("lmcz_fast.service")

#: Seconds of queued work one turn of the event loop may run before reading sockets again.
DEFAULT_BUDGET = 0.002


class Worker(Protocol):
    scheduled: bool

    def step(self) -> None:
        """Run one slice of this worker's work; call `Scheduler.add(self)` again if more is ready."""


class Scheduler:
    """Round-robin over workers (connections) with work ready, a time budget per turn of the loop."""

    def __init__(self, budget: float = DEFAULT_BUDGET) -> None:
        self.budget = budget
        self._ready: deque[Worker] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._turn_pending = False
        self.steps_total = 0
        self.turns_total = 0
        self.longest_step = 0.0

    def __len__(self) -> int:
        return len(self._ready)

    def add(self, worker: Worker) -> None:
        """Queue `worker` for a step (once: a worker already waiting keeps its place)."""
        if worker.scheduled:
            return
        worker.scheduled = True
        self._ready.append(worker)
        if not self._turn_pending:
            if self._loop is None:
                self._loop = asyncio.get_running_loop()
            self._turn_pending = True
            self._loop.call_soon(self._turn)

    def _turn(self) -> None:
        self._turn_pending = False
        self.turns_total += 1
        clock = time.perf_counter
        deadline = clock() + self.budget
        ready = self._ready
        while ready:
            worker = ready.popleft()
            worker.scheduled = False
            started = clock()
            try:
                worker.step()
            except Exception:
                log.exception("internal error in queued work; that connection's work is dropped")
            now = clock()
            self.steps_total += 1
            if now - started > self.longest_step:
                self.longest_step = now - started
            if now >= deadline:
                break
        if ready and not self._turn_pending:
            self._turn_pending = True
            assert self._loop is not None
            self._loop.call_soon(self._turn)
