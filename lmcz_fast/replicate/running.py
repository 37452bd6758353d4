"""Running replication: one pass (`replicate`) over a store or a path, or continuously (`follow`)."""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Callable
from typing import Any

from ..store import Blocklist, StoreError
from .config import DEFAULT_SETTLE, ReplicationConfig, ReplicationError
from .replicator import ReplicationReport, _Replicator
from .source import _BadCheckpoint


def _open(db: Blocklist | str | os.PathLike[str]) -> tuple[Blocklist, bool]:
    """The store of an existing database, and whether we opened it (and close it after)."""
    if isinstance(db, Blocklist):
        return db, False
    return Blocklist.open(db, readonly=False), True


def _is_new(db: Blocklist | str | os.PathLike[str]) -> bool:
    return not isinstance(db, Blocklist) and not os.path.exists(os.path.join(os.fspath(db), "data.mdb"))


def replicate(db: Blocklist | str | os.PathLike[str], config: ReplicationConfig, *, full: bool = False,
              progress: Callable[[str, int, int | None], None] | None = None) -> ReplicationReport:
    """One replication pass: incremental from the checkpoints, or full when it must be (or `full=True`).

    `db` is a writable `Blocklist` or a path. A new store is built aside (`Blocklist.building`) and appears at the
    path only when its first replication succeeded: a failed or killed first pass leaves no database there.
    Raises `ReplicationError` (the store keeps what it held before the failing batch) or `StoreError`.
    """
    if _is_new(db):
        with Blocklist.building(db) as bl:
            return _run_once(bl, config, full, progress)
    bl, owned = _open(db)
    try:
        return _run_once(bl, config, full, progress)
    finally:
        if owned:
            bl.close()


def _run_once(bl: Blocklist, config: ReplicationConfig, full: bool,
              progress: Callable[[str, int, int | None], None] | None) -> ReplicationReport:
    replicator = _Replicator(bl, config, progress)
    try:
        return replicator.run_once(full=full)
    finally:
        replicator.source.close()


def follow(db: Blocklist | str | os.PathLike[str], config: ReplicationConfig, *, stop: threading.Event,
           on_report: Callable[[ReplicationReport], None] | None = None,
           on_error: Callable[[BaseException], None] | None = None, retry_after: float = 10.0,
           settle: float = DEFAULT_SETTLE) -> None:
    """Replicate continuously on the longpoll feed until `stop` is set: one thread per source database waits
    for its changes; each batch is applied as it comes (one transaction with its checkpoint). A source that needs
    a full re-replication pauses them all for it. Errors are reported and retried after `retry_after` seconds,
    doubling with each failure in a row up to 30 times that.

    After a batch, a database's thread waits `settle` seconds before it asks again, so changes that trickle in
    one by one land together: every transaction rewrites the prefilter (~2.3 MB and its index for 900k codes)
    and syncs the disk, and a change a transaction would cost that much write each."""
    backoff = _Backoff(retry_after)
    if _is_new(db):
        while not stop.is_set():                  # the first pass builds the store aside
            try:
                report = replicate(db, config)
                if on_report is not None:
                    on_report(report)
                break
            except (ReplicationError, StoreError) as exc:
                if on_error is not None:
                    on_error(exc)
                stop.wait(backoff.failed())
        if stop.is_set():
            return
    bl, owned = _open(db)
    replicator = _Replicator(bl, config, None)
    replicator.source.stop = stop
    try:
        while not stop.is_set():
            try:
                report = replicator.run_once()
                backoff.succeeded()
                if on_report is not None:
                    on_report(report)
                need_full = threading.Event()
                workers = [threading.Thread(target=_follow_one, name=f"replicate-{name}", daemon=True,
                                            args=(replicator, name, stop, need_full, on_report, on_error,
                                                  retry_after, settle))
                           for name in config.databases.values()]
                for worker in workers:
                    worker.start()
                while not stop.is_set() and not need_full.is_set():
                    stop.wait(0.5)
                need_full.set()
                for worker in workers:
                    worker.join(config.longpoll_timeout + config.timeout + 5)
            except (ReplicationError, StoreError) as exc:
                if on_error is not None:
                    on_error(exc)
                stop.wait(backoff.failed())
    finally:
        replicator.source.close()
        if owned:
            bl.close()


def _follow_one(replicator: _Replicator, name: str, stop: threading.Event, need_full: threading.Event,
                on_report: Callable[[ReplicationReport], None] | None,
                on_error: Callable[[BaseException], None] | None, retry_after: float, settle: float) -> None:
    backoff = _Backoff(retry_after)
    while not stop.is_set() and not need_full.is_set():
        try:
            infos = {n: replicator.source.info(n) for n in [name]}
            with replicator.lock:
                reason = replicator.need_full({**infos})
            if reason is not None:
                need_full.set()
                return
            report = replicator.incremental({**_all_infos(replicator, infos)}, longpoll=True, only=name)
            backoff.succeeded()
            if report.changes:
                if on_report is not None:
                    on_report(report)
                stop.wait(settle)             # let a trickle of changes gather into the next batch
        except _BadCheckpoint:
            need_full.set()
            return
        except (ReplicationError, StoreError) as exc:
            if on_error is not None:
                on_error(exc)
            stop.wait(backoff.failed())


class _Backoff:
    """Waits between failed attempts: `first` seconds, doubling up to 30 times that (5 min by default), ±10 %;
    back to `first` after a success. A source that is down or answers garbage is not hammered."""

    def __init__(self, first: float) -> None:
        self.first = first
        self.failures = 0

    def failed(self) -> float:
        self.failures += 1
        return min(self.first * 30, self.first * 2 ** min(self.failures - 1, 10)) * random.uniform(0.9, 1.1)

    def succeeded(self) -> None:
        self.failures = 0


def _all_infos(replicator: _Replicator, infos: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {n: infos.get(n, {}) for n in replicator.config.databases.values()}
