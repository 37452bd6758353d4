"""The LMDB environment of a store: one per path per process, its named databases and their names."""

from __future__ import annotations

import os
import threading
from typing import Any

import lmdb

from .._probe import build_index
from .errors import StoreError

#: Virtual size of the memory map. It costs nothing on 64-bit Linux (pages are mapped lazily) and is far above
#: what a blocklist needs (30 MB for 900k codes), so no writer ever has to grow it under running readers.
MAP_SIZE = 1 << 34
MAX_READERS = 1024
DEFAULT_REFRESH_INTERVAL = 0.25
DEFAULT_REFRESH_WINDOW = 2 * 3600.0
DEFAULT_EXPIRE_AFTER = 72 * 3600.0

DB_CODES = b"codes"
DB_GTINS = b"gtins"
DB_BLOCKS = b"blocks"
DB_COLLISIONS = b"collisions"
DB_META = b"meta"
#: The sold register (store/sold.py): written by the sales, never by a load, a delta, a sync or a snapshot.
DB_SOLD = b"sold"
DB_SOLD_TIME = b"sold_time"
#: Named databases the environment may hold: the blocklist's five, the sold register's two, room for more tables.
MAX_DBS = 16

META_PREFILTER = b"prefilter"
META_GTIN_INDEX = b"gtin_index"
META_PREFILTER_INDEX = b"prefilter_index"
BINARY_META = {META_PREFILTER, META_GTIN_INDEX, META_PREFILTER_INDEX}


_ENV_LOCK = threading.Lock()
_ENVS: dict[str, list[Any]] = {}


def acquire_env(path: str) -> lmdb.Environment:
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
            max_dbs=MAX_DBS,
            max_readers=MAX_READERS,
            readahead=False,
            subdir=True,
            create=False,
        )
        env.reader_check()
        _ENVS[key] = [env, 1]
        return env


def open_dbs(env: lmdb.Environment, path: str) -> dict[bytes, Any]:
    """The named databases' handles, opened once per environment.

    py-lmdb keeps a handle only when it was opened in a write transaction (it aborts a read transaction on
    commit, and LMDB closes handles opened in an aborted one), so this takes the writer lock once, briefly.
    The sold register's tables are created here when missing, so a database made before the register existed
    gains them on its first open, empty.
    """
    try:
        dbs = {
            name: env.open_db(name, create=False)
            for name in (DB_CODES, DB_GTINS, DB_BLOCKS, DB_COLLISIONS, DB_META)
        }
    except lmdb.NotFoundError as exc:
        raise StoreError(f"{path} is an LMDB environment but not an lmcz-fast database") from exc
    for name in (DB_SOLD, DB_SOLD_TIME):
        dbs[name] = env.open_db(name, create=True)
    return dbs


def release_env(env: lmdb.Environment) -> None:
    with _ENV_LOCK:
        for key, entry in list(_ENVS.items()):
            if entry[0] is env:
                entry[1] -= 1
                if entry[1] == 0:
                    del _ENVS[key]
                    env.close()
                return


def put_prefilter(txn: lmdb.Transaction, meta_db: Any, serialized: bytes) -> None:
    """Write the prefilter with its stored index, validated here once, so readers need not derive it."""
    txn.put(META_PREFILTER, serialized, db=meta_db)
    txn.put(META_PREFILTER_INDEX, build_index(serialized), db=meta_db)

