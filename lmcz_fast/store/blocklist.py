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
import json
import os
import shutil
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Iterable, Iterator
from typing import Any

import lmdb

from .._probe import ProbeBase, unpack_key
from .digest import format_digest
from .environment import (
    DB_BLOCKS,
    DB_CODES,
    DB_COLLISIONS,
    DB_GTINS,
    DB_META,
    DB_SIDE,
    DEFAULT_EXPIRE_AFTER,
    DEFAULT_REFRESH_INTERVAL,
    DEFAULT_REFRESH_WINDOW,
    LATER_TABLES,
    META_GTIN_INDEX,
    META_PREFILTER,
    META_PREFILTER_INDEX,
    acquire_env,
    begin_read,
    check_room_to_create,
    open_dbs,
    put_prefilter,
    release_env,
    stale_readers_cleared,
    write_txn,
)
from .errors import StoreError
from .freshness import freshness
from .prices import TablesMixin
from .records import Status, Verdict
from .snapshot import Snapshot, _Reading, no_list_error, read_meta, readings_of
from .tables import META_COUNTS, META_TABLES_DIGEST, check_group, iter_rows
from .sold import SoldAccess
from .writing import BlocklistWriter


def _discard_new(path: str, made_dir: bool) -> None:
    """Remove what a failed `create` left (an environment no transaction was ever committed to), so that a retry
    after freeing space starts afresh."""
    for name in ("data.mdb", "lock.mdb"):
        try:
            os.unlink(os.path.join(path, name))
        except OSError:
            pass
    if made_dir:
        try:
            os.rmdir(path)
        except OSError:
            pass


class Blocklist(BlocklistWriter, TablesMixin, SoldAccess, ProbeBase):
    """The blocked codes of one store. Open it once per process and share it between threads.

    Use `Blocklist.building(path)` to build a new database (it appears only once the block succeeds),
    `Blocklist.open(path)` for an existing one; both work as context managers. `is_blocked` is the fast path;
    `check` returns a full `Verdict`; `snapshot()` answers several calls from one version. Each call answers from
    one version: a call renews (if due) before it starts, never inside. A store that never held a list answers
    nothing: every check raises `NoListError`.
    """

    _path: str
    _readonly: bool
    _refresh_interval: float
    _env: Any
    _lock: Any
    _dbs: dict[bytes, Any]
    _reading: _Reading | None
    _snapshots: weakref.WeakSet[Snapshot]
    _renew_at: float
    _prefilter_cache: tuple[int, str, Any] | None   # (version, set digest, BitMap) this handle last wrote

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("use Blocklist.open(path) or Blocklist.building(path)")

    @classmethod
    def create(cls, path: str | os.PathLike[str], *, instance_id: str | None = None) -> Blocklist:
        """Make a new, empty database (version 0) at `path` and open it for writing.

        Until a list is loaded into it, every check on it raises `NoListError`. To build a store that appears only
        once its first list is in, use `building`.
        """
        path = os.fspath(path)
        if os.path.exists(os.path.join(path, "data.mdb")):
            raise StoreError(f"a database already exists at {path}; open it instead")
        check_room_to_create(path)
        made_dir = not os.path.isdir(path)
        os.makedirs(path, exist_ok=True)
        try:
            env = acquire_env(path)
        except StoreError:
            _discard_new(path, made_dir)
            raise
        try:
            from pyroaring import BitMap

            now = time.time()
            with write_txn(env, path) as txn:
                dbs = {name: env.open_db(name, txn=txn) for name in (DB_CODES, DB_GTINS, DB_BLOCKS,
                                                                     DB_COLLISIONS, DB_META, *LATER_TABLES)}
                meta = dbs[DB_META]
                fields: dict[str, Any] = {
                    "format": 1,
                    "version": 0,
                    "created_at": now,
                    "updated_at": now,
                    "instance_id": instance_id or str(uuid.uuid4()),
                    "codes": 0,
                    "gtins": 0,
                    "set_digest": format_digest((0, 0)),
                    META_TABLES_DIGEST: format_digest((0, 0)),
                    **{count: 0 for count in META_COUNTS.values()},
                    "source": None,
                    "refresh_window": DEFAULT_REFRESH_WINDOW,
                    "expire_after": DEFAULT_EXPIRE_AFTER,
                }
                for name, value in fields.items():
                    txn.put(name.encode(), json.dumps(value).encode(), db=meta)
                put_prefilter(txn, meta, BitMap().serialize())
                txn.put(META_GTIN_INDEX, b"", db=meta)
        except StoreError:
            release_env(env)
            _discard_new(path, made_dir)
            raise
        release_env(env)
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
        try:
            os.makedirs(parent, exist_ok=True)
            work = tempfile.mkdtemp(prefix=f".{name}.", suffix=".building", dir=parent)
        except OSError as exc:
            raise StoreError(f"cannot make a directory beside {path} to build the store in: "
                             f"{exc.strerror or exc}; nothing was created") from exc
        try:
            bl = cls.create(work, instance_id=instance_id)
            try:
                yield bl
            finally:
                bl.close()
            _move_into_place(work, path)
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
        self = cls.__new__(cls)
        self._path = path
        self._readonly = readonly
        self._refresh_interval = float(refresh_interval)
        self._env = acquire_env(path)
        self._lock = threading.RLock()
        self._reading = None
        self._snapshots = weakref.WeakSet()
        self._renew_at = 0.0
        self._prefilter_cache = None
        try:
            self._dbs = open_dbs(self._env, path)
            self._renew()
        except BaseException:
            release_env(self._env)
            raise
        return self

    # -- lifecycle -------------------------------------------------------------------------------------------

    def __enter__(self) -> Blocklist:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        """An unclosed Blocklist lets go of its map pages before the compiled base releases its buffers."""
        if getattr(self, "_lock", None) is not None:
            try:
                self.close()
            except Exception:
                pass

    def close(self) -> None:
        """Let go of the read transaction, the snapshots and the environment. Idempotent.

        A call still running in another thread raises `NotAttachedError` instead of reading further."""
        with self._lock:
            if getattr(self, "_env", None) is None:
                return
            self._detach()
            for snapshot in list(self._snapshots):
                snapshot.close()
            reading, self._reading = self._reading, None
            if reading is not None:
                reading.txn.abort()
            release_env(self._env)
            self._env = None

    @property
    def path(self) -> str:
        return self._path

    @property
    def stale_readers_cleared(self) -> int:
        """Reader slots of dead processes this process has cleared in the store since it opened it (each pinned
        an old version: the file would grow with every write while it stayed)."""
        return stale_readers_cleared(self._env)

    def _renew(self) -> None:
        """Start a fresh read transaction and re-attach the compiled probe to the version it sees.

        Called by the compiled side before a call once the refresh deadline has passed, and after every local
        write. When nothing was committed since, the current version (and its transaction) is kept. Otherwise
        the new transaction becomes a `_Reading` that the new attachment owns: the old one ends when the last
        call or snapshot still answering from it lets go, so no probe ever points at pages LMDB may reuse.
        """
        with self._lock:
            if self._env is None:
                raise StoreError("the blocklist is closed")
            try:
                txn = begin_read(self._env, self._path)
            except lmdb.MapResizedError:
                self._env.set_mapsize(0)
                txn = self._env.begin(buffers=True)
            snapshot = txn.id()
            current = self._reading
            if current is not None and current.snapshot == snapshot and self._attached_info is not None:
                txn.abort()
                self._keep(self._refresh_interval)
                self._renew_at = time.monotonic() + self._refresh_interval
                return
            meta = self._dbs[DB_META]
            prefilter = txn.get(META_PREFILTER, db=meta)
            gtin_index = txn.get(META_GTIN_INDEX, db=meta)
            raw_version = txn.get(b"version", db=meta)
            if prefilter is None or gtin_index is None or raw_version is None:
                txn.abort()
                raise StoreError(f"{self._path}: metadata is missing the prefilter or the version")
            reading = _Reading(txn, snapshot, self._dbs, self._lock, self._path, json.loads(bytes(raw_version)))
            self._reading = None
            try:
                # The first attach of this handle validates everything; later versions, written by a writer that
                # validated them, are switched to by checking the stored index's bounds only.
                self._attach(prefilter, gtin_index, self._refresh_interval, snapshot,
                             txn.get(META_PREFILTER_INDEX, db=meta), current is None, reading, reading.empty)
            except ValueError as exc:
                txn.abort()
                raise StoreError(f"{self._path}: corrupt prefilter: {exc}") from exc
            except BaseException:
                txn.abort()
                raise
            self._reading = reading
            self._renew_at = time.monotonic() + self._refresh_interval

    def _fresh(self) -> _Reading:
        """The version a call starting now answers from (call with the lock held)."""
        if self._reading is None or time.monotonic() >= self._renew_at:
            self._renew()
        assert self._reading is not None
        return self._reading

    def _refuse_empty(self) -> None:
        raise no_list_error(self._path)

    def _read_meta(self, txn: lmdb.Transaction) -> dict[str, Any]:
        return read_meta(txn, self._dbs[DB_META])

    # -- reading ---------------------------------------------------------------------------------------------

    def _confirm(self, identity: bytes) -> bool:
        """Exact check of a prefilter hit in the current version (the compiled probe confirms through the
        attachment's own `_Reading`; this is for callers that have no attachment at hand)."""
        with self._lock:
            reading = self._reading
            if reading is None:
                raise StoreError("the blocklist is closed")
            return reading._confirm(identity)

    def check(self, raw: str | bytes, pg: int | None = None) -> Verdict:
        """Parse a scan and say whether it is blocked, with why and the database version that said so.

        The verdict also carries the prices a till compares a sale with: `mrp` (from the code itself), `smp` (the
        minimum price of the GTIN, else of product group `pg` — given by the caller, or a tobacco pack's own
        group 3) and `grey_gtin`, all from the same database version. Raises `CodeError` for anything that is not
        a marking code, `RecordError` (a `ValueError`) for a `pg` that is not a group id, and `NoListError` if
        the store never held a list.
        """
        if pg is not None:
            check_group(pg)
        readings = readings_of(raw)
        with self._lock:
            reading = self._fresh()
            if reading.empty:
                raise no_list_error(self._path)
            return reading.verdict(self, readings, time.time(), pg)

    def check_many(self, raws: Iterable[str | bytes], pgs: Iterable[int | None] | None = None) -> list[Verdict]:
        """`[check(r) for r in raws]`, every verdict from one version (`pgs`: one product group or None per scan,
        as `check`'s `pg`). A bad scan raises `CodeError` naming its index (also `.index`); nothing is answered
        then."""
        with self.snapshot() as snapshot:
            return snapshot.check_many(raws, pgs)

    def snapshot(self) -> Snapshot:
        """The current version, for several calls that must agree (renewed first if due).

        ::

            with bl.snapshot() as view:              # a receipt: every code from one version
                verdicts = [view.check(scan) for scan in receipt]
                version = view.db_version
        """
        with self._lock:
            reading = self._fresh()
            snapshot = Snapshot._of(self, reading)
            self._snapshots.add(snapshot)
        return snapshot

    def info(self) -> dict[str, Any]:
        """Version, counts, sizes, times and freshness of the database as this reader sees it now."""
        now = time.time()
        with self._lock:
            meta = dict(self._fresh().meta())
            stat = self._env.stat()
            env_info = self._env.info()
        status = freshness(meta, now)
        meta["state"] = status.state
        meta["expires_at"] = status.expires_at
        meta["clock_behind"] = status.clock_behind
        meta["prefilter_bytes"] = meta.pop("prefilter", 0)
        meta["gtin_index_bytes"] = meta.pop("gtin_index", 0)
        meta["prefilter_index_bytes"] = meta.pop("prefilter_index", 0)
        meta["path"] = self._path
        meta["file_bytes"] = os.path.getsize(os.path.join(self._path, "data.mdb"))
        meta["used_bytes"] = (env_info["last_pgno"] + 1) * stat["psize"]
        return meta

    def get_meta(self, name: str, default: Any = None) -> Any:
        """One metadata field (JSON value) as this reader sees it now."""
        with self._lock:
            return self._fresh().meta().get(name, default)

    def status(self, now: float | None = None) -> Status:
        """How fresh the data is, and when offline answers stop (`freshness.freshness`, the one computation)."""
        now = time.time() if now is None else now
        with self._lock:
            meta = dict(self._fresh().meta())
        return freshness(meta, now)

    def side_get(self, table: bytes, key: bytes) -> bytes | None:
        """One value of a side table (written with `apply_delta(side=...)`), as this reader sees it now."""
        with self._lock:
            txn = self._fresh().txn
            found = txn.get(table + b"\0" + key, db=self._dbs[DB_SIDE])
            return None if found is None else bytes(found)

    def snapshot_lines(self) -> Iterator[str]:
        """The whole list as load/publish lines, from ONE read transaction: every blocked GTIN, then every identity,
        then every table record as an `@` line (as a feed snapshot holds them; `load` and `publish` read them).
        (`iter_gtins` and `iter_identities` each take their own, so a writer between them could mix versions.)"""
        with self._env.begin() as txn:
            with txn.cursor(db=self._dbs[DB_GTINS]) as cursor:
                for key in cursor.iternext(keys=True, values=False):
                    yield f"{int.from_bytes(key, 'big'):014d}"
            with txn.cursor(db=self._dbs[DB_CODES]) as cursor:
                for key in cursor.iternext(keys=True, values=False):
                    yield unpack_key(key)
            for record in iter_rows(txn, self._dbs):
                yield f"@{record.text}"

    def iter_identities(self) -> Iterator[str]:
        """Every blocked identity (canonical GS1 form), in key order, from one consistent snapshot."""
        with self._env.begin() as txn, txn.cursor(db=self._dbs[DB_CODES]) as cursor:
            for key in cursor.iternext(keys=True, values=False):
                yield unpack_key(key)

    def iter_gtins(self) -> Iterator[str]:
        """Every GTIN blocked as a whole, in order."""
        with self._env.begin() as txn, txn.cursor(db=self._dbs[DB_GTINS]) as cursor:
            for key in cursor.iternext(keys=True, values=False):
                yield f"{int.from_bytes(key, 'big'):014d}"


def _move_into_place(work: str, path: str) -> None:
    """Move the database built in `work` to `path` without ever replacing one that is there.

    `data.mdb` is hard-linked into `path` (which fails if the name exists, so a database another process put
    there meanwhile survives), then the directory entry is synced. The lock file goes first, unless one is there:
    it is already allocated (64 KiB), so opening the store later needs no room on a full disk.
    """
    made_dir = not os.path.isdir(path)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot make the database directory {path}: {exc}") from exc
    source = os.path.join(work, "data.mdb")
    target = os.path.join(path, "data.mdb")
    lock = os.path.join(path, "lock.mdb")
    linked_lock = False
    try:
        with contextlib.suppress(OSError):
            os.link(os.path.join(work, "lock.mdb"), lock)
            linked_lock = True
        try:
            os.link(source, target)
        except FileExistsError:
            raise StoreError(f"a database appeared at {path} while this one was built; it was left as it is "
                             f"and the new one discarded") from None
        except OSError:
            # A file system without hard links: rename, after one more look (a narrow window, unlike link).
            if os.path.exists(target):
                raise StoreError(f"a database appeared at {path} while this one was built; it was left as it "
                                 f"is and the new one discarded") from None
            os.rename(source, target)
    except BaseException:
        if linked_lock:
            with contextlib.suppress(OSError):
                os.unlink(lock)
        if made_dir:
            with contextlib.suppress(OSError):
                os.rmdir(path)
        raise
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
