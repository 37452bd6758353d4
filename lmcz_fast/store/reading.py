"""The reading side of a store: one version as calls answer from it (`Reading`), and the part of a `Blocklist`
that keeps the current one (`Versions`).

A `Blocklist` renews its LMDB read transaction at most every `refresh_interval`. Each transaction is a `Reading`:
it holds the transaction, reads the version's metadata and block details once, and confirms the prefilter hits of
the compiled probe attached to it. The probe's attachment keeps its `Reading` alive, so a call that took a version
answers from it to its end, and its pages stay pinned until the last such call lets go.
"""

from __future__ import annotations

import json
import time
import weakref
from typing import Any

import lmdb

from .._codes import MarkingCode, readings_of
from .._probe import ProbeBase, VerdictContext, pack_identity
from .environment import (
    BINARY_META,
    DB_BLOCKS,
    DB_CODES,
    DB_GTINS,
    DB_META,
    DB_SOLD,
    META_GTIN_INDEX,
    META_PREFILTER,
    PREFILTER_CHUNKS,
    Prefilter,
    begin_read,
    get_prefilter,
)
from .errors import NoListError, StoreError
from .freshness import holds_list, reference_time
from .handle import StoreHandle
from .keys import decode_block_id, pack_gtin
from .prices import TableCopy, Tables, is_grey_in, min_price_in, tables_answer
from .records import Block, Verdict
from .sold import sold_in
from .sold_filter import SoldFilters


def no_list_error(path: str) -> NoListError:
    return NoListError(f"no list loaded: {path} has never held a blocklist, so nothing can be checked against "
                       f"it; load one (`lmcz-fast load`) or sync it from a feed (`lmcz-fast sync`) first")


def read_meta(txn: lmdb.Transaction, meta_db: Any) -> dict[str, Any]:
    """Every metadata field of one transaction: JSON values, and the byte size of the binary ones."""
    result: dict[str, Any] = {}
    with txn.cursor(db=meta_db) as cursor:
        for key, value in cursor:
            key = bytes(key)
            if key.startswith(PREFILTER_CHUNKS):
                continue
            if key == META_PREFILTER and len(value) == 32:       # the base's description: its sizes
                result["prefilter_base"] = int.from_bytes(bytes(value[16:24]), "little")
                result["prefilter_base_index"] = int.from_bytes(bytes(value[24:32]), "little")
            elif key in BINARY_META:
                result[key.decode()] = len(value)
            else:
                result[key.decode()] = json.loads(bytes(value))
    return result


class Reading:
    """One read transaction of a store: the version it sees, its metadata, block details and tables (each read on
    first use), and the exact confirmation of the prefilter hits probed in it. Shared by the threads of one
    `Blocklist`: every use of the transaction holds the handle's lock."""

    __slots__ = ("txn", "snapshot", "dbs", "lock", "path", "version", "empty", "_meta", "_blocks", "_tables",
                 "_tables_part", "_sold", "_sold_filters", "verdict_ctx")

    def __init__(self, txn: lmdb.Transaction, snapshot: int, handle: StoreHandle, version: int,
                 tables: Tables, sold_filters: SoldFilters | None = None) -> None:
        self.txn = txn
        self.snapshot = snapshot
        self.dbs = handle.dbs
        self.lock = handle.lock
        self.path = handle.path
        self.version = version
        self.empty = not holds_list(version)
        self._meta: dict[str, Any] | None = None
        self._blocks: dict[int, Block] = {}
        self._tables: TableCopy | None = None     # this version's price and grey tables, on first use
        self._tables_part = tables
        self._sold: lmdb.Cursor | None = None    # on the sold register, opened on first use
        self._sold_filters = sold_filters if sold_filters is not None else SoldFilters(handle.dbs)
        #: What the compiled check reads of this version (`verdict_context`), built on first use.
        self.verdict_ctx: VerdictContext | None = None

    def _confirm(self, identity: bytes) -> bool:
        """Exact check of a prefilter hit, in this version (the compiled probe calls it, rarely)."""
        with self.lock:
            txn = self.txn
            try:
                if txn.get(pack_identity(identity), db=self.dbs[DB_CODES]) is not None:
                    return True
                return txn.get(pack_gtin(identity[2:16].decode()), db=self.dbs[DB_GTINS]) is not None
            except lmdb.Error as exc:
                raise StoreError(f"{self.path}: could not read the version being answered from: {exc}") from exc

    def meta(self) -> dict[str, Any]:
        """This version's metadata (call with the lock held)."""
        if self._meta is None:
            self._meta = read_meta(self.txn, self.dbs[DB_META])
        return self._meta

    def tables(self) -> TableCopy:
        """This version's price and grey tables as dicts (lock held): taken from the tables part, which keeps one
        copy while the tables do not change."""
        copy = self._tables
        if copy is None:
            copy = self._tables = self._tables_part.copy_of(self.txn, self.meta())
        return copy

    def min_price(self, gtin: str, pg: int | None) -> int | None:
        return min_price_in(self.tables(), gtin, pg)

    def is_grey(self, gtin: str) -> bool:
        return is_grey_in(self.tables(), gtin)

    def verdict_context(self) -> VerdictContext:
        """This version as the compiled check reads it (`ProbeBase._check`): its tables as sorted arrays, its sold
        register's filter, the metadata a `Verdict` names, and `slow_verdict` for the scans it hands back."""
        with self.lock:
            ctx = self.verdict_ctx
            if ctx is None:
                meta = self.meta()
                try:
                    sold = self._sold_filters.for_version(self.txn, self.snapshot)
                except lmdb.Error as exc:
                    raise StoreError(f"{self.path}: could not read the version being answered from: {exc}") from exc
                ctx = self.verdict_ctx = VerdictContext(
                    self._tables_part.compiled_of(self.tables()), sold, meta["version"], meta.get("updated_at"),
                    reference_time(meta), meta["instance_id"], self.slow_verdict, self.block_of, self.sold_of)
            return ctx

    def block_of(self, identity: bytes) -> Block | None:
        """The block of a canonical identity whose prefilter probe hit, in this version: its code's, else its
        GTIN's, else None (a false hit). What `verdict` looks up, for the compiled check."""
        with self.lock:
            txn = self.txn
            try:
                value = txn.get(pack_identity(identity), db=self.dbs[DB_CODES])
                if value is not None:
                    return self._block(txn, decode_block_id(value), "code")
                if self.meta().get("gtins"):
                    value = txn.get(pack_gtin(identity[2:16].decode()), db=self.dbs[DB_GTINS])
                    if value is not None:
                        return self._block(txn, decode_block_id(value), "gtin")
            except lmdb.Error as exc:
                raise StoreError(f"{self.path}: could not read the version being answered from: {exc}") from exc
        return None

    def sold_of(self, identity: bytes, now: float) -> bool:
        """Whether a canonical identity is in this version's sold register and not expired (a sold-filter hit)."""
        with self.lock:
            cursor = self._sold
            if cursor is None:
                cursor = self._sold = self.txn.cursor(db=self.dbs[DB_SOLD])
            return sold_in(cursor, identity.decode("ascii"), self.meta(), now)

    def slow_verdict(self, probe: ProbeBase, raw: str | bytes, pg: int | None, tail_cut: bool,
                     now: float) -> Verdict:
        """The exact Python verdict (`verdict`) of a scan the compiled check hands back: a prefilter or sold-filter
        hit, a scan of several readings. `probe` is attached to this version."""
        readings = readings_of(raw, tail_cut=tail_cut)
        with self.lock:
            return self.verdict(probe, list(readings), now, pg)

    def verdict(self, probe: ProbeBase, readings: list[MarkingCode], now: float, pg: int | None = None) -> Verdict:
        """The verdict on one parsed scan, from this version; `probe` must be attached to it. Lock held. With the
        prices a till compares a sale with: `mrp` from the code, `smp` and `grey_gtin` from this version's tables
        (`pg`: the product group the caller knows, for a group's minimum price)."""
        txn = self.txn
        meta = self.meta()
        code = readings[0]
        block = None
        for reading in readings:
            block = self._lookup(probe, txn, reading, meta)
            if block is not None:
                code = reading
                break
        reference = reference_time(meta)
        smp, grey = tables_answer(self.tables(), code, pg)
        sold_cursor = self._sold
        if sold_cursor is None:
            sold_cursor = self._sold = self.txn.cursor(db=self.dbs[DB_SOLD])
        return Verdict(
            blocked=block is not None,
            cis=code.cis,
            gtin=code.gtin,
            serial=code.serial,
            identity=code.identity,
            block=block,
            db_version=meta["version"],
            db_updated_at=meta.get("updated_at"),
            db_age=None if reference is None else max(0.0, now - reference),
            instance_id=meta["instance_id"],
            mrp=code.mrp,
            smp=smp,
            grey_gtin=grey,
            sold=sold_in(sold_cursor, code.identity, meta, now),
        )

    def _lookup(self, probe: ProbeBase, txn: lmdb.Transaction, code: MarkingCode,
                meta: dict[str, Any]) -> Block | None:
        identity = code.identity.encode("ascii")
        if probe._maybe(identity):
            value = txn.get(pack_identity(identity), db=self.dbs[DB_CODES])
            if value is not None:
                return self._block(txn, decode_block_id(value), "code")
        if meta.get("gtins"):
            value = txn.get(pack_gtin(code.gtin), db=self.dbs[DB_GTINS])
            if value is not None:
                return self._block(txn, decode_block_id(value), "gtin")
        return None

    def _block(self, txn: lmdb.Transaction, block_id: int, scope: str) -> Block:
        cached = self._blocks.get(block_id)
        if cached is None or cached.scope != scope:
            raw = txn.get(block_id.to_bytes(4, "big"), db=self.dbs[DB_BLOCKS])
            details = json.loads(bytes(raw)) if raw is not None else {}
            cached = Block(
                authority=details.get("authority"),
                reason=details.get("reason"),
                since=details.get("since"),
                source=details.get("source"),
                scope=scope,
            )
            self._blocks[block_id] = cached
        return cached


class Versions:
    """The reading side of a `Blocklist`: the version calls answer from now (`current`), renewed at most every
    `refresh_interval` and after every local write, and attached to the compiled probe (the blocklist itself).

    The probe is held weakly: a blocklist is in no reference cycle through its parts, so one nobody holds is
    closed at once by its last reference, never by the cyclic collector at some allocation inside the store."""

    def __init__(self, handle: StoreHandle, probe: ProbeBase, tables: Tables, refresh_interval: float) -> None:
        self._handle = handle
        self._probe = weakref.ref(probe)
        self._tables = tables
        self._sold_filters = SoldFilters(handle.dbs)
        self.refresh_interval = refresh_interval
        self._prefilter: Prefilter | None = None     # the last prefilter read: its base is reused while its id stays
        self.current: Reading | None = None
        #: The monotonic time after which the next call renews first (0: the next call does).
        self.renew_at = 0.0
        handle.serve_versions(self)

    def renew(self) -> None:
        """Start a fresh read transaction and re-attach the compiled probe to the version it sees.

        Called by the compiled side before a call once the refresh deadline has passed, and after every local
        write. When nothing was committed since, the current version (and its transaction) is kept. Otherwise
        the new transaction becomes a `Reading` that the new attachment owns: the old one ends when the last
        call or snapshot still answering from it lets go, so no probe ever points at pages LMDB may reuse.
        """
        handle, probe = self._handle, self._probe()
        with handle.lock:
            env = handle.env
            if probe is None:
                raise StoreError("the blocklist is closed")
            try:
                txn = begin_read(env, handle.path)
            except lmdb.MapResizedError:
                env.set_mapsize(0)
                txn = env.begin(buffers=True)
            snapshot = txn.id()
            current = self.current
            if current is not None and current.snapshot == snapshot and probe._attached_info is not None:
                txn.abort()
                probe._keep(self.refresh_interval)
                self.renew_at = time.monotonic() + self.refresh_interval
                return
            meta = handle.dbs[DB_META]
            try:
                known = self._prefilter = get_prefilter(txn, meta, self._prefilter)
            except ValueError as exc:
                txn.abort()
                raise StoreError(f"{handle.path}: corrupt prefilter: {exc}") from exc
            prefilter, prefilter_index, added, removed, base_id = known
            gtin_index = txn.get(META_GTIN_INDEX, db=meta)
            raw_version = txn.get(b"version", db=meta)
            if prefilter is None or gtin_index is None or raw_version is None:
                txn.abort()
                raise StoreError(f"{handle.path}: metadata is missing the prefilter or the version")
            reading = Reading(txn, snapshot, handle, json.loads(bytes(raw_version)), self._tables, self._sold_filters)
            self.current = None
            try:
                # The first attach of this handle validates everything; later versions, written by a writer that
                # validated them, are switched to by checking the stored index's bounds only.
                # A chunked base is a private copy kept while its id stays: its checks are reused under that id.
                probe._attach(prefilter, gtin_index, self.refresh_interval, snapshot if base_id is None else base_id,
                              prefilter_index, current is None, reading, reading.empty, added, removed)
            except ValueError as exc:
                txn.abort()
                raise StoreError(f"{handle.path}: corrupt prefilter: {exc}") from exc
            except BaseException:
                txn.abort()
                raise
            self.current = reading
            self.renew_at = time.monotonic() + self.refresh_interval

    def fresh(self) -> Reading:
        """The version a call starting now answers from (call with the lock held)."""
        if self.current is None or time.monotonic() >= self.renew_at:
            self.renew()
        assert self.current is not None
        return self.current

    def invalidate(self) -> None:
        """Make the next read start a fresh read transaction (called after every commit made through this handle).

        Taken under the handle's lock, which `renew` holds throughout: a renewal that began its transaction before
        the commit cannot then push the deadline past this reset, so no read after the commit returned misses it.
        """
        with self._handle.lock:
            self.renew_at = 0.0
            probe = self._probe()
            if probe is not None:
                probe._expire()     # the compiled calls (`check`, `is_blocked`) renew first too

    def close(self) -> None:
        """End the current read transaction (the probe was detached first; lock held)."""
        reading, self.current = self.current, None
        if reading is not None:
            reading.txn.abort()
