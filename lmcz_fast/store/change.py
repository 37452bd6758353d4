"""`Change`: one change of a store, as every writer states it (a load, a delta, a feed sync, a replication batch,
a table load), applied by `Blocklist.apply` in one write transaction.

A new table or a new source adds one field here and one applier in `writing.py`; nobody grows a keyword list.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .sources import Collected
from .tables import Record, TableRows


@dataclass(slots=True)
class Change:
    """What one write transaction does to a store.

    A *delta* (`replace=False`) blocks `add` and unblocks `remove` (codes: scans are cut to their identity), the
    same for `add_gtins`/`remove_gtins` and for the price and grey tables' `add_records`/`remove_records`, moving
    the version from `from_version` (None: whatever it is) to `to_version`. A *full* change (`replace=True`) makes
    the codes and GTINs exactly `collected` (what a load read) plus `add`/`add_gtins`, and the tables exactly
    `tables` (None keeps them), at `to_version` (None: the next version).

    For both: `block` (authority, reason, since) describes the codes and GTINs it blocks; `meta` fields (JSON
    values) are written in the same transaction, `synced=True` also records the sync time; with `expect_digest`
    any other resulting set digest refuses the change (`DigestMismatchError`); `side` maps a side table's name to
    keys and values (None deletes) and `clear_side` empties side tables first (replication's document maps);
    `advance_empty=True` moves the version even when a delta changes no record (a feed's manifest names the
    version to reach).
    """

    add: Iterable[str | bytes] = ()
    remove: Iterable[str | bytes] = ()
    add_gtins: Iterable[str] = ()
    remove_gtins: Iterable[str] = ()
    add_records: Iterable[str | Record] = ()
    remove_records: Iterable[str | Record] = ()
    to_version: int | None = None
    from_version: int | None = None
    block: dict[str, str] | None = None
    meta: dict[str, Any] | None = None
    synced: bool = False
    expect_digest: str | None = None
    side: Mapping[bytes, Mapping[bytes, bytes | None]] | None = None
    clear_side: Iterable[bytes] = ()
    advance_empty: bool = False
    replace: bool = False
    tables: TableRows | None = None
    collected: Collected | None = None
