"""The compiled core against its Python baselines, on ~900k prefilter keys and the same probes, in the same run.

Data: `lmcz_fast.synth.blocklist_and_probes` (seeded); probes are what a till sees, raw scans with crypto
tails, 1 % blocked. `ProbeBase` is driven through a Python subclass (as `Blocklist` uses it) whose exact set is
a Python `set` of packed keys, so these figures isolate the compiled path:
cut + XXH3 + Roaring probe (+ a `_confirm` call on a hit). Baselines: `cis in set` with the CIS already cut,
python-xxhash, pyroaring's `in`. Targets (issue 3): single `is_blocked(raw)` <= 1.0x `cis in set`;
`is_blocked_many` per code <= 0.33x the set loop.

Run: `python -m pytest -p no:randomly benches/bench_probe.py` (LMCZ_BENCH_CODES=100000 for a quick run).
"""

from __future__ import annotations

import os
import time

import pytest
import xxhash
from pyroaring import BitMap

from conftest import median_of
from lmcz_fast import parse_code
from lmcz_fast._codes import _cut_repeatedly
from lmcz_fast._probe import (
    INDEX_NBYTES,
    ProbeBase,
    RoaringView,
    keys_and_hashes,
    pack_identity,
    xxh3_64_intdigest,
)
from lmcz_fast.synth import blocklist_and_probes

N_CODES = int(os.environ.get("LMCZ_BENCH_CODES", "900000"))
N_PROBES = 20_000
BLOCKED_SHARE = 0.01
ROUNDS = 7


class SetProbe(ProbeBase):
    """ProbeBase confirmed by a set of packed keys: what `Blocklist` does with LMDB, minus LMDB."""

    def __init__(self, packed_keys: set[bytes], prefilter: bytes) -> None:
        self.packed_keys = packed_keys
        self.prefilter = prefilter
        self._attach(prefilter, b"", 3600.0)

    def _confirm(self, identity: bytes) -> bool:
        return pack_identity(identity) in self.packed_keys

    def _renew(self) -> None:
        self._attach(self.prefilter, b"", 3600.0)


@pytest.fixture(scope="module")
def world() -> dict:
    blocked, scans, probe_cis, truth = blocklist_and_probes(
        N_CODES, N_PROBES, blocked_share=BLOCKED_SHARE, seed=2026
    )
    keys, hashes, errors = keys_and_hashes(blocked)
    assert not errors
    bm = BitMap(hashes)
    prefilter = bm.serialize()
    blocked_set = set(blocked)
    probe_ids = [parse_code(c).identity for c in probe_cis]
    assert truth == [c in blocked_set for c in probe_cis]
    return {
        "set": blocked_set,
        "bitmap": bm,
        "view": RoaringView(prefilter),
        "probe": SetProbe(set(keys), prefilter),
        "cis": probe_cis,
        "cis_bytes": [i.encode("ascii") for i in probe_ids],
        "scans": scans,
        "keys": [xxhash.xxh3_64_intdigest(i.encode("ascii")) & 0xFFFFFFFF for i in probe_ids],
        "truth": truth,
        "prefilter_bytes": len(prefilter),
    }


def _run(benchmark, board, name: str, fn):
    result = benchmark.pedantic(fn, rounds=ROUNDS, warmup_rounds=1, iterations=1)
    board.record(name, median_of(benchmark) / N_PROBES)
    return result


@pytest.mark.benchmark(group="probe-single")
def test_set_single(benchmark, board, world):
    s, cis = world["set"], world["cis"]

    def loop():
        found = 0
        for c in cis:
            if c in s:
                found += 1
        return found

    assert _run(benchmark, board, "probe.set_single", loop) == sum(world["truth"])


@pytest.mark.benchmark(group="probe-single")
def test_is_blocked_single(benchmark, board, world):
    bl, scans = world["probe"], world["scans"]

    def loop():
        found = 0
        for r in scans:
            if bl.is_blocked(r):
                found += 1
        return found

    assert _run(benchmark, board, "probe.is_blocked", loop) == sum(world["truth"])
    board.target("probe.is_blocked", "probe.set_single", 1.0, "probe: is_blocked(raw) / `cis in set` (pre-cut)")


@pytest.mark.benchmark(group="probe-batch")
def test_set_batch(benchmark, board, world):
    s, cis = world["set"], world["cis"]
    assert _run(benchmark, board, "probe.set_batch", lambda: [c in s for c in cis]) == world["truth"]


@pytest.mark.benchmark(group="probe-batch")
def test_is_blocked_many(benchmark, board, world):
    bl, scans = world["probe"], world["scans"]
    assert _run(benchmark, board, "probe.is_blocked_many", lambda: bl.is_blocked_many(scans)) == world["truth"]
    board.target("probe.is_blocked_many", "probe.set_batch", 0.33, "probe: is_blocked_many / set loop, per code")


@pytest.mark.benchmark(group="probe-xxh3")
def test_xxhash_python(benchmark, board, world):
    ids, f = world["cis_bytes"], xxhash.xxh3_64_intdigest
    expected = [f(i) for i in ids]
    assert _run(benchmark, board, "probe.xxhash", lambda: [f(i) for i in ids]) == expected


@pytest.mark.benchmark(group="probe-xxh3")
def test_xxh3_native(benchmark, board, world):
    ids, f = world["cis_bytes"], xxh3_64_intdigest
    expected = [xxhash.xxh3_64_intdigest(i) for i in ids]
    assert _run(benchmark, board, "probe.xxh3", lambda: [f(i) for i in ids]) == expected
    board.target("probe.xxh3", "probe.xxhash", 1.0, "probe: xxh3_64_intdigest / python-xxhash (Python loop)")


@pytest.mark.benchmark(group="probe-roaring")
def test_pyroaring_in(benchmark, board, world):
    bm, keys = world["bitmap"], world["keys"]
    assert _run(benchmark, board, "probe.pyroaring_in", lambda: [k in bm for k in keys]) == [k in bm for k in keys]


@pytest.mark.benchmark(group="probe-roaring")
def test_roaring_view_in(benchmark, board, world):
    view, bm, keys = world["view"], world["bitmap"], world["keys"]
    assert _run(benchmark, board, "probe.view_in", lambda: [k in view for k in keys]) == [k in bm for k in keys]
    board.target("probe.view_in", "probe.pyroaring_in", 1.0, "probe: RoaringView `in` / pyroaring `in`")


def test_floor_and_summary(board, world):
    """The parser's share: `cut_identity` alone (no Python in the loop) on a sample of the same scans."""
    sample = world["scans"][:200]
    repeat = 200
    start = time.perf_counter()
    for scan in sample:
        _cut_repeatedly(scan, repeat)
    cut_ns = (time.perf_counter() - start) / (len(sample) * repeat) * 1e9
    board.notes.append(
        f"probe: {N_CODES} codes, prefilter {world['prefilter_bytes'] / 1e6:.2f} MB (in the map, shared), "
        f"per-process index {INDEX_NBYTES / 1024:.0f} KiB; "
        f"is_blocked {board.values.get('probe.is_blocked', 0) * 1e9:.0f} ns, "
        f"is_blocked_many {board.values.get('probe.is_blocked_many', 0) * 1e9:.0f} ns/code, "
        f"set {board.values.get('probe.set_single', 0) * 1e9:.0f} ns; "
        f"cut_identity alone (the parser) {cut_ns:.0f} ns/scan"
    )


class OverlayProbe(SetProbe):
    """The same set as a base with an overlay (issue 22: what a store's deltas write instead of a new base): 1,000
    of its keys moved out of the base into the overlay's added keys, and 1,000 keys no code has put into the base
    and listed as removed. The set probed is the same, so are the answers."""

    def __init__(self, packed_keys: set[bytes], bitmap: BitMap, overlay_keys: int = 1_000) -> None:
        import array
        import random

        rnd = random.Random(22)
        moved = BitMap(rnd.sample(list(bitmap), overlay_keys))
        phantom = BitMap()
        while len(phantom) < overlay_keys:
            key = rnd.getrandbits(32)
            if key not in bitmap:
                phantom.add(key)
        self.packed_keys = packed_keys
        self.prefilter = ((bitmap - moved) | phantom).serialize()
        self.added = array.array("I", [len(moved), *moved]).tobytes()
        self.removed = array.array("I", [len(phantom), *phantom]).tobytes()
        self._renew()

    def _renew(self) -> None:
        self._attach(self.prefilter, b"", 3600.0, added=self.added, removed=self.removed)


@pytest.fixture(scope="module")
def overlaid(world) -> OverlayProbe:
    return OverlayProbe(world["probe"].packed_keys, world["bitmap"])


def _paired(board, name: str, plain, overlay) -> None:
    """Rounds of the plain loop and the overlay loop alternated (a loaded machine's drift hits both alike); the
    fastest round of each (what a loop costs when nothing else runs; a round is ~10 ms, easily hit by others) is
    recorded per code as `name` + ", 2,000-key overlay" and `name` + ", same rounds without"."""
    plain_times, overlay_times = [], []
    plain(), overlay()                               # warm-up
    for _ in range(3 * ROUNDS):
        for fn, times in ((plain, plain_times), (overlay, overlay_times)):
            started = time.perf_counter()
            fn()
            times.append(time.perf_counter() - started)
    board.record(f"{name}, 2,000-key overlay", min(overlay_times) / N_PROBES)
    board.record(f"{name}, same rounds without", min(plain_times) / N_PROBES)


def test_is_blocked_with_an_overlay(board, world, overlaid):
    scans, plain = world["scans"], world["probe"]
    assert overlaid._attached_info[1] == len(world["bitmap"])
    assert overlaid.is_blocked_many(scans) == world["truth"]
    assert [overlaid.is_blocked(r) for r in scans] == world["truth"]
    _paired(board, "probe.is_blocked", lambda: [plain.is_blocked(r) for r in scans],
            lambda: [overlaid.is_blocked(r) for r in scans])
    board.target("probe.is_blocked, 2,000-key overlay", "probe.is_blocked, same rounds without", 1.15,
                 "probe: is_blocked(raw) with a 2,000-key overlay / without (issue 22)")
    _paired(board, "probe.is_blocked_many", lambda: plain.is_blocked_many(scans),
            lambda: overlaid.is_blocked_many(scans))
    board.target("probe.is_blocked_many, 2,000-key overlay", "probe.is_blocked_many, same rounds without", 1.15,
                 "probe: is_blocked_many with a 2,000-key overlay / without, per code (issue 22)")
