"""The till-side checker with a sale price per code: the offline refusal table (sold, blocked, grey + blocked ->
online only, price against mrp/smp) over a real LMDB store, a Local Module on loopback (both protocols) and the
online answer, with reasons in Russian and English."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
from _checker_support import GS, FakeLocalModule, FakeTrueApi, gtin_with_check, make_scan

from lmcz_fast import Blocklist, parse_code
from lmcz_fast.checker import (
    Checker,
    Decision,
    LocalModuleClient,
    Mode,
    PriceError,
    offline_table,
    price_reasons,
)
from lmcz_fast.trueapi import TrueApiClient

KEY = "test-key"
TOBACCO = gtin_with_check("0460043993125")       # tobacco packs of this GTIN carry "ACW." = 146.30 roubles
MILK = gtin_with_check("0460700000001")
BLOCK_GTIN = gtin_with_check("0460700000002")


def pack(serial: str, price: str = "ACW.") -> str:
    return f"{TOBACCO}{serial}{price}Ck<>"


PACK = pack("aB3!x_-")                 # sellable
PACK_BLOCKED = pack("aB3!x_1")         # blocked
MILK_SCAN = f"01{MILK}21Ab3!x_{GS}93dGVz"
TOBACCO_BLOCK = f"01{BLOCK_GTIN}21aB3!x_-{GS}8005146300{GS}93AbCd"   # a block of ten: 1463.00 roubles


@pytest.fixture
def store(tmp_path) -> Iterator[Blocklist]:
    path = tmp_path / "db"
    with Blocklist.create(path) as bl:
        bl.load([[parse_code(PACK_BLOCKED).cis, f"01{MILK}21Blocked"]])
    bl = Blocklist.open(path, readonly=False)   # its sold register (store/sold/) is the real one
    yield bl
    bl.close()


def keys(verdict) -> list[str]:
    return [r.key for r in verdict.reasons]


def test_price_against_the_packs_own_mrp(store):
    with Checker(None, store) as checker:
        assert checker.check(PACK, price=14630).decision is Decision.SELL
        assert checker.check(PACK).decision is Decision.SELL                      # no price: nothing to compare
        for wrong in (15000, 14629, 0):
            verdict = checker.check(PACK, price=wrong)
            assert (verdict.decision, keys(verdict)) == (Decision.REFUSE, ["price_not_mrp"])
        verdict = checker.check(PACK, price=15000)
    assert verdict.message("ru") == ("Цена продажи не равна МРЦ, указанной в коде — продажа запрещена "
                                     "(цена 150.00 ₽, МРЦ 146.30 ₽)")
    assert verdict.message("en").startswith("The sale price is not the maximum retail price printed in the code")
    assert "146.30 RUB" in verdict.message("en") and verdict.mode is Mode.OFFLINE


def test_price_against_the_minimum_price_of_the_gtin_or_the_group(store, tmp_path):
    prices = tmp_path / "prices.csv"
    prices.write_text(f"gtin,pg,price\n{MILK},,5000\n,tobacco,14700\n")
    store.load_prices(prices)
    with Checker(None, store) as checker:
        verdict = checker.check(PACK, price=14630)                 # = mrp, but under the tobacco minimum
        assert (verdict.decision, keys(verdict)) == (Decision.REFUSE, ["price_below_min"])
        assert "минимальная цена 147.00 ₽" in verdict.message("ru")
        assert keys(checker.check(PACK, price=14000)) == ["price_not_mrp", "price_below_min"]
        assert keys(checker.check(MILK_SCAN, price=4999)) == ["price_below_min"]
        assert checker.check(MILK_SCAN, price=5000).decision is Decision.SELL
        assert checker.check(MILK_SCAN, price=99999).decision is Decision.SELL   # no maximum outside tobacco
        # A block: its pg comes from the till (its form is not only tobacco's); with pg 3, mrp must match.
        assert keys(checker.check(TOBACCO_BLOCK, price=146300, pg=3)) == []
        assert keys(checker.check(TOBACCO_BLOCK, price=140000, pg=3)) == ["price_not_mrp"]
        # The group's price is compared with whatever unit the code is: a block needs its own GTIN entry.
        assert keys(checker.check(TOBACCO_BLOCK, price=14000, pg=3)) == ["price_not_mrp", "price_below_min"]
        # Without pg, the other groups' rule: below the mrp in the code refuses, above it sells.
        assert keys(checker.check(TOBACCO_BLOCK, price=140000)) == ["price_below_mrp"]
        assert keys(checker.check(TOBACCO_BLOCK, price=150000)) == []


def test_blocked_grey_and_sold(store, tmp_path):
    with Checker(None, store) as checker:
        verdict = checker.check(PACK_BLOCKED, price=14630)
        assert (verdict.decision, keys(verdict)) == (Decision.REFUSE, ["blocked"])
        (tmp_path / "grey.txt").write_text(f"{TOBACCO}\n")
        store.load_grey(tmp_path / "grey.txt")
        checker._status = None
        verdict = checker.check(PACK_BLOCKED, price=14630)
        assert (verdict.decision, keys(verdict)) == (Decision.CANNOT_CHECK, ["online_only"])
        assert verdict.message("ru").startswith("Товар из «серой зоны» заблокирован")
        assert "only an online check can allow" in verdict.message("en")
        # A wrong price refuses a grey blocked code outright; a grey code that is not blocked sells.
        assert checker.check(PACK_BLOCKED, price=1).decision is Decision.REFUSE
        assert checker.check(PACK, price=14630).decision is Decision.SELL
        store.sold.record([parse_code(PACK).cis])
        verdict = checker.check(PACK, price=14630)
        assert (verdict.decision, keys(verdict)) == (Decision.REFUSE, ["sold"])
        store.sold.record([parse_code(PACK_BLOCKED).cis])
        assert keys(checker.check(PACK_BLOCKED)) == ["sold", "online_only"]
        assert checker.check(PACK_BLOCKED).decision is Decision.REFUSE       # sold refuses always


def test_fast_path_and_receipt_path_agree(store, tmp_path):
    (tmp_path / "prices.csv").write_text(f"gtin,price\n{MILK},5000\n")
    store.load_prices(tmp_path / "prices.csv")
    (tmp_path / "grey.txt").write_text(f"{TOBACCO}\n")
    store.load_grey(tmp_path / "grey.txt")
    store.sold.record([parse_code(pack("SoLd123")).cis])
    cases = [(PACK, 14630, None), (PACK, 14000, None), (PACK_BLOCKED, 14630, None), (MILK_SCAN, 4000, None),
             (MILK_SCAN, None, 8), (TOBACCO_BLOCK, 140000, 3), (pack("SoLd123"), 14630, None)]
    with Checker(None, store) as checker:
        single = [checker.check(raw, price=price, pg=pg) for raw, price, pg in cases]
        receipt = checker.check_receipt([c[0] for c in cases], prices=[c[1] for c in cases],
                                        pgs=[c[2] for c in cases])
    assert [(v.decision, keys(v)) for v in single] == [(c.decision, [r.key for r in c.reasons])
                                                       for c in receipt.codes]
    assert [v.decision for v in single] == [Decision.SELL, Decision.REFUSE, Decision.CANNOT_CHECK, Decision.REFUSE,
                                           Decision.SELL, Decision.REFUSE, Decision.REFUSE]
    assert receipt.decision is Decision.REFUSE and receipt.message("en").startswith("Items 2, 4, 6, 7: ")


@pytest.mark.parametrize("price", [-1, 1.5, "14630", True, 1 << 63, float("nan")])
def test_a_bad_price_is_refused_before_anything_is_checked(store, price):
    with FakeLocalModule() as lm, Checker(None, LocalModuleClient(lm.url)) as checker:
        with pytest.raises(PriceError, match="whole, non-negative number of kopecks"):
            checker.check(PACK, price=price)
        with pytest.raises(PriceError):
            checker.check_receipt([PACK, MILK_SCAN], prices=[14630, price])
        assert lm.requests == []
    with Checker(None, store) as checker:
        with pytest.raises(PriceError):
            checker.check(PACK, price=price)


def test_bad_pg_or_price_list_shapes_are_refused(store):
    with Checker(None, store) as checker:
        for pg in (0, -3, "3", 3.0, True):
            with pytest.raises(PriceError, match="product group"):
                checker.check(PACK, price=14630, pg=pg)
        with pytest.raises(PriceError, match="one entry"):
            checker.check_receipt([PACK, MILK_SCAN], prices=[14630])
        with pytest.raises(PriceError, match="one entry"):
            checker.check_receipt([PACK], pgs="3")


def test_local_module_protocol_1_answer_through_the_table(store):
    with FakeLocalModule() as lm:
        cis_blocked, cis_grey = parse_code(MILK_SCAN).cis, parse_code(PACK_BLOCKED).cis
        lm.blocked |= {cis_blocked, cis_grey}
        lm.prices[cis_grey] = {"isGreyGtin": True}
        lm.prices[parse_code(PACK).cis] = {"smp": 15000}
        with Checker(None, LocalModuleClient(lm.url), deadline=0.5) as checker:
            receipt = checker.check_receipt([PACK, PACK_BLOCKED, MILK_SCAN, pack("fine123")],
                                            prices=[14630, 14630, None, 14630])
        assert [[r.key for r in c.reasons] for c in receipt.codes] == [
            ["price_below_min"], ["online_only"], ["blocked"], []]
        assert receipt.codes[1].decision is Decision.CANNOT_CHECK
        assert lm.requests[-1].path == "/api/v1/cis/outCheck"
        assert isinstance(lm.requests[-1].json()["cis_list"][0], str)


def test_local_module_protocol_2_sends_pg_and_reads_results(store):
    with FakeLocalModule() as lm:
        lm.grey.add(parse_code(PACK_BLOCKED).cis)
        lm.blocked.add(parse_code(PACK_BLOCKED).cis)
        lm.prices[parse_code(MILK_SCAN).cis] = {"smp": 9000}       # LM 2.6 answers an smp for everything ...
        lm.prices[parse_code(PACK).cis] = {"smp": 14000, "mrp": 14630}
        client = LocalModuleClient(lm.url, path="/api/v2/cis/outCheck")
        with Checker(None, client, deadline=0.5) as checker:
            receipt = checker.check_receipt([PACK, PACK_BLOCKED, MILK_SCAN], prices=[13000, None, 100],
                                            pgs=[None, None, 8])
        sent = lm.requests[-1].json()["cis_list"]
        assert sent == [{"cis": PACK, "pg": 3}, {"cis": PACK_BLOCKED, "pg": 3}, {"cis": MILK_SCAN, "pg": 8}]
        assert [[r.key for r in c.reasons] for c in receipt.codes] == [
            ["price_not_mrp", "price_below_min"], ["online_only"],
            []]                                                      # ... used for groups 3, 12 and 16 only
        assert receipt.tag_1265.endswith(f"&Inst={lm.inst}&Ver={lm.version}")        # one envelope for all


def test_online_answer_prices(store):
    rng = random.Random(9)
    shoe = make_scan(rng)
    with FakeTrueApi(KEY) as host:
        host.states[PACK] = {"smp": 14700}
        host.states[shoe] = {"groupIds": [2], "smp": 300000}
        with Checker(TrueApiClient(KEY, hosts=[host.url]), store, deadline=1.0) as checker:
            verdict = checker.check(PACK, price=14630)
            assert (verdict.mode, keys(verdict)) == (Mode.ONLINE, ["price_below_min"])
            assert checker.check(PACK, price=14700).decision is Decision.REFUSE       # != the code's mrp
            assert keys(checker.check(shoe, price=299999)) == ["price_below_min"]
            assert checker.check(shoe, price=300000).decision is Decision.SELL
            assert checker.check(PACK_BLOCKED).decision is Decision.SELL               # online decides
            sent = host.requests[-1].json()["codes"]
    assert sent == [PACK_BLOCKED]


def test_the_table_functions_directly():
    assert offline_table(sold=False, blocked=False, grey=True) == ()
    assert [r.key for r in offline_table(sold=True, blocked=True, grey=True, price=1, pg=3, mrp=2)] == [
        "sold", "online_only", "price_not_mrp"]
    assert [r.key for r in price_reasons(100, 16, None, 150)] == ["price_below_min"]
    assert [r.key for r in price_reasons(100, 16, 120, None)] == ["price_below_mrp"]
    assert price_reasons(None, 3, 100, 100) == () and price_reasons(100, 3, None, None) == ()


def test_cli_check_with_prices(store, tmp_path):
    from click.testing import CliRunner

    from lmcz_fast.cli import main

    store.close()
    runner = CliRunner()
    db = str(tmp_path / "db")
    ok = runner.invoke(main, ["check", "--db", db, PACK, "--price", "14630"])
    assert ok.exit_code == 0, ok.output
    refused = runner.invoke(main, ["check", "--db", db, PACK, MILK_SCAN, "--price", "15000", "--price", "1",
                                   "--lang", "en"])
    assert refused.exit_code == 1 and "146.30 RUB" in refused.output
    # usage errors are `check`'s setup errors (exit 4), the price named in words
    bad = runner.invoke(main, ["check", "--db", db, PACK, "--price", "146.30"])
    assert bad.exit_code == 4 and "'146.30' is not a valid integer" in bad.output
    mismatch = runner.invoke(main, ["check", "--db", db, PACK, MILK_SCAN, "--price", "1"])
    assert mismatch.exit_code == 4 and "one --price per code" in mismatch.output
