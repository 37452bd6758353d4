"""A code whose GS was lost (keyboard wedges drop it) and which a client then cut short (`Copy(S,1,31)` in a public
Pascal client; 30, 29, ...): docs/codes.md, "A tail cut short" and "Lost GS: how the serial's length is decided".

Such a scan, `01<GTIN>21<7-character serial>93xyz` for a beer code cut to 30, used to have one reading: the whole
run after `21` as the serial, another identity than the real one, so a blocked code could be answered "may be sold".
The rule now: every reading the parser gives (`readings_of`, `cut_readings` under `is_blocked`, the service) holds
the true identity, or the scan is refused; and a store where the true identity is blocked never answers it free.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from _service_support import ServerThread, make_db
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmcz_fast import synth
from lmcz_fast._codes import CodeError, _cut_repeatedly, parse_code, readings_of
from lmcz_fast._probe import CHECK_BLOCKED, CHECK_UNREADABLE
from lmcz_fast.store import Blocklist

GS = "\x1d"
GROUPS = [g for g in synth.GROUPS if synth.GROUPS[g].kind != "tobacco_pack"]
CLIENT_CUTS = (31, 30, 29)


def lost_gs_cuts(code: synth.GeneratedCode, prefix: str = "") -> list[str]:
    """The code with every GS lost, cut at every length from whole down to its identity's (after `prefix`)."""
    whole = prefix + code.element_string.replace(GS, "")
    return [whole[:end] for end in range(len(whole), len(prefix) + len(code.identity) - 1, -1)]


def identities(raw: str, tail_cut: bool) -> set[str] | None:
    """The identities the parser can answer for `raw`, or None when it refuses the scan."""
    try:
        return {r.identity for r in readings_of(raw, tail_cut=tail_cut)}
    except CodeError:
        return None


def assert_safe(raw: str, truth: str) -> None:
    """The safety rule, on every path: the answers hold the true identity, or the scan is refused."""
    for tail_cut in (False, True):
        got = identities(raw, tail_cut)
        assert got is None or truth in got, (raw, tail_cut, got)
    # The paths that give one identity (parse_code, identity_of, cut_identity) answer the truth, refuse, or stand
    # for a scan with several readings (all of which a check asks about).
    several = (identities(raw, False) or set()) - {truth}
    for one in (lambda r: parse_code(r).identity, lambda r: _cut_repeatedly(r, 1).decode()):
        try:
            identity = one(raw)
        except CodeError:
            continue
        assert identity == truth or (truth in (identities(raw, False) or ()) and several), (raw, identity)


def test_the_beer_code_cut_to_30_is_refused_by_default_and_read_with_tail_cut() -> None:
    beer = "0104600439931256" + "21" + "s*4g3u*" + "93" + "OVy"          # 7-character serial, GS lost, cut to 30
    assert len(beer) == 30
    with pytest.raises(CodeError) as refused:
        parse_code(beer)
    assert refused.value.reason == "truncated"
    with pytest.raises(CodeError):
        readings_of(beer)
    readings = readings_of(beer, tail_cut=True)
    assert readings[0].identity == "0104600439931256" + "21" + "s*4g3u*"
    assert readings[0].tail == {} and {"lost_gs", "tail_cut"} <= set(readings[0].repaired)
    assert {r.identity for r in readings} <= {readings[0].identity, beer}    # and the whole run, asked about too


def test_a_tobacco_block_cut_to_31_lists_the_cut_reading_beside_the_13_character_one() -> None:
    # 01 GTIN 21 + 7 + 8005 + 2 digits: the bare 13-character run is a serial length groups use (water), so it stays
    # the first reading; the block's own identity is listed beside it and asked about too.
    block = "0104600439931256" + "21" + "aB3!x_-" + "8005" + "01"
    assert len(block) == 31
    got = [r.identity for r in readings_of(block)]
    assert got[0] == block and "0104600439931256" + "21" + "aB3!x_-" in got
    assert [r.identity for r in readings_of(block, tail_cut=True)] == got


@pytest.mark.parametrize("group", GROUPS)
def test_every_cut_of_every_group_with_the_gs_lost_holds_the_truth_or_is_refused(group: str) -> None:
    for code in synth.generate(150, seed=2031, groups=[group]):
        for raw in lost_gs_cuts(code):
            assert_safe(raw, code.identity)


@pytest.mark.parametrize("group", GROUPS)
def test_the_cuts_clients_use_are_read_with_tail_cut(group: str) -> None:
    """What the service answers: a cut to 31, 30 or 29 with the GS lost is read (the truth among the readings) in
    nearly every case; a refusal is the exception (several readings of a group's length each)."""
    read = total = 0
    for code in synth.generate(300, seed=2032, groups=[group]):
        whole = code.element_string.replace(GS, "")
        for cut in CLIENT_CUTS:
            if len(code.identity) <= cut < len(whole):
                total += 1
                got = identities(whole[:cut], True)
                assert got is None or code.identity in got
                read += got is not None
    assert read >= 0.95 * total, (group, read, total)


# -------------------------------------------------------------------------------------- property, with damage


@st.composite
def damaged_cuts(draw: Any) -> tuple[str, str]:
    group = draw(st.sampled_from(GROUPS))
    seed = draw(st.integers(0, 2**32))
    (code,) = synth.generate(1, seed=seed, groups=[group])
    scan = code.element_string
    lose = draw(st.sampled_from(("all", "first", "none")))
    if lose == "all":
        scan = scan.replace(GS, "")
    elif lose == "first":
        scan = scan.replace(GS, "", 1)
    prefix = draw(st.sampled_from(("", "]d2", "]C1", GS)))
    end = draw(st.integers(len(code.identity), len(scan)))
    scan = prefix + scan[:end]
    if draw(st.booleans()):
        scan = synth.damage(scan, "cyrillic_layout", random.Random(0))
    return scan, code.identity


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(damaged_cuts())
def test_any_cut_and_gs_loss_gives_the_truth_among_the_readings_or_a_refusal(case: tuple[str, str]) -> None:
    raw, truth = case
    assert_safe(raw, truth)


# -------------------------------------------------------------------------------------- a store, the service


@pytest.fixture(scope="module")
def blocked_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[str, str]]]:
    """A store where every code's true identity is blocked, and the lost-GS cuts of those codes."""
    generated = [c for group in GROUPS for c in synth.generate(6, seed=2033, groups=[group])]
    scans = [(raw, c.identity) for c in generated for raw in lost_gs_cuts(c)]
    scans += [(raw, c.identity) for c in generated for raw in lost_gs_cuts(c, "]d2")[:8]]
    db = make_db(tmp_path_factory.mktemp("cutlost") / "store.db", sorted({c.identity for c in generated}))
    return db, scans


def test_the_library_never_answers_a_blocked_code_free(blocked_store: Any) -> None:
    db, scans = blocked_store
    bl = Blocklist.open(db)
    try:
        for raw, truth in scans:
            try:
                assert bl.is_blocked(raw) is True, (raw, truth)
            except CodeError:
                pass
            try:
                assert bl.check(raw).blocked is True, (raw, truth)
            except CodeError:
                pass
        with bl.snapshot() as view:             # the compiled verdict (cut_check), as the service reads
            for tail_cut in (False, True):
                batch = view.check_batch([raw for raw, _ in scans], tail_cut=tail_cut)
                for (raw, truth), flags in zip(scans, batch.flags, strict=True):
                    assert flags & (CHECK_BLOCKED | CHECK_UNREADABLE), (raw, truth, tail_cut)
                read = sum(not flags & CHECK_UNREADABLE for flags in batch.flags)
                assert read > len(scans) // 2 if tail_cut else read > 0
    finally:
        bl.close()


@pytest.mark.parametrize("prefix", ["/api/v1", "/api/v2"])
def test_the_service_never_answers_a_blocked_code_may_be_sold(blocked_store: Any, prefix: str) -> None:
    db, scans = blocked_store
    answered = unreadable = 0
    with ServerThread(db) as srv:
        client = srv.client()
        for start in range(0, len(scans), 200):
            chunk = scans[start:start + 200]
            status, _, body = client.request("POST", prefix + "/cis/outCheck",
                                             json.dumps({"cis_list": [raw for raw, _ in chunk]}),
                                             {"Content-Type": "application/json"})
            assert status == 200, body
            answers = [r["codes"][0] for r in body["results"]] if prefix == "/api/v2" else body["codes"]
            for (raw, truth), answer in zip(chunk, answers, strict=True):
                if "errorCode" in answer:
                    unreadable += 1
                    continue
                answered += 1
                assert answer["isBlocked"] is True, (raw, truth, answer)
    assert answered > unreadable, (answered, unreadable)
