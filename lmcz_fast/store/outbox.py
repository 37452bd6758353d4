"""The outbox: writes this store made that another party must still be told of, in order (`bl.outbox`).

In front of the official module (docs/front.md) a sale or a return is committed here first, and the same write
transaction appends it to this table; a deliverer (`lmcz_fast/front/outbox.py`) sends the entries oldest first and
deletes each only after the other side took it. So an entry exists exactly when its sale does (one transaction:
never a sale without its entry, never an entry without its sale), and nothing is lost across a kill -9.

One LMDB table, `outbox`: key = a sequence number (u64 BE, growing by one per entry, never reused while the table
holds anything after it) -> value = the entry's bytes (the deliverer's own format; the store does not read it).
Loads, deltas, syncs and snapshots never touch it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import lmdb

from .environment import DB_OUTBOX
from .handle import StoreHandle


def _seq(number: int) -> bytes:
    return number.to_bytes(8, "big")


class Outbox:
    """The outbox table of one open `Blocklist`. Writes are write operations (for `bl.commit` or a group commit,
    so they join the transaction of the write they belong to); reads take a read transaction of their own."""

    def __init__(self, handle: StoreHandle) -> None:
        self._handle = handle

    @property
    def _db(self) -> Any:
        return self._handle.dbs[DB_OUTBOX]

    def op_append(self, entries: Sequence[bytes]) -> Callable[[lmdb.Transaction], list[int]]:
        """A write operation appending `entries` after the last one; returns their sequence numbers."""
        db = self._db
        values = [bytes(entry) for entry in entries]

        def op(txn: lmdb.Transaction) -> list[int]:
            with txn.cursor(db=db) as cursor:
                last = int.from_bytes(bytes(cursor.key()), "big") if cursor.last() else 0
            out = []
            for offset, value in enumerate(values, start=1):
                txn.put(_seq(last + offset), value, db=db)
                out.append(last + offset)
            return out

        return op

    def op_delete(self, seqs: Sequence[int]) -> Callable[[lmdb.Transaction], int]:
        """A write operation deleting entries by sequence number; returns how many were there."""
        db = self._db
        keys = [_seq(seq) for seq in seqs]

        def op(txn: lmdb.Transaction) -> int:
            return sum(1 for key in keys if txn.delete(key, db=db))

        return op

    def head(self, limit: int) -> list[tuple[int, bytes]]:
        """The oldest `limit` entries, `(seq, value)`, oldest first, from the newest committed version."""
        out: list[tuple[int, bytes]] = []
        with self._handle.read() as txn, txn.cursor(db=self._db) as cursor:
            if not cursor.first():
                return out
            for key, value in cursor:
                out.append((int.from_bytes(bytes(key), "big"), bytes(value)))
                if len(out) >= limit:
                    break
        return out

    def count(self) -> int:
        """Entries waiting."""
        with self._handle.read() as txn:
            return int(txn.stat(self._db)["entries"])

    def delete(self, seqs: Sequence[int]) -> int:
        """Delete entries durably now (`op_delete` in a transaction of its own)."""
        op = self.op_delete(seqs)
        with self._handle.write() as txn:
            return op(txn)
