"""The LMDB environment of a store: one per path per process, its named databases and their names."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import lmdb

from .._probe import build_index
from .errors import DiskFullError, MapFullError, StoreError
from .tables import DB_GREY, DB_PRICES

log = logging.getLogger("lmcz_fast.store")

DEFAULT_MAP_SIZE = 1 << 34


def map_size_from(value: str | None) -> int:
    """The map size `LMCZ_FAST_MAP_SIZE` asks for (bytes, or with a K/M/G suffix, 1 MiB to 1 TiB), or the default
    when it is unset or empty. A value that is not one raises `StoreError` naming the variable."""
    if value is None or not value.strip():
        return DEFAULT_MAP_SIZE
    text = value.strip().upper()
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
    number = text[:-1] if scale > 1 else text
    if not number.isdigit() or not (1 << 20) <= int(number) * scale <= (1 << 40):
        raise StoreError(f"LMCZ_FAST_MAP_SIZE={value!r}: give bytes or a size like 256M or 16G, from 1M to 1024G")
    return int(number) * scale


#: Virtual size of the memory map. It costs nothing on 64-bit Linux (pages are mapped lazily) and is far above
#: what a blocklist needs (30 MB for 900k codes), so no writer ever has to grow it under running readers.
#: `LMCZ_FAST_MAP_SIZE` sets another, for where address space does cost: a process limited by RLIMIT_AS
#: (systemd's LimitAS=), or qemu-user emulation, whose 7.x releases keep ~6 MB of host memory per GiB a process
#: maps, never given back (tests/test_arm64.py runs the suite with 256M; docs/platforms.md).
MAP_SIZE = map_size_from(os.environ.get("LMCZ_FAST_MAP_SIZE"))
MAX_READERS = 1024
DEFAULT_REFRESH_INTERVAL = 0.25
DEFAULT_REFRESH_WINDOW = 2 * 3600.0
DEFAULT_EXPIRE_AFTER = 72 * 3600.0
#: LMDB's lock file for MAX_READERS reader slots: a 192-byte header holding the first slot, then 64 bytes a slot.
LOCK_FILE_BYTES = 192 + 64 * (MAX_READERS - 1)
#: Free space a new database needs at least: its lock file, two meta pages and the first transaction's pages.
MIN_CREATE_BYTES = 1 << 20
#: A long-lived reader clears stale reader slots at most this often when it renews (a writer: before every write).
READER_CHECK_INTERVAL = 5.0
#: Below this much free space, LMDB's "Input/output error" (its word for a short write) means the disk is full.
_FULL_MARGIN = 4 << 20
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}

DB_CODES = b"codes"
DB_GTINS = b"gtins"
DB_BLOCKS = b"blocks"
DB_COLLISIONS = b"collisions"
DB_META = b"meta"
#: The databases every store has had since the first version.
CORE_DBS = (DB_CODES, DB_GTINS, DB_BLOCKS, DB_COLLISIONS, DB_META)
#: The price and grey tables (tables.py).
TABLE_DBS = (DB_PRICES, DB_GREY)
#: Tables added after the first format: created when an older store is opened (an empty table changes nothing;
#: empty price and grey tables add nothing to the set digest).
DB_SIDE = b"side"          # side tables of writers above the store (replication's document maps), key table\0key
#: The sold register (store/sold/): written by the sales, never by a load, a delta, a sync or a snapshot.
DB_SOLD = b"sold"
DB_SOLD_TIME = b"sold_time"
#: Sales and returns waiting for the official module (store/outbox.py; written with the sale, in its transaction).
DB_OUTBOX = b"outbox"
LATER_TABLES = (DB_SIDE, *TABLE_DBS, DB_SOLD, DB_SOLD_TIME, DB_OUTBOX)
#: Named databases the environment may hold: the blocklist's five, the later tables, room for more.
MAX_DBS = 16

#: The prefilter (docs/ARCHITECTURE.md "LMDB layout"): a base, rewritten only by a full load or when a delta folds
#: the overlay into it, with its stored index, and the overlay every other delta writes instead (the keys added to
#: and removed from the base: each a little-endian uint32 count, the keys sorted, padding; absent after a fold).
#: The base and its index are stored in chunks (`PREFILTER_CHUNK` bytes, under `PREFILTER_CHUNKS` + b"b" or b"i" +
#: the chunk's number, u32 BE), two to a leaf page: a fold takes single free pages,
#: never a run of ~256 contiguous ones that the pages deltas copy one by one have broken up since the last fold.
#: `prefilter_base` itself describes them: a 16-byte id (new at every write of the base), then the base's and the
#: index's sizes (u64 LE each). Readers join the chunks into a private copy when the id changes (`get_prefilter`).
META_PREFILTER = b"prefilter_base"
META_PREFILTER_ADDED = b"prefilter_added"
META_PREFILTER_REMOVED = b"prefilter_removed"
PREFILTER_CHUNKS = b"\xffprefilter/"          # after every other key of `meta`: written in one append, full pages
PREFILTER_CHUNK = 1984                          # two to a 4 KiB leaf page with their keys and headers
#: Where stores written before the overlay keep their (whole) prefilter: read as the base, deleted when the base is
#: next written. A program older than the overlay finds no prefilter in a store written since, and refuses it
#: ("metadata is missing the prefilter") instead of answering from a base without the overlay's codes.
LEGACY_PREFILTER = b"prefilter"
LEGACY_PREFILTER_INDEX = b"prefilter_index"
META_GTIN_INDEX = b"gtin_index"
BINARY_META = {META_PREFILTER, META_GTIN_INDEX, META_PREFILTER_ADDED, META_PREFILTER_REMOVED, LEGACY_PREFILTER,
               LEGACY_PREFILTER_INDEX}


class _Shared:
    """One open environment of this process: its users and what clearing its reader table has found."""

    def __init__(self, env: lmdb.Environment, lock_fd: int | None) -> None:
        self.env = env
        self.lock_fd = lock_fd   # see `open_lock_file`: closed only after the environment
        self.refs = 1
        self.cleared = 0
        self.checked_at = -float("inf")
        self.lock = threading.Lock()
        self.dbs: dict[bytes, Any] | None = None   # the named databases' handles, valid as long as the environment


# Re-entrant: a collection that runs while this thread holds it (any allocation inside may start one) can finalize
# an unclosed Blocklist, whose `__del__` releases its environment here (`release_env`); with a plain lock that thread
# waited for itself forever (seen in a test run: `_shared` -> gc -> `Blocklist.__del__` -> `release_env`). Every
# loop over `_ENVS` walks a copy, so such a nested release cannot change a dict being iterated.
_ENV_LOCK = threading.RLock()
_ENVS: dict[str, _Shared] = {}


def acquire_env(path: str) -> lmdb.Environment:
    """One environment per path per process (LMDB's rule), shared and reference-counted.

    The lock file's blocks are allocated first (`reserve_lock_file`), so a full disk is an error here, not a SIGBUS
    later; LMDB's failures come out as `StoreError`s; stale reader slots are cleared and counted.
    """
    key = os.path.realpath(path)
    with _ENV_LOCK:
        entry = _ENVS.get(key)
        if entry is not None:
            entry.refs += 1
            return entry.env
        lock_fd = open_lock_file(key)
        env = None
        try:
            if lock_fd is not None:
                reserve_lock_file(lock_fd, key)
            try:
                env = lmdb.open(
                    key,
                    map_size=MAP_SIZE,
                    max_dbs=MAX_DBS,
                    max_readers=MAX_READERS,
                    readahead=False,
                    subdir=True,
                    create=False,
                )
            except lmdb.Error as exc:
                raise lmdb_error(exc, path, "the database could not be opened") from exc
            if lock_fd is not None:
                reserve_lock_file(lock_fd, key)   # again, in case LMDB sized the file otherwise
        except BaseException:
            if env is not None:
                env.close()
            if lock_fd is not None:
                os.close(lock_fd)
            raise
        _ENVS[key] = _Shared(env, lock_fd)
    clear_stale_readers(env, path)
    return env


def open_dbs(env: lmdb.Environment, path: str) -> dict[bytes, Any]:
    """The named databases' handles, opened once per environment and kept with it.

    py-lmdb keeps a handle only when it was opened in a write transaction (it aborts a read transaction on
    commit, and LMDB closes handles opened in an aborted one), so the first open takes the writer lock once,
    briefly, in a transaction of its own: `env.open_db` without one waits for the writer lock holding the GIL, and
    a second store opened while a thread of this process writes would hang both for ever. Later opens of the same
    environment take the handles kept here and no lock. Tables added after the first format (`LATER_TABLES`: the
    side tables, the sold register's two) are created here when missing, so a database made before them gains
    them on its first open, empty.
    """
    shared = _shared(env)
    if shared is not None and shared.dbs is not None:
        return dict(shared.dbs)
    try:
        with env.begin(write=True) as txn:
            try:
                dbs = {name: env.open_db(name, txn=txn, create=False) for name in CORE_DBS}
            except lmdb.NotFoundError as exc:
                raise StoreError(f"{path} is an LMDB environment but not an lmcz-fast database") from exc
            for name in LATER_TABLES:
                dbs[name] = env.open_db(name, txn=txn, create=True)
    except lmdb.Error as exc:
        raise lmdb_error(exc, path, "the store's tables could not be opened (or its later tables, side, prices "
                                    "and grey, added); nothing was changed") from exc
    if shared is not None:
        shared.dbs = dict(dbs)
    return dbs


def release_env(env: lmdb.Environment) -> None:
    with _ENV_LOCK:
        for key, entry in list(_ENVS.items()):
            if entry.env is env:
                entry.refs -= 1
                if entry.refs == 0:
                    del _ENVS[key]
                    env.close()
                    if entry.lock_fd is not None:
                        os.close(entry.lock_fd)
                return


def _shared(env: lmdb.Environment) -> _Shared | None:
    with _ENV_LOCK:
        return next((entry for entry in list(_ENVS.values()) if entry.env is env), None)


# -- the reader table: stale slots ---------------------------------------------------------------------------
#
# A process killed while it holds a read transaction leaves its slot in the reader table, and the slot pins the
# version it read: no page freed after it is reused, so the data file grows with every write. LMDB clears such
# slots only when asked (`mdb_reader_check`, which tests each slot's process with a lock probe), so every writer
# asks before each write transaction and a long-lived reader now and then when it renews.


def clear_stale_readers(env: lmdb.Environment, path: str) -> int:
    """Clear the reader slots of processes that died holding a read transaction; return how many; count and log."""
    cleared = env.reader_check()
    entry = _shared(env)
    total = cleared
    if entry is not None:
        with entry.lock:
            entry.cleared += cleared
            entry.checked_at = time.monotonic()
            total = entry.cleared
    if cleared:
        log.warning("%s: cleared %d stale reader slot(s) left by processes that died holding a read transaction "
                    "(%d by this process so far)", path, cleared, total)
    return cleared


def stale_readers_cleared(env: lmdb.Environment | None) -> int:
    """How many stale reader slots this process has cleared in `env` since it opened it."""
    entry = None if env is None else _shared(env)
    return 0 if entry is None else entry.cleared


def begin_read(env: lmdb.Environment, path: str) -> lmdb.Transaction:
    """A read transaction (`buffers=True`) for a renewal. At most every `READER_CHECK_INTERVAL` seconds it first
    clears stale reader slots (a few microseconds); a full reader table is cleared and tried again."""
    entry = _shared(env)
    if entry is not None and time.monotonic() - entry.checked_at >= READER_CHECK_INTERVAL:
        clear_stale_readers(env, path)
    try:
        return env.begin(buffers=True)
    except lmdb.ReadersFullError as exc:
        if clear_stale_readers(env, path) == 0:
            raise StoreError(f"{path}: all {MAX_READERS} reader slots are in use by live processes") from exc
        return env.begin(buffers=True)


# -- writing: the one way into a write transaction -----------------------------------------------------------


@contextlib.contextmanager
def write_txn(env: lmdb.Environment, path: str, meta_db: Any = None) -> Iterator[lmdb.Transaction]:
    """A write transaction, committed when the block ends without an exception.

    Stale reader slots are cleared first, so the pages dead readers pinned are reused rather than the file grown.
    LMDB's failures (in the block or at commit) come out as `StoreError`s that name the cause in words (disk full,
    map size reached) and, given the `meta` table, the version that is still being served. LMDB's commit is
    atomic: a failed one leaves the store as it was.
    """
    clear_stale_readers(env, path)
    try:
        with env.begin(write=True) as txn:
            yield txn
    except lmdb.Error as exc:
        served = _served_version(env, meta_db)
        kept = "nothing was changed"
        if served is not None:
            kept += f"; version {served} is still being served"
        raise lmdb_error(exc, path, kept) from exc


def _served_version(env: lmdb.Environment, meta_db: Any) -> int | None:
    if meta_db is None:
        return None
    try:
        with env.begin(db=meta_db) as txn:
            raw = txn.get(b"version")
            version = None if raw is None else int(json.loads(bytes(raw)))
            return version or None     # version 0 holds no list: it serves nothing (NoListError)
    except Exception:
        return None


def lmdb_error(exc: lmdb.Error, path: str, consequence: str) -> StoreError:
    """LMDB's error `exc` about the store at `path` as a `StoreError` with the cause in words."""
    code = getattr(exc, "code", 0)
    free = free_bytes(path)
    if isinstance(exc, lmdb.MapFullError):
        size = f"{MAP_SIZE / 2**30:g} GiB" if MAP_SIZE >= 2**30 else f"{MAP_SIZE / 2**20:g} MiB"
        return MapFullError(f"the database at {path} reached its map size ({size}): {consequence}")
    if code in _NO_SPACE or isinstance(exc, lmdb.DiskError) or (
            code == errno.EIO and free is not None and free < _FULL_MARGIN):
        # LMDB reports a short write (the filesystem ran out part way) as EIO
        return disk_full(path, free, consequence)
    where = "" if free is None else f" ({free / 1e6:.1f} MB free)"
    return StoreError(f"LMDB failed on {path}{where}: {exc}; {consequence}")


def disk_full(path: str, free: int | None, consequence: str) -> DiskFullError:
    room = "" if free is None else f" ({free / 1e6:.1f} MB free)"
    return DiskFullError(f"disk full at {path}{room}: {consequence}", path=path, free_bytes=free)


def free_bytes(path: str | os.PathLike[str]) -> int | None:
    """Bytes an unprivileged writer may still use on the filesystem of `path` (or of its nearest existing parent)."""
    where = os.path.abspath(os.fspath(path))
    while True:
        try:
            st = os.statvfs(where)
            return st.f_bavail * st.f_frsize
        except FileNotFoundError:
            parent = os.path.dirname(where)
            if parent == where:
                return None
            where = parent
        except OSError:
            return None


# -- disk space -----------------------------------------------------------------------------------------------


def check_room_to_create(path: str) -> None:
    """Refuse to start a new database where the filesystem has less than `MIN_CREATE_BYTES` free."""
    free = free_bytes(path)
    if free is not None and free < MIN_CREATE_BYTES:
        raise disk_full(path, free, f"a new database needs at least {MIN_CREATE_BYTES / 1e6:.0f} MB; "
                                    f"nothing was created")


def open_lock_file(path: str) -> int | None:
    """A descriptor of LMDB's lock file in `path` (created if missing), or None without write access to it.

    It stays open as long as the environment: closing any descriptor of a file drops every fcntl lock this process
    holds on it, LMDB's own included, and other processes would then take this one's reader slots for stale.
    """
    try:
        return os.open(os.path.join(path, "lock.mdb"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError:
        return None   # no write access here: LMDB's own open says why


def reserve_lock_file(fd: int, path: str) -> None:
    """Allocate the blocks of LMDB's lock file (its reader table) on disk, before LMDB maps it and after.

    LMDB sizes the file with `ftruncate`, which leaves it sparse, and writes reader slots through a shared memory
    map. On a full filesystem the first write to a page without a block is a SIGBUS, not an error: a new database
    dies inside `lmdb.open`, an existing one when a reader first takes a slot on a fresh page (the 63rd reader at
    once). With the blocks allocated here, a full disk is a `DiskFullError` and never a signal.
    """
    try:
        st = os.fstat(fd)
        # Never change the size of a lock file in use: processes that have it mapped count the slots by its size.
        # A new (empty) one gets the size LMDB would give it, and LMDB keeps a size it finds big enough.
        size = st.st_size or LOCK_FILE_BYTES
        if st.st_blocks * 512 < size:
            os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno in _NO_SPACE:
            raise disk_full(path, free_bytes(path), f"the {LOCK_FILE_BYTES // 1024} KiB reader table could not "
                                                    f"be allocated; nothing was changed") from exc
        log.debug("%s: could not preallocate the lock file: %s", path, exc)


def put_prefilter(txn: lmdb.Transaction, meta_db: Any, serialized: bytes, clear_overlay: bool = True) -> None:
    """Write the prefilter's base with its stored index (validated here once, so readers need not derive it), in
    chunks under a new id; the base is then the whole prefilter: a store's legacy prefilter goes, and the overlay
    too unless the caller writes it again (empty) before the commit (`clear_overlay=False`)."""
    index = build_index(serialized)
    base_id = os.urandom(16)
    _delete_from(txn, meta_db, PREFILTER_CHUNKS, PREFILTER_CHUNKS)
    chunks = [(PREFILTER_CHUNKS + kind + number.to_bytes(4, "big"), value[at:at + PREFILTER_CHUNK])
              for kind, value in ((b"b", serialized), (b"i", index))
              for number, at in enumerate(range(0, len(value), PREFILTER_CHUNK))]
    with txn.cursor(db=meta_db) as cursor:
        _, written = cursor.putmulti(chunks, append=True)
    if written != len(chunks):
        raise StoreError(f"internal error: {written} of the prefilter's {len(chunks)} chunks written")
    txn.put(META_PREFILTER, base_id + len(serialized).to_bytes(8, "little") + len(index).to_bytes(8, "little"),
            db=meta_db)
    for key in (META_PREFILTER_ADDED, META_PREFILTER_REMOVED) if clear_overlay else ():
        txn.delete(key, db=meta_db)
    for key in (LEGACY_PREFILTER, LEGACY_PREFILTER_INDEX):
        txn.delete(key, db=meta_db)


def _delete_from(txn: lmdb.Transaction, meta_db: Any, first: bytes, prefix: bytes) -> None:
    """Delete the keys from `first` on that start with `prefix` (a base's chunks)."""
    with txn.cursor(db=meta_db) as cursor:
        if cursor.set_range(first):
            while bytes(cursor.key()).startswith(prefix):
                if not cursor.delete():
                    break


def put_overlay(txn: lmdb.Transaction, meta_db: Any, added: bytes, removed: bytes) -> None:
    """Write the prefilter's overlay: the keys added to and removed from the base, each a LE uint32 count, the keys
    (sorted LE uint32) and padding. LMDB writes a value over the pages it took for it earlier in the same
    transaction when they are enough (`Codes.reserve` takes them first)."""
    txn.put(META_PREFILTER_ADDED, added, db=meta_db)
    txn.put(META_PREFILTER_REMOVED, removed, db=meta_db)


#: What `get_prefilter` gives: the base and its stored index, the overlay's halves (None when absent), and the
#: base's id (None for a store written before the overlay: its prefilter, read in place, is the base).
Prefilter = tuple[Any, Any, Any, Any, "bytes | None"]


def get_prefilter(txn: lmdb.Transaction, meta_db: Any, known: Prefilter | None = None) -> Prefilter:
    """The prefilter as `txn` sees it. The base and its index are joined from their chunks, unless `known` (what
    an earlier call gave) has the same id: a base is never changed under its id. A base whose chunks do not add
    up to the sizes it was written with raises `ValueError`."""
    described = txn.get(META_PREFILTER, db=meta_db)
    if described is None:
        return txn.get(LEGACY_PREFILTER, db=meta_db), txn.get(LEGACY_PREFILTER_INDEX, db=meta_db), None, None, None
    described = bytes(described)
    base_id = described[:16]
    added, removed = txn.get(META_PREFILTER_ADDED, db=meta_db), txn.get(META_PREFILTER_REMOVED, db=meta_db)
    if known is not None and known[4] == base_id:
        return known[0], known[1], added, removed, base_id
    if len(described) != 32:
        raise ValueError(f"prefilter description of {len(described)} bytes, expected 32")
    sizes = int.from_bytes(described[16:24], "little"), int.from_bytes(described[24:], "little")
    joined = []
    with txn.cursor(db=meta_db) as cursor:
        for kind, size in zip((b"b", b"i"), sizes):
            prefix = PREFILTER_CHUNKS + kind
            parts = []
            if cursor.set_range(prefix):
                for key, value in cursor:
                    if not bytes(key).startswith(prefix):
                        break
                    parts.append(value)
            value = b"".join(parts)
            if len(value) != size:
                raise ValueError(f"the prefilter's {'base' if kind == b'b' else 'index'} has {len(value)} bytes "
                                 f"in its chunks, {size} written")
            joined.append(value)
    return joined[0], joined[1], added, removed, base_id

