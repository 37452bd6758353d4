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

import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import lmdb

from .._codes import CodeError, MarkingCode, parse_code
from .._probe import ProbeBase, pack_identity, unpack_key
from .digest import format_digest
from .environment import (
    BINARY_META,
    DB_BLOCKS,
    DB_CODES,
    DB_COLLISIONS,
    DB_GTINS,
    DB_META,
    DEFAULT_EXPIRE_AFTER,
    DEFAULT_REFRESH_INTERVAL,
    DEFAULT_REFRESH_WINDOW,
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
from .keys import decode_block_id, pack_gtin
from .records import Block, Status, Verdict
from .sold import SoldAccess
from .writing import BlocklistWriter


def _bare_reading(raw: str | bytes) -> MarkingCode | None:
    """The other reading of a GS-less scan whose tail the parser split off: everything after AI 21 as the serial.

    `01`+GTIN+`21` + 13 characters ending in `93xxxx` is both a 13-character serial and a 7-character serial with a
    lost GS before a `93` tail. The parser prefers the tail (scanners read DataMatrix codes, which carry one);
    a check looks up both readings, so a blocked code typed or sent as its bare CIS is never let through.
    """
    try:
        return parse_code(raw, cis=True)
    except CodeError:
        return None


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


class Blocklist(BlocklistWriter, SoldAccess, ProbeBase):
    """The blocked codes of one store. Open it once per process and share it between threads.

    Use `Blocklist.create(path)` for a new database and `Blocklist.open(path)` for an existing one; both work as
    context managers. `is_blocked` is the fast path; `check` returns a full `Verdict`.
    """

    _path: str
    _readonly: bool
    _refresh_interval: float
    _env: Any
    _txn: Any
    _lock: Any
    _dbs: dict[bytes, Any]
    _block_cache: dict[int, Block]
    _meta_cache: dict[str, Any] | None
    _cached_version: Any
    _renew_at: float
    _prefilter_cache: tuple[int, str, Any] | None   # (version, set digest, BitMap) this handle last wrote

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("use Blocklist.open(path) or Blocklist.create(path)")

    @classmethod
    def create(cls, path: str | os.PathLike[str], *, instance_id: str | None = None) -> Blocklist:
        """Make a new, empty database (version 0) at `path` and open it for writing."""
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
                                                                     DB_COLLISIONS, DB_META)}
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
        self._txn = None
        self._block_cache = {}
        self._meta_cache = {}
        self._cached_version = None
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
        """Let go of the read transaction and the environment. Idempotent."""
        with self._lock:
            if getattr(self, "_env", None) is None:
                return
            self._detach()
            if self._txn is not None:
                self._txn.abort()
                self._txn = None
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

        Called by the compiled side when the refresh deadline has passed, and after every local write. The new
        transaction is begun and attached before the old one is ended, so the probe never points at pages that
        LMDB may reuse.
        """
        with self._lock:
            if self._env is None:
                raise StoreError("the blocklist is closed")
            try:
                txn = begin_read(self._env, self._path)
            except lmdb.MapResizedError:
                self._env.set_mapsize(0)
                txn = self._env.begin(buffers=True)
            meta = self._dbs[DB_META]
            prefilter = txn.get(META_PREFILTER, db=meta)
            gtin_index = txn.get(META_GTIN_INDEX, db=meta)
            if prefilter is None or gtin_index is None:
                txn.abort()
                raise StoreError(f"{self._path}: metadata is missing the prefilter")
            snapshot = txn.id()
            try:
                # The first attach of this handle validates everything; later versions, written by a writer that
                # validated them, are switched to by checking the stored index's bounds only.
                self._attach(prefilter, gtin_index, self._refresh_interval, snapshot,
                             txn.get(META_PREFILTER_INDEX, db=meta), self._txn is None)
            except ValueError as exc:
                txn.abort()
                raise StoreError(f"{self._path}: corrupt prefilter: {exc}") from exc
            except BaseException:
                txn.abort()
                raise
            old, self._txn = self._txn, txn
            if old is not None:
                old.abort()
                self._sold_cursor_of = None   # the sold register's cursor lived in the old transaction
            if snapshot != self._cached_version:
                # Read on first use: a till's is_blocked that lands on a new version should not pay for it.
                self._meta_cache = None
                self._block_cache = {}
                self._cached_version = snapshot
            self._renew_at = time.monotonic() + self._refresh_interval

    def _meta(self) -> dict[str, Any]:
        """The metadata of the current read transaction (call with the lock held, after `_fresh_txn`)."""
        if self._meta_cache is None:
            self._meta_cache = self._read_meta(self._txn)
        return self._meta_cache

    def _read_meta(self, txn: lmdb.Transaction) -> dict[str, Any]:
        result: dict[str, Any] = {}
        with txn.cursor(db=self._dbs[DB_META]) as cursor:
            for key, value in cursor:
                key = bytes(key)
                if key in BINARY_META:
                    result[key.decode()] = len(value)
                else:
                    result[key.decode()] = json.loads(bytes(value))
        return result

    def _fresh_txn(self) -> lmdb.Transaction:
        if self._txn is None or time.monotonic() >= self._renew_at:
            self._renew()
        return self._txn

    # -- reading ---------------------------------------------------------------------------------------------

    def _confirm(self, identity: bytes) -> bool:
        """Exact check of a prefilter hit: the compiled probe calls this only for the rare maybe-blocked scan."""
        with self._lock:
            txn = self._txn
            if txn is None:
                raise StoreError("the blocklist is closed")
            if txn.get(pack_identity(identity), db=self._dbs[DB_CODES]) is not None:
                return True
            return txn.get(pack_gtin(identity[2:16].decode()), db=self._dbs[DB_GTINS]) is not None

    def check(self, raw: str | bytes) -> Verdict:
        """Parse a scan and say whether it is blocked, with why and the database version that said so.

        Raises `CodeError` for anything that is not a marking code.
        """
        code = parse_code(raw)
        readings = [code]
        if "lost_gs" in code.repaired:
            bare = _bare_reading(raw)
            if bare is not None and bare.identity != code.identity:
                readings.append(bare)
        with self._lock:
            txn = self._fresh_txn()
            meta = self._meta()
            block = None
            for reading in readings:
                block = self._lookup(txn, reading, meta)
                if block is not None:
                    code = reading
                    break
            now = time.time()
            sold = self._is_sold_in(txn, code.identity, meta, now)
        return Verdict(
            blocked=block is not None,
            cis=code.cis,
            gtin=code.gtin,
            serial=code.serial,
            identity=code.identity,
            block=block,
            db_version=meta["version"],
            db_updated_at=meta.get("updated_at"),
            db_age=self._age(meta, now),
            instance_id=meta["instance_id"],
            sold=sold,
        )

    def _lookup(self, txn: lmdb.Transaction, code: MarkingCode, meta: dict[str, Any]) -> Block | None:
        identity = code.identity.encode("ascii")
        if self._maybe(identity):
            value = txn.get(pack_identity(identity), db=self._dbs[DB_CODES])
            if value is not None:
                return self._block(txn, decode_block_id(value), "code")
        if meta.get("gtins"):
            value = txn.get(pack_gtin(code.gtin), db=self._dbs[DB_GTINS])
            if value is not None:
                return self._block(txn, decode_block_id(value), "gtin")
        return None

    def _block(self, txn: lmdb.Transaction, block_id: int, scope: str) -> Block:
        cached = self._block_cache.get(block_id)
        if cached is None or cached.scope != scope:
            raw = txn.get(block_id.to_bytes(4, "big"), db=self._dbs[DB_BLOCKS])
            details = json.loads(bytes(raw)) if raw is not None else {}
            cached = Block(
                authority=details.get("authority"),
                reason=details.get("reason"),
                since=details.get("since"),
                source=details.get("source"),
                scope=scope,
            )
            self._block_cache[block_id] = cached
        return cached

    @staticmethod
    def _age(meta: dict[str, Any], now: float) -> float | None:
        reference = meta.get("last_sync_at") or meta.get("loaded_at")
        return None if reference is None else max(0.0, now - reference)

    def info(self) -> dict[str, Any]:
        """Version, counts, sizes and times of the database as this reader sees it now."""
        with self._lock:
            self._fresh_txn()
            meta = dict(self._meta())
            stat = self._env.stat()
            env_info = self._env.info()
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
            self._fresh_txn()
            return self._meta().get(name, default)

    def status(self, now: float | None = None) -> Status:
        """How fresh the data is, by the refresh window and the offline limit kept in the metadata."""
        now = time.time() if now is None else now
        with self._lock:
            self._fresh_txn()
            meta = dict(self._meta())
        window = float(meta.get("refresh_window") or DEFAULT_REFRESH_WINDOW)
        expire = float(meta.get("expire_after") or DEFAULT_EXPIRE_AFTER)
        last = meta.get("last_sync_at") or meta.get("loaded_at")
        age = None if last is None else max(0.0, now - last)
        if meta["version"] == 0 and last is None:
            state = "empty"
        elif age is None or age > expire:
            state = "expired"
        elif age > window:
            state = "stale"
        else:
            state = "ready"
        return Status(
            state=state,
            version=meta["version"],
            last_sync_at=meta.get("last_sync_at"),
            next_sync_at=None if last is None else last + window,
            age=age,
            feed_url=meta.get("feed_url"),
            codes=meta.get("codes", 0),
            gtins=meta.get("gtins", 0),
            refresh_window=window,
            expire_after=expire,
        )

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
