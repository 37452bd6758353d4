"""The price and grey tables' applier."""

from __future__ import annotations

from typing import Any

import lmdb

from ..digest import digest_add, format_digest, parse_digest
from ..tables import META_COUNTS, META_TABLES_DIGEST, META_TABLES_VERSION, TableRows, apply_records, write_whole
from .meta import read_json
from .plan import Plan, Tally

_ZERO = format_digest((0, 0))


class Records:
    """The price and grey tables (`store.tables`): their rows, counts and their part of the digest."""

    def __init__(self, dbs: dict[bytes, Any]) -> None:
        self._dbs = dbs

    def replace(self, txn: lmdb.Transaction, tables: TableRows, version: int, fields: dict[str, Any]) -> None:
        write_whole(txn, self._dbs, tables)
        fields[META_TABLES_DIGEST] = format_digest(tables.sums)
        fields[META_TABLES_VERSION] = version
        fields.update({META_COUNTS[kind]: n for kind, n in tables.counts.items()})

    def kept_sums(self, txn: lmdb.Transaction) -> tuple[int, int]:
        """The tables' part of the digest, as stored (a full load that keeps the tables keeps it)."""
        return parse_digest(read_json(txn, self._dbs, META_TABLES_DIGEST, _ZERO))

    def delta(self, txn: lmdb.Transaction, plan: Plan, to_version: int, tally: Tally) -> None:
        if not (plan.plus_records or plan.minus_records):
            return
        applied = apply_records(txn, self._dbs, plan.plus_records, plan.minus_records)
        change = digest_add(digest_add((0, 0), applied.added, ()), applied.removed, (), -1)
        tally.count(change)
        tables_digest = self.kept_sums(txn)
        tally.fields[META_TABLES_DIGEST] = format_digest((tables_digest[0] + change[0], tables_digest[1] + change[1]))
        if applied.changed_in or applied.changed_out:
            tally.fields[META_TABLES_VERSION] = to_version
        for kind, moved in applied.counts.items():
            if moved:
                name = META_COUNTS[kind]
                tally.fields[name] = read_json(txn, self._dbs, name, 0) + moved
        tally.records_added, tally.records_removed = applied.changed_in, applied.changed_out
