"""`SoldRegister`: the sold register of one open `Blocklist` (`bl.sold`): its write operations (alone, or in a
group commit), its durable writes, its reads from the store's current version; its export and import in the format
of transfer.py, its purge by the clock of clock.py."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import lmdb

from ..._codes import CodeError, MarkingCode, parse_code
from ..environment import DB_META, DB_SOLD, DB_SOLD_TIME
from ..errors import StoreError
from ..group_commit import DEFAULT_MAX_BATCH, GroupCommitter, Job
from ..handle import StoreHandle
from ..sold_filter import note_added, renew_epoch
from .clock import PurgeClock
from .records import DEFAULT_SOLD_EXPIRE_AFTER, Owner, SoldEntry, _ms, _value, newest_time_ms, sold_in, split_value
from .transfer import export_lines, read_export

#: Expired entries purged per write transaction at most (the rest go in the next ones, or in idle housekeeping).
PURGE_PER_COMMIT = 2000
#: The purge never deletes by a time further than this past the database's newest own time (seconds).
PURGE_LEAD = 86400.0
#: Most entries `page()` (and `GET /cis/sold`) returns at once, as the official module's `limit`.
MAX_PAGE = 1000


def _parse_sales(raws: Sequence[Any]) -> list[MarkingCode]:
    """Parse every code first, so that one bad code refuses the whole call with nothing written."""
    if isinstance(raws, (str, bytes)):
        raise TypeError("pass a list of codes, not one code")
    codes = []
    for index, raw in enumerate(raws):
        if not isinstance(raw, (str, bytes)):
            error = CodeError("not_a_string", None, f"item {index} is {type(raw).__name__}, not a string")
            error.index = index  # type: ignore[attr-defined]
            raise error
        try:
            codes.append(parse_code(raw))
        except CodeError as exc:
            exc.index = index  # type: ignore[attr-defined]
            raise
    return codes


class SoldRegister:
    """The sold register of one open `Blocklist` (`bl.sold`). Thread-safe; writes are durable on return."""

    def __init__(self, handle: StoreHandle) -> None:
        self._handle = handle
        self._clock = PurgeClock()

    # -- plumbing --------------------------------------------------------------------------------------------

    @property
    def _env(self) -> lmdb.Environment:
        return self._handle.env

    @property
    def _db(self) -> Any:
        return self._handle.dbs[DB_SOLD]

    @property
    def _time_db(self) -> Any:
        return self._handle.dbs[DB_SOLD_TIME]

    def _meta_field(self, name: str) -> Any:
        handle = self._handle
        with handle.lock:
            return handle.fresh().meta().get(name)

    def expire_after(self) -> float:
        """Seconds a sale is remembered (metadata field `sold_expire_after`, default 30 days)."""
        value = self._meta_field("sold_expire_after")
        return DEFAULT_SOLD_EXPIRE_AFTER if not value else float(value)

    def _cutoff_ms(self, meta: dict[str, Any], now: float | None = None) -> int:
        expire = meta.get("sold_expire_after") or DEFAULT_SOLD_EXPIRE_AFTER
        return int(((time.time() if now is None else now) - float(expire)) * 1000)

    def _cutoff_in(self, txn: lmdb.Transaction) -> int:
        """The expiry cutoff (Unix ms) by the metadata of a write transaction: older entries are expired."""
        raw = txn.get(b"sold_expire_after", db=self._handle.dbs[DB_META])
        return self._cutoff_ms({"sold_expire_after": json.loads(bytes(raw)) if raw is not None else None})

    def _begin_write(self) -> Any:
        """A durable write transaction; LMDB failures come out as typed `StoreError`s (disk full, map full)."""
        return self._handle.write()

    def _write(self, op: Callable[[lmdb.Transaction], Any]) -> Any:
        """One durable write transaction running `op`, then this handle sees it from its next read."""
        with self._begin_write() as txn:
            result = op(txn)
        self.invalidate()
        return result

    def invalidate(self) -> None:
        """Make this handle's next read start a fresh read transaction (called after every commit; see
        `reading.Versions.invalidate`)."""
        self._handle.invalidate()

    # -- write operations, each applied inside a write transaction (alone or in a group commit) ---------------

    def op_record(self, codes: Sequence[MarkingCode], at_ms: int, *, by_clock: bool = False,
                  owner: Owner | None = None) -> Callable[[lmdb.Transaction], list[SoldEntry]]:
        """Record `codes` sold at `at_ms`. `by_clock`: the time was read from this machine's clock, so it is raised
        to the newest time the database holds if it is earlier (a clock behind; see the module's "Time"). `owner`:
        the organisation selling (recorded with the sale); a code another owner's record holds is left as it is and
        its entry returned (naming that organisation: the caller tells the till)."""
        db, time_db, meta_db = self._db, self._time_db, self._handle.dbs[DB_META]
        organisation = None if owner is None else owner.inn

        def op(txn: lmdb.Transaction) -> list[SoldEntry]:
            out = []
            added = []
            stamp_ms = max(at_ms, newest_time_ms(txn, time_db, meta_db)) if by_clock else at_ms
            cutoff = 0 if owner is None else self._cutoff_in(txn)
            for code in codes:
                packed = code.identity.encode("ascii")
                old = txn.get(packed, db=db)
                when = stamp_ms
                if old is not None and owner is not None:
                    old_ms, old_cis, old_org = split_value(old)
                    if not owner.owns(old_org) and old_ms >= cutoff:    # another's live sale: left as it is
                        out.append(SoldEntry(code.identity, old_cis, old_ms, old_org))
                        continue
                if old is not None:
                    old_ms = int.from_bytes(old[:8], "big")
                    if old_ms >= when:        # an older report of a sale never moves the entry back in time
                        when = old_ms
                    txn.delete(bytes(old[:8]) + packed, db=time_db)
                stamp = _ms(when)
                txn.put(packed, _value(stamp, code.cis, organisation), db=db)
                txn.put(stamp + packed, b"", db=time_db)
                added.append(stamp + packed)
                out.append(SoldEntry(code.identity, code.cis, when, organisation))
            note_added(txn, meta_db, added)     # readers' sold filters find these (store/sold_filter.py)
            return out

        return op

    def op_remove(self, codes: Sequence[MarkingCode],
                  owner: Owner | None = None) -> Callable[[lmdb.Transaction], list[bool | None]]:
        """Take codes out of the register. Per code: whether it was there; None for a record of another owner than
        `owner` (left in place)."""
        db, time_db = self._db, self._time_db

        def op(txn: lmdb.Transaction) -> list[bool | None]:
            out: list[bool | None] = []
            for code in codes:
                packed = code.identity.encode("ascii")
                old = txn.get(packed, db=db)
                if old is not None and owner is not None and not owner.owns(split_value(old)[2]):
                    out.append(None)
                    continue
                if old is not None:
                    txn.delete(packed, db=db)
                    txn.delete(bytes(old[:8]) + packed, db=time_db)
                out.append(old is not None)
            return out

        return op

    def op_clear(self, owner: Owner | None = None) -> Callable[[lmdb.Transaction], int]:
        """Empty the register; with `owner`, take out that owner's records only (the others' stay)."""
        db, time_db = self._db, self._time_db

        meta_db = self._handle.dbs[DB_META]

        def op(txn: lmdb.Transaction) -> int:
            if owner is None:
                count = int(txn.stat(db)["entries"])
                txn.drop(db, delete=False)
                txn.drop(time_db, delete=False)
                renew_epoch(txn, meta_db)
                return count
            # One owner's records only: removals, as returns are (readers' sold filters keep stale hits, which the
            # exact lookup answers; store/sold_filter.py).
            mine = []
            with txn.cursor(db=db) as cursor:
                for key, value in cursor.iternext(keys=True, values=True):
                    if owner.owns(split_value(value)[2]):
                        mine.append((bytes(key), bytes(value[:8])))
            for key, stamp in mine:
                txn.delete(key, db=db)
                txn.delete(stamp + key, db=time_db)
            return len(mine)

        return op

    def op_purge(self, now: float | None = None, limit: int | None = PURGE_PER_COMMIT) -> Callable[[lmdb.Transaction],
                                                                                                  int]:
        """Delete entries older than the expiry, oldest first, at most `limit` (None: all)."""
        db, time_db, meta_db = self._db, self._time_db, self._handle.dbs[DB_META]

        def op(txn: lmdb.Transaction) -> int:
            raw = txn.get(b"sold_expire_after", db=meta_db)
            expire = (json.loads(bytes(raw)) if raw is not None else None) or DEFAULT_SOLD_EXPIRE_AFTER
            if now is None:
                clock = min(self._clock.now(), newest_time_ms(txn, time_db, meta_db) / 1000 + PURGE_LEAD)
            else:
                clock = now
            cutoff = _ms((clock - float(expire)) * 1000)
            removed = 0
            with txn.cursor(db=time_db) as cursor:
                if not cursor.first():
                    return 0
                while limit is None or removed < limit:
                    key = bytes(cursor.key())
                    if not key or key[:8] >= cutoff:
                        break
                    packed = key[8:]
                    value = txn.get(packed, db=db)
                    if value is not None and value[:8] == key[:8]:
                        txn.delete(packed, db=db)
                    removed += 1
                    if not cursor.delete():
                        break
            return removed

        return op

    # -- writes (durable on return) ---------------------------------------------------------------------------

    def record(self, raws: Sequence[str | bytes], *, at: float | None = None) -> list[SoldEntry]:
        """Record sales of `raws` (scans in any form `parse_code` takes) at `at` (Unix s, default now).

        Raises `CodeError` (with `.index`) if any is not a marking code; then nothing is recorded. Selling a code
        again moves its entry to the later time. Without `at`, the clock's time is never earlier than the newest
        time the database holds (see the module's "Time").
        """
        codes = _parse_sales(raws)
        at_ms = int((time.time() if at is None else at) * 1000)
        record, purge = self.op_record(codes, at_ms, by_clock=at is None), self.op_purge()

        def op(txn: lmdb.Transaction) -> list[SoldEntry]:
            result = record(txn)
            purge(txn)
            return result

        return self._write(op)

    def remove(self, raws: Sequence[str | bytes]) -> list[bool]:
        """Take codes out of the register (a return). Per code: whether it was there. `CodeError` as `record`."""
        return self._write(self.op_remove(_parse_sales(raws)))

    def clear(self) -> int:
        """Empty the register (the official module's `init` with `clearSold`). Returns how many entries it held."""
        return self._write(self.op_clear())

    def purge(self, now: float | None = None) -> int:
        """Delete every expired entry now (writes do it a little at a time anyway)."""
        return self._write(self.op_purge(now, limit=None))

    def set_expire_after(self, seconds: float) -> None:
        """How long sales are remembered from now on (metadata `sold_expire_after`, seconds, > 0)."""
        if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or not seconds > 0:
            raise StoreError(f"sold_expire_after must be a positive number of seconds, not {seconds!r}")
        meta_db, value = self._handle.dbs[DB_META], json.dumps(float(seconds)).encode()

        def op(txn: lmdb.Transaction) -> None:
            txn.put(b"sold_expire_after", value, db=meta_db)

        self._write(op)

    def committer(self, *, notify: Callable[[list[Job]], None] | None = None, max_batch: int = DEFAULT_MAX_BATCH,
                  housekeeping_every: float = 60.0) -> GroupCommitter:
        """A writer thread that commits queued register writes in batches (see store/group_commit.py). Each batch
        also purges some expired entries; this handle sees each commit from its next read."""
        purge = self.op_purge()
        return GroupCommitter(self._env, notify=notify, after_commit=self.invalidate, housekeeping=purge,
                              housekeeping_every=housekeeping_every, max_batch=max_batch,
                              name="lmcz-sold-writer", begin=self._begin_write)

    # -- reads ------------------------------------------------------------------------------------------------

    def _lookup(self, txn: lmdb.Transaction, identity: str, cutoff_ms: int) -> SoldEntry | None:
        value = txn.get(identity.encode("ascii"), db=self._db)
        if value is None:
            return None
        sold_at, cis, organisation = split_value(value)
        if sold_at < cutoff_ms:
            return None
        return SoldEntry(identity, cis, sold_at, organisation)

    def sold_in(self, txn: lmdb.Transaction, identity: str, meta: dict[str, Any], now: float) -> bool:
        """Whether `identity` is sold and not expired, in the given read transaction."""
        with txn.cursor(db=self._db) as cursor:
            return sold_in(cursor, identity, meta, now)

    def entry(self, raw: str | bytes) -> SoldEntry | None:
        """The register's entry for a scan, or None (not sold, or expired). `CodeError` for a bad scan."""
        identity = parse_code(raw).identity
        handle = self._handle
        with handle.lock:
            reading = handle.fresh()
            return self._lookup(reading.txn, identity, self._cutoff_ms(reading.meta()))

    def entries(self, codes: Sequence[MarkingCode]) -> list[SoldEntry | None]:
        """The register's entry for each code (None: not sold, or expired), from one snapshot."""
        handle = self._handle
        with handle.lock:
            reading = handle.fresh()
            cutoff = self._cutoff_ms(reading.meta())
            return [self._lookup(reading.txn, code.identity, cutoff) for code in codes]

    def is_sold(self, raw: str | bytes) -> bool:
        """Whether the code of this scan is in the register (and not expired)."""
        return self.entry(raw) is not None

    def count(self) -> int:
        """Entries not expired."""
        handle = self._handle
        with handle.lock:
            reading = handle.fresh()
            return self._count(reading.txn, self._cutoff_ms(reading.meta()))

    def _count(self, txn: lmdb.Transaction, cutoff_ms: int) -> int:
        total = int(txn.stat(self._db)["entries"])
        expired = 0
        cutoff = _ms(cutoff_ms)
        with txn.cursor(db=self._time_db) as cursor:
            for key in cursor.iternext(keys=True, values=False):
                if bytes(key[:8]) >= cutoff:
                    break
                expired += 1
        return total - expired

    def page(self, skip: int = 0, limit: int = MAX_PAGE, owner: Owner | None = None) -> tuple[int, list[SoldEntry]]:
        """`(total, entries)`: `limit` entries after the first `skip`, oldest sale first, from one snapshot. With
        `owner`, only that owner's records (counted and paged by a walk of the register: a backup's pace)."""
        if skip < 0 or not 0 <= limit <= MAX_PAGE:
            raise ValueError(f"skip must be >= 0 and limit between 0 and {MAX_PAGE}")
        handle = self._handle
        with handle.lock:
            reading = handle.fresh()
            cutoff = self._cutoff_ms(reading.meta())
            if owner is None:
                total = self._count(reading.txn, cutoff)
                return total, list(self._iter(reading.txn, cutoff, skip, limit))
            total, entries = 0, []
            for entry in self._iter(reading.txn, cutoff):
                if owner.owns(entry.organisation):
                    if skip <= total < skip + limit:
                        entries.append(entry)
                    total += 1
            return total, entries

    def _iter(self, txn: lmdb.Transaction, cutoff_ms: int, skip: int = 0,
              limit: int | None = None) -> Iterator[SoldEntry]:
        db = self._db
        with txn.cursor(db=self._time_db) as cursor:
            if not cursor.set_range(_ms(cutoff_ms)):
                return
            produced = 0
            for key in cursor.iternext(keys=True, values=False):
                if limit is not None and produced >= limit:
                    return
                if skip:
                    skip -= 1
                    continue
                key = bytes(key)
                value = txn.get(key[8:], db=db)
                if value is None:
                    continue
                _, cis, organisation = split_value(value)
                yield SoldEntry(key[8:].decode("ascii"), cis, int.from_bytes(key[:8], "big"), organisation)
                produced += 1

    def __iter__(self) -> Iterator[SoldEntry]:
        """Every entry not expired, oldest sale first, from one consistent snapshot."""
        with self._env.begin(buffers=True) as txn:
            raw = txn.get(b"sold_expire_after", db=self._handle.dbs[DB_META])
            meta = {"sold_expire_after": json.loads(bytes(raw)) if raw is not None else None}
            yield from self._iter(txn, self._cutoff_ms(meta))

    # -- export and import ----------------------------------------------------------------------------------

    def export_lines(self) -> Iterator[str]:
        """The register as JSON lines: a header naming this instance, then one entry per line, oldest first."""
        meta_db = self._handle.dbs[DB_META]
        with self._env.begin(buffers=True) as txn:
            raw_expire = txn.get(b"sold_expire_after", db=meta_db)
            raw_instance = txn.get(b"instance_id", db=meta_db)
            cutoff = self._cutoff_ms({"sold_expire_after": json.loads(bytes(raw_expire)) if raw_expire else None})
            instance_id = json.loads(bytes(raw_instance)) if raw_instance else None
            yield from export_lines(instance_id, self._count(txn, cutoff), self._iter(txn, cutoff))

    def import_lines(self, lines: Iterable[str], *, force: bool = False, replace: bool = False) -> int:
        """Load an export made by `export_lines`. Everything is read and checked first, then written in one
        durable transaction; any problem raises `SoldRegisterError` with nothing changed.

        An export of another instance (another store's sales) is refused unless `force` (a store moved to new
        hardware gets a new instance id). `replace` empties the register first; else entries are merged (the later
        sale time wins). Entries already expired here are skipped. Returns how many entries were written.
        """
        entries = read_export(lines, self._meta_field("instance_id"), force=force)
        cutoff = int((time.time() - self.expire_after()) * 1000)
        fresh = [(code, at, org) for code, at, org in entries if at >= cutoff]
        clear = self.op_clear()
        ops = [self.op_record([code], at, owner=None if org is None else Owner(org)) for code, at, org in fresh]

        def op(txn: lmdb.Transaction) -> int:
            if replace:
                clear(txn)
            for record in ops:
                record(txn)
            return len(ops)

        return self._write(op)
