"""The compiled check answers (lmcz_fast/_answer.pyx) are byte for byte what the Python encoder wrote.

The oracle is the Python way the service built them before (service/answers.py `reference_v1`/`reference_v2`: a
dict per code, an envelope, `json.JSONEncoder.encode`; the audit records as tuples formatted by `audit._format`):

- over generated verdicts (any text in every string field, big and negative numbers, NaN and infinite ages, block
  details of any JSON type, unreadable scans, product groups, several database versions), both protocols;
- over generated requests to a real store holding every kind and state of code (free, blocked by code with its
  details, blocked by GTIN, sold, a code carrying its maximum retail price, a GTIN's and a group's minimum price,
  a grey GTIN, a scan whose tail AI was cut, unreadable items of every type), both protocols, GET and POST, one and
  many codes: a second `LocalModule` over the same store answers through the oracle, with the same request ids and
  clock, and the two answers and the two audit logs must be the same bytes (but `dbAge`, the age at each check by
  the compiled check's own clock, compared as a number);
- over a real store's compiled verdicts (`Snapshot.check_batch`) encoded from their arrays, against the same
  verdicts as `Verdict` objects through the reference, `dbAge` included.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time
import uuid
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from lmcz_fast._answer import Answers, Envelope, cis_list, json_text, request_id
from lmcz_fast.audit import AuditLog, _format, line_ends
from lmcz_fast.service import LocalModule, ServiceConfig
from lmcz_fast.service.config import Token
from lmcz_fast.service.organisations import Organisation
from lmcz_fast.service.answers import ERROR_UNREADABLE, Unreadable, reference_v1, reference_v2
from lmcz_fast.service.responses import encode_json
from lmcz_fast.store import Blocklist
from lmcz_fast.store.records import Block, Verdict

import _answer_oracle as oracle
from _service_support import GS, auth_header, gtin_with_check, make_identity, make_scan

# -- over generated verdicts -----------------------------------------------------------------------------------

#: Every code point, lone surrogates included (a JSON body may carry "\ud800"), and the characters JSON escapes.
TEXT = st.text(st.characters(exclude_categories=()), max_size=40) | st.sampled_from(
    ["", '"', "\\", "\x1d", "\x7f", "\x00\x1f", "\b\f\n\r\t", "\u2028", "\U0001f600", "\ud800", "кириллица"])
NUMBER = st.integers() | st.integers(min_value=-(2 ** 70), max_value=2 ** 70)
FLOAT = st.floats(allow_nan=True, allow_infinity=True)
SCALAR = st.none() | st.booleans() | TEXT | NUMBER | FLOAT
JSON_VALUE = st.recursive(SCALAR, lambda inner: st.lists(inner, max_size=3)
                          | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=6)

BLOCKS = st.none() | st.builds(Block, authority=JSON_VALUE, reason=JSON_VALUE, since=JSON_VALUE, source=SCALAR,
                               scope=st.sampled_from(["code", "gtin"]) | TEXT)
VERDICTS = st.builds(
    Verdict, blocked=st.booleans(), cis=TEXT, gtin=TEXT, serial=TEXT, identity=TEXT, block=BLOCKS,
    db_version=st.sampled_from([0, 1, 7, 2 ** 40]), db_updated_at=st.none() | FLOAT,
    db_age=st.none() | FLOAT | st.sampled_from([0.0, -0.0, 0.0005, 1234.5678, 72 * 3600.0]),
    instance_id=st.sampled_from(["inst-a", "inst-b", "d1b0a8e2-0d7a-4c43-9a43-2f0f5b1c9e11"]),
    mrp=st.none() | NUMBER, smp=st.none() | NUMBER, grey_gtin=st.booleans(), sold=st.booleans())
UNREADABLES = st.builds(Unreadable, index=st.integers(0, 1000), raw=TEXT | st.text(min_size=60, max_size=90),
                        reason=TEXT, message=TEXT)
ANSWERS = st.lists(VERDICTS | UNREADABLES, min_size=1, max_size=6).filter(
    lambda items: any(isinstance(v, Verdict) for v in items))


def _uuids(instance_id: str, db_version: int) -> tuple[str, str]:
    return f"inst:{instance_id}\"\\", f"ver:{db_version}"


def _tagged(outcome: str, tag: str) -> str:
    """An outcome as a fronted check answered locally records it (service/fronting.py `_TaggedAudit.record`)."""
    return outcome if not tag else tag if outcome == "ok" else f"{outcome} {tag}"


TAGS = st.sampled_from(["", "local:timeout", "local:reset"])


def _audit_line(req_id: str, req_ms: int, client: str | None, version: int | None, outcome: str,
                codes: list[tuple[str, bool | None]], who: str | None) -> str:
    return _format((req_id, req_ms, client, version, outcome, tuple(codes), who))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(answers=ANSWERS, grey=st.booleans(), freshness=st.sampled_from(["ready", "stale"]),
       req_ms=st.integers(0, 2 ** 45), client=st.none() | TEXT, who=st.none() | TEXT, audit=st.booleans(),
       tag=TAGS)
def test_protocol_1_answer_is_the_reference_bytes(answers: list[Any], grey: bool, freshness: str, req_ms: int,
                                                  client: str | None, who: str | None, audit: bool,
                                                  tag: str) -> None:
    req_id = str(uuid.uuid4())
    first = next(v for v in answers if isinstance(v, Verdict))
    inst, version = _uuids(first.instance_id, first.db_version)
    expected, codes = reference_v1(answers, req_id, req_ms, inst, version, grey, freshness)
    c, tail = line_ends(client, who) if audit else (None, "")
    body, line, checked, blocked = Answers(Unreadable, ERROR_UNREADABLE).v1(
        answers, Envelope(req_id, req_ms, inst, version, freshness, grey, c, tail, tag))
    assert body == expected
    outcome = _tagged("partial" if any(isinstance(v, Unreadable) for v in answers) else "ok", tag)
    assert line == (_audit_line(req_id, req_ms, client, first.db_version, outcome, codes, who) if audit else None)
    assert checked == sum(isinstance(v, Verdict) for v in answers)
    assert blocked == sum(v.blocked for v in answers if isinstance(v, Verdict))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(answers=ANSWERS, data=st.data(), grey=st.booleans(), req_ms=st.integers(0, 2 ** 45),
       client=st.none() | TEXT, who=st.none() | TEXT, audit=st.booleans(), tag=TAGS)
def test_protocol_2_answer_is_the_reference_bytes(answers: list[Any], data: st.DataObject, grey: bool,
                                                  req_ms: int, client: str | None, who: str | None,
                                                  audit: bool, tag: str) -> None:
    pgs = data.draw(st.lists(st.none() | st.integers(1, 70000), min_size=len(answers), max_size=len(answers)))
    ids = os.urandom(16 * (len(answers) - 1))
    req_id = str(uuid.uuid4())
    req_ids = [req_id] + [str(uuid.UUID(bytes=ids[16 * i:16 * i + 16], version=4)) for i in range(len(answers) - 1)]
    known = next(v for v in answers if isinstance(v, Verdict))
    expected, records = reference_v2(answers, pgs, req_ids, req_ms, _uuids, grey, "ready")
    inst, version = _uuids(known.instance_id, known.db_version)
    c, tail = line_ends(client, who) if audit else (None, "")
    body, lines, checked, blocked = Answers(Unreadable, ERROR_UNREADABLE).v2(
        answers, pgs, ids, Envelope(req_id, req_ms, inst, version, "ready", grey, c, tail, tag), 99, _uuids)
    assert body == expected
    versions = [99 if isinstance(v, Unreadable) else v.db_version for v in answers]
    assert lines == ("".join(_audit_line(rid, req_ms, client, ver, _tagged(outcome, tag), codes, who)
                             for (rid, outcome, codes), ver in zip(records, versions)) if audit else "")
    assert checked == sum(isinstance(v, Verdict) for v in answers)
    assert blocked == sum(v.blocked for v in answers if isinstance(v, Verdict))


#: Ages one after the other as a service's requests see them: close to each other (a request's age is the last
#: one's plus its interval), near the halves of a millisecond where the rounding turns, of either sign, zero.
AGE_STEPS = st.lists(st.sampled_from([0.0, 1e-7, 0.00001, 0.0001, 0.00048, 0.00049, 0.0005, 0.00051, 0.003])
                     | st.floats(-0.002, 0.002), min_size=1, max_size=25)
AGE_START = st.sampled_from([0.0, -0.0, 0.0005, 0.0004999, 0.0015, 1234.5675, 1234.5685, -3.2105, 72 * 3600.0,
                             1e9 - 0.01, 1e12 + 0.25]) | st.floats(-1e6, 1e6)


@settings(max_examples=200, deadline=None)
@given(start=AGE_START, steps=AGE_STEPS, data=st.data())
def test_one_encoder_over_many_requests_is_the_reference_bytes(start: float, steps: list[float],
                                                               data: st.DataObject) -> None:
    """The service keeps one encoder for all its requests: what it remembers of the last one (the age's text, the
    request time's, the instance's and the version's pieces, the freshness) must never leak into the next."""
    encoder = Answers(Unreadable, ERROR_UNREADABLE)
    age = start
    insts = ["inst-a", "inst-b"]
    for step in steps:
        age += step
        verdict = Verdict(blocked=False, cis="0104600439931256" "21ABC", gtin="04600439931256", serial="ABC",
                          identity="x", block=None, db_version=data.draw(st.sampled_from([3, 4])),
                          db_updated_at=None, db_age=float(age), instance_id="inst-a", mrp=None, smp=None,
                          grey_gtin=False, sold=False)
        req_ms = data.draw(st.sampled_from([1_700_000_000_000, 1_700_000_000_001, 0, 7]))
        # equal texts as new objects, and other texts: the pieces are remembered by the objects they came from
        inst = "".join(data.draw(st.sampled_from(insts)))
        version = data.draw(st.sampled_from(["ver-1", "ver-2", "".join(["ver-", "1"])]))
        freshness = data.draw(st.sampled_from(["ready", "stale", "".join(["rea", "dy"])]))
        req_id = str(uuid.uuid4())
        expected, _ = reference_v1([verdict], req_id, req_ms, inst, version, False, freshness)
        body, *_ = encoder.v1([verdict], Envelope(req_id, req_ms, inst, version, freshness, False, None, "", ""))
        assert body == expected, (age, body, expected)
        assert json.loads(body)["dbAge"] == round(age, 3)


@given(value=JSON_VALUE)
@settings(max_examples=300, deadline=None)
def test_a_value_is_written_as_the_json_encoder_writes_it(value: Any) -> None:
    assert json_text(value) == encode_json(value)


def test_request_ids_are_uuid4_of_their_bytes() -> None:
    for _ in range(200):
        raw = os.urandom(16)
        assert request_id(raw) == str(uuid.UUID(bytes=raw, version=4))
    with pytest.raises(ValueError):
        request_id(b"short")


def test_an_answer_without_a_checked_code_is_refused_not_written() -> None:
    """The service refuses such a request whole (400 invalid_code) before encoding; the encoder says so too."""
    encoder = Answers(Unreadable, ERROR_UNREADABLE)
    head = Envelope("r", 1, "i", "v", "ready", False)
    with pytest.raises(ValueError):
        encoder.v1([Unreadable(0, "x", "invalid", "m")], head)
    with pytest.raises(ValueError):
        encoder.v2([Unreadable(0, "x", "invalid", "m")], [None], b"", head, 1, _uuids)


# -- over generated requests to a real store -------------------------------------------------------------------


class _Stream:
    """`os.urandom` as a fixed byte stream, so that two modules draw the same request ids in the same order."""

    def __init__(self) -> None:
        self.data = bytes(range(256)) * 64
        self.at = 0

    def __call__(self, size: int) -> bytes:
        out = self.data[self.at:self.at + size]
        self.at = (self.at + size) % 4096
        return out + self.data[:size - len(out)]


G_BLOCKED = gtin_with_check("4607777777777")
G_PRICED = gtin_with_check("0460043993125")
G_GREY = gtin_with_check("4601234567890")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[str]]]:
    import random

    rng = random.Random(24)
    root = tmp_path_factory.mktemp("answer-store")
    blocked = [make_identity(rng) for _ in range(6)]
    free = [make_identity(rng) for _ in range(6)]
    sold = [make_identity(rng) for _ in range(2)]
    path = root / "store.db"
    with Blocklist.create(path) as bl:
        bl.load([[code for code in blocked[:3]]], block={"authority": "FNS", "reason": "fake \"batch\"",
                                                         "since": "2026-11-01"})
        bl.apply_delta(to_version=bl.get_meta("version") + 1, add=blocked[3:], add_gtins=[G_BLOCKED],
                       add_records=[f"min_price {G_PRICED} 14630", "group_min_price 3 12000",
                                    "group_min_price 8 12345", f"grey_gtin {G_GREY}"])
        bl.mark_synced()
        bl.set_meta(grey_list_enabled=True)
        bl.record_sold(sold)
    scans = {
        "free": [make_scan(code, rng) for code in free[:3]] + free[3:],
        "blocked": [make_scan(code, rng) for code in blocked[:4]] + blocked[4:],
        "blocked_gtin": [f"01{G_BLOCKED}21ABCdef!%&12", f"01{G_BLOCKED}21x\"y%z"],
        "sold": [make_scan(sold[0], rng), sold[1]],
        "priced": [f"01{G_PRICED}21Ab3!x_{GS}93dGVz", f"{G_PRICED}aB3!x_-ACW.Ck<>"],
        "grey": [f"01{G_GREY}21Ab3!x_{GS}93dGVz", f"{G_GREY}aB3!x_-AAABCk<>"],
        "mrp": [f"01{G_GREY}21aB3!x_-{GS}8005125000{GS}93AbCd"],
        "tail_cut": [f"{free[0]}{GS}9", f"{blocked[0]}{GS}93A", f"{free[1]}{GS}80"],
        "unreadable": ["", "not a code", "01234", "кириллица", "\ud800", "\x00\x1d\"\\", "x" * 300],
    }
    return path, scans


#: `dbAge` is the age at the moment of the check, by the compiled check's own clock (not `time.time`, which the test
#: fixes): the two modules' ages may differ by the time between their two checks, and are compared as numbers.
_AGE = re.compile(rb'"dbAge":(-?[0-9.e+-]+|null)')


def _same_age(new: bytes, old: bytes, slack: float = 0.0) -> bool:
    """The same ages, within 0.5 s plus `slack`: the real time the test has run (the compiled check's clock moves
    on while the reference's stands still; a loaded machine can stall a test for seconds)."""
    ages = [[None if a == b"null" else float(a) for a in _AGE.findall(body)] for body in (new, old)]
    return len(ages[0]) == len(ages[1]) and all(
        (a is None and b is None) or (a is not None and b is not None and abs(a - b) < 0.5 + slack)
        for a, b in zip(*ages))


ITEM_KINDS = ["free", "blocked", "blocked_gtin", "sold", "priced", "grey", "mrp", "tail_cut", "unreadable"]


@st.composite
def requests(draw: st.DrawFn, scans: dict[str, list[str]]) -> tuple[str, str, list[Any]]:
    version = draw(st.sampled_from(["v1", "v2"]))
    method = draw(st.sampled_from(["GET", "POST"]))
    count = draw(st.sampled_from([1, 1, 2, 5, 70]))
    items: list[Any] = []
    for _ in range(count):
        kind = draw(st.sampled_from(ITEM_KINDS))
        item: Any = draw(st.sampled_from(scans[kind]))
        if method == "POST":
            if draw(st.integers(0, 9)) == 0:
                item = draw(st.sampled_from([7, None, 1.5, True, ["x"]]))
            elif version == "v2" and draw(st.booleans()):
                item = {"cis": item} | ({"pg": draw(st.sampled_from([3, 8, 16]))} if draw(st.booleans()) else {})
        items.append(item)
    return version, method, items


def _request(items: list[Any], version: str, method: str) -> tuple[bytes, bytes, bytes | None, bytes]:
    path = f"/api/{version}/cis/outCheck".encode()
    if method == "GET":
        return b"GET", path, "&".join("cis=" + quote(item, safe="", errors="surrogatepass") for item in items).encode(), b""
    return b"POST", path, None, json.dumps({"cis_list": items}).encode()


@pytest.mark.parametrize("organisations", [False, True], ids=["one-organisation", "organisations"])
def test_service_answers_are_the_reference_bytes_over_every_kind_of_code(
        store: tuple[Path, dict[str, list[str]]], tmp_path: Path, organisations: bool) -> None:
    """Also when several organisations are served (each its own `inst`/`version`, the audit naming its INN)."""
    path, scans = store
    config = ServiceConfig(user="till", password="s3cret-Pa55", tokens=(Token(b"t0ken-24", "front \"desk\""),))
    headers = {False: auth_header().encode(), True: b"Token t0ken-24"}
    if organisations:
        config = dataclasses.replace(config, organisations=(
            Organisation("7707083893", "Org \"A\"", "orga", "pa55-A", (Token(b"org-a-tok", "a desk"),)),
            Organisation("500100732259", "Org B", "orgb", "pa55-B")))
        headers = {False: auth_header("orgb", "pa55-B").encode(), True: b"Token org-a-tok"}
    now = time.time()
    started = time.monotonic()
    with Blocklist.open(path, readonly=False) as bl, AuditLog(tmp_path / "new", fsync=False) as new_audit, \
            AuditLog(tmp_path / "old", fsync=False) as old_audit:
        if organisations:       # each organisation's own grey switch (the store's is on): A's on, B's off
            bl.set_meta(**{"organisation_grey_list:7707083893": True})
        new = LocalModule(bl, config, audit=new_audit, clock=lambda: now)
        old = LocalModule(bl, config, audit=old_audit, clock=lambda: now)
        oracle.install(old)
        stream = _Stream()
        seen: set[tuple[str, str, int]] = set()
        refused_unreadable: list[str] = []
        # A request of several slices on each protocol, every time (the oracle answers protocol 1 only past one
        # slice of codes, and the generated requests may hold none such in a run)
        kinds = [scans[ITEM_KINDS[i % len(ITEM_KINDS)]] for i in range(70)]
        big = [kind[i // len(ITEM_KINDS) % len(kind)] for i, kind in enumerate(kinds)]

        @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
        @given(request=requests(scans), client=st.none() | st.sampled_from([b"9999078900001234", b"till \"7\""]),
               token=st.booleans())
        @example(request=("v1", "POST", big), client=b"9999078900001234", token=False)
        @example(request=("v2", "POST", big), client=None, token=True)
        def one_request(request: tuple[str, str, list[Any]], client: bytes | None, token: bool) -> None:
            version, method, items = request
            if method == "GET" and not all(isinstance(i, str) for i in items):
                return
            answers = []
            for module in (new, old):
                module.activity.refusals.clear()
                stream.at = 0
                with mock.patch.object(os, "urandom", stream), mock.patch.object(time, "time", lambda: now):
                    m, p, q, body = _request(items, version, method)
                    answer = module.handle(m, p, q, body, headers[token], client, b"application/json")
                    if hasattr(answer, "run"):
                        answer = answer.run()
                answers.append((answer.status, answer.body))
            assert _same_age(answers[0][1], answers[1][1], time.monotonic() - started), (answers, version, items)
            assert (answers[0][0], _AGE.sub(b'"dbAge":AGE', answers[0][1])) == \
                (answers[1][0], _AGE.sub(b'"dbAge":AGE', answers[1][1])), (version, method, items)
            seen.add((version, method, answers[0][0]))
            # The status page's refusals: the same codes, and for an unreadable scan the same text (check's own error)
            refusals = [[(r.code, r.reason) for r in module.activity.refusals] for module in (new, old)]
            assert refusals[0] == refusals[1], (version, method, items)
            refused_unreadable.extend(why for _, why in refusals[0] if why.startswith("invalid_code: "))

        calls = dict(oracle.CALLS)
        one_request()
        assert oracle.CALLS["v1"] > calls["v1"] and oracle.CALLS["v2"] > calls["v2"]
        new_audit.flush()
        old_audit.flush()
        assert new.metrics.codes_checked == old.metrics.codes_checked > 0
        assert new.metrics.codes_blocked == old.metrics.codes_blocked > 0
        assert new.metrics.codes_unreadable == old.metrics.codes_unreadable > 0
        assert refused_unreadable
    new_lines = "".join(p.read_text() for p in sorted((tmp_path / "new").glob("audit-*.jsonl")))
    old_lines = "".join(p.read_text() for p in sorted((tmp_path / "old").glob("audit-*.jsonl")))
    assert new_lines == old_lines and new_lines.count("\n") > 100
    assert ('"i":"7707083893"' in new_lines and '"i":"500100732259"' in new_lines) == organisations
    assert {(v, m) for v, m, s in seen if s == 200} == {("v1", "GET"), ("v1", "POST"), ("v2", "GET"),
                                                         ("v2", "POST")}


def test_compiled_verdicts_are_written_as_their_verdicts_are(store: tuple[Path, dict[str, list[str]]]) -> None:
    """Codes written from a `CheckBatch`'s arrays (and its exact-path `Verdict`s) are the bytes the reference
    writes for the same verdicts as `Verdict` objects (`CheckBatch.verdict`), `dbAge` included, in several
    batches of one request, on both protocols."""
    path, scans = store
    pool = [scan for kind in ITEM_KINDS for scan in scans[kind]] + [7, None, "x" * 600]

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(items=st.lists(st.sampled_from(pool), min_size=1, max_size=12),
           pgs=st.lists(st.sampled_from([None, 3, 8, 16]), min_size=12, max_size=12),
           cut=st.integers(1, 6), grey=st.booleans(), audit=st.booleans())
    def one(items: list[Any], pgs: list[int | None], cut: int, grey: bool, audit: bool) -> None:
        pgs = pgs[:len(items)]
        with Blocklist.open(path) as bl, bl.snapshot() as view:
            batches = [view.check_batch([i if isinstance(i, str) and len(i) <= 512 else None
                                         for i in items[start:start + cut]], pgs[start:start + cut],
                                        tail_cut=True)
                       for start in range(0, len(items), cut)]
        unreadable = {}
        verdicts: list[Any] = []
        for number, batch in enumerate(batches):
            for j in range(len(batch)):
                index = number * cut + j
                if j in batch.errors:
                    unreadable[index] = Unreadable(index, str(items[index])[:64], "invalid", f"cis_list[{index}] ?")
                    verdicts.append(unreadable[index])
                else:
                    verdicts.append(batch.verdict(j))
        if not any(isinstance(v, Verdict) for v in verdicts):
            return
        first = next(v for v in verdicts if isinstance(v, Verdict))
        inst, version = _uuids(first.instance_id, first.db_version)
        c, tail = line_ends("till", None) if audit else (None, "")
        head = Envelope("0f0e0d0c-0b0a-4908-8706-050403020100", 1796661957882, inst, version, "ready", grey, c, tail)
        encoder = Answers(Unreadable, ERROR_UNREADABLE)
        body, line, checked, blocked = encoder.v1_batches(batches, unreadable, head)
        expected, codes = reference_v1(verdicts, head.req_id, head.req_ms, inst, version, grey, "ready")
        assert body == expected
        outcome = "partial" if unreadable else "ok"
        assert line == (_audit_line(head.req_id, head.req_ms, "till", first.db_version, outcome, codes, None)
                        if audit else None)
        assert (checked, blocked) == (len(verdicts) - len(unreadable),
                                      sum(v.blocked for v in verdicts if isinstance(v, Verdict)))
        ids = os.urandom(16 * (len(items) - 1))
        req_ids = [head.req_id] + [str(uuid.UUID(bytes=ids[16 * i:16 * i + 16], version=4))
                                   for i in range(len(items) - 1)]
        body, lines, _, _ = encoder.v2_batches(batches, unreadable, pgs, ids, head, 5, _uuids)
        expected, records = reference_v2(verdicts, pgs, req_ids, head.req_ms, _uuids, grey, "ready")
        assert body == expected
        versions = [5 if isinstance(v, Unreadable) else v.db_version for v in verdicts]
        assert lines == ("".join(_audit_line(rid, head.req_ms, "till", ver, outcome, codes, None)
                                 for (rid, outcome, codes), ver in zip(records, versions)) if audit else "")

    one()


# -- the compiled reader of a check body (`_answer.cis_list`) ------------------------------------------------------

_JSON_DECODER = json.JSONDecoder(strict=False)      # what `Shared.json_body` decodes with


def _json_codes(body: bytes) -> Any:
    """What the service read of `body` through `json` (`Shared.json_body`, then `["cis_list"]`), or "refused"."""
    try:
        data = _JSON_DECODER.decode(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return "refused"
    return data.get("cis_list") if isinstance(data, dict) else "refused"


_BODY_TEXT = st.text(st.characters(codec="utf-8") | st.sampled_from('"\\/\x1d\x00\x7f\t'), max_size=12)


@settings(max_examples=400, deadline=None)
@given(codes=st.lists(_BODY_TEXT, max_size=5), ascii_only=st.booleans(),
       indent=st.sampled_from([None, 0, 1, "\t"]),
       separators=st.sampled_from([None, (",", ":"), (" , ", " :\n ")]))
def test_cis_list_reads_what_json_reads(codes: list[str], ascii_only: bool, indent: Any, separators: Any) -> None:
    """A body the compiled reader takes gives the list `json` gives; one it declines (None) goes to `json`."""
    body = json.dumps({"cis_list": codes}, ensure_ascii=ascii_only, indent=indent,
                      separators=separators).encode("utf-8", "surrogatepass")
    got = cis_list(body)
    if got is not None:
        assert got == _json_codes(body) and all(type(code) is str for code in got)
    elif ascii_only and all(all(ord(c) < 128 for c in code) for code in codes):
        pytest.fail(f"an ASCII body of strings was declined: {body!r}")


@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_cis_list_takes_no_body_json_reads_otherwise(data: st.DataObject) -> None:
    """Bytes changed anywhere in a body: what the compiled reader still takes, `json` reads the same."""
    body = bytearray(json.dumps({"cis_list": ["0104600439931256JgXJ5.T\x1d91ABCD\x1d92abc=", 'q"\\/']}).encode())
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(body)))
        byte = data.draw(st.integers(0, 255) | st.sampled_from(list(b' \t\n"\\u[]{},:0aF/')))
        if data.draw(st.booleans()) and at < len(body):
            del body[at]
        else:
            body.insert(at, byte)
    got = cis_list(bytes(body))
    assert got is None or got == _json_codes(bytes(body)), bytes(body)


@pytest.mark.parametrize("body", [
    b'{"cis_list": ["a"], "x": 1}', b'{"cis_list": ["a"], "cis_list": ["b"]}', b'{"cis_list": ["a", 1]}',
    b'{"cis_list": [null]}', b'{"cis_list": ["\\u00e9"]}', b'{"cis_list": ["\\ud834\\udd1e"]}',
    b'{"cis_list": ["\xc3\xa9"]}', b'{"cis_list": ["a\tb"]}', b'{"cis_list": ["a"]', b'{"cis_list": ["a"]} x',
    b'{"cis_list": ["a",]}', b'{"cis_list": ["\\x"]}', b'{"cis_list": "a"}', b'["a"]', b'', b'{"CIS_LIST": ["a"]}',
    b'{"cis_list": [["a"]]}', b'{"cis_list": [{"cis": "a"}]}'])
def test_cis_list_declines_what_only_json_may_read(body: bytes) -> None:
    """Another key, a non-string item, a non-ASCII character, a raw control character, a malformed body: the
    service reads it with `json`, whose answer (or typed error: bad_json, bad_request, invalid_code) stands."""
    assert cis_list(body) is None


def test_cis_list_reads_whitespace_and_escapes() -> None:
    assert cis_list(b' \r\n{ "cis_list" :\t[ "a\\u001db" , "\\"\\\\\\/\\b\\f\\n\\r\\t\\u0041" ] }\n') == \
        ["a\x1db", '"\\/\b\f\n\r\tA']
    assert cis_list(b'{"cis_list":[]}') == []
