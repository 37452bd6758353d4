"""The in-process till checker against a plain model (issue 24's faster scan path): for every state of a real store
(blocked codes, sold codes, grey GTINs, minimum prices) and every scan, with and without a sale price and a product
group, `Checker(None, bl).check` and `check_receipt` decide exactly what the offline refusal table says when it is
computed from plain sets (no store or checker code): a sold or blocked code is never "may be sold". Tag 1265
names a fresh request id each check and the version the answer came from."""

from __future__ import annotations

import re
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmcz_fast import synth
from lmcz_fast._codes import readings_of
from lmcz_fast.checker import Checker, Decision
from lmcz_fast.receipt import instance_uuid, version_uuid
from lmcz_fast.store import Blocklist

CODES = synth.generate(48, seed=1265)
SCANS = [c.scan for c in CODES]
IDENTITIES = [c.identity for c in CODES]
GTINS = sorted({c.gtin for c in CODES})
TAG = re.compile(r"UUID=([0-9a-f-]{36})&Time=(\d+)&Inst=([0-9a-f-]{36})&Ver=([0-9a-f-]{36})")


def _model(state: dict, raw: str, price: int | None, pg: int | None) -> tuple[Decision, list[str]]:
    """The offline refusal table (docs/protocol.md) from plain sets: sold; blocked (online only if grey); price."""
    code = readings_of(raw)[0]
    keys = []
    if code.identity in state["sold"]:
        keys.append("sold")
    if code.identity in state["blocked"]:
        keys.append("online_only" if code.gtin in state["grey"] else "blocked")
    if price is not None:
        group = pg if pg is not None else (3 if code.kind != "gs1" else None)
        smp = state["prices"].get(code.gtin)
        if smp is None and group is not None and (state["prices"] or state["groups"]):
            smp = state["groups"].get(group)
        mrp = code.mrp
        if group == 3:
            keys += ["price_not_mrp"] if mrp is not None and price != mrp else []
            keys += ["price_below_min"] if smp is not None and price < smp else []
        else:
            keys += ["price_below_min"] if smp is not None and price < smp else []
            keys += ["price_below_mrp"] if mrp is not None and price < mrp else []
    if not keys:
        return Decision.SELL, keys
    return (Decision.CANNOT_CHECK if set(keys) == {"online_only"} else Decision.REFUSE), keys


states = st.fixed_dictionaries({
    "blocked": st.sets(st.sampled_from(IDENTITIES), min_size=1, max_size=20),
    "sold": st.sets(st.sampled_from(IDENTITIES), max_size=15),
    "grey": st.sets(st.sampled_from(GTINS), max_size=10),
    "prices": st.dictionaries(st.sampled_from(GTINS), st.integers(0, 30000), max_size=10),
    "groups": st.dictionaries(st.sampled_from([3, 16]), st.integers(0, 30000), max_size=2),
})


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(state=states, price=st.sampled_from([None, 0, 14630, 20000]), pg=st.sampled_from([None, 3, 16]))
def test_in_process_checks_decide_as_the_plain_model(tmp_path_factory, state, price, pg):
    path = tmp_path_factory.mktemp("checker-model") / "db"
    with Blocklist.create(path) as bl:
        bl.load([sorted(state["blocked"])])
        rows = [f"{g},,{p}" for g, p in state["prices"].items()] + [f",{g},{p}" for g, p in state["groups"].items()]
        if rows:
            bl.load_prices([["gtin,pg,price", *rows]])
        if state["grey"]:
            bl.load_grey([sorted(state["grey"])])
        if state["sold"]:
            bl.record_sold(sorted(state["sold"]))
        info = bl.info()
        ver = version_uuid(info["instance_id"], info["version"])
        inst = instance_uuid(info["instance_id"])
        with Checker(None, bl) as checker:
            ids = set()
            for raw in SCANS:
                expected = _model(state, raw, price, pg)
                verdict = checker.check(raw, price=price, pg=pg)
                assert (verdict.decision, [r.key for r in verdict.reasons]) == expected, raw
                assert verdict.codes[0].cis == readings_of(raw)[0].cis
                found = TAG.fullmatch(verdict.tag_1265 or "")
                assert found and (found[3], found[4]) == (inst, ver)
                assert uuid.UUID(found[1]).version == 4 and str(uuid.UUID(found[1])) == found[1]
                ids.add(found[1])
            assert len(ids) == len(SCANS)                  # a request id per check
            receipt = checker.check_receipt(SCANS, prices=[price] * len(SCANS), pgs=[pg] * len(SCANS))
            for raw, code in zip(SCANS, receipt.codes):
                assert (code.decision, [r.key for r in code.reasons]) == _model(state, raw, price, pg), raw
