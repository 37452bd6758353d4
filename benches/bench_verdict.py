"""The full verdict against the probe, on one store, in the same run (issue 24).

A store of ~900k blocked codes with minimum prices (per GTIN and a group's), grey GTINs and a sold register of 20k
sales; probes are what a till sees, raw scans with crypto tails, 1 % of them blocked. Every figure is per code,
from one snapshot (one version), as a receipt or a service request reads it, the fastest of alternating rounds of
each side (the machine's load falls on every side alike):

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

from lmcz_fast import Blocklist, parse_code
from lmcz_fast._probe import CHECK_BLOCKED
from lmcz_fast.synth import blocklist_and_probes

N_CODES = int(os.environ.get("LMCZ_BENCH_CODES", "900000"))
N_PROBES = 20_000
N_SOLD = 20_000
ROUNDS = 9


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


def _rounds(benchmark, board, sides: dict) -> dict:
    """Alternating rounds of each side (name -> function of no arguments), so that the machine's load falls on all
    of them alike; each side's figure is its fastest round, per code (as bench_store's interleaved checks). Returns
    each side's last result."""
    times: dict[str, list[float]] = {name: [] for name in sides}
    last: dict = {}

    def one_round() -> None:
        for name, fn in sides.items():
            started = time.perf_counter()
            last[name] = fn()
            times[name].append(time.perf_counter() - started)

    benchmark.pedantic(one_round, rounds=ROUNDS, warmup_rounds=1, iterations=1)
    for name, spent in times.items():
        board.record(name, min(spent) / N_PROBES)
    return last


@pytest.mark.benchmark(group="verdict")
def test_check_against_is_blocked_and_the_python_verdict(benchmark, board, world):
    view, scans, truth = world["view"], world["scans"], world["truth"]
    slow = world["bl"].versions.current.slow_verdict
    last = _rounds(benchmark, board, {
        "verdict/is_blocked": lambda: [view.is_blocked(s) for s in scans],
        "verdict/check": lambda: [view.check(s) for s in scans],
        "verdict/python_verdict": lambda: [slow(view, s, None, False, time.time()) for s in scans],
    })
    assert last["verdict/is_blocked"] == truth
    assert [v.blocked for v in last["verdict/check"]] == truth == [v.blocked for v in last["verdict/python_verdict"]]
    assert any(v.smp is not None for v in last["verdict/check"]) and any(v.grey_gtin for v in last["verdict/check"])
    board.target("verdict/check", "verdict/is_blocked", 3.0,
                 "verdict: check (full Verdict) / is_blocked, per code")
    board.target("verdict/check", "verdict/python_verdict", 0.35,
                 "verdict: check / the Python verdict it replaced, per code")


@pytest.mark.benchmark(group="verdict")
def test_check_batch_and_check_many_against_is_blocked_many(benchmark, board, world):
    view, scans, truth = world["view"], world["scans"], world["truth"]
    last = _rounds(benchmark, board, {
        "verdict/is_blocked_many": lambda: view.is_blocked_many(scans),
        "verdict/check_batch": lambda: view.check_batch(scans, tail_cut=True),
        "verdict/check_many": lambda: view.check_many(scans),
    })
    batch = last["verdict/check_batch"]
    assert last["verdict/is_blocked_many"] == truth
    assert [bool(batch.flags[i] & CHECK_BLOCKED) for i in range(len(batch))] == truth
    assert [v.blocked for v in last["verdict/check_many"]] == truth
    board.target("verdict/check_batch", "verdict/is_blocked_many", 3.0,
                 "verdict: check_batch (compact arrays) / is_blocked_many, per code")
    board.target("verdict/check_many", "verdict/is_blocked_many", 3.0,
                 "verdict: check_many (a Verdict per code) / is_blocked_many, per code")
