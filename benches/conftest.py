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

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _board import NOISE, Board, failing  # noqa: E402

# Child Python processes started by tests (readers, servers, killed syncs) must import the installed package too,
# not the source tree that `python -c` would find in the current directory.
os.environ["PYTHONSAFEPATH"] = "1"


BOARD = Board()


@pytest.fixture(scope="session")
def board() -> Board:
    return BOARD


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
