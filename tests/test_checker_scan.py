"""The offline-only checker's compiled scan (`_probe.TillScan`, what `Checker(None, store).check` runs) answers
exactly what the checker's general path (`check_receipt((scan,))`) answers, for every kind of code and state: free,
blocked, grey, sold, priced right and wrong, with and without a product group, text and bytes, a scan of several
readings, an unreadable scan, a stale store, and a store that is not a plain probe."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import fields
from typing import Any

import pytest
from _checker_support import GS, gtin_with_check

from lmcz_fast import Blocklist, parse_code
from lmcz_fast._probe import offline_tag_1265
from lmcz_fast.checker import Checker, Decision
from lmcz_fast.receipt import instance_uuid, version_uuid

TOBACCO = gtin_with_check("0460043993125")       # tobacco packs of this GTIN carry "ACW." = 146.30 roubles
MILK = gtin_with_check("0460700000001")
BLOCK_GTIN = gtin_with_check("0460700000002")
PACK = f"{TOBACCO}aB3!x_-ACW.Ck<>"
PACK_BLOCKED = f"{TOBACCO}aB3!x_1ACW.Ck<>"
PACK_SOLD = f"{TOBACCO}aB3!x_2ACW.Ck<>"
MILK_SCAN = f"01{MILK}21Ab3!x_{GS}93dGVz"
MILK_BLOCKED = f"01{MILK}21Blocked{GS}93dGVz"
TOBACCO_BLOCK = f"01{BLOCK_GTIN}21aB3!x_-{GS}8005146300{GS}93AbCd"
TWO_READINGS = f"01{MILK}21CfG9VcmbLzUky<GS>93Ab12"
SCANS: list[str | bytes] = [PACK, PACK_BLOCKED, PACK_SOLD, MILK_SCAN, MILK_BLOCKED, TOBACCO_BLOCK, TWO_READINGS,
                            parse_code(PACK).cis, MILK_SCAN.encode(), PACK_BLOCKED.encode(), "not a code", b"\xff01"]
PRICES = [None, 0, 4999, 5000, 14629, 14630, 14700, 146300, 99999]
PGS = [None, 3, 16, 1]
UUID_TIME = re.compile(r"UUID=[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}&Time=\d{13}")


@pytest.fixture
def store(tmp_path) -> Iterator[Blocklist]:
    path = tmp_path / "db"
    with Blocklist.create(path) as bl:
        bl.load([[parse_code(PACK_BLOCKED).cis, parse_code(MILK_BLOCKED).identity]])
    (tmp_path / "prices.csv").write_text(f"gtin,pg,price\n{MILK},,5000\n,tobacco,14700\n")
    (tmp_path / "grey.txt").write_text(f"{MILK}\n")
    bl = Blocklist.open(path, readonly=False)
    bl.load_prices(tmp_path / "prices.csv")
    bl.load_grey(tmp_path / "grey.txt")
    bl.record_sold([PACK_SOLD])
    yield bl
    bl.close()


def _same(fast: Any, general: Any, where: str, priced: bool = False) -> None:
    """Two TillVerdicts are the same answer: every field but `elapsed`, each code's every field, tag 1265 alike up
    to its request id and time, the store's Verdict alike up to its age. `check` leaves `code` None offline-only
    (nothing was sent online; as before the scan was compiled), where `check_receipt` of a priced scan names the
    element string it parsed for the price rules."""
    assert type(fast) is type(general), where
    for f in fields(fast):
        if f.name not in ("elapsed", "codes"):
            assert getattr(fast, f.name) == getattr(general, f.name), (where, f.name)
    assert len(fast.codes) == len(general.codes) == 1, where
    a, b = fast.codes[0], general.codes[0]
    for f in fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if f.name == "code" and priced:
            assert x is None, where
        elif f.name == "tags":
            assert list(x) == list(y), where
            assert {k: v for k, v in x.items() if k != 1265} == {k: v for k, v in y.items() if k != 1265}, where
            if 1265 in y:
                assert UUID_TIME.sub("", x[1265]) == UUID_TIME.sub("", y[1265]), where
                assert UUID_TIME.match(x[1265]) and x[1265] != y[1265], where
        elif f.name == "offline" and y is not None:
            assert type(x) is type(y), where
            for g in fields(y):
                if g.name != "db_age":
                    assert getattr(x, g.name) == getattr(y, g.name), (where, g.name)
        else:
            assert x == y and type(x) is type(y), (where, f.name)


def test_the_compiled_scan_answers_what_the_general_path_does(store):
    with Checker(None, store) as checker:
        assert checker._scan is not None
        seen = set()
        for scan in SCANS:
            for price in PRICES:
                for pg in PGS:
                    fast = checker.check(scan, price=price, pg=pg)
                    general = checker.check_receipt((scan,), prices=(price,), pgs=(pg,))
                    _same(fast, general, f"{scan!r} price={price} pg={pg}", price is not None)
                    seen.add((fast.decision, tuple(r.key for r in fast.codes[0].reasons)))
    # The grid went through every row of the offline table, both price rules and the unreadable scan.
    keys = {k for _d, ks in seen for k in ks}
    assert keys == {"sold", "blocked", "online_only", "price_not_mrp", "price_below_min", "price_below_mrp",
                    "unreadable"}
    assert {d for d, _ks in seen} == set(Decision)


def test_tag_1265_names_the_version_and_follows_a_new_one(store):
    with Checker(None, store) as checker:
        first = checker.check(PACK).tag_1265
        info = store.info()
        inst = instance_uuid(info["instance_id"])
        assert first.endswith(f"&Inst={inst}&Ver={version_uuid(info['instance_id'], info['version'])}")
        store.apply_delta(add=[parse_code(PACK).cis], to_version=info["version"] + 1)
        verdict = checker.check(PACK)
        info = store.info()
        assert verdict.decision is Decision.REFUSE
        assert verdict.tag_1265.endswith(f"&Inst={inst}&Ver={version_uuid(info['instance_id'], info['version'])}")
        ids = {checker.check(MILK_SCAN).tag_1265.split("&")[0] for _ in range(200)}
        assert len(ids) == 200                                          # a new request id every scan


class _Wrapped:
    """A store that is not a plain probe: its `check` is its own (the compiled scan calls it through Python)."""

    def __init__(self, bl: Blocklist) -> None:
        self._bl = bl

    def check(self, raw: str | bytes, pg: int | None = None) -> Any:
        return self._bl.check(raw) if pg is None else self._bl.check(raw, pg=pg)

    def status(self) -> Any:
        return self._bl.status()


def test_a_store_that_is_not_a_plain_probe_and_a_stale_one(store, monkeypatch):
    with Checker(None, _Wrapped(store)) as checker:
        for scan in SCANS:
            for price in (None, 14630, 1):
                fast = checker.check(scan, price=price)
                _same(fast, checker.check_receipt((scan,), prices=(price,)), f"wrapped {scan!r} {price}",
                      price is not None)
    real_status = store.status

    def stale(now: float | None = None) -> Any:
        status = real_status(now)
        object.__setattr__(status, "state", "stale")
        return status

    monkeypatch.setattr(store, "status", stale, raising=False)
    with Checker(None, store) as checker:
        verdict = checker.check(PACK)
        assert [n.key for n in verdict.codes[0].notes] == ["offline_stale"]
        _same(verdict, checker.check_receipt((PACK,)), "stale")


def test_an_empty_store_answers_through_the_general_path(tmp_path):
    with Blocklist.create(tmp_path / "db") as bl, Checker(None, bl) as checker:
        verdict = checker.check(PACK)
        assert verdict.decision is Decision.CANNOT_CHECK
        assert [r.key for r in verdict.reasons] == ["offline_empty"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_forked_worker_draws_other_request_ids():
    """The request ids' generator is seeded again in a forked child: two till workers forked from one process never
    send the same ids (as they would if the child went on with the parent's state)."""
    tail = "&Inst=x&Ver=y"
    offline_tag_1265(tail)                                      # the parent's generator is seeded and in use
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:                                                # the child: its next ids, then out at once
        try:
            os.write(write, "\n".join(offline_tag_1265(tail).split("&")[0] for _ in range(50)).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = set(pipe.read().split("\n"))
    os.waitpid(pid, 0)
    parent = {offline_tag_1265(tail).split("&")[0] for _ in range(50)}
    assert len(child) == len(parent) == 50 and not child & parent


def test_a_checker_nobody_holds_goes_at_once(store):
    """The compiled scan holds its checker weakly: no reference cycle, so a dropped checker (and what it holds) goes
    when its last reference does, without waiting for the cyclic collector (off here)."""
    import gc
    import weakref

    checker = Checker(None, store)
    checker.check(PACK)
    gone = weakref.ref(checker)
    scan = checker._scan
    gc.disable()
    try:
        del checker
        assert gone() is None
    finally:
        gc.enable()
    with pytest.raises(ReferenceError):
        scan.check(PACK, None, None)
