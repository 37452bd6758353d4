"""The compiled bulk-load helpers against independent oracles: Python's sort, python-xxhash, a Counter."""

from __future__ import annotations

import array
import random
from collections import Counter

import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from lmcz_fast._bulk import prepare_full_load
from lmcz_fast._probe import keys_and_hashes, pack_identity
from lmcz_fast.store import CutCodes, set_digest_of

from _store_support import GS, gtin_with_check, make_identity, make_scan, prefilter_key


def test_cis_lines_are_cut_as_cis_not_as_scans_with_a_lost_gs():
    gtin = gtin_with_check("4600000000017")
    tricky = f"01{gtin}21ABCDEFG93wxyz"
    keys, hashes, errors = keys_and_hashes([tricky, tricky + GS + "93abcd", "junk", ""])
    assert [e[0] for e in errors] == [2, 3]
    assert keys == [pack_identity(tricky.encode())] * 2
    assert list(hashes) == [prefilter_key(tricky)] * 2


def test_cut_matches_the_probe_packing_and_python_xxhash():
    rng = random.Random(3)
    identities = [make_identity(rng, serial_len=rng.choice((6, 7, 8, 13, 20))) for _ in range(2000)]
    scans = [make_scan(i, rng) for i in identities]
    keys, hashes, errors = keys_and_hashes(scans)
    assert errors == []
    assert keys == [pack_identity(i.encode()) for i in identities]
    assert list(hashes) == [prefilter_key(i) for i in identities]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(min_size=6, max_size=26), max_size=300), st.integers(0, 2**32 - 1))
def test_prepare_full_load_against_python(keys, salt):
    rng = random.Random(salt)
    keys = keys + [rng.choice(keys) for _ in range(len(keys) // 3)] if keys else keys
    hashes = array.array("I", (rng.choice((1, 2, 3, rng.getrandbits(32))) for _ in keys))
    by_key = {}
    for index, key in enumerate(keys):
        by_key[key] = index
    order, unique_keys, sorted_hashes, shared, sums = prepare_full_load(keys, hashes)
    expected_keys = sorted(by_key)
    assert unique_keys == expected_keys
    assert list(order) == [by_key[k] for k in expected_keys]
    unique_hashes = [hashes[by_key[k]] for k in expected_keys]
    assert list(sorted_hashes) == sorted(unique_hashes)
    assert shared == {h: n for h, n in Counter(unique_hashes).items() if n > 1}
    mask = (1 << 64) - 1
    assert sums == (
        sum(xxhash.xxh3_64_intdigest(k) for k in expected_keys) & mask,
        sum(xxhash.xxh3_64_intdigest(k + b"\x01") for k in expected_keys) & mask,
    )


def test_digest_is_order_independent_and_sensitive():
    rng = random.Random(8)
    identities = [make_identity(rng) for _ in range(100)]
    assert set_digest_of(identities) == set_digest_of(reversed(identities))
    assert set_digest_of(identities) != set_digest_of(identities[1:])
    assert set_digest_of([]) == "0" * 32


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.lists(st.integers(0, 30), max_size=8)), max_size=20))
def test_cut_codes_keep_the_last_word_of_adds_and_removes(steps):
    """CutCodes against a plain model: a code is in the load if its last mention was an add. Replication's first
    pass relies on it: a document deleted and then created again during the pass must stay blocked."""
    rng = random.Random(len(steps))
    pool = [make_identity(rng) for _ in range(31)]
    cut, model = CutCodes(), {}
    for adding, picks in steps:
        texts = [pool[i] for i in picks] + (["not a code"] if adding and picks else [])
        if adding:
            errors = cut.add(texts)
            assert [index for index, _, _ in errors] == ([len(texts) - 1] if picks else [])
        else:
            cut.remove(texts)
        for i in picks:
            model[i] = adding
    keys, hashes = cut.take()
    assert set(keys) == {pack_identity(pool[i].encode()) for i, present in model.items() if present}
    assert len(keys) == len(hashes)
    assert {k: h for k, h in zip(keys, hashes)} == {pack_identity(pool[i].encode()): prefilter_key(pool[i])
                                                     for i, present in model.items() if present}
