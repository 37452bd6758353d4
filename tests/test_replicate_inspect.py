"""`replicate --inspect` and `--mapping FILE`: a source in a layout we do not know (real pouchdb-server), the
proposed mapping, replication with it, a wrong mapping held with its reason; the mapping file's reader; the value
classifier against a plain model (hypothesis)."""

from __future__ import annotations

import http.server
import json
import os
import random
import string
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from _couch_support import Couch, needs_pouchdb
from _service_support import gtin_with_check, make_identity
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from lmcz_fast import replicate as repl
from lmcz_fast.cli import main
from lmcz_fast.replicate.inspection import Sample, readings
from lmcz_fast.replicate.inspection.propose import propose
from lmcz_fast.store import Blocklist

EXAMPLES = int(os.environ.get("LMCZ_PROPERTY_EXAMPLES", "12"))


def _gtin(rng: random.Random) -> str:
    return gtin_with_check("0" + "".join(rng.choice(string.digits) for _ in range(12)))


def _not_gtin(rng: random.Random) -> str:
    """14 digits whose check digit is wrong: looks like a GTIN, is not one."""
    while True:
        body = "".join(rng.choice(string.digits) for _ in range(13))
        right = gtin_with_check(body)
        wrong = body + str((int(right[-1]) + rng.randrange(1, 10)) % 10)
        return wrong


class Layout:
    """A source in a layout unlike our default guess: other database names, nested fields, decoys."""

    def __init__(self, rng: random.Random) -> None:
        self.codes = sorted({make_identity(rng) for _ in range(600)})
        self.gtins = sorted({_gtin(rng) for _ in range(90)})
        self.grey = sorted({_gtin(rng) for _ in range(40)})
        self.gtin_prices = {_gtin(rng): rng.randrange(5_000, 90_000) for _ in range(50)}
        self.group_prices = {g: rng.randrange(5_000, 90_000) for g in (3, 5, 16)}
        self.rng = rng

    def fill(self, couch: Couch) -> None:
        rng = self.rng
        couch.create("km_stoplist", "items_stop", "floor_prices", "grey_items", "settings")
        # codes: nested, a numeric-looking document id, a 14-digit decoy that is not a GTIN, a counter
        couch.put_docs("km_stoplist", [{"_id": f"{i:014d}", "payload": {"mark": code, "hint": _not_gtin(rng)},
                                        "n": i} for i, code in enumerate(self.codes)])
        couch.put_docs("items_stop", [{"_id": f"x{i}", "item": {"gtin": g}, "barcode": _not_gtin(rng), "seq": i + 1}
                                      for i, g in enumerate(self.gtins)])
        docs = [{"_id": f"p{i}", "goods": {"gtin": g}, "pg": rng.choice([3, 5, 16]), "minPrice": price, "rev": 1}
                for i, (g, price) in enumerate(self.gtin_prices.items())]
        docs += [{"_id": f"g{g}", "goods": {"gtin": ""}, "pg": g, "minPrice": price, "rev": 1}
                 for g, price in self.group_prices.items()]
        couch.put_docs("floor_prices", docs)
        couch.put_docs("grey_items", [{"_id": f"y{i}", "code": g, "since": 1_700_000_000 + i}
                                      for i, g in enumerate(self.grey)])
        couch.put_docs("settings", [{"_id": "main", "interval": 300, "enabled": True}])

    def records(self) -> set[str]:
        return ({f"min_price {g} {p}" for g, p in self.gtin_prices.items()}
                | {f"group_min_price {g} {p}" for g, p in self.group_prices.items()}
                | {f"grey_gtin {g}" for g in self.grey})


@pytest.fixture()
def unknown(tmp_path):
    layout = Layout(random.Random(2026))
    with Couch(tmp_path / "couch") as couch:
        layout.fill(couch)
        yield couch, layout


def _run(*args: str) -> tuple[int, str, str]:
    """The CLI in this process (`--nice 0`: the test process keeps its CPU priority)."""
    result = CliRunner().invoke(main, [*args, "--nice", "0"], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@needs_pouchdb
def test_inspect_proposes_the_layout_and_replicate_with_it_gives_the_source_set(unknown, tmp_path):
    couch, layout = unknown
    out = tmp_path / "mapping.toml"
    code, stdout, stderr = _run("replicate", "--inspect", "--source", couch.url, "--out", str(out))
    assert code == 0, stderr
    assert "codes: database 'km_stoplist'" in stdout and "confidence high" in stdout, stdout
    databases, mapping = repl.read_mapping(out)
    assert databases == {"codes": "km_stoplist", "gtins": "items_stop", "prices": "floor_prices",
                         "grey": "grey_items"}
    assert (mapping.code_field, mapping.gtin_field, mapping.grey_field) == ("payload.mark", "item.gtin", "code")
    assert (mapping.price_key_field, mapping.price_group_field, mapping.price_field) == \
        ("goods.gtin", "pg", "minPrice")
    text = out.read_text()
    assert "settings" in text and "100% of" in text             # the evidence, as comments
    assert all(code not in text for code in layout.codes)       # codes shortened, never whole
    # --out does not overwrite
    code, _, stderr = _run("replicate", "--inspect", "--source", couch.url, "--out", str(out))
    assert code == 2 and "exists" in stderr
    db = tmp_path / "store.db"
    code, stdout, stderr = _run("replicate", str(db), "--source", couch.url, "--mapping", str(out))
    assert code == 0, stderr
    with Blocklist.open(db) as bl:
        assert set(bl.iter_identities()) == set(layout.codes)
        assert set(bl.iter_gtins()) == set(layout.gtins)
        assert set(bl.iter_records()) == layout.records()
    # an increment under the same mapping: a nested field's deletion and a grey GTIN added
    couch.delete_docs("km_stoplist", [f"{0:014d}"])
    couch.put_docs("grey_items", [{"_id": "y-new", "code": layout.gtins[0], "since": 1}])
    report = repl.replicate(db, repl.ReplicationConfig(source=couch.url, proxy=repl.ProxyConfig.direct(),
                                                        databases=databases, mapping=mapping))
    assert not report.full
    with Blocklist.open(db) as bl:
        assert set(bl.iter_identities()) == set(layout.codes[1:])
        assert bl.is_grey_gtin(layout.gtins[0])


@needs_pouchdb
def test_a_wrong_mapping_is_held_with_its_reason_never_an_empty_list(unknown, tmp_path):
    couch, layout = unknown
    db = tmp_path / "store.db"
    # the built-in guess on this source: its databases are not there
    code, _, stderr = _run("replicate", str(db), "--source", couch.url)
    assert code == 5 and "blocked_cis" in stderr and not db.exists()
    # a first pass with a field that holds no codes (the decoy): refused, no store appears
    wrong = tmp_path / "wrong.toml"
    wrong.write_text('[codes]\ndatabase = "km_stoplist"\ncode = "payload.hint"\n')
    code, _, stderr = _run("replicate", str(db), "--source", couch.url, "--mapping", str(wrong))
    assert code == 5 and "none of its 600 documents maps" in stderr and "payload.hint" in stderr, stderr
    assert "keeps what it held" in stderr and not db.exists()
    # a store built with the right mapping, then a wrong one: held, the list unchanged
    right = tmp_path / "right.toml"
    right.write_text('[codes]\ndatabase = "km_stoplist"\ncode = "payload.mark"\n')
    assert _run("replicate", str(db), "--source", couch.url, "--mapping", str(right))[0] == 0
    for text in ('[codes]\ndatabase = "km_stoplist"\ncode = "_id"\n',          # numeric ids: not codes
                 '[codes]\ndatabase = "items_stop"\ncode = "item.gtin"\n'):    # GTINs, not codes
        wrong.write_text(text)
        code, _, stderr = _run("replicate", str(db), "--source", couch.url, "--mapping", str(wrong))
        assert code == 5 and "wrong mapping, refused" in stderr, stderr
        with Blocklist.open(db) as bl:
            assert set(bl.iter_identities()) == set(layout.codes)
        # held, and the store says why: `status` (and the status page) show the last failed round
        code, stdout, _ = _status(db)
        assert code == 0 and "wrong mapping, refused" in json.loads(stdout)["sync_last_error"]
    assert _run("replicate", str(db), "--source", couch.url, "--mapping", str(right))[0] == 0
    assert json.loads(_status(db)[1])["sync_last_error"] is None        # a good pass clears it
    # a mapping that maps a few: the shrink guard holds it and says why
    partial = [{"_id": f"z{i}", "payload": {"mark": c}} for i, c in enumerate(layout.codes[:10])]
    couch.create("few")
    couch.put_docs("few", partial)
    wrong.write_text('[codes]\ndatabase = "few"\ncode = "payload.mark"\n')
    code, _, stderr = _run("replicate", str(db), "--source", couch.url, "--mapping", str(wrong))
    assert code == 4 and "shrink" in stderr, stderr
    with Blocklist.open(db) as bl:
        assert set(bl.iter_identities()) == set(layout.codes)


class _ClosedList:
    """A loopback front of the source that refuses `GET /_all_dbs` (403), as a locked-down server may, and
    passes every other GET through."""

    def __init__(self, target: str) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.startswith("/_all_dbs"):
                    status, body = 403, b'{"error":"forbidden","reason":"no"}'
                else:
                    try:
                        with urllib.request.urlopen(target + self.path, timeout=30) as answer:
                            status, body = answer.status, answer.read()
                    except urllib.error.HTTPError as exc:
                        status, body = exc.code, exc.read()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@needs_pouchdb
def test_inspect_where_all_dbs_is_refused_takes_db_names(tmp_path):
    rng = random.Random(5)
    with Couch(tmp_path / "couch") as couch:
        couch.create("a_codes")
        codes = [make_identity(rng) for _ in range(30)]
        couch.put_docs("a_codes", [{"_id": c} for c in codes])
        front = _ClosedList(couch.url)
        try:
            code, _, stderr = _run("replicate", "--inspect", "--source", front.url)
            assert code == 5 and "--db NAME" in stderr and "403" in stderr, stderr
            code, stdout, stderr = _run("replicate", "--inspect", "--source", front.url, "--db", "a_codes",
                                        "--json")
            assert code == 0, stderr
            found = json.loads(stdout)
            assert found["choices"]["codes"]["database"] == "a_codes"
            assert found["choices"]["codes"]["fields"] == {"code_field": "_id"}
            code, _, stderr = _run("replicate", "--inspect", "--source", front.url, "--db", "nope")
            assert code == 5 and "nope" in stderr
        finally:
            front.close()
        # a source that wants credentials: refused, and the error says so
        couch.require_auth("boss", "pw", "a_codes")
        code, _, stderr = _run("replicate", "--inspect", "--source", couch.url, "--db", "a_codes")
        assert code == 5 and "credentials" in stderr
        cred = tmp_path / "cred"
        cred.write_text("boss:pw\n")
        code, stdout, stderr = _run("replicate", "--inspect", "--source", couch.url, "--db", "a_codes",
                                    "--credentials-file", str(cred))
        assert code == 0 and '[codes]\ndatabase = "a_codes"\ncode = "_id"' in stdout, stderr


def test_inspect_options_are_checked():
    assert "goes with --inspect" in _run("replicate", "x.db", "--source", "http://127.0.0.1:1", "--out", "m")[2]
    assert "give no DB" in _run("replicate", "x.db", "--inspect", "--source", "http://127.0.0.1:1")[2]
    assert "does not go with --inspect" in _run("replicate", "--inspect", "--source", "http://127.0.0.1:1",
                                                "--full")[2]
    assert "missing argument DB" in _run("replicate", "--source", "http://127.0.0.1:1")[2]


def test_the_built_in_mapping_is_the_default_file_content():
    databases, mapping = repl.default_mapping()
    assert databases == repl.DEFAULT_DATABASES
    assert mapping == repl.Mapping()
    assert repl.ReplicationConfig(source="http://x:1").databases == databases
    cli_default = main.commands["replicate"].params
    assert {p.name: p.default for p in cli_default}["databases"] == \
        ",".join(f"{k}={v}" for k, v in databases.items())


@pytest.mark.parametrize("text, key", [
    ("[codes]\ndatabase = 1\n", "codes.database"),
    ("[codez]\ndatabase = \"a\"\n", "[codez]"),
    ("[codes]\ncode = \"x\"\n", "codes.database"),
    ("[codes]\ndatabase = \"a\"\nfield = \"x\"\n", "codes.field"),
    ("[prices]\ndatabase = \"a\"\nprice = \"p..q\"\n", "prices.price"),
    ("[prices]\ndatabase = \"a\"\nkey = \"\"\n", "prices.key"),
    ("[codes]\ndatabase = \"a\"\n[gtins]\ndatabase = \"a\"\n", "gtins.database"),
    ("codes = \"a\"\n", "codes"),
    ("", "maps nothing"),
    ("[codes\n", "not a TOML file"),
])
def test_a_malformed_mapping_file_is_refused_naming_the_key(tmp_path, text, key):
    path = tmp_path / "m.toml"
    path.write_text(text)
    with pytest.raises(repl.MappingError) as caught:
        repl.read_mapping(path)
    assert key in str(caught.value) and str(path) in str(caught.value)
    code, _, stderr = _run("replicate", str(tmp_path / "s.db"), "--source", "http://127.0.0.1:1",
                           "--mapping", str(path))
    assert code == 2 and key in stderr and "Traceback" not in stderr
    assert not (tmp_path / "s.db").exists()


def test_mapping_with_field_options_is_refused(tmp_path):
    path = tmp_path / "m.toml"
    path.write_text(repl.DEFAULT_MAPPING_TEXT)
    code, _, stderr = _run("replicate", str(tmp_path / "s.db"), "--source", "http://127.0.0.1:1",
                           "--mapping", str(path), "--code-field", "cis")
    assert code == 2 and "--code-field" in stderr


def _status(db: Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["status", str(db), "--json"], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


# - the value classifier against a plain model -

def _plain_gtin(value: object) -> bool:
    """A GTIN by the book: 8 to 14 digits (a string, or a non-negative integer), mod-10 check digit of GS1."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        return False
    text = str(value)
    if not (text.isascii() and text.isdigit() and 8 <= len(text) <= 14):
        return False
    digits = text.zfill(14)
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(digits[:13]))
    return (10 - total % 10) % 10 == int(digits[13])


def _plain(value: object) -> set[str]:
    out = set()
    if _plain_gtin(value):
        out.add("gtin")
    if isinstance(value, int) and not isinstance(value, bool):
        if 1 <= value <= 65535:
            out.add("group")
        if 0 <= value < 2 ** 53:
            out.add("price")
    if isinstance(value, str):
        if value.startswith("pg:") and value[3:].isascii() and value[3:].isdigit() and 1 <= int(value[3:]) <= 65535:
            out.add("pgkey")
        if value.isascii() and value.isdigit() and len(value) <= 5 and 1 <= int(value) <= 65535:
            out.add("group")
    return out


_digits = st.text(alphabet=string.digits, min_size=1, max_size=16)
_values = st.one_of(
    _digits, st.integers(min_value=-10, max_value=10 ** 15), st.booleans(), st.none(), st.floats(),
    _digits.map(lambda d: "pg:" + d), st.text(max_size=20),
    st.builds(lambda body: gtin_with_check(body), st.text(alphabet=string.digits, min_size=13, max_size=13)),
    st.builds(lambda body: int(gtin_with_check(body)), st.text(alphabet=string.digits, min_size=13, max_size=13)),
)


@settings(max_examples=EXAMPLES * 40, deadline=None)
@given(_values)
def test_the_value_classifier_agrees_with_a_plain_model(value):
    found = set(readings(value)) - {"code"}
    if isinstance(value, int) and not isinstance(value, bool) and value >= 2 ** 53:
        found.discard("price")                  # the store's own bound on a price record, not the model's
    assert found == _plain(value), value


@settings(max_examples=EXAMPLES * 10, deadline=None)
@given(st.randoms(use_true_random=False), st.booleans())
def test_a_marking_code_reads_as_a_code_and_a_broken_one_does_not(rng, broken):
    code = make_identity(rng)
    if broken:                                    # the GTIN's check digit changed: not a code any more
        code = code[:15] + str((int(code[15]) + 1) % 10) + code[16:]
    assert ("code" in readings(code)) is not broken
    assert "gtin" not in readings(code)


def test_the_mapping_files_printed_in_the_docs_are_read_as_printed():
    """Every ```toml block of docs/replication.md is a mapping file `replicate --mapping` takes."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "replication.md").read_text(encoding="utf-8")
    found = [block.split("\n", 1)[1] for block in text.split("```")[1::2] if block.startswith("toml\n")]
    assert found
    for block in found:
        databases, mapping = repl.parse_mapping(block, "docs/replication.md")
        assert databases == {**repl.DEFAULT_DATABASES, "grey": "grey_gtin"} and mapping == repl.Mapping()


# - the proposal over random layouts (no server: the sampled documents go straight into `Sample`s) -

_NEUTRAL = ["alpha", "beta", "delta", "omega", "node", "body", "data", "rec", "item", "entry", "value", "payload",
            "info", "attr"]


def _path(rng: random.Random, taken: set[str]) -> str:
    while True:
        path = ".".join(rng.choice(_NEUTRAL) + str(rng.randrange(10)) for _ in range(rng.randint(1, 3)))
        if not any(path == t or path.startswith(t + ".") or t.startswith(path + ".") for t in taken):
            taken.add(path)
            return path


def _put(doc: dict, path: str, value: object) -> None:
    *parents, last = path.split(".")
    for part in parents:
        doc = doc.setdefault(part, {})
    doc[last] = value


def _random_layout(rng: random.Random) -> tuple[list[Sample], dict[str, str], dict[str, str]]:
    """Databases for codes, GTINs, prices and grey GTINs (each present or not), random names and nested fields,
    decoys in every document (a counter, a 14-digit number that is not a GTIN, a text, a constant 1); what a right
    proposal is."""
    kinds = [k for k in ("codes", "gtins", "prices", "grey") if k == "codes" or rng.random() < 0.7]
    want_db: dict[str, str] = {}
    want_fields: dict[str, str] = {}
    samples = []
    for index, kind in enumerate(kinds):
        name = rng.choice(_NEUTRAL) + f"_{index}"
        if kind == "prices":
            name += rng.choice(["", "_price"])
        if kind == "grey":
            name = rng.choice(["grey_", "gray_"]) + name
        want_db[kind] = name
        taken: set[str] = set()
        by_id = kind != "prices" and rng.random() < 0.3
        main = "_id" if by_id else _path(rng, taken)
        counter, decoy, text, constant = (_path(rng, taken) for _ in range(4))
        docs = []
        n = rng.randint(25, 80)
        if kind == "prices":
            price = rng.choice(["price", "minPrice", "mrp", "data.cost"]) if "price" not in name \
                else rng.choice(["price", _path(rng, taken)])
            group = rng.choice(["pg", _path(rng, taken)])
            want_fields.update(price_key_field=main, price_group_field=group, price_field=price)
        else:
            want_fields[{"codes": "code_field", "gtins": "gtin_field", "grey": "grey_field"}[kind]] = main
        for i in range(n):
            doc: dict = {"_id": f"{index}-{i:06d}"}
            if kind == "codes":
                value: object = make_identity(rng)
            elif kind == "prices":
                value = _gtin(rng) if i % 10 else ""        # every tenth: a group's price, one per group
                _put(doc, price, rng.randrange(1_000, 900_000))
                _put(doc, group, rng.choice([3, 5, 16]) if i % 10 else 100 + i)
            else:
                value = _gtin(rng)
            if main == "_id":
                doc["_id"] = value
            else:
                _put(doc, main, value)
            _put(doc, counter, i + 1)
            _put(doc, decoy, _not_gtin(rng))
            _put(doc, text, rng.choice(["ok", "new", "x y"]))
            _put(doc, constant, 1)
            docs.append(doc)
        sample = Sample(name, n)
        for doc in docs:
            sample.add(doc)
        samples.append(sample)
    rng.shuffle(samples)
    return samples, want_db, want_fields


@settings(max_examples=EXAMPLES * 8, deadline=None)
@given(st.integers(min_value=0, max_value=2 ** 32))
def test_the_proposal_finds_random_layouts(seed):
    samples, want_db, want_fields = _random_layout(random.Random(seed))
    proposal = propose(samples)
    databases, mapping = proposal.mapping()
    assert databases == want_db, proposal.as_dict()
    for attribute, path in want_fields.items():
        assert getattr(mapping, attribute) == path, (attribute, proposal.as_dict())
    # and the file it writes reads back as the same mapping
    assert repl.parse_mapping(repl.mapping_text(proposal, "http://x:1")) == (databases, mapping)
