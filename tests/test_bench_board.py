"""The benchmark board reads each figure against the project's record: met, a known miss, missed within noise,
or a regression that fails the run. Benches are part of the suite, so this decides whether `pytest` passes."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

BENCHES = Path(__file__).resolve().parent.parent / "benches"
sys.path.insert(0, str(BENCHES))

from _board import NOISE, RECORDS, Board, Record, Target, classify, failing, regression_level  # noqa: E402

KNOWN = {("cand", "base"): Record(0.06, 0.09, False, "issue 99")}
REACHED = {("cand", "base"): Record(0.2, 0.3, True, "issue 98")}
TARGET = Target("cand", "base", 0.05, "a target")


def test_a_known_miss_is_printed_with_its_record_and_does_not_fail() -> None:
    row = classify(TARGET, 0.08, KNOWN)
    assert row.status == "KNOWN MISS"
    assert "not reached yet: measured 0.06-0.09x; issue 99" in row.line()
    assert failing([row], None) == [] and failing([row], "1") == []


def test_a_known_miss_much_worse_than_recorded_is_a_regression() -> None:
    row = classify(TARGET, 0.09 * NOISE * 1.01, KNOWN)
    assert row.status == "REGRESSION" and "more than 2x worse" in row.line()
    assert failing([row], None) == [row] and failing([row], "0") == []


def test_a_reached_target_over_its_limit_is_noise_until_twice_the_level() -> None:
    target = Target("cand", "base", 1.0, "reached")
    within = classify(target, 1.5, REACHED)
    assert within.status == "missed"
    assert failing([within], None) == [] and failing([within], "1") == [within]
    worse = classify(target, 2.01, REACHED)
    assert worse.status == "REGRESSION" and failing([worse], None) == [worse]
    assert classify(target, 0.9, REACHED).status == "met"


def test_a_known_miss_that_is_met_says_so() -> None:
    row = classify(TARGET, 0.04, KNOWN)
    assert row.status == "met" and "update RECORDS" in row.line()


def test_an_unrecorded_target_is_flagged() -> None:
    row = classify(TARGET, 0.07, {})
    assert row.status == "unrecorded" and "no record" in row.line()
    assert failing([row], None) == [] and failing([row], "1") == [row]
    assert classify(TARGET, 0.2, {}).status == "REGRESSION"


def test_the_board_computes_ratios_of_recorded_medians() -> None:
    board = Board()
    board.record("cand", 0.8)
    board.record("base", 10.0)
    board.target("cand", "base", 0.05, "a target")
    board.target("cand", "base", 0.05, "declared twice")
    [row] = board.rows(KNOWN)
    assert (row.ratio, row.status) == (pytest.approx(0.08), "KNOWN MISS")


def test_a_figure_its_control_calls_noise_is_shown_and_never_fails() -> None:
    """A run whose control round was itself noisy marks the target NOT JUDGED (with why): the same figure on a run
    whose control was quiet is still the REGRESSION it was, so a quiet machine is judged as strictly as before."""
    target = Target("cand", "base", 1.0, "reached")
    assert regression_level(target, REACHED) == pytest.approx(1.0 * NOISE)
    assert regression_level(TARGET, KNOWN) == pytest.approx(0.09 * NOISE)
    assert regression_level(TARGET, {}) == pytest.approx(0.05 * NOISE)
    assert classify(target, 8.2, REACHED).status == "REGRESSION"
    board = Board()
    board.record("cand", 8.2)
    board.record("base", 1.0)
    board.target("cand", "base", 1.0, "reached")
    [judged] = board.rows(REACHED)
    assert judged.status == "REGRESSION" and failing([judged], None) == [judged]
    board.unjudged("cand", "base", "control's worst call 5000 us")
    [row] = board.rows(REACHED)
    assert (row.status, row.ratio) == ("NOT JUDGED", pytest.approx(8.2))
    assert "control's worst call 5000 us" in row.line()
    assert failing([row], None) == [] and failing([row], "1") == []


def test_a_regression_measured_while_the_machine_was_loaded_is_not_judged_and_nothing_else_changes() -> None:
    """The stall probe's share of a bench marks its targets loaded: a figure that would be a REGRESSION is shown
    NOT JUDGED with the probe's figure; met, KNOWN MISS and missed figures keep their verdicts."""
    board = Board()
    board.record("base", 1.0)
    board.target("cand", "base", 0.05, "a target")
    board.machine_loaded("cand", "base", "the stall probe waited 80 %")
    for value, status in ((0.04, "met"), (0.1, "KNOWN MISS"), (0.5, "NOT JUDGED")):
        board.record("cand", value)
        [row] = board.rows(KNOWN)
        assert row.status == status, (value, row)
    assert "the stall probe waited 80 %" in row.line() and failing([row], None) == []
    reached = Board()
    reached.record("base", 1.0)
    reached.target("cand", "base", 0.25, "reached")
    reached.machine_loaded("cand", "base", "loaded")
    reached.record("cand", 0.4)
    assert [r.status for r in reached.rows(REACHED)] == ["missed"]
    unloaded = Board()
    unloaded.record("base", 1.0)
    unloaded.record("cand", 0.5)
    unloaded.target("cand", "base", 0.05, "a target")
    assert [r.status for r in unloaded.rows(KNOWN)] == ["REGRESSION"]


def _declared_targets() -> set[tuple[str, str]]:
    declared = set()
    for path in BENCHES.glob("bench_*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "target"
                    and len(node.args) >= 2 and all(isinstance(a, ast.Constant) for a in node.args[:2])):
                declared.add((node.args[0].value, node.args[1].value))
    return declared


def test_every_declared_target_has_a_record_and_every_record_a_target() -> None:
    declared = _declared_targets()
    assert len(declared) >= 15
    assert declared - set(RECORDS) == set(), "targets without a record in benches/_board.py"
    assert set(RECORDS) - declared == set(), "records of targets no bench declares any more"
    for key, record in RECORDS.items():
        assert 0 < record.low <= record.high and record.where, key


BENCH = '''
def test_figures(board):
    board.record("apply a 10k-code delta", {delta})
    board.record("full load of 900k codes", 1.0)
    board.target("apply a 10k-code delta", "full load of 900k codes", 0.05, "random delta / full load")
'''


@pytest.mark.parametrize("delta, enforce, rc, words", [
    (0.07, "1", 0, "KNOWN MISS (not reached yet"),
    (0.2, None, 1, "REGRESSION"),
    (0.2, "0", 0, "REGRESSION"),
])
def test_a_regression_fails_the_run_and_a_known_miss_does_not(tmp_path, delta, enforce, rc, words) -> None:
    for name in ("conftest.py", "_board.py"):
        shutil.copy(BENCHES / name, tmp_path / name)
    (tmp_path / "bench_figures.py").write_text(textwrap.dedent(BENCH.format(delta=delta)))
    env = {k: v for k, v in os.environ.items() if k != "LMCZ_BENCH_ENFORCE"}
    if enforce is not None:
        env["LMCZ_BENCH_ENFORCE"] = enforce
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o",
                             "python_files=bench_*.py", str(tmp_path)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == rc, result.stdout + result.stderr
    assert words in result.stdout


def test_the_test_extra_installs_what_the_benches_need() -> None:
    """README's test command is `pip install '.[test]' && pytest`, and pytest runs benches/ too: every package of
    the `bench` extra must come with `test`, or a clean machine skips a bench (the aiohttp comparison did)."""
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")
    extras = tomllib.loads((BENCHES.parent / "pyproject.toml").read_text())["project"]["optional-dependencies"]

    def names(requirements: list[str]) -> set[str]:
        return {req.split(";")[0].split("[")[0].split(">")[0].split("=")[0].split("<")[0].strip().lower()
                for req in requirements}

    assert "aiohttp" in names(extras["bench"])
    assert names(extras["bench"]) <= names(extras["test"])
