"""The shrink guard: a full replacement that would shrink the list by more than a set share is refused.

A national blocklist does not lose a fifth of its codes between two syncs; a source database recreated empty, a
half-exported file or a publisher's bad snapshot does. Every full replacement of a store that already holds a list
(`Blocklist.load(replace=True)`: `load --replace`, a feed snapshot, a full re-replication) passes through
`check_replacement`, called inside the write transaction that would make the replacement, so no writer can go
around it. When the blocked codes and GTINs together, or the table records (minimum prices, grey GTINs) when the
replacement replaces them, would shrink by more than the store's `shrink_limit` (a share, default 0.2 = 20 %):

- the transaction is aborted: the old list keeps serving, unchanged;
- `ShrinkRefusedError` (a `StoreError`) is raised to the writer, and the refusal is recorded in the store's
  metadata (`shrink_held`: when, the counts before and after, the share, the limit) in a transaction of its own,
  so every surface says why: `lmcz-fast status`/`guard`, the store's `info()`, the service's status and status
  page (a warning), `/metrics` (`lmcz_store_shrink_held`) and the log;
- an operator accepts it explicitly with `lmcz-fast guard DB --accept` (or `replicate --accept-shrink`, `load
  --accept-shrink`): a logged, one-shot `shrink_accept` that the next full replacement consumes in its own
  transaction, whatever its size. A successful full replacement clears `shrink_held`.

`shrink_limit` 1 turns the guard off for a store; a store that never held a list (version 0) has nothing to lose.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import logging
import os
import time
from collections.abc import Iterator
from typing import Any

import lmdb

from .environment import DB_META
from .errors import StoreError
from .tables import META_COUNTS

#: What the guard's reports and actions take: a `Blocklist` (its `path`, `get_meta`, `set_meta`); typed loosely,
#: as the blocklist imports the writer that calls this module.
Blocklist = Any

log = logging.getLogger("lmcz_fast.store")

#: Meta fields: the share (0..1) a full replacement may shrink the list by; the standing refusal; the acceptance.
META_LIMIT = "shrink_limit"
META_HELD = "shrink_held"
META_ACCEPT = "shrink_accept"
DEFAULT_LIMIT = 0.2


class ShrinkRefusedError(StoreError):
    """A full replacement would shrink the list by more than the store's `shrink_limit`; nothing was changed."""

    def __init__(self, message: str, held: dict[str, Any]) -> None:
        super().__init__(message)
        self.held = held


def _get(txn: lmdb.Transaction, meta_db: Any, name: str, default: Any = None) -> Any:
    raw = txn.get(name.encode(), db=meta_db)
    return default if raw is None else json.loads(bytes(raw))


def _limit(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        return DEFAULT_LIMIT
    return float(value)


def check_replacement(txn: lmdb.Transaction, dbs: dict[bytes, Any], *, blocked: int, records: int | None) -> None:
    """Inside a full replacement's write transaction: refuse (raise `ShrinkRefusedError`, the caller's transaction
    aborts) a replacement to `blocked` codes and GTINs and, when the tables are replaced, `records` table records,
    that shrinks either by more than the limit; else clear a standing refusal and consume an acceptance."""
    meta_db = dbs[DB_META]
    limit = _limit(_get(txn, meta_db, META_LIMIT))
    accepted = _get(txn, meta_db, META_ACCEPT)
    before = int(_get(txn, meta_db, "codes", 0)) + int(_get(txn, meta_db, "gtins", 0))
    parts = [("blocked codes and GTINs", before, blocked)]
    if not _get(txn, meta_db, "version", 0):
        parts = []                                  # no list yet: nothing to lose
    elif records is not None:
        parts.append(("table records", sum(int(_get(txn, meta_db, name, 0)) for name in META_COUNTS.values()),
                      records))
    for what, old, new in parts:
        share = (old - new) / old if old else 0.0
        if share > limit and not accepted:
            held = {"at": time.time(), "what": what, "before": old, "after": new, "share": round(share, 4),
                    "limit": limit, "version": _get(txn, meta_db, "version")}
            raise ShrinkRefusedError(describe(held), held)
    if accepted:
        txn.delete(META_ACCEPT.encode(), db=meta_db)
        log.warning("shrink guard: a full replacement to %d codes and GTINs (from %d) went through on the "
                    "operator's acceptance of %s", blocked, before, _when(accepted.get("at")))
    txn.delete(META_HELD.encode(), db=meta_db)


@contextlib.contextmanager
def refusals_recorded(handle: Any) -> Iterator[None]:
    """Around a full replacement's write transaction (`handle`: the store's `StoreHandle`): a refusal is recorded
    in the store (its own transaction, after the refused one aborted) and logged, then raised on."""
    try:
        yield
    except ShrinkRefusedError as exc:
        log.error("shrink guard: %s", exc)
        try:
            with handle.write() as txn:
                txn.put(META_HELD.encode(), json.dumps(exc.held).encode(), db=handle.dbs[DB_META])
            handle.renew()
        except StoreError as failed:      # e.g. a full disk: the refusal itself stands, only its record is lost
            log.error("shrink guard: could not record the refusal: %s", failed)
        raise


def describe(held: dict[str, Any]) -> str:
    """A standing refusal in words, with the way out."""
    return (f"a full replacement would shrink the {held.get('what', 'list')} from {held.get('before', 0):,} to "
            f"{held.get('after', 0):,} ({float(held.get('share', 0)):.0%}, more than the limit of "
            f"{float(held.get('limit', DEFAULT_LIMIT)):.0%}); refused {_when(held.get('at'))}: version "
            f"{held.get('version')} keeps serving. If the source really shrank, accept it with "
            f"`lmcz-fast guard DB --accept` (the next full replacement goes through)")


def _when(ts: Any) -> str:
    if not isinstance(ts, (int, float)):
        return "at an unknown time"
    return "at " + time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


# -- what the surfaces read, and the operator's actions -------------------------------------------------------------


def held(bl: Blocklist) -> dict[str, Any] | None:
    """The standing refusal of a store, or None."""
    value = bl.get_meta(META_HELD)
    return value if isinstance(value, dict) else None


def state(bl: Blocklist) -> dict[str, Any]:
    """The guard of one store: its limit, the standing refusal and a pending acceptance (None when there is none)."""
    accept = bl.get_meta(META_ACCEPT)
    return {"limit": _limit(bl.get_meta(META_LIMIT)), "held": held(bl),
            "accepted": accept if isinstance(accept, dict) else None}


def warnings(bl: Blocklist) -> list[str]:
    """What an operator must know (the service's warnings, the status page)."""
    refusal = held(bl)
    return [] if refusal is None else [describe(refusal)]


def metrics(bl: Blocklist) -> dict[str, float]:
    """`/metrics` gauges: a refusal stands (1/0), and the counts it was about."""
    refusal = held(bl)
    if refusal is None:
        return {"lmcz_store_shrink_held": 0}
    return {"lmcz_store_shrink_held": 1, "lmcz_store_shrink_held_before": refusal.get("before", 0),
            "lmcz_store_shrink_held_after": refusal.get("after", 0)}


def accept(bl: Blocklist, note: str | None = None) -> dict[str, Any]:
    """The operator accepts the next full replacement whatever it shrinks (one shot; logged)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    value: dict[str, Any] = {"at": time.time(), "by": user, "pid": os.getpid(), "note": note or "",
             "held": held(bl)}
    bl.set_meta(**{META_ACCEPT: value})
    refusal = value["held"]
    log.warning("shrink guard: %s accepted the next full replacement of %s%s%s", user, bl.path,
                f" (standing refusal: {refusal['before']:,} -> {refusal['after']:,})" if refusal else "",
                f"; note: {note}" if note else "")
    return value


def set_limit(bl: Blocklist, share: float) -> None:
    """Set the share (0..1) a full replacement may shrink the list by; 1 turns the guard off."""
    if isinstance(share, bool) or not 0 <= share <= 1:
        raise StoreError(f"the shrink limit is a share from 0 to 1, not {share!r}")
    bl.set_meta(**{META_LIMIT: float(share)})
    log.warning("shrink guard: the limit of %s is now %.0f%%", bl.path, share * 100)
