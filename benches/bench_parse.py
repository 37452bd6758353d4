"""The parser against its baselines, in the same run: `parse_code` on full scans vs a regex cut vs biip.

Inputs are fixed (synth, seed 2026): full element strings with their tails as a till sees them (GS1 groups only,
the only thing the regex and biip understand), plus a damaged mixed set that only `parse_code` can read. Every
bench asserts what it computed. Times are per code; ratios go to the board printed at the end (conftest.py).
Targets (issue 2): parse_code well under 1 us a call, and faster than the regex cut that only finds the CIS.
"""

from __future__ import annotations

import re

import biip
import pytest

from conftest import median_of
from lmcz_fast import synth
from lmcz_fast._codes import _cut_repeatedly, identity_of, parse_code

N_SCANS = 2000
N_BIIP = 40
CUT_REPEAT = 200_000
ROUNDS = 7

GS1_GROUPS = [name for name, g in synth.GROUPS.items() if g.kind == "gs1"]

# What a quick integration does today: find GTIN and serial with a regex, tolerate a symbology prefix and FNC1.
CIS_RE = re.compile(r"(?:\][A-Za-z]\d)?\x1d?01(\d{14})21([^\x1d]{1,20})")


@pytest.fixture(scope="module")
def scans():
    codes = synth.generate(N_SCANS, seed=2026, groups=GS1_GROUPS)
    return [c.scan for c in codes], [c.identity for c in codes]


@pytest.fixture(scope="module")
def damaged():
    codes = synth.generate(N_SCANS, seed=2027, damage_rate=1.0)
    return [c.scan for c in codes], [c.identity for c in codes]


def _run(benchmark, board, name, fn, count):
    result = benchmark.pedantic(fn, rounds=ROUNDS, warmup_rounds=1, iterations=1)
    board.record(name, median_of(benchmark) / count)
    return result


@pytest.mark.benchmark(group="parse")
def test_parse_code(benchmark, board, scans):
    raws, identities = scans
    result = _run(benchmark, board, "parse.parse_code", lambda: [parse_code(r).identity for r in raws], len(raws))
    assert result == identities
    board.target("parse.parse_code", "parse.regex", 1.0, "parse: parse_code(full scan).identity / regex cut")
    board.target("parse.parse_code", "parse.biip", 0.01, "parse: parse_code(full scan) / biip.parse")


@pytest.mark.benchmark(group="parse")
def test_parse_code_object_only(benchmark, board, scans):
    raws, identities = scans
    result = _run(benchmark, board, "parse.parse_code_object", lambda: [parse_code(r) for r in raws], len(raws))
    assert [c.identity for c in result] == identities
    board.target("parse.parse_code_object", "parse.regex", 1.0, "parse: parse_code(full scan) / regex cut")


@pytest.mark.benchmark(group="parse")
def test_identity_of(benchmark, board, scans):
    raws, identities = scans
    expected = [i.encode() for i in identities]
    assert _run(benchmark, board, "parse.identity_of", lambda: [identity_of(r) for r in raws], len(raws)) == expected
    board.target("parse.identity_of", "parse.regex", 1.0, "parse: identity_of(full scan) / regex cut")


@pytest.mark.benchmark(group="parse")
def test_regex_cut_baseline(benchmark, board, scans):
    raws, identities = scans

    def loop():
        out = []
        for r in raws:
            m = CIS_RE.match(r)
            out.append("01" + m.group(1) + "21" + m.group(2))
        return out

    assert _run(benchmark, board, "parse.regex", loop, len(raws)) == identities


@pytest.mark.benchmark(group="parse")
def test_biip_baseline(benchmark, board, scans):
    raws, identities = scans[0][:N_BIIP], scans[1][:N_BIIP]

    def loop():
        out = []
        for r in raws:
            found = {es.ai.ai: es.value for es in biip.parse(r).gs1_message.element_strings}
            out.append("01" + found["01"] + "21" + found["21"])
        return out

    result = benchmark.pedantic(loop, rounds=3, warmup_rounds=0, iterations=1)
    board.record("parse.biip", median_of(benchmark) / len(raws))
    assert result == identities


@pytest.mark.benchmark(group="parse-damaged")
def test_parse_code_damaged_mixed(benchmark, board, damaged):
    raws, identities = damaged
    result = _run(benchmark, board, "parse.damaged", lambda: [parse_code(r).identity for r in raws], len(raws))
    assert result == identities
    board.target("parse.damaged", "parse.regex", 3.0, "parse: parse_code(damaged mixed scans) / regex cut (clean)")


@pytest.mark.benchmark(group="cut")
@pytest.mark.parametrize(
    "label, pick",
    [
        ("shoes_full", lambda g: g.group == "shoes" and not g.damage),
        ("milk_full", lambda g: g.group == "milk" and not g.damage),
        ("tobacco_pack", lambda g: g.group == "tobacco_pack" and not g.damage),
    ],
)
def test_cut_identity_native(benchmark, board, label, pick):
    """cut_identity with no Python in the loop: the cost the probe pays per scan."""
    code = next(g for g in synth.generate(500, seed=1) if pick(g))
    expected = code.identity.encode()
    result = benchmark.pedantic(_cut_repeatedly, args=(code.scan, CUT_REPEAT), rounds=ROUNDS, iterations=1)
    assert result == expected
    board.record(f"cut.{label}", median_of(benchmark) / CUT_REPEAT)
    board.notes.append(f"cut_identity ({label}, {len(code.scan)} chars): "
                       f"{median_of(benchmark) / CUT_REPEAT * 1e9:.1f} ns per scan")
