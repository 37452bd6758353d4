"""The codes applier: the blocked codes, their collision counts and the prefilter (a base and an overlay), and
a full load's codes put in key order in bulk."""

from __future__ import annotations

import array
import itertools
import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import lmdb

from ..._bulk import prepare_full_load
from ..digest import digest_add
from ..environment import DB_CODES, DB_COLLISIONS, DB_META, get_prefilter, put_overlay, put_prefilter
from ..errors import StoreError
from .plan import Plan, Tally


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
