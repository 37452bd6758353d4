"""Benchmark setup: a board of candidate/baseline ratios, printed at the end of the run.

Absolute times drift 20-30 % between runs on a shared VM, so every claim is a ratio of two medians measured in
the same run. A bench records its median with `board.record(name, seconds)`; targets pair a candidate with its
baseline. Set LMCZ_BENCH_ENFORCE=1 to turn a missed target into a failure (off by default: CI machines are noisy).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# Child Python processes started by tests (readers, servers, killed syncs) must import the installed package too,
# not the source tree that `python -c` would find in the current directory.
os.environ["PYTHONSAFEPATH"] = "1"


@dataclass
class Target:
    candidate: str
    baseline: str
    limit: float
    label: str


@dataclass
class Board:
    values: dict[str, float] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def record(self, name: str, value: float, unit: str = "s") -> None:
        self.values[name] = value
        self.units[name] = unit

    def target(self, candidate: str, baseline: str, limit: float, label: str) -> None:
        if not any(t.candidate == candidate and t.baseline == baseline for t in self.targets):
            self.targets.append(Target(candidate, baseline, limit, label))

    def rows(self) -> list[tuple[str, float, float, bool]]:
        out = []
        for t in self.targets:
            if t.candidate in self.values and t.baseline in self.values and self.values[t.baseline] > 0:
                ratio = self.values[t.candidate] / self.values[t.baseline]
                out.append((t.label, ratio, t.limit, ratio <= t.limit))
        return out


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
    for label, ratio, limit, ok in rows:
        write(f"{label:<62} {ratio:8.3f}x  target <= {limit:<6g} {'met' if ok else 'MISSED'}")
    for note in BOARD.notes:
        write(note)


def pytest_sessionfinish(session, exitstatus):
    if os.environ.get("LMCZ_BENCH_ENFORCE") == "1":
        missed = [row for row in BOARD.rows() if not row[3]]
        if missed and session.exitstatus == 0:
            session.exitstatus = 1
