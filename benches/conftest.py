"""Benchmark setup: a board of candidate/baseline ratios, printed at the end of the run.

Absolute times drift 20-30 % between runs on a shared VM, so every claim is a ratio of two medians measured in
the same run. A bench records its median with `board.record(name, seconds)`; targets pair a candidate with its
baseline. Each figure is read against the levels recorded in `_board.RECORDS` (see `_board.py`): met, a KNOWN MISS
(a target not reached yet, as bad as recorded), missed (a reached target over its limit by less than the noise),
or a REGRESSION (worse than the reached level by more than the noise), which fails the run.
LMCZ_BENCH_ENFORCE=1 also fails a missed target (for a quiet machine); LMCZ_BENCH_ENFORCE=0 fails nothing.
"""

from __future__ import annotations

import os
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))  # the probe

from _board import NOISE, Board, failing  # noqa: E402

# Child Python processes started by tests (readers, servers, killed syncs) must import the installed package too,
# not the source tree that `python -c` would find in the current directory.
os.environ["PYTHONSAFEPATH"] = "1"


BOARD = Board()

#: The share of a bench's wall time the stall probe may spend waiting past its wake-ups before a REGRESSION in that
#: bench's figures is called the machine's, not the code's. Quiet, the probe waits ~1 % (0.1 ms a 10 ms slot); at
#: load ~10 on the 2-core VM it waits 50-200 %, and CI saw ratios move 2-4x there (the checker's 41x against 19x
#: recorded, the front's p99 7.9x against 1.7x) with no change to the code.
LOADED_SHARE = 0.10


@pytest.fixture(scope="session")
def board() -> Board:
    return BOARD


@pytest.fixture(autouse=True)
def _machine_load_during_the_bench():
    """Measure, with the stall probe of tests/_checker_support.py, how long the machine kept another process
    waiting during this bench; targets this bench declared get `Board.machine_loaded` when that share is large."""
    try:
        from _checker_support import machine_stall_total, timing
    except ImportError:     # benches/ copied without tests/ (test_bench_board's runs): judged without the probe
        yield
        return
    before = {(t.candidate, t.baseline) for t in BOARD.targets}
    started = timing()
    yield
    ended = time.monotonic()
    stalled = machine_stall_total(started, ended)
    share = stalled / max(ended - started, 1e-9)
    if share >= LOADED_SHARE:
        for t in BOARD.targets:
            if (t.candidate, t.baseline) not in before:
                BOARD.machine_loaded(t.candidate, t.baseline,
                                     f"the machine was loaded: the stall probe waited {share:.0%} of this bench's "
                                     f"{ended - started:.0f} s (quiet: ~1 %), a REGRESSION cannot be told from that")


def median_of(benchmark) -> float:
    """The median of a finished pytest-benchmark run, in seconds."""
    return benchmark.stats.stats.median


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    rows = BOARD.rows()
    if not rows and not BOARD.notes:
        return
    write = terminalreporter.write_line
    terminalreporter.section("lmcz-fast ratios (candidate / baseline, same run)")
    for row in rows:
        write(row.line(), red=row.status == "REGRESSION",
              yellow=row.status in ("missed", "unrecorded", "NOT JUDGED"))
    for note in BOARD.notes:
        write(note)
    counts = {status: sum(row.status == status for row in rows)
              for status in ("met", "KNOWN MISS", "missed", "REGRESSION", "unrecorded", "NOT JUDGED")}
    write(", ".join(f"{n} {status}" for status, n in counts.items() if n) +
          f". KNOWN MISS: a target not reached yet (the record says by how much); missed: a reached target over its "
          f"limit by less than {NOISE:g}x (fails under LMCZ_BENCH_ENFORCE=1); REGRESSION: more than {NOISE:g}x "
          f"worse than the level reached (fails the run); NOT JUDGED: this run's control round was itself too noisy to "
          f"judge the figure (never fails). Records: benches/_board.py.")
    bad = failing(rows, os.environ.get("LMCZ_BENCH_ENFORCE"))
    if bad:
        write(f"benchmarks FAIL the run: {', '.join(row.label for row in bad)}", red=True, bold=True)


def pytest_sessionfinish(session, exitstatus):
    if failing(BOARD.rows(), os.environ.get("LMCZ_BENCH_ENFORCE")) and session.exitstatus == 0:
        session.exitstatus = 1
