"""A new store on disk: `make_empty` (the environment and its first transaction: version 0, no list),
`move_into_place` (a store built in a hidden directory appears at its path, never replacing one that is there)
and `discard_new` (what a failed `make_empty` left, removed). `Blocklist.create` and `Blocklist.building` are
made of them."""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from typing import Any

from ..digest import format_digest
from ..environment import (
    DB_BLOCKS,
    DB_CODES,
    DB_COLLISIONS,
    DB_GTINS,
    DB_META,
    DEFAULT_EXPIRE_AFTER,
    DEFAULT_REFRESH_WINDOW,
    LATER_TABLES,
    META_GTIN_INDEX,
    acquire_env,
    check_room_to_create,
    put_prefilter,
    release_env,
    write_txn,
)
from ..errors import StoreError
from ..tables import META_COUNTS, META_TABLES_DIGEST


def make_empty(path: str, instance_id: str | None) -> None:
    """Make a new, empty database (version 0, no list) at `path`: `StoreError` if one is there or it cannot be
    made (then nothing is left behind)."""
    if os.path.exists(os.path.join(path, "data.mdb")):
        raise StoreError(f"a database already exists at {path}; open it instead")
    check_room_to_create(path)
    made_dir = not os.path.isdir(path)
    os.makedirs(path, exist_ok=True)
    try:
        env = acquire_env(path)
    except StoreError:
        discard_new(path, made_dir)
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
        discard_new(path, made_dir)
        raise
    release_env(env)


def discard_new(path: str, made_dir: bool) -> None:
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


def move_into_place(work: str, path: str) -> None:
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
