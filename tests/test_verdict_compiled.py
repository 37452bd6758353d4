"""The full verdict in one compiled pass (issue 24): `check`, `check_many` and `check_batch` answer exactly what the
Python verdict (`Reading.verdict`, kept as the exact path) answers, and what a plain model of the store says, for
every kind of code and state: blocked code, blocked GTIN, sold (fresh and expired), own and group minimum price,
grey GTIN, mrp, several readings, tail cut, unreadable. The sold register is read through a filter brought forward
from version to version: sales made meanwhile (now, in the past, from another handle), returns and clears are all
seen by the next call."""

from __future__ import annotations

import dataclasses
import random
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmcz_fast import synth
from lmcz_fast._codes import CodeError, readings_of
from lmcz_fast._probe import (
    CHECK_BLOCKED,
    CHECK_EXACT,
    CHECK_GREY,
    CHECK_HAS_MRP,
    CHECK_HAS_SMP,
    CHECK_SOLD,
    CHECK_STRIDE,
    CHECK_UNREADABLE,
    GTIN_STRIDE,
    SoldFilter,
    VerdictTables,
)
from lmcz_fast.store import Blocklist, NoListError, StoreError

from _store_support import gtin_with_check

GS = "\x1d"
G_PACK = gtin_with_check("4601234567890")


def pack(gtin: str, serial: str = "aB3!x_-", price: str = "ACW.") -> str:
    return f"{gtin}{serial}{price}Ck<>"


def _pool() -> tuple[list[str], list[str]]:
    """Scans of every kind (clean and damaged synth codes, tobacco packs and their CIS, GS placeholders, lost GS,
    tails cut short, junk) and the identities the store's state is drawn from."""
    codes = synth.generate(160, seed=24, damage_rate=0.4)
    scans = [c.scan for c in codes]
    identities = [c.identity for c in codes]
    for k in range(6):
        serial = f"aB{k}!x_-"
        scans += [pack(G_PACK, serial), pack(G_PACK, serial)[:21], pack(G_PACK, serial, "A?Z~")]
        identities.append(f"01{G_PACK}21{serial}")
    g = codes[0].gtin
    scans += [
        f"01{g}21ABC<GS>93xy{GS}93AbCd",               # a placeholder: several readings
        f"01{g}21aB3!x_-8005012500{GS}93AbCd",          # a lost GS: the bare CIS too
        f"01{g}21ABCDEFG{GS}93ab",                      # a tail cut short: read only with tail_cut
        f"01{g}21ABCDEFG{GS}8005123456{GS}93a",
        f"01{g}21aB3!x_-{GS}8005012500{GS}93AbCd",      # a tobacco block: mrp from AI 8005
        "", "not a code", "01" + g, "é" * 40, "x" * 3000,
    ]
    identities += [f"01{g}21ABC", f"01{g}21ABCDEFG", f"01{g}21aB3!x_-"]
    return scans, identities


SCANS, IDENTITIES = _pool()
GTINS = sorted({i[2:16] for i in IDENTITIES})


def _model(state: dict, raw: str, pg: int | None, tail_cut: bool):
    """What the store must answer, from plain sets and dicts (no store code): the fields of the verdict."""
    readings = readings_of(raw, tail_cut=tail_cut)
    code = next((r for r in readings if r.identity in state["blocked"] or r.gtin in state["blocked_gtins"]),
                None)
    blocked = code is not None
    code = code or readings[0]
    smp = state["prices"].get(code.gtin)
    group = pg if pg is not None else (3 if code.kind != "gs1" else None)
    if smp is None and group is not None and (state["prices"] or state["groups"]):
        smp = state["groups"].get(group)
    return dict(blocked=blocked, cis=code.cis, gtin=code.gtin, serial=code.serial, identity=code.identity,
                mrp=code.mrp, smp=smp, grey_gtin=code.gtin in state["grey"], sold=code.identity in state["sold"])


def _fields(v) -> dict:
    d = dataclasses.asdict(v)
    for name in ("block", "db_version", "db_updated_at", "db_age", "instance_id"):
        d.pop(name)
    return d


def _same(new, old) -> None:
    """Equal verdicts, but for db_age, which each call measures at its own moment."""
    assert dataclasses.replace(new, db_age=None) == dataclasses.replace(old, db_age=None)
    assert (new.db_age is None) == (old.db_age is None)


def _build(path, state: dict, expired: list[str]) -> Blocklist:
    bl = Blocklist.create(path)
    bl.load([sorted(state["blocked"])])
    if state["blocked_gtins"]:
        bl.apply_delta(add_gtins=sorted(state["blocked_gtins"]), to_version=2)
    rows = [f"{g},,{p}" for g, p in state["prices"].items()] + [f",{g},{p}" for g, p in state["groups"].items()]
    if rows:
        bl.load_prices([["gtin,pg,price", *rows]])
    if state["grey"]:
        bl.load_grey([sorted(state["grey"])])
    if expired:
        bl.record_sold(expired, at=time.time() - 3600)
        bl.sold.set_expire_after(1800)      # those sales are past the expiry now, but still in the register
    if state["sold"]:
        bl.record_sold(sorted(state["sold"]))
    return bl


states = st.fixed_dictionaries({
    "blocked": st.sets(st.sampled_from(IDENTITIES), min_size=1, max_size=60),
    "blocked_gtins": st.sets(st.sampled_from(GTINS), max_size=4),
    "prices": st.dictionaries(st.sampled_from(GTINS), st.integers(0, 10**12), max_size=30),
    "groups": st.dictionaries(st.sampled_from([3, 8, 15, 16]), st.integers(0, 10**9), max_size=3),
    "grey": st.sets(st.sampled_from(GTINS), max_size=20),
    "sold": st.sets(st.sampled_from(IDENTITIES), max_size=30),
    "expired": st.sets(st.sampled_from(IDENTITIES), max_size=10),
})


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(state=states, pg=st.sampled_from([None, 3, 16]))
def test_compiled_verdicts_equal_the_python_verdict_and_the_model(tmp_path_factory, state, pg):
    expired = sorted(state.pop("expired") - state["sold"])
    with _build(tmp_path_factory.mktemp("store") / "db", state, expired) as bl, bl.snapshot() as view:
        reading = bl.versions.current
        for tail_cut in (False, True):
            pgs = [pg] * len(SCANS)
            batch = view.check_batch(SCANS, pgs, tail_cut=tail_cut)
            assert len(batch) == len(SCANS)
            for i, raw in enumerate(SCANS):
                try:
                    expected = _model(state, raw, pg, tail_cut)
                except CodeError as exc:
                    with pytest.raises(CodeError) as refused:
                        view.check(raw, pg, tail_cut=tail_cut)
                    assert (refused.value.reason, refused.value.position) == (exc.reason, exc.position)
                    assert batch.flags[i] == CHECK_UNREADABLE and batch.errors[i].reason == exc.reason
                    assert batch.errors[i].index == i
                    continue
                new = view.check(raw, pg, tail_cut=tail_cut)
                old = reading.slow_verdict(view, raw, pg, tail_cut, time.time())
                _same(new, old)
                assert _fields(new) == expected, raw
                if not tail_cut:
                    _same(bl.check(raw, pg), new)
                _same(batch.verdict(i), new)
                _flags_say(batch, i, new)
            if not tail_cut:
                # check_many's own pass (no arrays) answers what the batch's arrays say, for every kind and state.
                readable = [i for i in range(len(SCANS)) if not batch.flags[i] & CHECK_UNREADABLE]
                many = view.check_many([SCANS[i] for i in readable], [pg] * len(readable))
                assert len(many) == len(readable)
                for v, i in zip(many, readable):
                    _same(v, batch.verdict(i))


def _flags_say(batch, i: int, v) -> None:
    """The batch's arrays hold what the verdict says."""
    f = batch.flags[i]
    assert bool(f & CHECK_BLOCKED) == v.blocked and bool(f & CHECK_SOLD) == v.sold
    assert bool(f & CHECK_GREY) == v.grey_gtin
    assert (batch.mrp[i] if f & CHECK_HAS_MRP else None) == v.mrp
    assert (batch.smp[i] if f & CHECK_HAS_SMP else None) == v.smp
    at = i * CHECK_STRIDE
    assert batch.cis[at:at + batch.cis_len[i]].decode() == v.cis
    assert batch.identity[at:at + batch.identity_len[i]].decode() == v.identity
    assert batch.gtin[i * GTIN_STRIDE:(i + 1) * GTIN_STRIDE].decode() == v.gtin
    if f & CHECK_EXACT:
        assert batch.verdicts[i] == v or dataclasses.replace(batch.verdicts[i], db_age=None) == \
            dataclasses.replace(v, db_age=None)
    assert v.blocked or v.sold or not (f & CHECK_EXACT) or i in batch.verdicts


def test_a_free_code_makes_no_python_object_in_a_batch(tmp_path):
    codes = synth.generate(50, seed=3)
    with Blocklist.create(tmp_path / "db") as bl:
        bl.load([[codes[0].identity]])
        bl.record_sold([codes[1].scan])
        batch = bl.snapshot().check_batch([c.scan for c in codes])
        assert batch.flags[0] & (CHECK_BLOCKED | CHECK_EXACT) == CHECK_BLOCKED | CHECK_EXACT
        assert batch.flags[1] & (CHECK_SOLD | CHECK_EXACT) == CHECK_SOLD | CHECK_EXACT
        assert sorted(batch.verdicts) == [0, 1] and batch.errors == {}
        assert batch.verdicts[0].block is not None
        assert batch.db_version == bl.check(codes[2].scan).db_version and batch.instance_id == bl.info()["instance_id"]


def test_check_many_raises_the_first_bad_scan_naming_its_index(tmp_path):
    codes = synth.generate(5, seed=4)
    with Blocklist.create(tmp_path / "db") as bl:
        with pytest.raises(CodeError):
            bl.check_many([codes[0].scan, "junk"])          # a bad scan is named before "no list"
        bl.load([[codes[0].identity]])
        with pytest.raises(CodeError) as refused:
            bl.check_many([codes[0].scan, codes[1].scan, "junk", 7])
        assert refused.value.index == 2 and "item 2" in str(refused.value)
        with pytest.raises(ValueError, match="pgs holds"):
            bl.check_many([codes[0].scan], [None, None])
        batch = bl.snapshot().check_batch([codes[1].scan, 7])
        assert batch.flags[1] == CHECK_UNREADABLE and batch.errors[1].index == 1


def test_no_list_and_closed_are_refused_as_before(tmp_path):
    code = synth.generate(1, seed=5)[0]
    with Blocklist.create(tmp_path / "db") as bl:
        with pytest.raises(NoListError):
            bl.check(code.scan)
        with pytest.raises(NoListError):
            bl.snapshot().check_batch([code.scan])
        bl.load([[code.identity]])
        view = bl.snapshot()
        view.close()
        with pytest.raises(StoreError, match="closed"):
            view.check(code.scan)
        with pytest.raises(StoreError, match="closed"):
            view.check_batch([code.scan])


def test_sales_returns_and_clears_are_seen_by_the_next_call(tmp_path):
    codes = synth.generate(400, seed=6)
    with Blocklist.create(tmp_path / "db") as bl:
        bl.load([[codes[0].identity]])
        filters = bl.versions._sold_filters
        assert not bl.check(codes[1].scan).sold
        bl.record_sold([c.scan for c in codes[1:200]])
        assert all(bl.check(c.scan).sold for c in codes[1:200]) and not bl.check(codes[300].scan).sold
        builds = filters.builds
        for c in codes[200:210]:                     # one sale at a time: each brought forward, not rebuilt
            bl.record_sold([c.scan])
            assert bl.check(c.scan).sold and bl.snapshot().check_batch([c.scan]).flags[0] & CHECK_SOLD
        assert filters.builds == builds and filters.syncs >= 10
        bl.record_sold([codes[210].scan], at=time.time() - 60)     # stamped in the past: below the high mark
        assert bl.check(codes[210].scan).sold
        assert filters.builds == builds + 1
        bl.sold.remove([codes[1].scan])
        assert not bl.check(codes[1].scan).sold and bl.check(codes[2].scan).sold
        bl.sold.clear()
        assert not any(bl.check(c.scan).sold for c in codes[:211])
        bl.record_sold([codes[5].scan])
        assert bl.check(codes[5].scan).sold and not bl.check(codes[6].scan).sold


def test_a_sale_through_another_handle_is_seen(tmp_path):
    codes = synth.generate(20, seed=7)
    with Blocklist.create(tmp_path / "db") as bl:
        bl.load([[codes[0].identity]])
        bl.record_sold([codes[1].scan])
        with Blocklist.open(tmp_path / "db", refresh_interval=0.001) as reader:
            def later(raw):
                time.sleep(0.005)       # past the reader's refresh interval: it renews
                return reader.check(raw)
            assert later(codes[1].scan).sold and not later(codes[2].scan).sold
            bl.record_sold([codes[2].scan])
            assert later(codes[2].scan).sold
            bl.record_sold([codes[3].scan], at=time.time() - 100)
            assert later(codes[3].scan).sold and later(codes[2].scan).sold
            with reader.snapshot() as view:            # an older version keeps answering as it saw the register
                bl.record_sold([codes[4].scan])
                assert not view.check(codes[4].scan).sold
                assert later(codes[4].scan).sold


def test_sold_filter_and_tables_on_their_own():
    f = SoldFilter()
    for k in range(5000):
        f.add(f"01046000000000{k:05d}".encode())
    assert len(f) == 5000 and all(f"01046000000000{k:05d}" in f for k in range(5000))
    assert sum(f"01046000000001{k:05d}" in f for k in range(5000)) < 5      # 64-bit hashes: no false hits here
    assert f.add_keys([b"\x00" * 8 + b"0104600000000199999"], 8) == 1 and "0104600000000199999" in f
    t = VerdictTables({"04600000000001": (100, False), "04600000000002": (None, True)}, {3: 50})
    assert t.lookup("04600000000001") == (100, False)
    assert t.lookup("04600000000002") == (None, True) and t.lookup("04600000000002", 3) == (50, True)
    assert t.lookup("04600000000009") == (None, False) and t.lookup("04600000000009", 4) == (None, False)


def test_blocked_scans_are_never_answered_free_by_the_batch(tmp_path):
    """The worst bug: a blocked code answered free. Every blocked identity, in every form a till sends it."""
    rng = random.Random(8)
    codes = synth.generate(300, seed=8, damage_rate=0.3)
    blocked = [c for c in codes if rng.random() < 0.5]
    with Blocklist.create(tmp_path / "db") as bl:
        bl.load([[c.identity for c in blocked]])
        batch = bl.snapshot().check_batch([c.scan for c in codes], tail_cut=True)
        for i, c in enumerate(codes):
            if c in blocked and not batch.flags[i] & CHECK_UNREADABLE:
                assert batch.flags[i] & CHECK_BLOCKED, c.scan
            assert bool(batch.flags[i] & CHECK_BLOCKED) == bl.is_blocked(c.scan) or \
                batch.flags[i] & CHECK_UNREADABLE


def test_an_older_version_first_checked_after_a_newer_one_sees_its_own_register(tmp_path):
    """A sale made and returned between two versions the filter was brought forward to: a snapshot of the version
    in between, first checked afterwards, still answers `sold` for it."""
    codes = synth.generate(10, seed=9)
    with Blocklist.create(tmp_path / "db") as bl:
        bl.load([[codes[0].identity]])
        bl.record_sold([codes[5].scan])
        assert not bl.check(codes[1].scan).sold                  # the filter, at this version
        bl.record_sold([codes[1].scan])
        middle = bl.snapshot()                                  # holds the sale of codes[1]; not checked yet
        bl.sold.remove([codes[1].scan])
        bl.record_sold([codes[2].scan])
        assert bl.check(codes[2].scan).sold and not bl.check(codes[1].scan).sold   # brought forward past it
        assert middle.check(codes[1].scan).sold and not middle.check(codes[2].scan).sold
        assert middle.check_batch([codes[1].scan]).flags[0] & CHECK_SOLD
        middle.close()


def test_sales_of_one_millisecond_in_any_order_are_brought_forward(tmp_path):
    """Two sales stamped in the same millisecond, the later one's identity sorting first: the second is below
    the first's whole time key but not below its millisecond, so the filter is brought forward (no rebuild) and
    holds both (a fast till can sell twice within a millisecond)."""
    codes = sorted(synth.generate(50, seed=8), key=lambda c: c.identity, reverse=True)
    at = time.time()
    with Blocklist.create(tmp_path / "db") as bl:
        bl.load([[codes[0].identity]])
        filters = bl.versions._sold_filters
        bl.record_sold([codes[1].scan], at=at)
        assert bl.check(codes[1].scan).sold
        builds = filters.builds
        for c in codes[2:12]:                        # each identity sorts before the previous, same millisecond
            bl.record_sold([c.scan], at=at)
            assert bl.check(c.scan).sold and bl.snapshot().check_batch([c.scan]).flags[0] & CHECK_SOLD
        assert filters.builds == builds
        assert all(bl.check(c.scan).sold for c in codes[1:12]) and not bl.check(codes[20].scan).sold


def test_the_blocklists_own_check_batch_is_a_snapshots_from_the_version_it_takes(tmp_path):
    """`Blocklist.check_batch` (a one-slice service request: no snapshot taken) answers exactly what a snapshot's
    does, from the newest version after a commit, and refuses no list and a closed store as a snapshot does."""
    codes = synth.generate(40, seed=6)
    scans = [c.scan for c in codes] + ["junk"]
    fields = ("flags", "mrp", "smp", "cis", "cis_len", "identity", "identity_len", "gtin", "db_version",
              "instance_id")
    with Blocklist.create(tmp_path / "db") as bl:
        with pytest.raises(NoListError):
            bl.check_batch(scans[:1])
        bl.load([[codes[0].identity]])
        bl.record_sold([codes[1].scan])
        before = bl.check_batch(scans, tail_cut=True)
        with bl.snapshot() as view:
            same = view.check_batch(scans, tail_cut=True)
        assert all(getattr(before, name) == getattr(same, name) for name in fields)
        assert sorted(before.verdicts) == [0, 1]
        for i in (0, 1):                            # the same Verdict but its age, taken a moment later
            assert dataclasses.replace(before.verdicts[i], db_age=0.0) == dataclasses.replace(same.verdicts[i],
                                                                                                db_age=0.0)
        assert sorted(before.errors) == [40] and str(before.errors[40]) == str(same.errors[40])
        bl.load([[codes[2].identity]], replace=False)
        after = bl.check_batch(scans)
        assert after.db_version == before.db_version + 1 and after.flags[2] & CHECK_BLOCKED
        assert not before.flags[2] & CHECK_BLOCKED
    with pytest.raises(StoreError, match="closed"):
        bl.check_batch(scans[:1])
