"""Group commit: many small durable writes from many threads or requests, one LMDB write transaction per batch.

A durable commit costs an fsync (LMDB syncs the data pages, then the meta page), a few milliseconds on most disks,
and a commit cannot be shared once it is under way. So one writer thread takes every job queued while the previous
commit was syncing, applies them all in one write transaction and commits once: with 200 tills selling at once, a
commit carries tens of sales instead of one, and the throughput follows the disk's commits per second times the
batch size instead of collapsing to one fsync per sale. A job is complete (its future or callback fires) only after
the commit that holds it returned: "durable" means committed before the answer.

If a batch's transaction fails (a job raised, the disk is full), the batch is retried job by job, each in its own
transaction, so one bad job never takes the others down with it and every job gets its own result or error.
Failed writes are logged aggregated: the first at once, then one line per `FAILURE_LOG_EVERY` seconds with how
many failed since and the last error (a full disk under a stream of sales logged 58,611 lines in 15 s before).
"""

from __future__ import annotations

import collections
import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, ContextManager

import lmdb

from .errors import StoreError

log = logging.getLogger("lmcz_fast.store")

#: A write operation: run inside a write transaction (alone, `Blocklist.commit`, or with others in a group commit),
#: its result handed back once the transaction is committed. Built by the store's parts (`SoldRegister.op_record`,
#: `Blocklist.op_set_meta`, ...); a caller above the store passes the transaction along and never reads it.
WriteOp = Callable[[lmdb.Transaction], Any]

#: Most jobs one transaction takes; past it the next batch starts at once (bounds a commit's size and latency).
DEFAULT_MAX_BATCH = 1024
#: Failed writes are logged at most once per this many seconds (the first at once; then a count per line).
FAILURE_LOG_EVERY = 10.0


class Job:
    """One queued write: `op(txn)` runs inside the batch's transaction; `result` or `error` is set after commit."""

    __slots__ = ("op", "result", "error", "future", "context", "queued_at")

    def __init__(self, op: Callable[[lmdb.Transaction], Any], future: Future[Any] | None, context: Any) -> None:
        self.op = op
        self.result: Any = None
        self.error: BaseException | None = None
        self.future = future
        self.context = context
        self.queued_at = time.perf_counter()


class GroupCommitter:
    """A writer thread that drains a queue of jobs into one durable LMDB write transaction per batch.

    `notify(batch)` (optional) is called from the writer thread after each batch is committed, with the finished
    jobs (e.g. to wake an event loop once per batch); jobs submitted with `future=True` also complete their
    `concurrent.futures.Future`. `after_commit()` runs before the notification (e.g. to make readers of this
    process see the commit from their next call on). `housekeeping(txn)` runs at the end of every batch's
    transaction, and on its own every `housekeeping_every` seconds while idle. `begin()` opens a write transaction
    as a context manager (default `env.begin(write=True)`; the store passes one that names disk-full and map-full
    failures in words).
    """

    def __init__(
        self,
        env: lmdb.Environment,
        *,
        notify: Callable[[list[Job]], None] | None = None,
        after_commit: Callable[[], None] | None = None,
        housekeeping: Callable[[lmdb.Transaction], Any] | None = None,
        housekeeping_every: float = 60.0,
        max_batch: int = DEFAULT_MAX_BATCH,
        name: str = "lmcz-group-commit",
        begin: Callable[[], ContextManager[lmdb.Transaction]] | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._env = env
        self._begin = begin or (lambda: env.begin(write=True))
        self._notify = notify
        self._after_commit = after_commit
        self._housekeeping = housekeeping
        self._housekeeping_every = housekeeping_every
        self.max_batch = max_batch
        self._queue: collections.deque[Job] = collections.deque()
        self._cond = threading.Condition(threading.Lock())
        self._closing = False
        self.commits = 0
        self.jobs_done = 0
        self.failures = 0
        self.last_batch = 0
        self.commit_seconds = 0.0      # time inside write transactions (apply + commit + sync), summed
        self.max_commit_seconds = 0.0
        self.max_batch_seen = 0
        self.failure_log_every = FAILURE_LOG_EVERY
        self._failures_unlogged = 0          # failed writes not yet in a log line
        self._failure_logged_at = -math.inf  # monotonic time of the last failure line
        self._last_failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # -- submitting ----------------------------------------------------------------------------------------

    def submit(self, op: Callable[[lmdb.Transaction], Any], *, future: bool = False,
               context: Any = None) -> Job:
        """Queue `op` for the next batch. Never blocks on the disk."""
        job = Job(op, Future() if future else None, context)
        with self._cond:
            if self._closing:
                raise StoreError("the writer is closed")
            self._queue.append(job)
            if len(self._queue) == 1:
                self._cond.notify()
        return job

    def run(self, op: Callable[[lmdb.Transaction], Any], timeout: float | None = None) -> Any:
        """Queue `op` and wait until it is committed; return its result or raise its error."""
        job = self.submit(op, future=True)
        assert job.future is not None
        return job.future.result(timeout)

    @property
    def pending(self) -> int:
        return len(self._queue)

    def close(self, timeout: float = 10.0) -> None:
        """Commit what is queued, then stop the writer thread."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(timeout)

    # -- the writer thread ---------------------------------------------------------------------------------

    def _run(self) -> None:
        next_housekeeping = time.monotonic() + self._housekeeping_every
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    now = time.monotonic()
                    deadline = next_housekeeping if self._housekeeping is not None else math.inf
                    if self._failures_unlogged:   # the count of the last failures is due within the interval
                        deadline = min(deadline, self._failure_logged_at + self.failure_log_every)
                    if deadline <= now:
                        break
                    self._cond.wait(None if deadline == math.inf else deadline - now)
                closing = not self._queue and self._closing
                take = min(len(self._queue), self.max_batch)
                batch = [self._queue.popleft() for _ in range(take)]
            if closing:
                self._log_failures(force=True)
                return
            if not batch:
                self._log_failures()
                if self._housekeeping is not None and time.monotonic() >= next_housekeeping:
                    self._idle_housekeeping()
                    next_housekeeping = time.monotonic() + self._housekeeping_every
                continue
            self._commit(batch)

    def _log_failures(self, force: bool = False) -> None:
        """One warning line for the writes that failed since the last one: at once for the first, then at most
        once per `failure_log_every` seconds (and when the writer goes idle or closes)."""
        if not self._failures_unlogged:
            return
        now = time.monotonic()
        if not force and now - self._failure_logged_at < self.failure_log_every:
            return
        count, self._failures_unlogged = self._failures_unlogged, 0
        since = "" if self._failure_logged_at == -math.inf else f" in the last {now - self._failure_logged_at:.0f} s"
        self._failure_logged_at = now
        if count == 1:
            log.warning("a durable write failed%s: %s", since, self._last_failure)
        else:
            log.warning("%d durable writes failed%s (%d in all); the last: %s", count, since, self.failures,
                        self._last_failure)

    def _idle_housekeeping(self) -> None:
        assert self._housekeeping is not None
        try:
            with self._begin() as txn:
                self._housekeeping(txn)
        except Exception:
            log.exception("housekeeping of the sold register failed; will retry")
            return
        if self._after_commit is not None:
            self._after_commit()

    def _commit(self, batch: list[Job]) -> None:
        started = time.perf_counter()
        try:
            with self._begin() as txn:
                for job in batch:
                    job.result = job.op(txn)
                if self._housekeeping is not None:
                    self._housekeeping(txn)
        except Exception:
            # One transaction per job, so that only the job at fault fails (and a failing disk fails each).
            for job in batch:
                job.result = None
                try:
                    with self._begin() as txn:
                        job.result = job.op(txn)
                except Exception as exc:
                    job.error = exc
                    self.failures += 1
                    self._failures_unlogged += 1
                    self._last_failure = exc
                self.commits += 1
            self._log_failures()
        else:
            self.commits += 1
        elapsed = time.perf_counter() - started
        self.commit_seconds += elapsed
        self.max_commit_seconds = max(self.max_commit_seconds, elapsed)
        self.last_batch = len(batch)
        self.max_batch_seen = max(self.max_batch_seen, len(batch))
        self.jobs_done += len(batch)
        if self._after_commit is not None:
            try:
                self._after_commit()
            except Exception:
                log.exception("after-commit hook failed")
        for job in batch:
            if job.future is not None:
                if job.error is not None:
                    job.future.set_exception(job.error)
                else:
                    job.future.set_result(job.result)
        if self._notify is not None:
            try:
                self._notify(batch)
            except Exception:
                log.exception("commit notification failed")
