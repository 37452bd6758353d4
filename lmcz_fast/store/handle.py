"""The one environment handle a `Blocklist` hands to each of its parts.

A `Blocklist` is made of parts, each owning one job and its own state: the reading side (`reading.Versions`: the
version calls answer from), the writer (`writing.Writer`: loads and deltas), the tables (`prices.Tables`) and the
sold register (`sold.SoldRegister`). They share one LMDB environment through this handle, and only through its
public interface: the path, the named databases, the lock every use of the read transaction holds, a durable write
transaction, and the current version (`fresh()`, `invalidate()`, answered by the reading side).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any, Protocol

import lmdb

from .environment import DB_META, write_txn
from .errors import StoreError


class VersionSource(Protocol):
    """What the handle asks the reading side: the version a call starting now answers from, and a renewal."""

    def fresh(self) -> Any: ...

    def renew(self) -> None: ...

    def invalidate(self) -> None: ...


class StoreHandle:
    """One open store's environment, shared by the parts of a `Blocklist` (see the module doc)."""

    __slots__ = ("path", "readonly", "lock", "dbs", "_env", "_versions")

    def __init__(self, path: str, readonly: bool, env: lmdb.Environment, dbs: dict[bytes, Any]) -> None:
        self.path = path
        self.readonly = readonly
        self.lock = threading.RLock()
        self.dbs = dbs
        self._env: lmdb.Environment | None = env
        self._versions: VersionSource | None = None

    @property
    def env(self) -> lmdb.Environment:
        """The LMDB environment; `StoreError` once the blocklist is closed."""
        env = self._env
        if env is None:
            raise StoreError("the blocklist is closed")
        return env

    @property
    def is_open(self) -> bool:
        return self._env is not None

    def closed(self) -> lmdb.Environment | None:
        """Mark the handle closed; returns the environment to release (None if it was closed already)."""
        env, self._env = self._env, None
        return env

    def serve_versions(self, versions: VersionSource) -> None:
        """Name the reading side that answers `fresh` and `invalidate` (the `Blocklist` does, once)."""
        self._versions = versions

    def require_writable(self) -> None:
        if self.readonly:
            raise StoreError("this blocklist was opened read-only; open it with readonly=False to change it")
        if self._env is None:
            raise StoreError("the blocklist is closed")

    @contextlib.contextmanager
    def write(self) -> Iterator[lmdb.Transaction]:
        """A durable write transaction (committed when the block ends without an error); LMDB's failures come out
        as typed `StoreError`s naming the version still served (see `environment.write_txn`)."""
        with write_txn(self.env, self.path, self.dbs[DB_META]) as txn:
            yield txn

    def read(self) -> lmdb.Transaction:
        """A read transaction of its own (for iterating a whole table without holding the lock)."""
        return self.env.begin()

    def fresh(self) -> Any:
        """The version (`reading.Reading`) a call starting now answers from; call with `lock` held."""
        assert self._versions is not None
        return self._versions.fresh()

    def renew(self) -> None:
        """Answer from the newest committed version from the next call on (after a write through this handle)."""
        assert self._versions is not None
        self._versions.renew()

    def invalidate(self) -> None:
        """Make the next read of this handle start a fresh read transaction (after a commit made elsewhere)."""
        assert self._versions is not None
        self._versions.invalidate()
