"""`adopt`: a store that held files (`lmcz-fast load`) moves to a feed, keeping what the store itself learnt.

A store loaded from files counts its own versions; a feed counts the publisher's. Once the store's count is ahead
(`sync` then says "the feed offers version 2; the store already holds 3"), its deltas can never apply and `sync`
rightly refuses. Adopting the feed builds a new store from the feed's signed snapshot (a first sync, every check
of `sync`), under the same instance id, carries over the sold register (the codes this store sold: they must stay
refused), its retention and the grey-list switch, and only then puts the new store in the old one's place; the old
one is kept beside it (`DB.before-adopt-<time>`) until the operator removes it. The audit log is a directory of
its own (`DB.audit`) and is not touched. The swap needs the store to itself (serve and sync stopped), like
`compact`; a refusal or a failed sync leaves the old store as it was.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from typing import Any

from ..store import Blocklist, StoreBusyError, StoreError, exclusive, invalidate_lock
from .syncing import sync

__all__ = ["AdoptReport", "adopt"]


@dataclass(frozen=True)
class AdoptReport:
    path: str
    kept: str                 # where the old store now is
    from_version: int         # the old store's own version
    to_version: int           # the feed's
    codes: int
    sold: int                 # sold-register entries carried over

    def summary(self) -> str:
        return (f"{self.path} now follows the feed at version {self.to_version} ({self.codes} codes; was version "
                f"{self.from_version} from files); {self.sold} sold-register entries carried over; the old store "
                f"is kept at {self.kept} (remove it once the new one serves)")


def adopt(db: str | os.PathLike[str], feed_url: str, public_key: Any, **sync_options: Any) -> AdoptReport:
    """Replace the list of the store `db` with the feed's snapshot (see the module's text). Raises what `sync`
    raises (`FeedError`s, nothing changed), `StoreBusyError` when another process has the store open."""
    path = os.path.normpath(os.fspath(db))
    if not os.path.exists(os.path.join(path, "data.mdb")):
        raise StoreError(f"no database at {path}: a first `lmcz-fast sync {path} --feed URL` makes one")
    with exclusive(path):
        pass                                           # refuse early: the services must be stopped
    with Blocklist.open(path) as old:
        instance = old.get_meta("instance_id")
        from_version = old.get_meta("version")
        grey = old.get_meta("grey_list_enabled")
        keep_sold = old.sold.expire_after()
        sold_lines = list(old.sold.export_lines())
    parent = os.path.dirname(os.path.abspath(path))
    work = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", suffix=".adopting", dir=parent)
    new = os.path.join(work, "store.db")
    try:
        with Blocklist.building(new, instance_id=instance) as bl:
            report = sync(bl, feed_url, public_key, **sync_options)
        with Blocklist.open(new, readonly=False) as bl:
            bl.sold.set_expire_after(keep_sold)
            carried = bl.sold.import_lines(sold_lines) if len(sold_lines) > 1 else 0
            if grey is not None:
                bl.set_meta(grey_list_enabled=grey)
            codes = bl.info()["codes"]
        kept = f"{path}.before-adopt-{time.strftime('%Y%m%dT%H%M%S')}"
        with exclusive(path) as lock_fd:
            invalidate_lock(lock_fd)
            os.rename(path, kept)
            os.rename(new, path)
    except StoreBusyError:
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return AdoptReport(path, kept, from_version, report.to_version, codes, carried)
