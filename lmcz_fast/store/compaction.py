"""Giving a store's file back its free pages: `compact` rewrites `data.mdb` with only the pages in use.

Why a store grows: LMDB never shrinks its file and keeps the two latest committed versions valid (its two meta
pages), so a full load (one transaction that replaces every code) needs the previous version, the one it replaces
and the new one at once: ~3x the list. Later writes reuse the freed pages, but the file keeps its high-water mark.

`compact(path)` copies the live pages (LMDB's own compacting copy, `mdb_env_copy2(MDB_CP_COMPACT)`: every table,
the sold register, the metadata, the checkpoints) into a new file and moves it over `data.mdb`. It needs the store
to itself: LMDB's processes share the file through its lock file, and a process that kept the old file open would
go on with pages that are no longer there. So it takes LMDB's exclusive lock (byte 0 of `lock.mdb`, what the first
process to open a store takes) and refuses (`StoreBusyError`) when another process has the store open; a process
that tries to open it meanwhile waits, then fails with an error (the old lock file is invalidated before it is
let go) and opens the new file when started again. `compact_if_worth` is the automatic form, run by the one-shot
writing commands after they closed the store: it compacts only when the file is more than `WORTH_RATIO` times
the pages in use (and at least `WORTH_BYTES` would come back) and nobody else has the store open.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import time
from dataclasses import dataclass

import lmdb

from .environment import _ENV_LOCK, _ENVS, MAP_SIZE, MAX_DBS, MAX_READERS
from .errors import StoreError

__all__ = ["CompactReport", "StoreBusyError", "WORTH_BYTES", "WORTH_RATIO", "compact", "compact_if_worth",
           "exclusive", "invalidate_lock", "live_bytes", "space"]

#: Compact automatically when the file is more than this many times the pages in use ...
WORTH_RATIO = 1.5
#: ... and at least this much would come back.
WORTH_BYTES = 4 << 20


class StoreBusyError(StoreError):
    """Another process has the store open: it cannot be compacted now."""


@dataclass(frozen=True)
class CompactReport:
    path: str
    before: int          # bytes of data.mdb before
    after: int           # and after
    seconds: float

    def summary(self) -> str:
        saved = self.before - self.after
        return (f"compacted {self.path}: {self.before / 2**20:.1f} MiB -> {self.after / 2**20:.1f} MiB "
                f"({saved / 2**20:.1f} MiB given back) in {self.seconds:.2f} s")


def _data(path: str) -> str:
    return os.path.join(path, "data.mdb")


def _open(path: str, readonly: bool = True) -> lmdb.Environment:
    try:
        return lmdb.open(path, map_size=MAP_SIZE, max_dbs=MAX_DBS, max_readers=MAX_READERS, readahead=False,
                         subdir=True, create=False, readonly=readonly, lock=True)
    except lmdb.Error as exc:
        raise StoreError(f"cannot open the database at {path}: {exc}") from exc


def live_bytes(env: lmdb.Environment) -> int:
    """Bytes of the pages the current version uses: every table's branch, leaf and overflow pages, the main
    table's and the two meta pages."""
    stat = env.stat()
    psize = stat["psize"]
    pages = 2 + stat["branch_pages"] + stat["leaf_pages"] + stat["overflow_pages"]
    with env.begin() as txn:
        names = [bytes(key) for key, _ in txn.cursor()]
    for name in names:
        try:
            db = env.open_db(name, create=False)
        except lmdb.Error:
            continue          # a plain key of the main table, not a named one
        with env.begin() as txn:
            s = txn.stat(db)
        pages += s["branch_pages"] + s["leaf_pages"] + s["overflow_pages"]
    return pages * psize


def space(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(bytes of data.mdb, bytes its current version uses), read without taking the store."""
    path = os.fspath(path)
    size = os.path.getsize(_data(path))
    env = _open(path)
    try:
        return size, live_bytes(env)
    finally:
        env.close()


def _open_here(path: str) -> bool:
    with _ENV_LOCK:
        return os.path.realpath(path) in _ENVS


@contextlib.contextmanager
def exclusive(path: str):
    """LMDB's exclusive lock of the store (byte 0 of lock.mdb), or `StoreBusyError` if another process has it
    open. Yields the lock file's descriptor."""
    try:
        fd = os.open(os.path.join(path, "lock.mdb"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise StoreError(f"cannot open the lock file of {path}: {exc.strerror or exc}") from exc
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0)
        except OSError:
            raise StoreBusyError(f"{path} is open in another process (serve, sync, replicate?): stop it first "
                                 f"(systemctl stop lmcz-fast-serve lmcz-fast-sync), then compact; nothing was "
                                 f"changed") from None
        yield fd
    finally:
        os.close(fd)


def invalidate_lock(lock_fd: int) -> None:
    """Make a lock file LMDB will refuse to share (its magic zeroed): a process that waited for `exclusive` to
    end fails to open the store (and opens the new file when started again) instead of mixing the old lock
    table with a new data file. The file's size stays (a process that has it mapped may still touch it)."""
    os.pwrite(lock_fd, b"\0" * 8, 0)


def compact(path: str | os.PathLike[str]) -> CompactReport:
    """Rewrite the store at `path` with only its pages in use (see the module's text). `StoreBusyError` when
    another process (or a handle of this one) has it open; any failure before the move leaves the store as it was.
    """
    path = os.fspath(path)
    if not os.path.exists(_data(path)):
        raise StoreError(f"no database at {path}")
    if _open_here(path):
        raise StoreBusyError(f"{path} is open in this process: close it before compacting")
    started = time.perf_counter()
    before = os.path.getsize(_data(path))
    with exclusive(path) as lock_fd:
        work = tempfile.mkdtemp(prefix=".compact.", dir=path)
        env = _open(path, readonly=False)
        try:
            try:
                env.copy(work, compact=True)
                fd = os.open(os.path.join(work, "data.mdb"), os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except (lmdb.Error, OSError) as exc:
                raise StoreError(f"compacting {path} failed ({exc}); the store is as it was") from exc
            # A process waiting for the lock (it tried to open the store meanwhile) holds the old lock file:
            # make that file invalid for it (LMDB then refuses to open, and a restart opens the new file) ...
            invalidate_lock(lock_fd)
            # ... then the compacted file takes the place of the old one, and the next opener makes a new lock file.
            os.replace(os.path.join(work, "data.mdb"), _data(path))
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(path, "lock.mdb"))
            dfd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        finally:
            env.close()
            shutil.rmtree(work, ignore_errors=True)
    return CompactReport(path, before, os.path.getsize(_data(path)), time.perf_counter() - started)


def compact_if_worth(path: str | os.PathLike[str], *, ratio: float = WORTH_RATIO,
                     min_bytes: int = WORTH_BYTES) -> CompactReport | None:
    """`compact` when the file is over `ratio` times the pages in use, at least `min_bytes` would come back, and
    no other process has the store open; else None (nothing done). Never raises for a busy store."""
    path = os.fspath(path)
    if not os.path.exists(_data(path)) or _open_here(path):
        return None
    try:
        size, live = space(path)
    except (StoreError, OSError):
        return None
    if size <= ratio * live or size - live < min_bytes:
        return None
    try:
        return compact(path)
    except StoreBusyError:
        return None
