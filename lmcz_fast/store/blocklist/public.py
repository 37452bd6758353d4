"""`Blocklist`: the blocked marking codes of one store, in one LMDB environment.

LMDB is the single source of truth. The blocked identities, blocked GTINs, block details, metadata, feed state
and the serialized Roaring prefilter all live in one environment and change in one write transaction, so a
reader in any process sees the old state or the new one, never a mix.

The hot path (`is_blocked`, `is_blocked_many`) is inherited from the compiled `ProbeBase`: parse, hash and
prefilter probe run in C straight on the memory map. This module only supplies the two things the compiled side
cannot do itself: the exact confirmation of a rare prefilter hit (`_confirm`) and the periodic renewal of the
read transaction (`_renew`), which is what bounds how long a reader keeps answering from an old version.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from ..._probe import CheckBatch, NotAttachedError, ProbeBase, unpack_key
from ..change import Change
from ..environment import (
    DB_CODES,
    DB_GTINS,
    DB_META,
    DB_SIDE,
    DEFAULT_REFRESH_INTERVAL,
    META_PREFILTER_ADDED,
    META_PREFILTER_REMOVED,
    acquire_env,
    check_room_to_create,
    open_dbs,
    release_env,
    stale_readers_cleared,
)
from .. import leftovers
from ..errors import StoreError
from ..freshness import freshness
from ..group_commit import WriteOp
from ..handle import StoreHandle
from ..prices import Tables, TablesReport
from ..reading import Versions, no_list_error
from ..records import DeltaReport, LoadReport, Status, Verdict
from ..snapshot import Snapshot, checked_groups
from ..outbox import Outbox
from ..sold import SoldEntry, SoldRegister
from ..tables import Record, iter_rows
from ..writing import Writer
from .creation import make_empty, move_into_place


class Blocklist(ProbeBase):
    """The blocked codes of one store. Open it once per process and share it between threads.

    Use `Blocklist.building(path)` to build a new database (it appears only once the block succeeds),
    `Blocklist.open(path)` for an existing one; both work as context managers. `is_blocked` is the fast path;
    `check` returns a full `Verdict`; `snapshot()` answers several calls from one version. Each call answers from
    one version: a call renews (if due) before it starts, never inside. A store that never held a list answers
    nothing: every check raises `NoListError`.

    It is made of parts, each owning its job and its state, sharing one environment handle: `versions` (the
    reading side: the version calls answer from), `writer` (every change, as a `Change`), `tables` (minimum
    prices, grey GTINs) and `sold` (the sold register). The hot path is the compiled base's.
    """

    _handle: StoreHandle
    _snapshots: weakref.WeakSet[Snapshot]
    versions: Versions
    writer: Writer
    tables: Tables
    sold: SoldRegister

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("use Blocklist.open(path) or Blocklist.building(path)")

    @classmethod
    def create(cls, path: str | os.PathLike[str], *, instance_id: str | None = None) -> Blocklist:
        """Make a new, empty database (version 0) at `path` and open it for writing.

        Until a list is loaded into it, every check on it raises `NoListError`. To build a store that appears only
        once its first list is in, use `building`.
        """
        path = os.fspath(path)
        make_empty(path, instance_id)
        return cls.open(path, readonly=False)

    @classmethod
    @contextlib.contextmanager
    def building(cls, path: str | os.PathLike[str], *, instance_id: str | None = None) -> Iterator[Blocklist]:
        """A new store that appears at `path` only if the `with` block ends without an error.

        The database is built in a hidden directory beside `path` (the handle's `path`) and its `data.mdb` is
        moved into `path` when the block ends: readers never see it half-built or empty, and after any error
        (a refused load, a failed first sync) nothing is left behind and `path` is as it was. A database that
        appeared at `path` meanwhile is never replaced (`StoreError`). The handle is closed when the block ends;
        open `path` again to go on::

            with Blocklist.building("store.db") as bl:
                bl.load(["blocked.csv.gz"], strict=True)
        """
        path = os.fspath(path)
        if os.path.exists(os.path.join(path, "data.mdb")):
            raise StoreError(f"a database already exists at {path}; open it instead")
        parent = os.path.dirname(os.path.abspath(path))
        name = os.path.basename(os.path.abspath(path))
        check_room_to_create(parent)
        leftovers.sweep(path)                        # builds killed before: store/leftovers.py
        try:
            os.makedirs(parent, exist_ok=True)
            work = tempfile.mkdtemp(prefix=f".{name}.", suffix=".building", dir=parent)
        except OSError as exc:
            raise StoreError(f"cannot make a directory beside {path} to build the store in: "
                             f"{exc.strerror or exc}; nothing was created") from exc
        try:
            with leftovers.claimed(work):            # held while building: a sweep never takes a live build
                bl = cls.create(work, instance_id=instance_id)
                try:
                    yield bl
                finally:
                    bl.close()
                move_into_place(work, path)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        readonly: bool = True,
        *,
        refresh_interval: float = DEFAULT_REFRESH_INTERVAL,
    ) -> Blocklist:
        """Open an existing database. Readers see a newer version within `refresh_interval` seconds."""
        path = os.fspath(path)
        if not os.path.exists(os.path.join(path, "data.mdb")):
            raise StoreError(f"no database at {path}; create one with `lmcz-fast load {path} FILE`")
        if refresh_interval <= 0:
            raise ValueError("refresh_interval must be positive")
        if not readonly:
            leftovers.sweep(path)                    # builds killed before: store/leftovers.py
        self = cls.__new__(cls)
        env = acquire_env(path)
        try:
            self._handle = handle = StoreHandle(path, readonly, env, open_dbs(env, path))
            self._snapshots = weakref.WeakSet()
            self.writer = Writer(handle)
            self.tables = Tables(handle, self.writer.apply)
            self.versions = Versions(handle, self, self.tables, float(refresh_interval))
            self.sold = SoldRegister(handle)
            self.outbox = Outbox(handle)
            self._renew()
        except BaseException:
            release_env(env)
            raise
        return self

    # -- lifecycle -------------------------------------------------------------------------------------------

    def __enter__(self) -> Blocklist:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        """An unclosed Blocklist lets go of its map pages before the compiled base releases its buffers."""
        if getattr(self, "_handle", None) is not None:
            try:
                self.close()
            except Exception:
                pass

    def close(self) -> None:
        """Let go of the read transaction, the snapshots and the environment. Idempotent.

        A call still running in another thread raises `NotAttachedError` instead of reading further."""
        handle = self._handle
        with handle.lock:
            if not handle.is_open:
                return
            self._detach()
            for snapshot in list(self._snapshots):
                snapshot.close()
            self.versions.close()
            env = handle.closed()
            if env is not None:
                release_env(env)

    @property
    def path(self) -> str:
        return self._handle.path

    @property
    def handle(self) -> StoreHandle:
        """The environment handle this blocklist's parts share (its LMDB environment, named databases, lock)."""
        return self._handle

    @property
    def stale_readers_cleared(self) -> int:
        """Reader slots of dead processes this process has cleared in the store since it opened it (each pinned
        an old version: the file would grow with every write while it stayed)."""
        return stale_readers_cleared(self._handle.env if self._handle.is_open else None)

    def _renew(self) -> None:
        """The compiled base's hook: renew the version calls answer from (`Versions.renew`)."""
        self.versions.renew()

    def _refuse_empty(self) -> None:
        raise no_list_error(self._handle.path)

    # -- reading ---------------------------------------------------------------------------------------------

    def _confirm(self, identity: bytes) -> bool:
        """Exact check of a prefilter hit in the current version (the compiled probe confirms through the
        attachment's own `Reading`; this is for callers that have no attachment at hand)."""
        with self._handle.lock:
            reading = self.versions.current
            if reading is None:
                raise StoreError("the blocklist is closed")
            return reading._confirm(identity)

    def _check_detached(self) -> None:
        """`check` found nothing attached (`ProbeBase.check` is the compiled `check`): the store's own error when
        closed, else attach the current version (then `check` tries once more)."""
        with self._handle.lock:
            self._handle.fresh()

    def check_many(self, raws: Iterable[str | bytes], pgs: Iterable[int | None] | None = None) -> list[Verdict]:
        """`[check(r) for r in raws]`, every verdict from one version (`pgs`: one product group or None per scan,
        as `check`'s `pg`). A bad scan raises `CodeError` naming its index (also `.index`); nothing is answered
        then."""
        with self.snapshot() as snapshot:
            return snapshot.check_many(raws, pgs)

    def check_batch(self, raws: Iterable[Any], pgs: Iterable[int | None] | None = None, *,
                    tail_cut: bool = False, strict: bool = False) -> CheckBatch:
        """`Snapshot.check_batch` in one call with no snapshot taken: every code from the one version the call
        takes (renewed first if due, as `check`), which the batch names (`db_version`, `instance_id`). What a
        request that fits one batch answers from; several batches that must agree take a `snapshot()`."""
        groups = checked_groups(pgs)
        try:
            return self._check_batch(raws, groups, tail_cut, strict)
        except NotAttachedError:
            self._check_detached()      # closed: the store's own error; else the current version attached
        return self._check_batch(raws, groups, tail_cut, strict)

    def snapshot(self) -> Snapshot:
        """The current version, for several calls that must agree (renewed first if due).

        ::

            with bl.snapshot() as view:              # a receipt: every code from one version
                verdicts = [view.check(scan) for scan in receipt]
                version = view.db_version
        """
        with self._handle.lock:
            reading = self._handle.fresh()
            snapshot = Snapshot.taken(self, reading)
            self._snapshots.add(snapshot)
        return snapshot

    def info(self) -> dict[str, Any]:
        """Version, counts, sizes, times and freshness of the database as this reader sees it now."""
        now = time.time()
        handle = self._handle
        with handle.lock:
            reading = handle.fresh()
            meta = dict(reading.meta())
            overlay = [reading.txn.get(key, db=handle.dbs[DB_META])
                       for key in (META_PREFILTER_ADDED, META_PREFILTER_REMOVED)]
            # The overlay deltas wrote over the base (keys added, keys removed: each a count first), folded into
            # the base now and then.
            overlay_keys = sum(int.from_bytes(bytes(value[:4]), "little") for value in overlay if value)
            stat = handle.env.stat()
            env_info = handle.env.info()
        status = freshness(meta, now)
        meta["state"] = status.state
        meta["expires_at"] = status.expires_at
        meta["clock_behind"] = status.clock_behind
        meta["prefilter_bytes"] = meta.pop("prefilter_base", 0) or meta.pop("prefilter", 0)
        meta["gtin_index_bytes"] = meta.pop("gtin_index", 0)
        meta["prefilter_index_bytes"] = meta.pop("prefilter_base_index", 0) or meta.pop("prefilter_index", 0)
        meta["prefilter_overlay_bytes"] = meta.pop("prefilter_added", 0) + meta.pop("prefilter_removed", 0)
        meta["prefilter_overlay_keys"] = overlay_keys
        meta.pop("prefilter", None)
        meta.pop("prefilter_index", None)
        meta["path"] = handle.path
        meta["file_bytes"] = os.path.getsize(os.path.join(handle.path, "data.mdb"))
        meta["used_bytes"] = (env_info["last_pgno"] + 1) * stat["psize"]
        return meta

    def get_meta(self, name: str, default: Any = None) -> Any:
        """One metadata field (JSON value) as this reader sees it now."""
        with self._handle.lock:
            return self._handle.fresh().meta().get(name, default)

    def status(self, now: float | None = None) -> Status:
        """How fresh the data is, and when offline answers stop (`freshness.freshness`, the one computation)."""
        now = time.time() if now is None else now
        with self._handle.lock:
            meta = dict(self._handle.fresh().meta())
        return freshness(meta, now)

    def side_get(self, table: bytes, key: bytes) -> bytes | None:
        """One value of a side table (written with `apply_delta(side=...)`), as this reader sees it now."""
        with self._handle.lock:
            txn = self._handle.fresh().txn
            found = txn.get(table + b"\0" + key, db=self._handle.dbs[DB_SIDE])
            return None if found is None else bytes(found)

    def snapshot_lines(self) -> Iterator[str]:
        """The whole list as load/publish lines, from ONE read transaction: every blocked GTIN, then every identity,
        then every table record as an `@` line (as a feed snapshot holds them; `load` and `publish` read them).
        (`iter_gtins` and `iter_identities` each take their own, so a writer between them could mix versions.)"""
        dbs = self._handle.dbs
        with self._handle.read() as txn:
            with txn.cursor(db=dbs[DB_GTINS]) as cursor:
                for key in cursor.iternext(keys=True, values=False):
                    yield f"{int.from_bytes(key, 'big'):014d}"
            with txn.cursor(db=dbs[DB_CODES]) as cursor:
                for key in cursor.iternext(keys=True, values=False):
                    yield unpack_key(key)
            for record in iter_rows(txn, dbs):
                yield f"@{record.text}"

    def iter_identities(self) -> Iterator[str]:
        """Every blocked identity (canonical GS1 form), in key order, from one consistent snapshot."""
        with self._handle.read() as txn, txn.cursor(db=self._handle.dbs[DB_CODES]) as cursor:
            for key in cursor.iternext(keys=True, values=False):
                yield unpack_key(key)

    def iter_gtins(self) -> Iterator[str]:
        """Every GTIN blocked as a whole, in order."""
        with self._handle.read() as txn, txn.cursor(db=self._handle.dbs[DB_GTINS]) as cursor:
            for key in cursor.iternext(keys=True, values=False):
                yield f"{int.from_bytes(key, 'big'):014d}"

    # -- writing: every change is a `Change`, applied by the writer in one transaction ------------------------

    def apply(self, change: Change) -> DeltaReport:
        """Apply one `Change` in one write transaction: the codes, GTINs, table records, side tables and metadata
        it names change together or not at all. See `Change` for its fields, `apply_delta` for the rules."""
        return self.writer.apply(change)

    def load(
        self,
        sources: Iterable[Any] | str | os.PathLike[str],
        *,
        replace: bool = True,
        strict: bool = False,
        progress: Callable[[int], None] | None = None,
        records: Iterable[str | Record] | None = None,
        **options: Any,
    ) -> LoadReport:
        """Load blocked codes from files or iterables of lines, in one write transaction.

        Each source is a path (plain text with one scan, CIS or 14-digit GTIN per line; CSV with a header naming a
        `cis`/`code` column and optionally `gtin`, `authority`, `reason`, `since`; gzip of either) or an iterable
        of lines. Raw scans are cut to their identity. Bad lines are counted and the first ones reported with
        their line numbers; with `strict=True` any bad line refuses the whole load and nothing changes.
        `replace=True` makes the result exactly the sources (a new full version); `replace=False` adds to what is
        there. `progress` is called with the number of lines read so far, now and then.
        `options`: `version` (the version to reach), `block`, `synced`, `expect_digest`, `meta`, `side` and
        `clear_side`, as the `Change` fields of those names (`version` is `to_version`).

        Table records (minimum prices, grey GTINs; see `store.tables`) come as `records` or as `@kind ...` lines
        in the sources. With `replace=True` and any records, both tables become exactly those records (a feed
        snapshot is loaded whole); with none, the tables are kept as they are. With `replace=False` records are
        added (a record sets its key's value).
        """
        unknown = options.keys() - _LOAD_OPTIONS
        if unknown:
            raise TypeError(f"load() got unexpected keyword arguments: {', '.join(sorted(unknown))}")
        options["to_version"] = options.pop("version", None)
        change = Change(replace=replace, add_records=list(records or ()), **options)
        return self.writer.load(sources, change, strict=strict, progress=progress,
                                whole_tables=records is not None)

    def apply_delta(self, add: Iterable[str | bytes] = (), remove: Iterable[str | bytes] = (),
                    **options: Any) -> DeltaReport:
        """Block and unblock codes and GTINs, moving the version to `to_version`, in one write transaction.

        `options` are the `Change` fields: `to_version` (required), `from_version`, `add_gtins`, `remove_gtins`,
        `block`, `synced`, `expect_digest`, `meta`, `side`, `clear_side`, `advance_empty`, `add_records`,
        `remove_records`.

        Removals are applied before additions. A delta whose `from_version` is not the current version, or whose
        `to_version` does not move forward, raises `VersionError` and changes nothing; a delta whose `to_version`
        the store already holds is a harmless no-op (`applied=False`). Any bad code raises `CodeError` and
        changes nothing. Removing a code never unblocks another: prefilter keys shared by several codes are
        reference-counted in the `collisions` table, and a bit is cleared only when its last code goes.
        With `expect_digest`, a result with any other set digest raises `DigestMismatchError` and changes
        nothing (a feed checks the publisher's digest this way, before commit). `meta` fields (JSON values, see
        `set_meta`) are written in the same transaction; `synced=True` also records the sync time.
        A delta that changes nothing (every code and GTIN it adds is there already, every one it removes is not)
        writes nothing: `applied=False`, the version and the metadata stay. `advance_empty=True` moves the version
        (and writes `meta`) anyway: a feed's manifest names the version to reach, and a chain of deltas that
        cancel out still has to get there. `side` maps a side table's name to keys and values (None: delete)
        written in the same transaction, `clear_side` empties side tables first (see `side_get`); when the
        records do not change but `side` does, the side tables and `meta` are written and the version stays.
        `add_records` / `remove_records` change the price and grey tables (`store.tables`: a removal deletes a
        row holding exactly that value, an addition sets the key's value), in the same transaction; a record of a
        kind this version does not know raises `RecordError` and changes nothing.
        """
        unknown = options.keys() - _DELTA_OPTIONS
        if unknown:
            raise TypeError(f"apply_delta() got unexpected keyword arguments: {', '.join(sorted(unknown))}")
        if "to_version" not in options:
            raise TypeError("apply_delta() missing required keyword argument: 'to_version'")
        return self.writer.apply(Change(add=add, remove=remove, **options))

    def set_meta(self, **fields: Any) -> None:
        """Set metadata fields (JSON values) in one transaction, e.g. `feed_url` or `refresh_window`."""
        self.writer.set_meta(fields)

    def op_set_meta(self, **fields: Any) -> WriteOp:
        """A write operation setting metadata fields, for `commit` or a group commit (`sold.committer()`): how the
        service makes `init`/`greyList`'s `grey_list_enabled` durable with the answer. Fields as `set_meta`."""
        return self.writer.op_set_meta(fields)

    def commit(self, op: WriteOp) -> Any:
        """Run one write operation (`op_set_meta`, `sold.op_record`, `sold.op_clear`, ...) in one durable write
        transaction and return its result; this handle sees it from its next call. Works on a read-only handle,
        as sales do: these writes are the store's own, not the list's."""
        return self.writer.commit(op)

    def mark_synced(self, at: float | None = None, feed_url: str | None = None, **fields: Any) -> None:
        """Record a successful sync, with any other `fields` (as `set_meta`), in one transaction: the freshness
        clock restarts from `at` (now by default)."""
        fields["last_sync_at"] = time.time() if at is None else at
        if feed_url is not None:
            fields["feed_url"] = feed_url
        self.writer.set_meta(fields)

    # -- the tables (`tables`) --------------------------------------------------------------------------------

    def min_price(self, gtin: str, pg: int | None = None) -> int | None:
        """The minimum price (kopecks) that applies to GTIN `gtin`; see `Tables.min_price`."""
        return self.tables.min_price(gtin, pg)

    def is_grey_gtin(self, gtin: str) -> bool:
        """Whether `gtin` is in the grey list; see `Tables.is_grey_gtin`."""
        return self.tables.is_grey_gtin(gtin)

    def group_min_price(self, pg: int) -> int | None:
        """The minimum price (kopecks) set for product group `pg` as a whole, or None."""
        return self.tables.group_min_price(pg)

    def iter_records(self) -> Iterator[str]:
        """Every table record in canonical text form, from one consistent snapshot; see `Tables.iter_records`."""
        return self.tables.iter_records()

    def load_prices(self, sources: Iterable[Any] | str | os.PathLike[str], *,
                    version: int | None = None) -> TablesReport:
        """Replace the minimum-price table with the rows of `sources`; see `Tables.load_prices`."""
        return self.tables.load_prices(sources, version=version)

    def load_grey(self, sources: Iterable[Any] | str | os.PathLike[str], *,
                  version: int | None = None) -> TablesReport:
        """Replace the grey list with the GTINs of `sources`; see `Tables.load_grey`."""
        return self.tables.load_grey(sources, version=version)

    # -- the sold register (`sold`) ---------------------------------------------------------------------------
    #
    # The register is written whether the handle was opened read-only or not: `readonly` guards the blocklist
    # (the feed's data), while sales are the store's own, reported by its tills.

    def record_sold(self, raws: Sequence[str | bytes], *, at: float | None = None) -> list[SoldEntry]:
        """Record sales (durable on return); see `SoldRegister.record`."""
        return self.sold.record(raws, at=at)

    def return_sold(self, raws: Sequence[str | bytes]) -> list[bool]:
        """Take returned codes out of the register; see `SoldRegister.remove`."""
        return self.sold.remove(raws)

    def is_sold(self, raw: str | bytes) -> bool:
        """Whether this scan's code was sold here (within the register's expiry)."""
        return self.sold.is_sold(raw)


_LOAD_OPTIONS = frozenset({"version", "block", "synced", "expect_digest", "meta", "side", "clear_side"})
_DELTA_OPTIONS = frozenset({
    "to_version", "from_version", "add_gtins", "remove_gtins", "block", "synced", "expect_digest", "meta", "side",
    "clear_side", "advance_empty", "add_records", "remove_records",
})
