"""The side tables' applier (a writer above the store keeps its own tables there)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import lmdb

from ..environment import DB_SIDE
from ..errors import StoreError


class Side:
    """Side tables of a writer above the store (replication keeps its document map here), changed in the same
    transaction as the records they explain: `side` key = table name + NUL + key."""

    def __init__(self, dbs: dict[bytes, Any]) -> None:
        self._db = dbs[DB_SIDE]

    def write(self, txn: lmdb.Transaction, side: Mapping[bytes, Mapping[bytes, bytes | None]] | None,
              clear: Iterable[bytes]) -> None:
        """`clear` empties tables first; a None value deletes a key."""
        db = self._db
        for table in clear:
            prefix = side_prefix(table)
            with txn.cursor(db=db) as cursor:
                if cursor.set_range(prefix):
                    while cursor.key()[:len(prefix)] == prefix:
                        if not cursor.delete():
                            break
        for table, entries in (side or {}).items():
            prefix = side_prefix(table)
            for key, value in entries.items():
                if value is None:
                    txn.delete(prefix + key, db=db)
                else:
                    txn.put(prefix + key, value, db=db)


def side_prefix(table: bytes) -> bytes:
    if b"\0" in table or not table:
        raise StoreError(f"a side table's name is non-empty and has no NUL byte: {table!r}")
    return table + b"\0"
