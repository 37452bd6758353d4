"""One database version as calls answer from it: its read transaction (`_Reading`) and `Snapshot`.

A `Blocklist` renews its LMDB read transaction at most every `refresh_interval`. Each transaction is a
`_Reading`: it holds the transaction, reads the version's metadata and block details once, and confirms the
prefilter hits of the compiled probe attached to it. The probe's attachment keeps its `_Reading` alive, so a call
that took a version answers from it to its end, and its pages stay pinned until the last such call lets go.

`Snapshot` is that for several calls that must agree: a till's receipt, a service request. Every answer it
gives comes from the version it was taken at, and names it.
"""

from __future__ import annotations

import json
import threading
import time
from typing import TYPE_CHECKING, Any

import lmdb

from .._codes import CodeError, MarkingCode, readings_of
from .._probe import ProbeBase, pack_identity
from .environment import BINARY_META, DB_BLOCKS, DB_CODES, DB_GTINS, DB_META, DB_SOLD
from .errors import NoListError, StoreError
from .freshness import holds_list, reference_time
from .keys import decode_block_id, pack_gtin
from .prices import is_grey_in, min_price_in, tables_answer
from .records import Block, Verdict
from .tables import check_group
from .sold import sold_in

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from .blocklist import Blocklist


def no_list_error(path: str) -> NoListError:
    return NoListError(f"no list loaded: {path} has never held a blocklist, so nothing can be checked against "
                       f"it; load one (`lmcz-fast load`) or sync it from a feed (`lmcz-fast sync`) first")


def read_meta(txn: lmdb.Transaction, meta_db: Any) -> dict[str, Any]:
    """Every metadata field of one transaction: JSON values, and the byte size of the binary ones."""
    result: dict[str, Any] = {}
    with txn.cursor(db=meta_db) as cursor:
        for key, value in cursor:
            key = bytes(key)
            if key in BINARY_META:
                result[key.decode()] = len(value)
            else:
                result[key.decode()] = json.loads(bytes(value))
    return result


class _Reading:
    """One read transaction of a store: the version it sees, its metadata and block details (read on first use),
    and the exact confirmation of the prefilter hits probed in it. Shared by the threads of one `Blocklist`: every
    use of the transaction holds the blocklist's lock."""

    __slots__ = ("txn", "snapshot", "dbs", "lock", "path", "version", "empty", "_meta", "_blocks", "tables", "_sold")

    def __init__(self, txn: lmdb.Transaction, snapshot: int, dbs: dict[bytes, Any], lock: threading.RLock,
                 path: str, version: int) -> None:
        self.txn = txn
        self.snapshot = snapshot
        self.dbs = dbs
        self.lock = lock
        self.path = path
        self.version = version
        self.empty = not holds_list(version)
        self._meta: dict[str, Any] | None = None
        self._blocks: dict[int, Block] = {}
        self.tables: Any = None     # the price and grey tables of this version, read on first use (prices.py)
        self._sold: lmdb.Cursor | None = None    # on the sold register, opened on first use

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
        smp, grey = tables_answer(self, code, pg)
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


class Snapshot(ProbeBase):
    """One version of a store, for several calls that must agree: take it with `Blocklist.snapshot()`.

    `is_blocked`, `is_blocked_many`, `check` and `check_many` answer exactly as the blocklist's own methods do,
    but every answer comes from the version the snapshot was taken at (`db_version`), however many commits land
    meanwhile: a receipt or a service request answers from one version and names it. It never renews: take a
    new one for the next receipt. Close it (or leave its `with` block) promptly; until then it pins that version's
    pages. Closing the blocklist closes its snapshots. A store that never held a list raises `NoListError` from
    every check, as the blocklist does.
    """

    _reading: _Reading | None
    _lock: threading.RLock
    _path: str

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("take a snapshot with Blocklist.snapshot()")

    @classmethod
    def _of(cls, blocklist: Blocklist, reading: _Reading) -> Snapshot:
        """A snapshot of the version `blocklist` is attached to, whose read transaction is `reading` (lock held)."""
        self = cls.__new__(cls)
        self._adopt(blocklist)
        self._reading = reading
        self._lock = reading.lock
        self._path = reading.path
        return self

    def __enter__(self) -> Snapshot:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Let go of the version (idempotent). Checks on a closed snapshot raise `NotAttachedError`."""
        self._detach()
        self._reading = None

    def _renew(self) -> None:
        raise StoreError("a snapshot answers from one version and never renews")

    def _refuse_empty(self) -> None:
        raise no_list_error(self._path)

    def _live(self) -> _Reading:
        reading = self._reading
        if reading is None:
            raise StoreError("this snapshot is closed (or its blocklist was)")
        if reading.empty:
            raise no_list_error(self._path)
        return reading

    @property
    def db_version(self) -> int:
        """The store's version every answer of this snapshot comes from."""
        reading = self._reading
        if reading is None:
            raise StoreError("this snapshot is closed (or its blocklist was)")
        return reading.version

    def meta(self) -> dict[str, Any]:
        """The metadata of the snapshot's version (a copy)."""
        with self._lock:
            reading = self._reading
            if reading is None:
                raise StoreError("this snapshot is closed (or its blocklist was)")
            return dict(reading.meta())

    def check(self, raw: str | bytes, pg: int | None = None, *, tail_cut: bool = False) -> Verdict:
        """`Blocklist.check`, from this snapshot's version. Raises `CodeError` for anything not a marking code,
        `RecordError` (a `ValueError`) for a `pg` that is not a product group id. `tail_cut=True` also answers a
        scan whose end cut a tail AI short after a GS, for its whole identity (`readings_of`; the service's
        checks, docs/codes.md)."""
        if pg is not None:
            check_group(pg)
        readings = readings_of(raw, tail_cut=tail_cut)
        with self._lock:
            return self._live().verdict(self, readings, time.time(), pg)

    def check_many(self, raws: Iterable[str | bytes], pgs: Iterable[int | None] | None = None) -> list[Verdict]:
        """`[check(r) for r in raws]`, all from this version (`pgs`: one product group or None per scan). A bad
        scan raises `CodeError` naming its index (also `.index`), as `is_blocked_many` does."""
        parsed: list[list[MarkingCode]] = []
        for index, raw in enumerate(raws):
            try:
                parsed.append(readings_of(raw))
            except CodeError as exc:
                error = CodeError(exc.reason, exc.position, f"item {index}: {exc}")
                error.index = index  # type: ignore[attr-defined]
                raise error from None
        groups = list(pgs) if pgs is not None else [None] * len(parsed)
        if len(groups) != len(parsed):
            raise ValueError(f"pgs holds {len(groups)} entries for {len(parsed)} scans: one (or None) per scan")
        for pg in groups:
            if pg is not None:
                check_group(pg)
        return self._verdicts(parsed, groups)

    def _verdicts(self, parsed: Sequence[list[MarkingCode]],
                  pgs: Sequence[int | None] | None = None) -> list[Verdict]:
        now = time.time()
        groups = pgs if pgs is not None else [None] * len(parsed)
        with self._lock:
            reading = self._live()
            return [reading.verdict(self, readings, now, pg) for readings, pg in zip(parsed, groups)]

    def min_price(self, gtin: str, pg: int | None = None) -> int | None:
        """`Blocklist.min_price`, from this snapshot's version."""
        with self._lock:
            return min_price_in(self._live(), gtin, pg)

    def is_grey_gtin(self, gtin: str) -> bool:
        """`Blocklist.is_grey_gtin`, from this snapshot's version."""
        with self._lock:
            return is_grey_in(self._live(), gtin)
