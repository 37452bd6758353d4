"""A long-running writer's deltas reuse the store's free pages (issue 22).

Each delta rewrites the prefilter and its stored index: two values of ~1 MiB per 300,000 codes, each one LMDB
overflow run of contiguous pages. The writer takes their pages first in the transaction (before the code pages
it copies one by one), so they find the runs freed two versions before still whole, and the file stops growing
once it holds the two versions LMDB keeps valid. benches/bench_store_size.py measures the ratio over 200 deltas of
300,000 codes; here a smaller store checks that the file's high-water mark is reached early and then held, and
that the pages taken first never reach a commit without the real prefilter in them.
"""

from __future__ import annotations

import os

import pytest

from lmcz_fast.store import Blocklist, Change, StoreError
from lmcz_fast.store.appliers import Codes
from lmcz_fast.store.compaction import compact
from lmcz_fast.synth import cis_list

N_CODES = 100_000
HALF = 1_000


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


def test_a_reserved_prefilter_never_reaches_a_commit_unwritten(tmp_path, monkeypatch):
    codes = cis_list(2_000, seed=8)
    db = _store(tmp_path, codes[:1_000])
    monkeypatch.setattr(Codes, "write_prefilter", lambda self, txn, bitmap: None)
    with Blocklist.open(db, readonly=False) as bl:
        version = bl.get_meta("version")
        with pytest.raises(StoreError, match="never wrote it; nothing was changed"):
            bl.apply_delta(codes[1_000:1_010], (), to_version=version + 1)
    monkeypatch.undo()
    with Blocklist.open(db) as bl:           # a fresh handle validates the stored prefilter in full
        assert bl.get_meta("version") == version
        assert bl.is_blocked(codes[0]) and not bl.is_blocked(codes[1_000])


def test_a_delta_that_changes_only_side_tables_keeps_a_valid_prefilter(tmp_path):
    codes = cis_list(2_000, seed=9)
    db = _store(tmp_path, codes[:1_000])
    with Blocklist.open(db, readonly=False) as bl:
        version = bl.get_meta("version")
        report = bl.apply(Change(add=codes[:10], to_version=version + 1, side={b"docs": {b"a": b"1"}}))
        assert not report.applied
    with Blocklist.open(db) as bl:           # the reserved pages hold the same prefilter again, validated here
        assert bl.get_meta("version") == version
        assert all(bl.is_blocked(code) for code in codes[:1_000])
        assert not any(bl.is_blocked(code) for code in codes[1_000:1_100])
