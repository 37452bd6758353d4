"""The appliers of a `Change`: each owns one part of the database and changes it inside the caller's write
transaction — codes and the prefilter (`Codes`), blocked GTINs and their index (`Gtins`), block details (`Blocks`),
the price and grey tables (`Records`), the side tables (`Side`); the metadata and the set digest are `Meta`'s.

An applier reads only its own tables; what the others need from it (counts, digest sums, metadata fields) it puts in
the `Tally` the writer passes along, and `Meta` turns that into the new version's metadata and digest.
"""

from __future__ import annotations

import array
import itertools
import json
import sys
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import lmdb

from .._bulk import prepare_full_load
from .digest import DIGEST_MOD, digest_add, format_digest, parse_digest
from .environment import (
    DB_BLOCKS,
    DB_CODES,
    DB_COLLISIONS,
    DB_GTINS,
    DB_META,
    DB_SIDE,
    META_GTIN_INDEX,
    get_prefilter,
    put_overlay,
    put_prefilter,
)
from .errors import DigestMismatchError, StoreError, VersionError
from .keys import decode_block_id, encode_block_id, gtin_index
from .tables import META_COUNTS, META_TABLES_DIGEST, META_TABLES_VERSION, Record, TableRows, apply_records, write_whole

_ZERO = format_digest((0, 0))


@dataclass(slots=True)
class Plan:
    """A `Change` cut and checked before its transaction starts: packed keys, their prefilter keys and values."""

    add_keys: list[bytes]
    add_hashes: Any
    add_values: list[bytes]
    remove_keys: list[bytes]
    remove_hashes: Any
    gtins: list[tuple[bytes, bytes | None]]          # (packed GTIN, its block value; None: the change's block)
    remove_gtins: list[bytes]
    new_blocks: dict[int, dict[str, str]]             # block details the sources named, by their own ids
    block: dict[str, str] | None                       # the details of every code the change names itself
    plus_records: list[Record]
    minus_records: list[Record]
    meta: dict[str, Any]


@dataclass(slots=True)
class Tally:
    """What the appliers did, for the report and the metadata: counts, the change of the set digest's sums, and
    metadata fields of their own (table counts, the tables' digest)."""

    added: int = 0
    removed: int = 0
    gtins_added: int = 0
    gtins_removed: int = 0
    records_added: int = 0
    records_removed: int = 0
    sums: tuple[int, int] = (0, 0)
    fields: dict[str, Any] = field(default_factory=dict)

    def count(self, sums: tuple[int, int], sign: int = 1) -> None:
        self.sums = ((self.sums[0] + sign * sums[0]) % DIGEST_MOD, (self.sums[1] + sign * sums[1]) % DIGEST_MOD)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed or self.gtins_added or self.gtins_removed or self.records_added
                    or self.records_removed)


def read_json(txn: lmdb.Transaction, dbs: dict[bytes, Any], name: str, default: Any = None) -> Any:
    raw = txn.get(name.encode(), db=dbs[DB_META])
    return json.loads(bytes(raw)) if raw is not None else default


class Blocks:
    """Block details (`blocks`: id -> JSON authority, reason, since, source)."""

    def __init__(self, dbs: dict[bytes, Any]) -> None:
        self._db = dbs[DB_BLOCKS]

    def replace(self, txn: lmdb.Transaction, blocks: Mapping[int, dict[str, str]]) -> None:
        txn.drop(self._db, delete=False)
        for block_id, details in blocks.items():
            txn.put(block_id.to_bytes(4, "big"), json.dumps(details).encode(), db=self._db)

    def add(self, txn: lmdb.Transaction, plan: Plan, own_block: bool) -> bytes:
        """Store the change's block details under new ids, re-pointing the plan's values at them; returns the value
        of the change's own `block` (b"" without one)."""
        if plan.block is None and not plan.new_blocks:
            return b""
        next_id = self._next_id(txn)
        remap: dict[int, int] = {}
        for old_id, details in plan.new_blocks.items():
            remap[old_id] = next_id
            txn.put(next_id.to_bytes(4, "big"), json.dumps(details).encode(), db=self._db)
            next_id += 1
        block_value = b""
        if plan.block is not None and own_block:
            txn.put(next_id.to_bytes(4, "big"), json.dumps(dict(plan.block)).encode(), db=self._db)
            block_value = encode_block_id(next_id)
        plan.add_values = [encode_block_id(remap.get(decode_block_id(v), 0)) if v else block_value
                           for v in plan.add_values]
        plan.gtins = [(key, encode_block_id(remap.get(decode_block_id(v), 0)) if v else block_value)
                      if v is not None else (key, v) for key, v in plan.gtins]
        return block_value

    def _next_id(self, txn: lmdb.Transaction) -> int:
        with txn.cursor(db=self._db) as cursor:
            if cursor.last():
                return int.from_bytes(cursor.key(), "big") + 1
        return 1


class Codes:
    """The blocked codes, the prefilter over them (the Roaring bitmap of their prefilter keys, in `meta`: a base and
    the overlay a delta writes instead of rewriting the base) and the reference counts of prefilter keys shared by
    several codes (`collisions`).

    A delta changes the prefilter as a whole set (`bitmap`, the base with the overlay applied) and writes only the
    overlay, the keys of that set not in the base and the keys of the base not in it: a few pages per delta, not
    the ~2 MiB of a 300,000-code base and its index (issue 22). When the overlay could grow past `fold_limit` of
    the base, the delta folds it: the whole set becomes the new base (in chunks of single pages:
    environment.py `put_prefilter`). The overlay's two values are taken first, at a size that changes only in
    steps (`overlay_capacity`), so they find the pages they had two versions before whole. What this handle last wrote
    (the set, its base, the overlay's counts and sizes) is kept, so the next delta need not read them again."""

    #: Fold when a delta could leave the overlay with more keys than the base's cardinality over this ...
    FOLD_FRACTION = 8
    #: ... and than this many keys (a small store's overlay folds rarely: its base is small to rewrite anyway).
    FOLD_MIN = 4096

    def __init__(self, dbs: dict[bytes, Any]) -> None:
        self._codes = dbs[DB_CODES]
        self._collisions = dbs[DB_COLLISIONS]
        self._meta = dbs[DB_META]
        # (version, set digest, the whole set, its base, the overlay's counts, its capacities) last written
        self._cache: tuple[Any, ...] | None = None
        self._base: Any = None          # the base (a BitMap, never changed in place) of the set `bitmap` gave
        self._counts = (0, 0)           # keys the overlay over that base adds and removes
        self._caps = (0, 0)             # keys each half of the stored overlay has room for
        self._legacy = False            # the base was read from a store written before the overlay
        self._fold = False              # this delta writes the whole set as the new base
        self._reserved = False          # a delta started, its prefilter (base or overlay) not written yet

    @classmethod
    def fold_limit(cls, base_keys: int) -> int:
        """The most keys an overlay over a base of `base_keys` keys may hold."""
        return max(cls.FOLD_MIN, base_keys // cls.FOLD_FRACTION)

    @staticmethod
    def overlay_capacity(keys: int, current: int = 0) -> int:
        """Room for at least `keys` keys in an overlay half that has room for `current`: never less (a value whose
        size does not change reuses the pages it had two versions before), else whole LMDB pages, a power of two
        of them (a count, the keys and the 16-byte page header fill them exactly)."""
        pages = 1
        while 1024 * pages - 5 < keys:
            pages *= 2
        return max(current, 1024 * pages - 5)

    def reserve(self, txn: lmdb.Transaction, bitmap: Any, adding: int, removing: int = 0) -> None:
        """Decide whether this delta (adding and removing at most these many codes) folds the overlay into a new
        base; if not, take the pages of the overlay's two values before any code page, as large as they may need
        to be. `write_prefilter` must follow in the same transaction; `check_written` says so before a commit."""
        n_added, n_removed = self._counts
        self._fold = self._legacy or n_added + n_removed + adding + removing > self.fold_limit(len(self._base))
        if not self._fold:
            self._caps = (self.overlay_capacity(n_added + adding, self._caps[0]),
                          self.overlay_capacity(n_removed + removing, self._caps[1]))
        if self._caps != (0, 0):    # a fold leaves the overlay empty, as large as it was: its pages stay in use
            put_overlay(txn, self._meta, bytes(4 + 4 * self._caps[0]), bytes(4 + 4 * self._caps[1]))
        self._reserved = True

    def check_written(self) -> None:
        """Refuse to commit a delta whose prefilter (a reserved base, or the overlay) was never written (raised
        inside the transaction, it aborts it: the store stays as it was)."""
        if self._reserved:
            self._reserved = False
            raise StoreError("internal error: a delta reserved the prefilter's pages and never wrote it; "
                             "nothing was changed")

    def forget(self) -> tuple[Any, ...] | None:
        cached, self._cache = self._cache, None
        self._reserved = False
        return cached

    def restore(self, cached: tuple[Any, ...]) -> None:
        """Keep what `forget` gave back (a transaction that changed nothing)."""
        self._cache = cached

    def remember(self, version: int, digest: str, bitmap: Any) -> None:
        """Keep `bitmap` (just written) as the prefilter of `version`, with the base this handle last wrote."""
        self._cache = (version, digest, bitmap, self._base, self._counts, self._caps)

    def replace(self, txn: lmdb.Transaction, items: Iterable[tuple[bytes, bytes]],
                shared_keys: Mapping[int, int], bitmap: Any) -> None:
        """Make the codes exactly `items` (in key order: appended, full pages), with their counts and prefilter."""
        txn.drop(self._codes, delete=False)
        txn.drop(self._collisions, delete=False)
        with txn.cursor(db=self._codes) as cursor:
            cursor.putmulti(items, append=True)
        with txn.cursor(db=self._collisions) as cursor:
            cursor.putmulti([(h.to_bytes(4, "big"), n.to_bytes(4, "big")) for h, n in sorted(shared_keys.items())],
                            append=True)
        self._caps = (0, 0)              # a full load starts without an overlay
        self._write_base(txn, bitmap)

    def bitmap(self, txn: lmdb.Transaction, cached: tuple[Any, ...] | None, version: int, digest: str) -> Any:
        """The prefilter (the whole set: base and overlay) of the version `txn` sees: the one this handle wrote
        last, if that is still the one."""
        from pyroaring import BitMap

        if cached is not None and cached[:2] == (version, digest):
            _, _, bitmap, self._base, self._counts, self._caps = cached
            self._legacy = False
            return bitmap
        raw_base, _, raw_added, raw_removed, base_id = get_prefilter(txn, self._meta)
        self._legacy = base_id is None
        self._base = BitMap.deserialize(bytes(raw_base))
        bitmap = BitMap(self._base)
        (added, cap_added), (removed, cap_removed) = _keys(raw_added), _keys(raw_removed)
        bitmap -= BitMap(removed)
        bitmap |= BitMap(added)
        self._counts, self._caps = (len(added), len(removed)), (cap_added, cap_removed)
        return bitmap

    def delta(self, txn: lmdb.Transaction, plan: Plan, bitmap: Any, tally: Tally) -> None:
        """Remove, then add (each in key order), keeping `bitmap` and the collision counts true: removing a code
        never unblocks another, since a shared prefilter bit is cleared only when its last code goes."""
        stored_shared = {int.from_bytes(key, "big"): int.from_bytes(value, "big")
                         for key, value in txn.cursor(db=self._collisions)}
        shared = dict(stored_shared)
        changed: set[int] = set()
        self._remove(txn, plan, bitmap, (stored_shared, shared, changed), tally)
        self._add(txn, plan, bitmap, (shared, changed), tally)
        for h in changed:
            hkey = h.to_bytes(4, "big")
            if shared.get(h, 0) > 1:
                txn.put(hkey, shared[h].to_bytes(4, "big"), db=self._collisions)
            elif h in stored_shared:
                txn.delete(hkey, db=self._collisions)

    def _remove(self, txn: lmdb.Transaction, plan: Plan, bitmap: Any,
                counts: tuple[dict[int, int], dict[int, int], set[int]], tally: Tally) -> None:
        from pyroaring import BitMap

        stored_shared, shared, changed = counts
        remove_hashes = plan.remove_hashes
        order, unique, _, _, removed_sums = prepare_full_load(plan.remove_keys, remove_hashes)
        removed_hashes = array.array("I")
        missing: list[bytes] = []
        removed = 0
        for index, key in zip(order, unique):
            if txn.delete(key, db=self._codes):
                removed += 1
                removed_hashes.append(remove_hashes[index])
            else:
                missing.append(key)
        if missing:
            removed_sums = digest_add(removed_sums, missing, (), -1)
        # A prefilter key without a `collisions` row has exactly one code: its bit goes with it.
        gone = BitMap(removed_hashes)
        counted = gone & BitMap(stored_shared)
        for h, n in Counter(h for h in removed_hashes if h in counted).items():
            shared[h] -= n
            changed.add(h)
        bitmap -= (gone - counted) | BitMap(h for h in counted if shared[h] <= 0)
        tally.removed = removed
        tally.count(removed_sums, -1)

    def _add(self, txn: lmdb.Transaction, plan: Plan, bitmap: Any, counts: tuple[dict[int, int], set[int]],
             tally: Tally) -> None:
        from pyroaring import BitMap

        shared, changed = counts
        add_hashes, add_values = plan.add_hashes, plan.add_values
        order, unique, _, _, added_sums = prepare_full_load(plan.add_keys, add_hashes)
        unique_hashes = array.array("I", [add_hashes[index] for index in order])
        # Only a key whose prefilter bit is set can already be there.
        maybe_there = BitMap(unique_hashes) & bitmap
        present: set[bytes] = set()
        if maybe_there:
            present = {key for key, h in zip(unique, unique_hashes)
                       if h in maybe_there and txn.get(key, db=self._codes) is not None}
        if present:
            added_sums = digest_add(added_sums, present, (), -1)
            kept = [i for i, key in enumerate(unique) if key not in present]
            unique = [unique[i] for i in kept]
            order = [order[i] for i in kept]
            unique_hashes = array.array("I", [unique_hashes[i] for i in kept])
        with txn.cursor(db=self._codes) as cursor:
            _, written = cursor.putmulti(zip(unique, (add_values[index] for index in order)), overwrite=False)
        if written != len(unique):
            raise StoreError(f"internal error: {len(unique) - written} codes appeared during a delta")
        fresh = BitMap(unique_hashes)
        overlap = bitmap & fresh
        if overlap or len(fresh) != len(unique_hashes):
            special = overlap | BitMap(h for h, n in Counter(unique_hashes).items() if n > 1)
            for h, n in Counter(h for h in unique_hashes if h in special).items():
                shared[h] = shared.get(h, 1 if h in overlap else 0) + n
                changed.add(h)
        bitmap |= fresh
        tally.added = len(unique)
        tally.count(added_sums)

    def write_prefilter(self, txn: lmdb.Transaction, bitmap: Any) -> None:
        """Write the set `bitmap` as this delta decided (`reserve`): as a new base, or as the overlay over the
        base it started from."""
        if self._fold:
            self._write_base(txn, bitmap)
            if self._caps != (0, 0):
                self._write_overlay(txn, bitmap)
        else:
            self._write_overlay(txn, bitmap)
        self._reserved = False

    def _write_overlay(self, txn: lmdb.Transaction, bitmap: Any) -> None:
        """The overlay of `bitmap` over the base, into the pages `reserve` took (as large as they were taken)."""
        added, removed = bitmap - self._base, self._base - bitmap
        put_overlay(txn, self._meta, _key_bytes(added, self._caps[0]), _key_bytes(removed, self._caps[1]))
        self._counts = (len(added), len(removed))

    def keep_prefilter(self, txn: lmdb.Transaction, bitmap: Any) -> None:
        """A transaction that changes no code keeps the base and the overlay as they are: the base (and the cache
        of every handle, keyed by version and digest) changes only with the set. The overlay's pages taken first
        get the same overlay again."""
        if self._reserved and self._caps != (0, 0):
            self._write_overlay(txn, bitmap)
        self._reserved = False

    def _write_base(self, txn: lmdb.Transaction, bitmap: Any) -> None:
        from pyroaring import BitMap

        # A fold keeps the overlay's values (rewritten, empty, after this): their pages stay in use.
        put_prefilter(txn, self._meta, bitmap.serialize(), clear_overlay=self._caps == (0, 0))
        self._base = BitMap(bitmap)      # a copy: the next delta changes `bitmap` in place
        self._counts = (0, 0)
        self._legacy = False


def _keys(raw: Any) -> tuple[array.array, int]:
    """An overlay half's keys as stored (a LE uint32 count, the keys as LE uint32, padding; None: none) and the
    number of keys it has room for."""
    keys = array.array("I")
    if not raw:
        return keys, 0
    raw = bytes(raw)
    keys.frombytes(raw[:len(raw) - len(raw) % 4])
    if sys.byteorder == "big":
        keys.byteswap()
    count = keys[0]
    if count > len(keys) - 1:
        raise StoreError(f"corrupt prefilter overlay: {count} keys in room for {len(keys) - 1}")
    return keys[1:1 + count], len(keys) - 1


def _key_bytes(bitmap: Any, capacity: int) -> bytes:
    """A bitmap's keys as an overlay half stores them: their count, the keys ascending (LE uint32), zeros up to
    room for `capacity` keys."""
    keys = array.array("I", [len(bitmap)])
    keys.extend(bitmap)
    if len(keys) > capacity + 1:
        raise StoreError(f"internal error: {len(bitmap)} overlay keys in room for {capacity}")
    keys.frombytes(bytes(4 * (capacity + 1 - len(keys))))
    if sys.byteorder == "big":
        keys.byteswap()
    return keys.tobytes()


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


def ordered_items(collected_keys: list[bytes], hashes: Any, values: list[bytes] | None,
                  uniform: bytes) -> tuple[Iterable[tuple[bytes, bytes]], int, Any, dict[int, int], tuple[int, int]]:
    """A full load's codes in key order (distinct), with the prefilter keys, shared counts and digest sums, computed
    in bulk: `(items, distinct count, sorted hashes, shared keys, sums)`."""
    order, unique_keys, sorted_hashes, shared_keys, sums = prepare_full_load(collected_keys, hashes)
    if values is not None:
        items: Iterable[tuple[bytes, bytes]] = zip(unique_keys, (values[index] for index in order))
    else:
        items = zip(unique_keys, itertools.repeat(uniform))
    return items, len(unique_keys), sorted_hashes, shared_keys, sums
