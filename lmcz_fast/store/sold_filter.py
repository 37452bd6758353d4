"""The sold register as the compiled check reads it: a `SoldFilter` per version, kept up to date incrementally.

A check asks the sold register about every code, and almost every code was never sold. The compiled pass
(`_probe.ProbeBase._check`) answers that from a `SoldFilter`, a hash set holding a superset of the register's
identities: a miss proves "not sold"; a hit goes to the register itself (`sold.sold_in`, in the same read
transaction), which also judges expiry. The filter must hold every identity of the version it answers for.

Building one reads the whole register, so one filter is kept per store handle and brought forward from version to
version by reading only what was added. That needs the writer's help (`note_added`, called by every write that
adds entries, in the same write transaction): the register's time index (`sold_time`, keys `sold-at ms (u64 BE)
+ identity`) is mostly appended to, and the metadata says how far:

- `sold_high`: the greatest time key ever added (hex), so a reader that saw the register up to `sold_high` = H
  finds every later addition among the time keys after H;
- `sold_epoch`: a random token, renewed by any addition stamped before `sold_high`'s millisecond (a sale stamped
  in the past, an import), by a clear, and whenever either field is missing (a store written before this existed).

So a reader whose filter is synced to (epoch E, high H) and sees (E, H') with H' >= H adds the time keys from H's
millisecond on and is exact again (two sales of one millisecond may come in either order of their identities:
the millisecond, not the whole key, is what an addition must not fall below); any other change rebuilds the filter from the register. Removals (returns, purges)
leave stale hits that the exact lookup answers; a rebuild drops them.
"""

from __future__ import annotations

import json
import secrets
import threading
from dataclasses import dataclass
from typing import Any

import lmdb

from .._probe import SoldFilter
from .environment import DB_META, DB_SOLD, DB_SOLD_TIME

META_SOLD_EPOCH = b"sold_epoch"
META_SOLD_HIGH = b"sold_high"


def _read_json(txn: lmdb.Transaction, db: Any, key: bytes) -> Any:
    raw = txn.get(key, db=db)
    return None if raw is None else json.loads(bytes(raw))


def note_added(txn: lmdb.Transaction, meta_db: Any, time_keys: list[bytes]) -> None:
    """Record, inside the write transaction that added them, that `time_keys` were added to the register's time
    index (see the module doc): raises `sold_high`, and renews `sold_epoch` unless no key's millisecond is below
    its millisecond."""
    if not time_keys:
        return
    epoch = _read_json(txn, meta_db, META_SOLD_EPOCH)
    high_hex = _read_json(txn, meta_db, META_SOLD_HIGH)
    high = bytes.fromhex(high_hex) if isinstance(high_hex, str) else None
    lowest, highest = min(time_keys), max(time_keys)
    if not isinstance(epoch, str) or high is None or lowest[:8] < high[:8]:
        renew_epoch(txn, meta_db)
    if high is None or highest > high:
        txn.put(META_SOLD_HIGH, json.dumps(highest.hex()).encode(), db=meta_db)


def renew_epoch(txn: lmdb.Transaction, meta_db: Any) -> None:
    """Make every reader rebuild its sold filter from the register (a clear, an addition in the past)."""
    txn.put(META_SOLD_EPOCH, json.dumps(secrets.token_hex(8)).encode(), db=meta_db)


@dataclass(slots=True)
class _Synced:
    filter: SoldFilter
    epoch: str
    high: bytes
    built: int      # the read snapshot (txn id) it was built from
    synced: int     # the snapshot it was last brought forward to: it holds every identity of that version


class SoldFilters:
    """The sold filters of one store handle: `for_version` gives the one a version answers from."""

    def __init__(self, dbs: dict[bytes, Any]) -> None:
        self._dbs = dbs
        self._lock = threading.Lock()
        self._state: _Synced | None = None
        #: How many times a filter was built from the whole register, and brought forward (tests, benches).
        self.builds = 0
        self.syncs = 0

    def for_version(self, txn: lmdb.Transaction, snapshot: int) -> SoldFilter | None:
        """A filter holding every identity of the register as read transaction `txn` (snapshot id `snapshot`)
        sees it, or None when the register is empty there. Call with the handle's lock held (it reads `txn`)."""
        dbs = self._dbs
        if not int(txn.stat(dbs[DB_SOLD])["entries"]):
            return None
        epoch = _read_json(txn, dbs[DB_META], META_SOLD_EPOCH)
        high_hex = _read_json(txn, dbs[DB_META], META_SOLD_HIGH)
        high = bytes.fromhex(high_hex) if isinstance(high_hex, str) else None
        with self._lock:
            state = self._state
            if state is not None:
                if snapshot == state.synced:
                    return state.filter
                # (A version between two syncs may hold a sale made and returned between them, which the later
                # sync did not see: it gets a filter of its own below. Versions are read in order: rare.)
                if snapshot > state.synced and epoch == state.epoch and high is not None and high >= state.high:
                    self._add_after(txn, state.filter, state.high)
                    state.high = high
                    self.syncs += 1
                    state.synced = snapshot
                    return state.filter
            built = self._build(txn)
            if isinstance(epoch, str) and high is not None and (state is None or snapshot >= state.synced):
                self._state = _Synced(built, epoch, high, snapshot, snapshot)
            return built

    def _build(self, txn: lmdb.Transaction) -> SoldFilter:
        db = self._dbs[DB_SOLD]
        built = SoldFilter(int(txn.stat(db)["entries"]))
        with txn.cursor(db=db) as cursor:
            built.add_keys(cursor.iternext(keys=True, values=False))
        self.builds += 1
        return built

    def _add_after(self, txn: lmdb.Transaction, target: SoldFilter, high: bytes) -> None:
        with txn.cursor(db=self._dbs[DB_SOLD_TIME]) as cursor:
            if not cursor.set_range(high[:8]):     # from high's millisecond: see the module doc
                return
            target.add_keys(cursor.iternext(keys=True, values=False), 8)
