"""The full verdict against the probe, on one store, in the same run (issue 24).

A store of ~900k blocked codes with minimum prices (per GTIN and a group's), grey GTINs and a sold register of 20k
sales; probes are what a till sees, raw scans with crypto tails, 1 % of them blocked. Every figure is per code,
from one snapshot (one version), as a receipt or a service request reads it:

- `check` (a whole `Verdict`: blocked, sold, mrp, smp, grey) against `is_blocked` on the same scans: <= 3x;
- `check_batch` (the compact per-code arrays a service encodes from) and `check_many` (a `Verdict` per code)
  against `is_blocked_many`: <= 3x;
- `check` against the Python verdict it replaced (`Reading.slow_verdict`, main's `check` minus its call
  overhead: `readings_of`, the lock, `Reading.verdict` with its sold cursor and table dicts), A/B in this run.

Run: `python -m pytest -p no:randomly benches/bench_verdict.py` (LMCZ_BENCH_CODES=100000 for a quick run).
"""

from __future__ import annotations

import os
import time

import pytest

from conftest import median_of
from lmcz_fast import Blocklist, parse_code
from lmcz_fast._probe import CHECK_BLOCKED
from lmcz_fast.synth import blocklist_and_probes

N_CODES = int(os.environ.get("LMCZ_BENCH_CODES", "900000"))
N_PROBES = 20_000
N_SOLD = 20_000
ROUNDS = 7


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    blocked, scans, probe_cis, truth = blocklist_and_probes(N_CODES + N_SOLD, N_PROBES, blocked_share=0.01,
                                                            seed=2424)
    sold, blocked = blocked[:N_SOLD], blocked[N_SOLD:]
    blocked_set = set(blocked)
    truth = [c in blocked_set for c in probe_cis]
    gtins = sorted({parse_code(c).gtin for c in probe_cis})
    root = tmp_path_factory.mktemp("verdict-bench")
    listing = root / "blocked.txt"
    listing.write_text("\n".join(blocked) + "\n", encoding="ascii")
    bl = Blocklist.create(root / "db")
    bl.load(listing)
    bl.load_prices([["gtin,pg,price", *(f"{g},,{1000 + k}" for k, g in enumerate(gtins[::20])), ",3,12000"]])
    bl.load_grey([gtins[5::40]])
    bl.record_sold(sold)
    view = bl.snapshot()
    yield {"bl": bl, "view": view, "scans": scans, "truth": truth}
    view.close()
    bl.close()


def _run(benchmark, board, name: str, fn):
    result = benchmark.pedantic(fn, rounds=ROUNDS, warmup_rounds=1, iterations=1)
    board.record(name, median_of(benchmark) / N_PROBES)
    return result


@pytest.mark.benchmark(group="verdict-single")
def test_is_blocked(benchmark, board, world):
    view, scans = world["view"], world["scans"]
    assert _run(benchmark, board, "verdict/is_blocked", lambda: [view.is_blocked(s) for s in scans]) == \
        world["truth"]


@pytest.mark.benchmark(group="verdict-single")
def test_check(benchmark, board, world):
    view, scans = world["view"], world["scans"]
    verdicts = _run(benchmark, board, "verdict/check", lambda: [view.check(s) for s in scans])
    assert [v.blocked for v in verdicts] == world["truth"]
    assert any(v.smp is not None for v in verdicts) and any(v.grey_gtin for v in verdicts)
    board.target("verdict/check", "verdict/is_blocked", 3.0,
                 "verdict: check (full Verdict) / is_blocked, per code")


@pytest.mark.benchmark(group="verdict-single")
def test_python_verdict(benchmark, board, world):
    """The Python verdict `check` answered with before (main's path, kept as the exact path for rare scans)."""
    view, scans = world["view"], world["scans"]
    reading = world["bl"].versions.current
    slow = reading.slow_verdict

    def loop():
        return [slow(view, s, None, False, time.time()) for s in scans]

    verdicts = _run(benchmark, board, "verdict/python_verdict", loop)
    assert [v.blocked for v in verdicts] == world["truth"]
    board.target("verdict/check", "verdict/python_verdict", 0.35,
                 "verdict: check / the Python verdict it replaced, per code")


@pytest.mark.benchmark(group="verdict-batch")
def test_is_blocked_many(benchmark, board, world):
    view, scans = world["view"], world["scans"]
    assert _run(benchmark, board, "verdict/is_blocked_many", lambda: view.is_blocked_many(scans)) == world["truth"]


@pytest.mark.benchmark(group="verdict-batch")
def test_check_batch(benchmark, board, world):
    view, scans = world["view"], world["scans"]
    batch = _run(benchmark, board, "verdict/check_batch", lambda: view.check_batch(scans, tail_cut=True))
    assert [bool(batch.flags[i] & CHECK_BLOCKED) for i in range(len(batch))] == world["truth"]
    board.target("verdict/check_batch", "verdict/is_blocked_many", 3.0,
                 "verdict: check_batch (compact arrays) / is_blocked_many, per code")


@pytest.mark.benchmark(group="verdict-batch")
def test_check_many(benchmark, board, world):
    view, scans = world["view"], world["scans"]
    verdicts = _run(benchmark, board, "verdict/check_many", lambda: view.check_many(scans))
    assert [v.blocked for v in verdicts] == world["truth"]
    board.target("verdict/check_many", "verdict/is_blocked_many", 3.0,
                 "verdict: check_many (a Verdict per code) / is_blocked_many, per code")
