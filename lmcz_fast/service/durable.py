"""Durable writes of the service (a sale, a return, `init` with `clearSold`, `greyList`): one group committer.

A write is answered only after the write transaction holding it is committed (fsync'd): the handler queues the
write on the register's `GroupCommitter` and answers a `Deferred`, which the writer thread resolves through the
event loop once its batch is on disk. Many tills writing at once share one commit. Without an event loop
(`LocalModule.handle` called directly, as in some tests) the write is committed synchronously instead.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..store import GroupCommitter, Job, StoreError, WriteOp
from .responses import Deferred, HttpError, Response, error

if TYPE_CHECKING:
    from .shared import Shared

log = logging.getLogger("lmcz_fast.service")

Build = Callable[[Any], Response]


def write_failed(exc: BaseException) -> HttpError:
    """The 503 of a write that did not reach the disk: nothing was recorded."""
    return error(503, "write_failed", f"the sale register could not be written: {exc}; nothing was recorded, "
                 "send it again")


class DurableWriter:
    """Runs a `WriteOp` in a durable write transaction and answers once it is committed (a part of `LocalModule`)."""

    def __init__(self, shared: Shared) -> None:
        self._shared = shared
        self._committer: GroupCommitter | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def committer(self) -> GroupCommitter | None:
        """The group committer while a server runs one (`start`), else None."""
        return self._committer

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Commit durable writes on a writer thread, in batches, answering through `loop` (the server calls
        this when it starts)."""
        if self._committer is not None:
            return
        self._loop = loop
        self._committer = self._shared.blocklist.sold.committer(notify=self._notify_batch,
                                                                max_batch=self._shared.config.sold_max_batch)

    def stop(self) -> None:
        """Commit what is queued and stop the writer thread (the server calls this when it closes)."""
        committer, self._committer = self._committer, None
        if committer is not None:
            committer.close()

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

    def write(self, op: WriteOp, build: Build) -> Response | Deferred:
        """Run `op` in a durable write transaction, then answer `build(result)`: later through the group
        committer when a server runs one, else now."""
        committer = self._committer
        if committer is None:
            try:
                result = self._shared.blocklist.commit(op)
            except StoreError as exc:
                raise write_failed(exc) from None
            self._shared.status.forget()
            return build(result)
        deferred = Deferred(self._shared.endpoint, self._shared.started)
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
        shared = self._shared
        shared.status.forget()          # the batch may have changed metadata (greyList): re-read with the status
        now = time.perf_counter()
        for job in batch:
            deferred, build = job.context
            if job.error is None:
                response = build(job.result)
                outcome = "ok"
            else:
                response = shared.error_response(write_failed(job.error))
                outcome = "write_failed"
            shared.metrics.observe(deferred.endpoint, outcome, now - deferred.started)
            deferred.resolve(response)
