"""A long-running writer's deltas reuse the store's free pages (issue 22).

A delta writes the prefilter's overlay (the keys it adds to and removes from the base: a few pages), not the base
and its stored index (two values of ~1 MiB per 300,000 codes, each one LMDB overflow run of contiguous pages). A
delta that folds the overlay into a new base takes the base's pages first in the transaction (before the code
pages it copies one by one), so they find the runs freed before still whole. benches/bench_store_size.py measures
the ratio over 200 deltas of 300,000 codes; here a smaller store checks that the file's high-water mark is reached
early and then held, that a delta leaves the base's pages alone, that folds keep the file within its mark, and
that neither a reserved base nor an overlay ever reaches a commit unwritten.
"""

from __future__ import annotations

import array
import os
import sys

import lmdb
import pytest

from lmcz_fast.store import Blocklist, Change, StoreError
from lmcz_fast.store.appliers import Codes
from lmcz_fast.store.environment import get_prefilter
from lmcz_fast.store.compaction import compact
from lmcz_fast._codes import parse_code
from lmcz_fast._probe import STORED_INDEX_NBYTES
from lmcz_fast.synth import cis_list

from _store_support import prefilter_key

N_CODES = 100_000
HALF = 1_000


def _identity(code):
    return parse_code(code, cis=True).identity


def _store(tmp_path, codes):
    listing = tmp_path / "blocked.txt"
    listing.write_text("\n".join(codes) + "\n", encoding="ascii")
    db = tmp_path / "store.db"
    with Blocklist.create(db) as bl:
        bl.load(listing, replace=True)
    compact(db)
    return db


def test_long_running_random_deltas_stop_growing_the_file(tmp_path):
    codes = cis_list(N_CODES + 2 * HALF, seed=7)
    base, spare = codes[:N_CODES], codes[N_CODES:]
    db = _store(tmp_path, base)
    forward, back = (spare[:HALF], base[:HALF]), (base[:HALF], spare[:HALF])
    sizes = []
    with Blocklist.open(db, readonly=False) as bl:
        version = bl.get_meta("version")
        for i in range(60):
            bl.apply_delta(*(back if i % 2 else forward), to_version=version + i + 1)
            sizes.append(os.path.getsize(db / "data.mdb"))
        assert bl.is_blocked(base[0]) and not bl.is_blocked(spare[0])
    # Settled after the first deltas (the first splits the full pages a load appends; then the two versions LMDB
    # keeps valid), then held. Before the prefilter's pages were taken first, the broken-up runs made this very
    # sequence grow the file at deltas 9, 15, 31 and 35 (2,380 -> 4,867 pages; at 300,000 codes in
    # benches/bench_store_size.py: 2.31x after 10 deltas, 2.48x after 60).
    assert sizes[-1] == sizes[4], [s // 4096 for s in sizes]


@pytest.mark.parametrize("fold", [True, False], ids=["base", "overlay"])
def test_a_delta_s_prefilter_never_reaches_a_commit_unwritten(tmp_path, monkeypatch, fold):
    codes = cis_list(2_000, seed=8)
    db = _store(tmp_path, codes[:1_000])
    if fold:            # every delta folds: the base's pages are reserved first
        monkeypatch.setattr(Codes, "FOLD_MIN", 0)
        monkeypatch.setattr(Codes, "FOLD_FRACTION", 2**40)
    monkeypatch.setattr(Codes, "write_prefilter", lambda self, txn, bitmap: None)
    with Blocklist.open(db, readonly=False) as bl:
        version = bl.get_meta("version")
        with pytest.raises(StoreError, match="never wrote it; nothing was changed"):
            bl.apply_delta(codes[1_000:1_010], (), to_version=version + 1)
    monkeypatch.undo()
    with Blocklist.open(db) as bl:           # a fresh handle validates the stored prefilter in full
        assert bl.get_meta("version") == version
        assert bl.is_blocked(codes[0]) and not bl.is_blocked(codes[1_000])


@pytest.mark.parametrize("fold", [True, False], ids=["base", "overlay"])
def test_a_delta_that_changes_only_side_tables_keeps_a_valid_prefilter(tmp_path, monkeypatch, fold):
    codes = cis_list(2_000, seed=9)
    db = _store(tmp_path, codes[:1_000])
    if fold:
        monkeypatch.setattr(Codes, "FOLD_MIN", 0)
        monkeypatch.setattr(Codes, "FOLD_FRACTION", 2**40)
    with Blocklist.open(db, readonly=False) as bl:
        version = bl.get_meta("version")
        report = bl.apply(Change(add=codes[:10], to_version=version + 1, side={b"docs": {b"a": b"1"}}))
        assert not report.applied
    with Blocklist.open(db) as bl:           # the reserved pages hold the same prefilter again, validated here
        assert bl.get_meta("version") == version
        assert all(bl.is_blocked(code) for code in codes[:1_000])
        assert not any(bl.is_blocked(code) for code in codes[1_000:1_100])


def _prefilter_values(db):
    """The stored prefilter: `(base, index, added, removed, base id)` and the legacy keys, as bytes (or None)."""
    env = lmdb.open(str(db), max_dbs=16, subdir=True, readonly=True, lock=False)
    try:
        meta = env.open_db(b"meta", create=False)
        with env.begin() as txn:
            values = [None if v is None else bytes(v) for v in get_prefilter(txn, meta)]
            legacy = [txn.get(key, db=meta) for key in (b"prefilter", b"prefilter_index")]
            return values, legacy
    finally:
        env.close()


def _keys(raw):
    """An overlay half's keys: a LE uint32 count, that many LE uint32 keys, padding."""
    keys = array.array("I")
    keys.frombytes(raw)
    assert sys.byteorder == "little" and len(raw) % 4096 == 4096 - 16      # whole pages with their header
    return set(keys[1:1 + keys[0]])


def test_a_delta_writes_the_overlay_and_leaves_the_base_alone(tmp_path):
    codes = cis_list(N_CODES // 10 + 20, seed=10)
    base, spare = codes[:-20], codes[-20:]
    db = _store(tmp_path, base)
    (base_before, index_before, added, removed, id_before), _ = _prefilter_values(db)
    assert added is None and removed is None and id_before is not None
    with Blocklist.open(db, readonly=False) as bl:
        bl.apply_delta(spare[:10], base[:10], to_version=bl.get_meta("version") + 1)
        assert bl.info()["prefilter_overlay_keys"] == 20
    (base_after, index_after, added, removed, id_after), _ = _prefilter_values(db)
    assert (base_after, index_after, id_after) == (base_before, index_before, id_before)
    assert _keys(added) == {prefilter_key(code) for code in map(_identity, spare[:10])}
    assert _keys(removed) == {prefilter_key(code) for code in map(_identity, base[:10])}
    with Blocklist.open(db) as bl:           # a fresh reader: the set is the base with the overlay applied
        assert [bl.is_blocked(code) for code in spare[:10] + base[:20]] == [True] * 10 + [False] * 10 + [True] * 10
        assert bl.is_blocked_many(spare[:10] + base[:20]) == [True] * 10 + [False] * 10 + [True] * 10
        assert not any(bl._maybe(_identity(code).encode()) for code in base[:10])
        assert all(bl._maybe(_identity(code).encode()) for code in spare[:10])


def test_the_overlay_folds_into_a_new_base_past_its_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(Codes, "FOLD_MIN", 100)
    monkeypatch.setattr(Codes, "FOLD_FRACTION", 2**40)
    codes = cis_list(2_000, seed=11)
    db = _store(tmp_path, codes[:1_000])
    with Blocklist.open(db, readonly=False) as bl:
        version = bl.get_meta("version")
        bl.apply_delta(codes[1_000:1_040], codes[:40], to_version=version + 1)       # 80 keys: an overlay
        assert bl.info()["prefilter_overlay_keys"] == 80
        bl.apply_delta(codes[1_040:1_050], (), to_version=version + 2)             # 80 + 10 <= 100: still one
        assert bl.info()["prefilter_overlay_keys"] == 90
        bl.apply_delta(codes[1_050:1_061], (), to_version=version + 3)             # 90 + 11 > 100: folded
        assert bl.info()["prefilter_overlay_keys"] == 0
        bl.apply_delta((), codes[1_000:1_005], to_version=version + 4)             # a new overlay on the new base
        assert bl.info()["prefilter_overlay_keys"] == 5
    blocked = set(codes[40:1_000]) | set(codes[1_005:1_061])
    with Blocklist.open(db) as bl:
        assert [bl.is_blocked(code) for code in codes] == [code in blocked for code in codes]


def test_a_store_written_before_the_overlay_is_read_and_moved_on_its_next_delta(tmp_path):
    codes = cis_list(2_000, seed=12)
    db = _store(tmp_path, codes[:1_000])
    (base, index, _, _, _), _ = _prefilter_values(db)
    env = lmdb.open(str(db), max_dbs=16, subdir=True)
    meta = env.open_db(b"meta", create=False)
    with env.begin(write=True) as txn:        # as the program before the overlay wrote it: one value each
        with txn.cursor(db=meta) as cursor:
            chunks = [bytes(key) for key in cursor.iternext(values=False)
                      if bytes(key).startswith((b"prefilter_base", b"\xffprefilter/"))]
        assert len(chunks) > 2
        for key in chunks:
            txn.delete(key, db=meta)
        txn.put(b"prefilter", base, db=meta)
        txn.put(b"prefilter_index", index, db=meta)
    env.close()
    with Blocklist.open(db, readonly=False) as bl:
        assert all(bl.is_blocked(code) for code in codes[:1_000])
        assert bl.info()["prefilter_bytes"] > 0
        bl.apply_delta(codes[1_000:1_010], codes[:10], to_version=bl.get_meta("version") + 1)
    (base, _, added, removed, base_id), legacy = _prefilter_values(db)
    assert legacy == [None, None] and base and base_id
    assert added is None and removed is None        # moved by a fold: the whole set is the new base
    with Blocklist.open(db) as bl:
        assert [bl.is_blocked(code) for code in codes[:1_020]] == [False] * 10 + [True] * 1_000 + [False] * 10


def test_a_corrupt_overlay_is_refused_on_open(tmp_path):
    codes = cis_list(200, seed=13)
    db = _store(tmp_path, codes[:100])
    with Blocklist.open(db, readonly=False) as bl:
        bl.apply_delta(codes[100:110], (), to_version=bl.get_meta("version") + 1)
    env = lmdb.open(str(db), max_dbs=16, subdir=True)
    meta = env.open_db(b"meta", create=False)
    with env.begin(write=True) as txn:
        added = bytes(txn.get(b"prefilter_added", db=meta))
        txn.put(b"prefilter_added", added[:4] + added[8:12] + added[4:8] + added[12:], db=meta)   # out of order
    env.close()
    with pytest.raises(StoreError, match="corrupt prefilter.*not strictly ascending"):
        Blocklist.open(db)


def test_a_fold_writes_the_base_in_chunks_of_single_pages(tmp_path, monkeypatch):
    monkeypatch.setattr(Codes, "FOLD_MIN", 0)
    monkeypatch.setattr(Codes, "FOLD_FRACTION", 2**40)
    codes = cis_list(N_CODES // 4 + 10, seed=14)
    db = _store(tmp_path, codes[:-10])
    (_, _, _, _, first_id), _ = _prefilter_values(db)
    with Blocklist.open(db, readonly=False) as bl:
        bl.apply_delta(codes[-10:], (), to_version=bl.get_meta("version") + 1)       # every delta folds here
        assert bl.info()["prefilter_overlay_keys"] == 0 and bl.info()["prefilter_bytes"] > 40_000
    (base, index, _, _, base_id), _ = _prefilter_values(db)
    assert base_id != first_id and len(index) == STORED_INDEX_NBYTES
    env = lmdb.open(str(db), max_dbs=16, subdir=True, readonly=True, lock=False)
    with env.begin() as txn:
        assert txn.stat(env.open_db(b"meta", txn=txn, create=False))["overflow_pages"] == 0
    env.close()
    with Blocklist.open(db) as bl:
        assert all(bl.is_blocked_many(codes))
