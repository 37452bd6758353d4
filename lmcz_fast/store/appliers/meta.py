"""The metadata applier: version checks, the set digest, the new version's fields."""

from __future__ import annotations

import json
import time
from typing import Any

import lmdb

from ..digest import digest_add, format_digest, parse_digest
from ..environment import DB_META
from ..errors import DigestMismatchError, VersionError


def read_json(txn: lmdb.Transaction, dbs: dict[bytes, Any], name: str, default: Any = None) -> Any:
    raw = txn.get(name.encode(), db=dbs[DB_META])
    return json.loads(bytes(raw)) if raw is not None else default


class Meta:
    """The metadata fields and the set digest: version checks before anything is written, the new digest (checked
    against the one expected), and the fields of the new version."""

    def __init__(self, dbs: dict[bytes, Any]) -> None:
        self._dbs = dbs

    def get(self, txn: lmdb.Transaction, name: str, default: Any = None) -> Any:
        return read_json(txn, self._dbs, name, default)

    @staticmethod
    def digest(stored: str, change: tuple[int, int]) -> str:
        """The set digest after a change whose sums are `change`, from the `stored` one."""
        old = parse_digest(stored)
        return format_digest((old[0] + change[0], old[1] + change[1]))

    @staticmethod
    def with_gtins(sums: tuple[int, int], gtin_keys: list[bytes]) -> tuple[int, int]:
        """Codes' digest sums with the GTINs' added."""
        return digest_add(sums, (), gtin_keys)

    def put(self, txn: lmdb.Transaction, fields: dict[str, Any]) -> None:
        db = self._dbs[DB_META]
        for name, value in fields.items():
            txn.put(name.encode(), json.dumps(value).encode(), db=db)

    @staticmethod
    def full_version(current: int, version: int | None) -> int:
        new_version = current + 1 if version is None else version
        if new_version <= current:
            raise VersionError(
                f"a full load must move the version forward: the store holds {current}, load asked for "
                f"{new_version}",
                current=current,
                expected=new_version,
            )
        return new_version

    @staticmethod
    def delta_is_done(current: int, to_version: int, from_version: int | None) -> bool:
        """Whether the store already holds the version a delta goes to (a harmless no-op); else `VersionError`
        unless the delta starts where the store is and moves forward."""
        if to_version == current and (from_version is None or from_version < current):
            return True
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
        return False

    @staticmethod
    def expect(digest: str, expect_digest: str | None, what: str) -> None:
        """Refuse (before anything is written, or before the commit: then nothing is committed) a write that would
        not lead to `expect_digest`."""
        if expect_digest is not None and digest != expect_digest:
            raise DigestMismatchError(
                f"{what} leads to digest {digest}, expected {expect_digest}; nothing was changed",
                expected=expect_digest,
                actual=digest,
            )

    def version_fields(self, version: int, synced: bool, **fields: Any) -> dict[str, Any]:
        now = time.time()
        fields.update(version=version, updated_at=now)
        if synced:
            fields["last_sync_at"] = now
        return fields
