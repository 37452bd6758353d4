"""The blocked GTINs applier: the `gtins` table and the index the compiled probe reads."""

from __future__ import annotations

from typing import Any

import lmdb

from ..digest import digest_add
from ..environment import DB_GTINS, DB_META, META_GTIN_INDEX
from ..keys import gtin_index
from .plan import Plan, Tally


class Gtins:
    """GTINs blocked as a whole (`gtins`), and their index in `meta` that the compiled probe reads in place."""

    def __init__(self, dbs: dict[bytes, Any]) -> None:
        self._db = dbs[DB_GTINS]
        self._meta = dbs[DB_META]

    def replace(self, txn: lmdb.Transaction, gtin_keys: list[tuple[bytes, bytes]]) -> None:
        txn.drop(self._db, delete=False)
        with txn.cursor(db=self._db) as cursor:
            cursor.putmulti(gtin_keys, append=True)
        txn.put(META_GTIN_INDEX, gtin_index(key for key, _ in gtin_keys), db=self._meta)

    def delta(self, txn: lmdb.Transaction, plan: Plan, block_value: bytes, tally: Tally) -> None:
        removed = [g for g in plan.remove_gtins if txn.delete(g, db=self._db)]
        added = []
        for key, value in plan.gtins:
            if txn.put(key, block_value if value is None else value, db=self._db, overwrite=False):
                added.append(key)
        tally.count(digest_add((0, 0), (), added))
        tally.count(digest_add((0, 0), (), removed), -1)
        tally.gtins_added, tally.gtins_removed = len(added), len(removed)

    def count(self, txn: lmdb.Transaction) -> int:
        return int(txn.stat(self._db)["entries"])

    def write_index(self, txn: lmdb.Transaction) -> None:
        with txn.cursor(db=self._db) as cursor:
            index = gtin_index(cursor.iternext(keys=True, values=False))
        txn.put(META_GTIN_INDEX, index, db=self._meta)
