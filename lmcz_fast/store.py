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

import array
import csv
import gzip
import io
import itertools
import json
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lmdb

from ._bulk import digest_sums, prepare_full_load
from ._codes import CodeError, MarkingCode, readings_of
from ._probe import ProbeBase, build_index, keys_and_hashes, pack_identity, unpack_key

__all__ = [
    "Block",
    "Blocklist",
    "DeltaReport",
    "LoadError",
    "LoadReport",
    "Status",
    "StoreError",
    "DigestMismatchError",
    "VersionError",
    "Verdict",
    "digest_after",
    "set_digest_of",
]

#: Virtual size of the memory map. It costs nothing on 64-bit Linux (pages are mapped lazily) and is far above
#: what a blocklist needs (30 MB for 900k codes), so no writer ever has to grow it under running readers.
MAP_SIZE = 1 << 34
MAX_READERS = 1024
DEFAULT_REFRESH_INTERVAL = 0.25
DEFAULT_REFRESH_WINDOW = 2 * 3600.0
DEFAULT_EXPIRE_AFTER = 72 * 3600.0
_DIGEST_MOD = 1 << 64
_GTIN_DIGEST_PREFIX = b"G"
_MAX_REPORTED_ERRORS = 20

_DB_CODES = b"codes"
_DB_GTINS = b"gtins"
_DB_BLOCKS = b"blocks"
_DB_COLLISIONS = b"collisions"
_DB_META = b"meta"

_META_PREFILTER = b"prefilter"
_META_GTIN_INDEX = b"gtin_index"
_META_PREFILTER_INDEX = b"prefilter_index"
_BINARY_META = {_META_PREFILTER, _META_GTIN_INDEX, _META_PREFILTER_INDEX}


class StoreError(Exception):
    """Base of every error the store raises on purpose (bad path, read-only handle, corrupt metadata)."""


class VersionError(StoreError):
    """A delta does not start at the version the store holds; nothing was changed."""

    def __init__(self, message: str, *, current: int, expected: int | None) -> None:
        super().__init__(message)
        self.current = current
        self.expected = expected


class DigestMismatchError(StoreError):
    """A write would leave the store with another set digest than the caller expected; nothing was changed."""

    def __init__(self, message: str, *, expected: str, actual: str) -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual


class LoadError(StoreError):
    """A strict load met bad lines and was refused; nothing was changed. `.report` says which."""

    def __init__(self, message: str, report: LoadReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass(frozen=True, slots=True)
class Block:
    """Why and since when something is blocked, as far as the source said."""

    authority: str | None = None
    reason: str | None = None
    since: str | None = None
    source: str | None = None
    scope: str = "code"

    def _key(self) -> tuple[str | None, ...]:
        return (self.authority, self.reason, self.since, self.source)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The answer to one check; carries what a receipt and an auditor need about the database that gave it."""

    blocked: bool
    cis: str
    gtin: str
    serial: str
    identity: str
    block: Block | None
    db_version: int
    db_updated_at: float | None
    db_age: float | None
    instance_id: str


@dataclass(frozen=True, slots=True)
class Status:
    """Freshness of the database: `empty`, `ready`, `stale` (serving, loudly) or `expired` (refuse checks)."""

    state: str
    version: int
    last_sync_at: float | None
    next_sync_at: float | None
    age: float | None
    feed_url: str | None
    codes: int
    gtins: int
    refresh_window: float
    expire_after: float


@dataclass(slots=True)
class LineError:
    """One rejected input line: where it was, why, and the text (cut short)."""

    source: str
    line: int
    reason: str
    message: str
    text: str


@dataclass(slots=True)
class LoadReport:
    """What a load did: how many lines it read, took, found twice or rejected, and the first rejections."""

    version: int = 0
    lines: int = 0
    codes: int = 0
    gtins: int = 0
    duplicates: int = 0
    rejected: int = 0
    errors: list[LineError] = field(default_factory=list)
    seconds: float = 0.0
    replaced: bool = True

    def summary(self) -> str:
        text = (
            f"version {self.version}: {self.codes} codes and {self.gtins} GTINs from {self.lines} lines, "
            f"{self.duplicates} duplicates, {self.rejected} rejected, in {self.seconds:.2f} s"
        )
        return text


@dataclass(frozen=True, slots=True)
class DeltaReport:
    """What a delta did. `applied` is False when the store already held `to_version` (a harmless re-apply)."""

    applied: bool
    from_version: int
    to_version: int
    added: int
    removed: int
    gtins_added: int
    gtins_removed: int
    seconds: float


def set_digest_of(identities: Iterable[str | bytes], gtins: Iterable[str] = ()) -> str:
    """Digest of a whole blocklist, independent of order: what a feed publishes and a store must match.

    Two sums modulo 2**64, over every packed identity key `k` (and every packed GTIN, prefixed with `G`), of
    XXH3-64(`k`) and XXH3-64(`k` + b"\x01"), as 32 hex digits. Sums let a store keep the digest up to date across
    deltas by adding and subtracting, without rereading the set.
    """
    keys = []
    for identity in identities:
        raw = identity.encode("ascii") if isinstance(identity, str) else identity
        keys.append(pack_identity(raw))
    return _format_digest(_digest_add((0, 0), keys, [_pack_gtin(g) for g in gtins]))


def digest_after(
    digest: str,
    *,
    add: Iterable[str | bytes] = (),
    remove: Iterable[str | bytes] = (),
    add_gtins: Iterable[str] = (),
    remove_gtins: Iterable[str] = (),
) -> str:
    """The set digest after an exact delta: every added identity absent before, every removed one present.

    The digest is made of sums (`set_digest_of`), so this adds the added and subtracts the removed without the
    rest of the set: what a feed publisher and a syncing store compute before touching the store.
    Raises `ValueError` for an identity that is not canonical, `CodeError` for a bad GTIN.
    """
    def packed(identities: Iterable[str | bytes]) -> list[bytes]:
        return [pack_identity(i.encode("ascii") if isinstance(i, str) else i) for i in identities]

    sums = _digest_add(_parse_digest(digest), packed(add), [_pack_gtin(g) for g in add_gtins])
    return _format_digest(_digest_add(sums, packed(remove), [_pack_gtin(g) for g in remove_gtins], -1))


def _format_digest(sums: tuple[int, int]) -> str:
    return f"{sums[0] % _DIGEST_MOD:016x}{sums[1] % _DIGEST_MOD:016x}"


def _parse_digest(text: str) -> tuple[int, int]:
    if len(text) != 32:
        raise ValueError(f"a set digest is 32 hex digits, not {text!r}")
    return int(text[:16], 16), int(text[16:], 16)


def _digest_add(sums: tuple[int, int], code_keys: Iterable[bytes], gtin_keys: Iterable[bytes],
                sign: int = 1) -> tuple[int, int]:
    codes_a, codes_b = digest_sums(list(code_keys))
    gtins_a, gtins_b = digest_sums(list(gtin_keys), _GTIN_DIGEST_PREFIX)
    return (sums[0] + sign * (codes_a + gtins_a)) % _DIGEST_MOD, (sums[1] + sign * (codes_b + gtins_b)) % _DIGEST_MOD


def _gtin_problem(gtin: str) -> str | None:
    """Why `gtin` is not a valid GTIN-14, or None. The check digit is GS1's mod-10 with weights 3,1,3..."""
    if len(gtin) != 14 or not gtin.isascii() or not gtin.isdigit():
        return "a GTIN is 14 digits"
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(gtin[:13]))
    if (10 - total % 10) % 10 != int(gtin[13]):
        return "the GTIN's check digit is wrong"
    return None


def _pack_gtin(gtin: str) -> bytes:
    problem = _gtin_problem(gtin)
    if problem is not None:
        reason = "bad_gtin_check_digit" if "check digit" in problem else "bad_gtin"
        raise CodeError(reason, None, f"{problem}: {gtin!r}")
    return int(gtin).to_bytes(6, "big")


def _encode_block_id(block_id: int) -> bytes:
    """Block ids are varints, and id 0 (a load's default block) is the empty value, to keep 900k rows small."""
    if block_id == 0:
        return b""
    out = bytearray()
    while True:
        byte = block_id & 0x7F
        block_id >>= 7
        if block_id:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _decode_block_id(value: bytes | memoryview) -> int:
    result = 0
    shift = 0
    for byte in bytes(value):
        result |= (byte & 0x7F) << shift
        shift += 7
    return result


_ENV_LOCK = threading.Lock()
_ENVS: dict[str, list[Any]] = {}


def _acquire_env(path: str) -> lmdb.Environment:
    """One environment per path per process (LMDB's rule), shared and reference-counted."""
    key = os.path.realpath(path)
    with _ENV_LOCK:
        entry = _ENVS.get(key)
        if entry is not None:
            entry[1] += 1
            return entry[0]
        env = lmdb.open(
            key,
            map_size=MAP_SIZE,
            max_dbs=8,
            max_readers=MAX_READERS,
            readahead=False,
            subdir=True,
            create=False,
        )
        env.reader_check()
        _ENVS[key] = [env, 1]
        return env


def _open_dbs(env: lmdb.Environment, path: str) -> dict[bytes, Any]:
    """The named databases' handles, opened once per environment.

    py-lmdb keeps a handle only when it was opened in a write transaction (it aborts a read transaction on
    commit, and LMDB closes handles opened in an aborted one), so this takes the writer lock once, briefly.
    """
    try:
        return {
            name: env.open_db(name, create=False)
            for name in (_DB_CODES, _DB_GTINS, _DB_BLOCKS, _DB_COLLISIONS, _DB_META)
        }
    except lmdb.NotFoundError as exc:
        raise StoreError(f"{path} is an LMDB environment but not an lmcz-fast database") from exc


def _release_env(env: lmdb.Environment) -> None:
    with _ENV_LOCK:
        for key, entry in list(_ENVS.items()):
            if entry[0] is env:
                entry[1] -= 1
                if entry[1] == 0:
                    del _ENVS[key]
                    env.close()
                return


class Blocklist(ProbeBase):
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
        os.makedirs(path, exist_ok=True)
        env = _acquire_env(path)
        try:
            from pyroaring import BitMap

            now = time.time()
            with env.begin(write=True) as txn:
                dbs = {name: env.open_db(name, txn=txn) for name in (_DB_CODES, _DB_GTINS, _DB_BLOCKS,
                                                                     _DB_COLLISIONS, _DB_META)}
                meta = dbs[_DB_META]
                fields: dict[str, Any] = {
                    "format": 1,
                    "version": 0,
                    "created_at": now,
                    "updated_at": now,
                    "instance_id": instance_id or str(uuid.uuid4()),
                    "codes": 0,
                    "gtins": 0,
                    "set_digest": _format_digest((0, 0)),
                    "source": None,
                    "refresh_window": DEFAULT_REFRESH_WINDOW,
                    "expire_after": DEFAULT_EXPIRE_AFTER,
                }
                for name, value in fields.items():
                    txn.put(name.encode(), json.dumps(value).encode(), db=meta)
                _put_prefilter(txn, meta, BitMap().serialize())
                txn.put(_META_GTIN_INDEX, b"", db=meta)
        finally:
            _release_env(env)
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
        self._env = _acquire_env(path)
        self._lock = threading.RLock()
        self._txn = None
        self._block_cache = {}
        self._meta_cache = {}
        self._cached_version = None
        self._prefilter_cache = None
        try:
            self._dbs = _open_dbs(self._env, path)
            self._renew()
        except BaseException:
            _release_env(self._env)
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
            _release_env(self._env)
            self._env = None

    @property
    def path(self) -> str:
        return self._path

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
                txn = self._env.begin(buffers=True)
            except lmdb.MapResizedError:
                self._env.set_mapsize(0)
                txn = self._env.begin(buffers=True)
            meta = self._dbs[_DB_META]
            prefilter = txn.get(_META_PREFILTER, db=meta)
            gtin_index = txn.get(_META_GTIN_INDEX, db=meta)
            if prefilter is None or gtin_index is None:
                txn.abort()
                raise StoreError(f"{self._path}: metadata is missing the prefilter")
            snapshot = txn.id()
            try:
                # The first attach of this handle validates everything; later versions, written by a writer that
                # validated them, are switched to by checking the stored index's bounds only.
                self._attach(prefilter, gtin_index, self._refresh_interval, snapshot,
                             txn.get(_META_PREFILTER_INDEX, db=meta), self._txn is None)
            except ValueError as exc:
                txn.abort()
                raise StoreError(f"{self._path}: corrupt prefilter: {exc}") from exc
            except BaseException:
                txn.abort()
                raise
            old, self._txn = self._txn, txn
            if old is not None:
                old.abort()
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
        with txn.cursor(db=self._dbs[_DB_META]) as cursor:
            for key, value in cursor:
                key = bytes(key)
                if key in _BINARY_META:
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
            if txn.get(pack_identity(identity), db=self._dbs[_DB_CODES]) is not None:
                return True
            return txn.get(_pack_gtin(identity[2:16].decode()), db=self._dbs[_DB_GTINS]) is not None

    def check(self, raw: str | bytes) -> Verdict:
        """Parse a scan and say whether it is blocked, with why and the database version that said so.

        Raises `CodeError` for anything that is not a marking code.
        """
        readings = readings_of(raw)     # the parser's every reading of the scan: blocked if any reading is
        code = readings[0]
        with self._lock:
            txn = self._fresh_txn()
            meta = self._meta()
            block = None
            for reading in readings:
                block = self._lookup(txn, reading, meta)
                if block is not None:
                    code = reading
                    break
        return Verdict(
            blocked=block is not None,
            cis=code.cis,
            gtin=code.gtin,
            serial=code.serial,
            identity=code.identity,
            block=block,
            db_version=meta["version"],
            db_updated_at=meta.get("updated_at"),
            db_age=self._age(meta, time.time()),
            instance_id=meta["instance_id"],
        )

    def _lookup(self, txn: lmdb.Transaction, code: MarkingCode, meta: dict[str, Any]) -> Block | None:
        identity = code.identity.encode("ascii")
        if self._maybe(identity):
            value = txn.get(pack_identity(identity), db=self._dbs[_DB_CODES])
            if value is not None:
                return self._block(txn, _decode_block_id(value), "code")
        if meta.get("gtins"):
            value = txn.get(_pack_gtin(code.gtin), db=self._dbs[_DB_GTINS])
            if value is not None:
                return self._block(txn, _decode_block_id(value), "gtin")
        return None

    def _block(self, txn: lmdb.Transaction, block_id: int, scope: str) -> Block:
        cached = self._block_cache.get(block_id)
        if cached is None or cached.scope != scope:
            raw = txn.get(block_id.to_bytes(4, "big"), db=self._dbs[_DB_BLOCKS])
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
        with self._env.begin() as txn, txn.cursor(db=self._dbs[_DB_CODES]) as cursor:
            for key in cursor.iternext(keys=True, values=False):
                yield unpack_key(key)

    def iter_gtins(self) -> Iterator[str]:
        """Every GTIN blocked as a whole, in order."""
        with self._env.begin() as txn, txn.cursor(db=self._dbs[_DB_GTINS]) as cursor:
            for key in cursor.iternext(keys=True, values=False):
                yield f"{int.from_bytes(key, 'big'):014d}"

    # -- writing ---------------------------------------------------------------------------------------------

    def _require_writable(self) -> None:
        if self._readonly:
            raise StoreError("this blocklist was opened read-only; open it with readonly=False to change it")
        if self._env is None:
            raise StoreError("the blocklist is closed")

    def set_meta(self, **fields: Any) -> None:
        """Set metadata fields (JSON values) in one transaction, e.g. `feed_url` or `refresh_window`."""
        self._require_writable()
        fields = self._checked_meta(fields)
        with self._env.begin(write=True) as txn:
            self._put_meta(txn, fields)
        self._renew()

    def mark_synced(self, at: float | None = None, feed_url: str | None = None, **fields: Any) -> None:
        """Record a successful sync, with any other `fields` (as `set_meta`), in one transaction: the freshness
        clock restarts from `at` (now by default)."""
        fields["last_sync_at"] = time.time() if at is None else at
        if feed_url is not None:
            fields["feed_url"] = feed_url
        self.set_meta(**fields)

    @staticmethod
    def _checked_meta(fields: dict[str, Any]) -> dict[str, Any]:
        """Refuse fields the store keeps itself, and values that are not JSON, before any transaction starts."""
        reserved = {"version", "codes", "gtins", "set_digest", "prefilter", "gtin_index", "prefilter_index",
                    "instance_id", "updated_at", "loaded_at", "source"}
        if reserved & fields.keys():
            raise StoreError(f"these fields are kept by the store itself: {sorted(reserved & fields.keys())}")
        for name, value in fields.items():
            try:
                json.dumps(value)
            except (TypeError, ValueError) as exc:
                raise StoreError(f"metadata field {name!r} is not a JSON value: {exc}") from exc
        return dict(fields)

    def load(
        self,
        sources: Iterable[Any] | str | os.PathLike[str],
        *,
        replace: bool = True,
        strict: bool = False,
        progress: Callable[[int], None] | None = None,
        version: int | None = None,
        block: dict[str, str] | None = None,
        synced: bool = False,
        expect_digest: str | None = None,
        meta: dict[str, Any] | None = None,
    ) -> LoadReport:
        """Load blocked codes from files or iterables of lines, in one write transaction.

        Each source is a path (plain text with one scan, CIS or 14-digit GTIN per line; CSV with a header naming a
        `cis`/`code` column and optionally `gtin`, `authority`, `reason`, `since`; gzip of either) or an iterable
        of lines. Raw scans are cut to their identity. Bad lines are counted and the first ones reported with
        their line numbers; with `strict=True` any bad line refuses the whole load and nothing changes.
        `replace=True` makes the result exactly the sources (a new full version); `replace=False` adds to what is
        there. `progress` is called with the number of lines read so far, now and then.
        `expect_digest`, `meta` and `synced` work as in `apply_delta`.
        """
        self._require_writable()
        extra = self._checked_meta(meta or {})
        started = time.perf_counter()
        if isinstance(sources, (str, bytes, os.PathLike)):
            sources = [sources]
        report = LoadReport(replaced=replace)
        collected = _Collected()
        for source in sources:
            _collect(source, collected, report, block, progress)
        if strict and report.rejected:
            raise LoadError(
                f"{report.rejected} bad lines (first: line {report.errors[0].line} of {report.errors[0].source}: "
                f"{report.errors[0].message}); nothing was loaded",
                report,
            )
        if replace:
            self._write_full(collected, report, version, synced, expect_digest, extra)
        else:
            delta = self.apply_delta(
                _collected=collected,
                add_gtins=list(collected.gtins),
                to_version=version if version is not None else self.get_meta("version") + 1,
                block=block,
                synced=synced,
                expect_digest=expect_digest,
                meta=extra,
            )
            report.codes = delta.added
            report.gtins = delta.gtins_added
            report.version = delta.to_version
        report.seconds = time.perf_counter() - started
        return report

    def _write_full(self, collected: _Collected, report: LoadReport, version: int | None, synced: bool,
                    expect_digest: str | None, extra: dict[str, Any]) -> None:
        """Replace everything with `collected` in one write transaction: codes in key order with MDB_APPEND (full
        pages, no B-tree splits), the prefilter, the collision counts and the digest computed in bulk."""
        from pyroaring import BitMap

        keys = collected.keys
        order, unique_keys, sorted_hashes, shared_keys, sums = prepare_full_load(keys, collected.hashes)
        if collected.mixed:
            values = collected.values
            items: Iterable[tuple[bytes, bytes]] = zip(unique_keys, (values[index] for index in order))
        else:
            items = zip(unique_keys, itertools.repeat(collected.uniform_value or b""))
        report.duplicates += len(keys) - len(unique_keys)
        bitmap = BitMap(sorted_hashes)
        gtin_keys = sorted((_pack_gtin(gtin), value) for gtin, value in collected.gtins.items())
        digest = _format_digest(_digest_add(sums, (), [key for key, _ in gtin_keys]))
        if expect_digest is not None and digest != expect_digest:
            raise DigestMismatchError(
                f"the load leads to digest {digest}, expected {expect_digest}; nothing was changed",
                expected=expect_digest,
                actual=digest,
            )
        now = time.time()
        self._prefilter_cache = None
        with self._env.begin(write=True) as txn:
            current = self._read_json(txn, "version")
            new_version = current + 1 if version is None else version
            if new_version <= current:
                raise VersionError(
                    f"a full load must move the version forward: the store holds {current}, load asked for "
                    f"{new_version}",
                    current=current,
                    expected=new_version,
                )
            for name in (_DB_CODES, _DB_GTINS, _DB_COLLISIONS, _DB_BLOCKS):
                txn.drop(self._dbs[name], delete=False)
            with txn.cursor(db=self._dbs[_DB_CODES]) as cursor:
                cursor.putmulti(items, append=True)
            with txn.cursor(db=self._dbs[_DB_GTINS]) as cursor:
                cursor.putmulti(gtin_keys, append=True)
            with txn.cursor(db=self._dbs[_DB_COLLISIONS]) as cursor:
                cursor.putmulti(
                    [(h.to_bytes(4, "big"), n.to_bytes(4, "big")) for h, n in sorted(shared_keys.items())],
                    append=True,
                )
            for block_id, details in collected.blocks.items():
                txn.put(block_id.to_bytes(4, "big"), json.dumps(details).encode(), db=self._dbs[_DB_BLOCKS])
            meta_fields: dict[str, Any] = {
                **extra,
                "version": new_version,
                "updated_at": now,
                "loaded_at": now,
                "codes": len(unique_keys),
                "gtins": len(gtin_keys),
                "set_digest": digest,
                "source": collected.source_names,
            }
            if synced:
                meta_fields["last_sync_at"] = now
            self._put_meta(txn, meta_fields)
            _put_prefilter(txn, self._dbs[_DB_META], bitmap.serialize())
            txn.put(_META_GTIN_INDEX, _gtin_index(key for key, _ in gtin_keys), db=self._dbs[_DB_META])
        self._prefilter_cache = (new_version, digest, bitmap)
        report.version = new_version
        report.codes = len(unique_keys)
        report.gtins = len(gtin_keys)
        self._renew()

    def _put_meta(self, txn: lmdb.Transaction, fields: dict[str, Any]) -> None:
        for name, value in fields.items():
            txn.put(name.encode(), json.dumps(value).encode(), db=self._dbs[_DB_META])

    def _read_json(self, txn: lmdb.Transaction, name: str) -> Any:
        raw = txn.get(name.encode(), db=self._dbs[_DB_META])
        if raw is None:
            raise StoreError(f"{self._path}: metadata field {name!r} is missing")
        return json.loads(bytes(raw))

    def apply_delta(
        self,
        add: Iterable[str | bytes] = (),
        remove: Iterable[str | bytes] = (),
        *,
        to_version: int,
        from_version: int | None = None,
        add_gtins: Iterable[str] = (),
        remove_gtins: Iterable[str] = (),
        block: dict[str, str] | None = None,
        synced: bool = False,
        expect_digest: str | None = None,
        meta: dict[str, Any] | None = None,
        _collected: _Collected | None = None,
    ) -> DeltaReport:
        """Block and unblock codes and GTINs, moving the version to `to_version`, in one write transaction.

        Removals are applied before additions. A delta whose `from_version` is not the current version, or whose
        `to_version` does not move forward, raises `VersionError` and changes nothing; a delta whose `to_version`
        the store already holds is a harmless no-op (`applied=False`). Any bad code raises `CodeError` and
        changes nothing. Removing a code never unblocks another: prefilter keys shared by several codes are
        reference-counted in the `collisions` table, and a bit is cleared only when its last code goes.
        With `expect_digest`, a result with any other set digest raises `DigestMismatchError` and changes
        nothing (a feed checks the publisher's digest this way, before commit). `meta` fields (JSON values, see
        `set_meta`) are written in the same transaction; `synced=True` also records the sync time.
        """
        self._require_writable()
        started = time.perf_counter()
        if _collected is not None:
            # a load that adds: its lines were cut while they were read, so take the packed keys as they are
            add_keys, add_hashes = _collected.keys, _collected.hashes
        else:
            add_keys, add_hashes = _cut_all(add, "add")
        remove_keys, remove_hashes = _cut_all(remove, "remove")
        add_gtins = list(add_gtins)
        add_gtin_keys = [_pack_gtin(g) for g in add_gtins]
        remove_gtin_keys = [_pack_gtin(g) for g in remove_gtins]
        extra = self._checked_meta(meta or {})
        if _collected is not None:
            add_values = list(_collected.values)
            gtin_values = dict(_collected.gtins.items())
            new_blocks = _collected.blocks
        else:
            add_values = [b""] * len(add_keys)
            gtin_values = {}
            new_blocks = {}
        from pyroaring import BitMap

        codes_db = self._dbs[_DB_CODES]
        gtins_db = self._dbs[_DB_GTINS]
        collisions_db = self._dbs[_DB_COLLISIONS]
        meta_db = self._dbs[_DB_META]
        cached, self._prefilter_cache = self._prefilter_cache, None
        with self._env.begin(write=True) as txn:
            current = self._read_json(txn, "version")
            if to_version == current and (from_version is None or from_version < current):
                self._prefilter_cache = cached
                return DeltaReport(False, current, current, 0, 0, 0, 0, time.perf_counter() - started)
            if from_version is not None and from_version != current:
                raise VersionError(
                    f"the delta starts at version {from_version} but the store holds {current}",
                    current=current,
                    expected=from_version,
                )
            if to_version <= current:
                raise VersionError(
                    f"versions only move forward: the store holds {current}, the delta goes to {to_version}",
                    current=current,
                    expected=from_version,
                )
            block_value = b""
            if block is not None or new_blocks:
                next_id = self._next_block_id(txn)
                remap: dict[int, int] = {}
                for old_id, details in new_blocks.items():
                    remap[old_id] = next_id
                    txn.put(next_id.to_bytes(4, "big"), json.dumps(details).encode(), db=self._dbs[_DB_BLOCKS])
                    next_id += 1
                if block is not None and _collected is None:
                    txn.put(next_id.to_bytes(4, "big"), json.dumps(dict(block)).encode(),
                            db=self._dbs[_DB_BLOCKS])
                    block_value = _encode_block_id(next_id)
                add_values = [
                    _encode_block_id(remap.get(_decode_block_id(v), 0)) if v else block_value for v in add_values
                ]
                gtin_values = {
                    g: _encode_block_id(remap.get(_decode_block_id(v), 0)) if v else block_value
                    for g, v in gtin_values.items()
                }
            digest_text = self._read_json(txn, "set_digest")
            if cached is not None and cached[:2] == (current, digest_text):
                bitmap = cached[2]
            else:
                bitmap = BitMap.deserialize(bytes(txn.get(_META_PREFILTER, db=meta_db)))
            digest = _parse_digest(digest_text)
            count = self._read_json(txn, "codes")
            stored_shared = {
                int.from_bytes(key, "big"): int.from_bytes(value, "big")
                for key, value in txn.cursor(db=collisions_db)
            }
            shared = dict(stored_shared)
            changed: set[int] = set()

            # Removals, in key order (distinct keys; of the codes not there, nothing is removed).
            order, unique, _, _, removed_sums = prepare_full_load(remove_keys, remove_hashes)
            removed_keys: list[bytes] = []
            removed_hashes = array.array("I")
            missing: list[bytes] = []
            for index, key in zip(order, unique):
                if txn.delete(key, db=codes_db):
                    removed_keys.append(key)
                    removed_hashes.append(remove_hashes[index])
                else:
                    missing.append(key)
            if missing:
                removed_sums = _digest_add(removed_sums, missing, (), -1)
            # A prefilter key without a `collisions` row has exactly one code: its bit goes with it.
            gone = BitMap(removed_hashes)
            counted = gone & BitMap(stored_shared)
            for h, n in Counter(h for h in removed_hashes if h in counted).items():
                shared[h] -= n
                changed.add(h)
            bitmap -= (gone - counted) | BitMap(h for h in counted if shared[h] <= 0)

            # Additions, in key order; only a key whose prefilter bit is set can already be there.
            order, unique, _, _, added_sums = prepare_full_load(add_keys, add_hashes)
            unique_hashes = array.array("I", [add_hashes[index] for index in order])
            maybe_there = BitMap(unique_hashes) & bitmap
            present: set[bytes] = set()
            if maybe_there:
                present = {key for key, h in zip(unique, unique_hashes)
                           if h in maybe_there and txn.get(key, db=codes_db) is not None}
            if present:
                added_sums = _digest_add(added_sums, present, (), -1)
                kept = [i for i, key in enumerate(unique) if key not in present]
                unique = [unique[i] for i in kept]
                order = [order[i] for i in kept]
                unique_hashes = array.array("I", [unique_hashes[i] for i in kept])
            with txn.cursor(db=codes_db) as cursor:
                _, written = cursor.putmulti(zip(unique, (add_values[index] for index in order)), overwrite=False)
            if written != len(unique):
                raise StoreError(f"internal error: {len(unique) - written} codes appeared during a delta")
            fresh = BitMap(unique_hashes)
            overlap = bitmap & fresh
            if overlap or len(fresh) != len(unique_hashes):
                special = overlap | BitMap(h for h, n in Counter(unique_hashes).items() if n > 1)
                for h, n in Counter(h for h in unique_hashes if h in special).items():
                    shared[h] = shared.get(h, 1 if h in overlap else 0) + n
                    changed.add(h)
            bitmap |= fresh
            for h in changed:
                hkey = h.to_bytes(4, "big")
                if shared.get(h, 0) > 1:
                    txn.put(hkey, shared[h].to_bytes(4, "big"), db=collisions_db)
                elif h in stored_shared:
                    txn.delete(hkey, db=collisions_db)

            removed_gtins = [g for g in remove_gtin_keys if txn.delete(g, db=gtins_db)]
            added_gtins = []
            for gtin, key in zip(add_gtins, add_gtin_keys):
                value = gtin_values.get(gtin, block_value)
                if txn.put(key, value, db=gtins_db, overwrite=False):
                    added_gtins.append(key)
            digest = _digest_add(digest, (), added_gtins)
            digest = _digest_add(digest, (), removed_gtins, -1)
            digest = (
                (digest[0] + added_sums[0] - removed_sums[0]) % _DIGEST_MOD,
                (digest[1] + added_sums[1] - removed_sums[1]) % _DIGEST_MOD,
            )
            new_digest = _format_digest(digest)
            if expect_digest is not None and new_digest != expect_digest:
                raise DigestMismatchError(
                    f"the delta {current}->{to_version} leads to digest {new_digest}, expected {expect_digest}; "
                    f"nothing was changed",
                    expected=expect_digest,
                    actual=new_digest,
                )
            added_count = len(unique)
            gtin_count = txn.stat(gtins_db)["entries"]
            now = time.time()
            fields: dict[str, Any] = {
                **extra,
                "version": to_version,
                "updated_at": now,
                "codes": count + added_count - len(removed_keys),
                "gtins": gtin_count,
                "set_digest": new_digest,
            }
            if synced:
                fields["last_sync_at"] = now
            self._put_meta(txn, fields)
            _put_prefilter(txn, meta_db, bitmap.serialize())
            if added_gtins or removed_gtins:
                with txn.cursor(db=gtins_db) as cursor:
                    index = _gtin_index(cursor.iternext(keys=True, values=False))
                txn.put(_META_GTIN_INDEX, index, db=meta_db)
        self._prefilter_cache = (to_version, new_digest, bitmap)
        self._renew()
        return DeltaReport(
            applied=True,
            from_version=current,
            to_version=to_version,
            added=added_count,
            removed=len(removed_keys),
            gtins_added=len(added_gtins),
            gtins_removed=len(removed_gtins),
            seconds=time.perf_counter() - started,
        )

    def _next_block_id(self, txn: lmdb.Transaction) -> int:
        with txn.cursor(db=self._dbs[_DB_BLOCKS]) as cursor:
            if cursor.last():
                return int.from_bytes(cursor.key(), "big") + 1
        return 1


def _put_prefilter(txn: lmdb.Transaction, meta_db: Any, serialized: bytes) -> None:
    """Write the prefilter with its stored index, validated here once, so readers need not derive it."""
    txn.put(_META_PREFILTER, serialized, db=meta_db)
    txn.put(_META_PREFILTER_INDEX, build_index(serialized), db=meta_db)


def _gtin_index(packed_gtins: Iterable[bytes]) -> bytes:
    """The blocked GTINs as a sorted little-endian uint64 array, probed in place by the compiled side."""
    return b"".join(int.from_bytes(key, "big").to_bytes(8, "little") for key in packed_gtins)


def _cut_all(raws: Iterable[str | bytes], what: str) -> tuple[list[bytes], Any]:
    items = list(raws)
    keys, hashes, errors = keys_and_hashes(items)
    if errors:
        index, reason, message = errors[0]
        raise CodeError(reason, None, f"{what}[{index}] {items[index]!r}: {message} ({len(errors)} bad in all)")
    return keys, hashes


class _Collected:
    """What a load gathered before it writes: keys, their hashes and block ids, GTINs, block details."""

    def __init__(self) -> None:
        self.keys: list[bytes] = []
        self.hashes = array.array("I")
        self.values: list[bytes] = []
        self.uniform_value: bytes | None = None
        self.mixed = False
        self.gtins: dict[str, bytes] = {}
        self.blocks: dict[int, dict[str, str]] = {}
        self.block_ids: dict[tuple[tuple[str, str], ...], int] = {}
        self.source_names: list[str] = []

    def add(self, keys: list[bytes], hashes: Any, values: bytes | list[bytes]) -> None:
        """Take cut codes with one block value for all (`bytes`) or one each (a list)."""
        self.keys.extend(keys)
        self.hashes.extend(hashes)
        if isinstance(values, bytes):
            self.values.extend([values] * len(keys))
            distinct = {values} if keys else set()
        else:
            self.values.extend(values)
            distinct = set(values)
        if self.uniform_value is not None:
            distinct.add(self.uniform_value)
        if len(distinct) > 1:
            self.mixed = True
        elif distinct:
            self.uniform_value = distinct.pop()

    def block_value(self, details: dict[str, str]) -> bytes:
        cleaned = {k: v for k, v in details.items() if v}
        if not cleaned:
            return b""
        signature = tuple(sorted(cleaned.items()))
        block_id = self.block_ids.get(signature)
        if block_id is None:
            block_id = len(self.block_ids) + 1
            self.block_ids[signature] = block_id
            self.blocks[block_id] = cleaned
        return _encode_block_id(block_id)


_CIS_COLUMNS = ("cis", "code", "km", "mark", "marking_code", "kiz", "ки", "код")
_DETAIL_COLUMNS = {
    "authority": ("authority", "ogv", "ogvs", "огв"),
    "reason": ("reason", "category", "причина"),
    "since": ("since", "date", "blocked_at", "дата"),
}
_PROGRESS_EVERY = 50_000


def _open_text(source: str | os.PathLike[str]) -> io.TextIOBase:
    path = Path(source)
    with open(path, "rb") as probe:
        magic = probe.read(2)
    if magic == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def _collect(
    source: Any,
    out: _Collected,
    report: LoadReport,
    block: dict[str, str] | None,
    progress: Callable[[int], None] | None,
) -> None:
    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        try:
            stream = _open_text(name)
        except FileNotFoundError as exc:
            hint = ""
            if isinstance(source, str) and len(source) >= 21 and os.sep not in source:
                hint = " (to load lines from memory, pass a list of them as one source: load([lines]))"
            raise StoreError(f"cannot read {name}: no such file{hint}") from exc
        except OSError as exc:
            raise StoreError(f"cannot read {name}: {exc.strerror or exc}") from exc
        with stream:
            try:
                _collect_lines(name, _chunks_of_stream(stream), out, report, block, progress)
            except UnicodeDecodeError as exc:
                raise StoreError(f"{name} is not UTF-8 text: {exc}") from exc
    else:
        _collect_lines("<iterable>", _chunks_of_iterable(source), out, report, block, progress)


_CHUNK_CHARS = 1 << 22
_CHUNK_LINES = 100_000


def _chunks_of_stream(stream: io.TextIOBase) -> Iterator[list[str]]:
    """Lines in lists of ~100k, split in C: a Python loop per line would cost more than parsing the codes."""
    carry = ""
    while True:
        chunk = stream.read(_CHUNK_CHARS)
        if not chunk:
            break
        lines = (carry + chunk).split("\n")
        carry = lines.pop()
        yield lines
    if carry:
        yield [carry]


def _chunks_of_iterable(lines: Iterable[str]) -> Iterator[list[str]]:
    iterator = iter(lines)
    while True:
        chunk = [line.rstrip("\r\n") for line in itertools.islice(iterator, _CHUNK_LINES)]
        if not chunk:
            return
        yield chunk


def _collect_lines(
    name: str,
    chunks: Iterator[list[str]],
    out: _Collected,
    report: LoadReport,
    block: dict[str, str] | None,
    progress: Callable[[int], None] | None,
) -> None:
    """Plain text: one scan, CIS or 14-digit GTIN per line. Hands over to the CSV reader on a header line."""
    out.source_names.append(os.path.basename(name) if name != "<iterable>" else name)
    default_details = dict(block or {})
    first_chunk = next(chunks, None)
    if first_chunk is None:
        return
    header = _csv_header(first_chunk[0]) if first_chunk else None
    if header is not None:
        rows = itertools.chain(first_chunk[1:], (line for chunk in chunks for line in chunk))
        _collect_csv(name, header, rows, out, report, default_details, progress)
        return
    default_value = out.block_value(default_details)
    offset = 0
    for chunk in itertools.chain([first_chunk], chunks):
        keys, hashes, errors = keys_and_hashes(chunk)
        out.add(keys, hashes, default_value)
        for index, reason, message in errors:
            text = chunk[index].strip()
            if not text or text.startswith("#"):
                continue
            if len(text) == 14 and text.isdigit():
                _take_gtin(name, offset + index + 1, text, default_value, out, report)
            else:
                _reject(report, name, offset + index + 1, reason, message, chunk[index])
        offset += len(chunk)
        if progress is not None:
            progress(offset)
    report.lines += offset


def _csv_header(first: str) -> list[str] | None:
    """A first line is a CSV header when it names a code column; anything else is data."""
    for delimiter in (",", ";", "\t"):
        if delimiter in first:
            fields = [f.strip().strip('"').lower() for f in first.strip("\r\n").split(delimiter)]
            if any(f in _CIS_COLUMNS or f == "gtin" for f in fields):
                return fields + [delimiter]
    stripped = first.strip().lower()
    if stripped in _CIS_COLUMNS:
        return [stripped, ","]
    return None


def _collect_csv(
    name: str,
    header: list[str],
    lines: Iterator[str],
    out: _Collected,
    report: LoadReport,
    default_details: dict[str, str],
    progress: Callable[[int], None] | None,
) -> None:
    delimiter = header.pop()
    cis_col = next((header.index(c) for c in _CIS_COLUMNS if c in header), None)
    gtin_col = header.index("gtin") if "gtin" in header else None
    detail_cols = {
        field_name: next((header.index(c) for c in names if c in header), None)
        for field_name, names in _DETAIL_COLUMNS.items()
    }
    texts: list[str] = []
    numbers: list[int] = []
    values: list[bytes] = []
    line_no = 1
    for line_no, row in enumerate(csv.reader(lines, delimiter=delimiter), 2):
        if not row or not any(cell.strip() for cell in row):
            continue
        details = dict(default_details)
        for field_name, col in detail_cols.items():
            if col is not None and col < len(row) and row[col].strip():
                details[field_name] = row[col].strip()
        value = out.block_value(details)
        cis = row[cis_col].strip() if cis_col is not None and cis_col < len(row) else ""
        if cis:
            texts.append(cis)
            numbers.append(line_no)
            values.append(value)
        elif gtin_col is not None and gtin_col < len(row) and row[gtin_col].strip():
            _take_gtin(name, line_no, row[gtin_col].strip(), value, out, report)
        else:
            _reject(report, name, line_no, "missing_code", "the row has neither a code nor a GTIN", ",".join(row))
        if progress is not None and line_no % _PROGRESS_EVERY == 0:
            progress(line_no)
    report.lines += line_no
    _take_codes(name, texts, numbers, values, out, report)
    if progress is not None:
        progress(line_no)


def _take_gtin(name: str, line_no: int, gtin: str, value: bytes, out: _Collected, report: LoadReport) -> None:
    problem = _gtin_problem(gtin)
    if problem is not None:
        _reject(report, name, line_no, "bad_gtin", problem, gtin)
        return
    if gtin in out.gtins:
        report.duplicates += 1
    out.gtins[gtin] = value


def _take_codes(
    name: str,
    texts: list[str],
    numbers: list[int],
    values: list[bytes],
    out: _Collected,
    report: LoadReport,
) -> None:
    keys, hashes, errors = keys_and_hashes(texts)
    if errors:
        bad = {index for index, _, _ in errors}
        for index, reason, message in errors:
            _reject(report, name, numbers[index], reason, message, texts[index])
        values = [value for index, value in enumerate(values) if index not in bad]
    out.add(keys, hashes, values)


def _reject(report: LoadReport, name: str, line_no: int, reason: str, message: str, text: str) -> None:
    report.rejected += 1
    if len(report.errors) < _MAX_REPORTED_ERRORS:
        report.errors.append(LineError(name, line_no, reason, message, text[:80]))
