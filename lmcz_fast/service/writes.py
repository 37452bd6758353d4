"""Durable writes of the service: a sale, a return, `init` with `clearSold` or `enableGreyList`, `greyList`.

A write is answered only after the write transaction holding it is committed (fsync'd): the handler hands a write
operation of the store (`Blocklist.op_set_meta`, `SoldRegister.op_record`, ...) to `DurableWrites.durable`, which
queues it on the register's `GroupCommitter` and answers a `Deferred`, resolved through the event loop once its
batch is on disk. Many tills selling at once share one commit. Without an event loop (`LocalModule.handle`
called directly, as in some tests) the write is committed synchronously (`Blocklist.commit`) instead.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..store import GroupCommitter, Job, StoreError, WriteOp
from .responses import Deferred, HttpError, Response, error

if TYPE_CHECKING:
    from ..store import Blocklist
    from .metrics import Metrics

Build = Callable[[Any], Response]


class DurableWrites:
    """The service's writer: one group committer over the store's sold register, started by the server.

    `on_commit()` runs (in the event loop) after each commit that answered requests (the service re-reads its
    status then: a write may have changed metadata); `error_response(exc)` turns an `HttpError` into the answer
    a failed write gets.
    """

    def __init__(self, blocklist: Blocklist, metrics: Metrics, *, max_batch: int,
                 on_commit: Callable[[], None], error_response: Callable[[HttpError], Response]) -> None:
        self._blocklist = blocklist
        self._metrics = metrics
        self._max_batch = max_batch
        self._on_commit = on_commit
        self._error_response = error_response
        self._committer: GroupCommitter | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Commit durable writes on a writer thread, in batches, answering through `loop`."""
        if self._committer is not None:
            return
        self._loop = loop
        self._committer = self._blocklist.sold.committer(notify=self._notify_batch, max_batch=self._max_batch)

    def stop(self) -> None:
        """Commit what is queued and stop the writer thread."""
        committer, self._committer = self._committer, None
        if committer is not None:
            committer.close()

    @property
    def committer(self) -> GroupCommitter | None:
        return self._committer

    def metrics(self) -> dict[str, float]:
        """The writer's health, for /metrics (nothing while no writer runs)."""
        committer = self._committer
        if committer is None:
            return {}
        return {
            "lmcz_sold_writes_total": committer.jobs_done,
            "lmcz_sold_commits_total": committer.commits,
            "lmcz_sold_commit_seconds_total": round(committer.commit_seconds, 6),
            "lmcz_sold_write_failures_total": committer.failures,
            "lmcz_sold_writes_pending": committer.pending,
        }

    def durable(self, op: WriteOp, build: Build, endpoint: str, started: float) -> Response | Deferred:
        """Run `op` in a durable write transaction, then answer `build(result)`: later through the group
        committer when a server runs one, else now. `endpoint` and `started` are the request's, for metrics."""
        committer = self._committer
        if committer is None:
            try:
                result = self._blocklist.commit(op)
            except StoreError as exc:
                raise write_failed(exc) from None
            self._on_commit()
            return build(result)
        deferred = Deferred(endpoint, started)
        try:
            committer.submit(op, context=(deferred, build))
        except StoreError as exc:       # the writer is closing (the server is shutting down)
            raise write_failed(exc) from None
        return deferred

    def _notify_batch(self, batch: list[Job]) -> None:
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(self._finish_batch, batch)
        except RuntimeError:  # the loop is closed: nobody is left to answer
            pass

    def _finish_batch(self, batch: list[Job]) -> None:
        self._on_commit()        # the batch may have changed metadata (greyList): re-read with the status
        now = time.perf_counter()
        for job in batch:
            deferred, build = job.context
            if job.error is None:
                response = build(job.result)
                outcome = "ok"
            else:
                response = self._error_response(write_failed(job.error))
                outcome = "write_failed"
            self._metrics.observe(deferred.endpoint, outcome, now - deferred.started)
            deferred.resolve(response)


def write_failed(exc: BaseException) -> HttpError:
    return error(503, "write_failed", f"the sale register could not be written: {exc}; nothing was recorded, "
                 "send it again")
