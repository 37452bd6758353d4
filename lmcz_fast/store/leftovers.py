"""Directories a killed first build left behind: `.NAME.db.*.building` beside a store, removed once their builder
is gone.

`Blocklist.building` builds a new store in a hidden directory beside its path and holds an exclusive `flock` on
that directory for as long as it builds; the kernel lets go of the lock when the builder exits, however it exits
(kill -9 included). `sweep` (on the next build of, or writable open of, the same store) removes each such
directory whose lock it can take, that is older than a minute (a builder that has just made its directory has not
locked it yet) and whose LMDB environment no process has open (LMDB keeps a lock on `lock.mdb` while an
environment is open: this covers a builder of a version that did not lock its directory). A live build is never
touched.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import time
from collections.abc import Iterator

log = logging.getLogger("lmcz_fast.store")

#: A building directory younger than this is left alone whatever its lock says (its builder may not hold it yet).
GRACE = 60.0


@contextlib.contextmanager
def claimed(work: str) -> Iterator[None]:
    """Hold the building directory `work` for this builder until the block ends."""
    fd = os.open(work, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield
    finally:
        os.close(fd)


def sweep(path: str, now: float | None = None) -> list[str]:
    """Remove the building directories of the store at `path` whose builders are gone; returns what it removed."""
    parent = os.path.dirname(os.path.abspath(path)) or "."
    name = os.path.basename(os.path.abspath(path))
    prefix = f".{name}."
    now = time.time() if now is None else now
    removed: list[str] = []
    try:
        entries = os.listdir(parent)
    except OSError:
        return removed
    for entry in entries:
        if not (entry.startswith(prefix) and entry.endswith(".building")):
            continue
        work = os.path.join(parent, entry)
        try:
            if now - os.lstat(work).st_mtime < GRACE or os.path.islink(work):
                continue
            fd = os.open(work, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue                                   # its builder is alive
            if _environment_open(os.path.join(work, "lock.mdb")):
                continue
            shutil.rmtree(work, ignore_errors=True)
            if not os.path.exists(work):
                removed.append(work)
                log.warning("removed %s: a build of %s that did not finish (its builder is gone)", work, path)
        finally:
            os.close(fd)
    return removed


def _environment_open(lock_file: str) -> bool:
    """Whether some other process has the LMDB environment of `lock_file` open (LMDB holds a shared fcntl lock on
    it while it does). Only asked of directories this process never opened, so closing our descriptor drops no
    lock of ours."""
    try:
        fd = os.open(lock_file, os.O_RDWR)
    except FileNotFoundError:
        return False
    except OSError:
        return True                                    # cannot tell: leave it
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False
