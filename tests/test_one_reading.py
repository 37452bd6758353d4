"""One reading of a scan everywhere: a scan written any way a tool writes GS gets the same verdict on every surface.

A blocked code written with a real GS, with a textual GS placeholder (`<GS>`, `{GS}`, `[GS]`, `\\x1d`, `\\u001d`, a
doubly escaped `\\\\u001d`, `%1D`, U+241D), or with its GS lost, is blocked by the library (`is_blocked`,
`is_blocked_many`, `check`), by `lmcz-fast lookup`, by `lmcz-fast check --db` (offline), by the checker through a
Local Module, and by both HTTP protocols of `serve` (`POST /api/v1/cis/outCheck`, `GET /api/v1/cis/check?cis=`) on
loopback. `<GS>` and `%1D` are made of code characters, so a serial may hold them as its own text: a code blocked
under any reading of the scan is blocked (docs/codes.md, "One reading, or several").
"""

from __future__ import annotations

import json
import string
from pathlib import Path
from urllib.parse import quote

import pytest
from _probe_support import SetProbe
from _service_support import PASSWORD, USER, ServerThread, make_db
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmcz_fast import Blocklist, synth
from lmcz_fast import _codes
from lmcz_fast._codes import CodeError, parse_code
from lmcz_fast.checker import Checker, Decision
from lmcz_fast.cli import main

GS = "\x1d"

# How tools write the GS between a serial and its tail, and between tail AIs.
FORMS = {
    "gs": GS,
    "<GS>": "<GS>",
    "<gs>": "<gs>",
    "{GS}": "{GS}",
    "[gs]": "[gs]",
    "\\x1d": "\\x1d",
    "\\X1D": "\\X1D",
    "\\u001d": "\\u001d",
    "\\u001D": "\\u001D",
    "\\\\u001d": "\\\\u001d",
    "%1D": "%1D",
    "%1d": "%1d",
    "U+241D": "\u241d",
}

G = "04605370362886"        # GTINs with valid check digits
G2 = "04600439931256"
SIG = "yA1L3PaL7kjW+JK79DsnM8rkB6SPAEuAL9JxL9b61DB="


def element(identity: str, *tail: str) -> str:
    return GS.join((identity, *tail))


# Blocked codes, as element strings with real GS.
BLOCKED = {
    "milk": element(f"01{G}21CfG9VcmbLzUky", "93Ab12"),
    "shoes": element(f"01{G}21JgXJ5.T(Ab%0x", "91EE10", "92" + SIG),
    "beer": element(f"01{G2}21Q;w7'8h", "93tEsT"),
    # A serial that holds `<GS>` as its own text: blocked under the reading that keeps it as text.
    "serial_with_<GS>": element(f"01{G2}21ab<GS>cdefghi", "93xyzw"),
    # A 17-character serial ending in `<GS>`: the scan `...LzUky<GS>93Ab12` reads as it, or as milk's code.
    "serial_ending_<GS>": element(f"01{G2}21CfG9VcmbLzUky<GS>", "93Ab12"),
}
FREE = {
    "milk": element(f"01{G}21Xq4.Z!_rT0pLm", "93Ab12"),
    "shoes": element(f"01{G2}21JgXJ5.T(Ab%0y", "91EE10", "92" + SIG),
    # `<`, `>`, `%` in a serial that form no placeholder.
    "serial_with_<>%": element(f"01{G}21x<G>S%1e<>%Qz", "93Ab12"),
}


def identity(code: str) -> str:
    return code.split(GS)[0]


def spell(code: str, form: str) -> str:
    return code.replace(GS, FORMS[form])


def writings(code: str) -> dict[str, str]:
    """Every way the test writes one code: each GS form, the GS after the serial lost, and prefixed variants."""
    out = {form: spell(code, form) for form in FORMS}
    first, _, rest = code.partition(GS)
    out["lost GS"] = first + rest
    out["lost GS, <GS> later"] = first + rest.replace(GS, "<GS>")
    out["<GS> as FNC1 too"] = "<GS>" + spell(code, "<GS>")
    out["]d2 and {GS}"] = "]d2" + spell(code, "{GS}")
    out["CR LF and \\u001d"] = spell(code, "\\u001d") + "\r\n"
    return out


CASES = [(f"blocked {name} / {how}", scan, True) for name, code in BLOCKED.items()
         for how, scan in writings(code).items()]
CASES += [(f"free {name} / {how}", scan, False) for name, code in FREE.items() for how, scan in writings(code).items()]
SCANS = [scan for _name, scan, _blocked in CASES]
TRUTH = [blocked for _name, _scan, blocked in CASES]


def _mismatches(got: list[bool]) -> list[str]:
    return [f"{name}: {scan!r} said {'blocked' if g else 'free'}" for (name, scan, _), g, want in
            zip(CASES, got, TRUTH) if g != want]


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_db(tmp_path_factory.mktemp("one-reading") / "store.db", [identity(c) for c in BLOCKED.values()])


def test_every_writing_reads_as_its_code():
    """The most likely reading of every writing is the code written (`parse_code`), and the code is among
    `readings_of`, which is what a check looks up."""
    for name, scan, _blocked in CASES:
        code = BLOCKED.get(name.split(" / ")[0].split(" ", 1)[1]) if name.startswith("blocked") else \
            FREE[name.split(" / ")[0].split(" ", 1)[1]]
        assert identity(code) in [r.identity for r in _codes.readings_of(scan)], (name, scan)
    for code in (*BLOCKED.values(), *FREE.values()):
        if "<GS>" not in identity(code):
            for form in FORMS:
                assert parse_code(spell(code, form)).identity == identity(code), (form, code)


def test_library(db: Path):
    with Blocklist.open(db) as bl:
        assert _mismatches([bl.is_blocked(s) for s in SCANS]) == []
        assert _mismatches(bl.is_blocked_many(SCANS)) == []
        assert _mismatches(bl.is_blocked_many(tuple(SCANS) * 3)[:len(SCANS)]) == []
        verdicts = [bl.check(s) for s in SCANS]
        assert _mismatches([v.blocked for v in verdicts]) == []
        blocked_ids = {identity(c) for c in BLOCKED.values()}
        assert all(v.identity in blocked_ids for v in verdicts if v.blocked)   # names the reading that is blocked


def test_lookup_cli(db: Path):
    result = CliRunner().invoke(main, ["lookup", str(db), "--json", *SCANS])
    assert result.exit_code == 1, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert _mismatches([line["blocked"] for line in lines]) == []
    # One scan at a time, as the IT person ran it: the exit status says it too.
    for name, scan, blocked in CASES[::7]:
        one = CliRunner().invoke(main, ["lookup", str(db), scan])
        assert one.exit_code == (1 if blocked else 0), (name, one.output)


def test_lookup_cli_reads_placeholders_from_stdin(db: Path):
    text = "".join(scan.replace("\r\n", "") + "\n" for scan in SCANS)
    result = CliRunner().invoke(main, ["lookup", str(db), "--json"], input=text)
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert _mismatches([line["blocked"] for line in lines]) == []


def test_check_cli_offline(db: Path):
    result = CliRunner().invoke(main, ["check", "--db", str(db), "--each", "--json", *SCANS])
    assert result.exit_code == 1, result.output
    verdicts = json.loads(result.stdout)
    assert _mismatches([v["decision"] == "refuse" for v in verdicts]) == []
    assert all(v["mode"] == "offline" for v in verdicts)


def test_serve_both_protocols_and_the_checker_through_it(db: Path):
    with ServerThread(db, max_codes=len(SCANS) * 4) as server:
        client = server.client()
        try:
            status, _, body = client.check(SCANS)
            assert status == 200, body
            assert _mismatches([c["isBlocked"] for c in body["codes"]]) == []
            got = []
            for scan in SCANS:
                status, _, body = client.request("GET", "/api/v1/cis/check?cis=" + quote(scan, safe=""))
                assert status == 200, (scan, body)
                got.append(body["codes"][0]["isBlocked"])
            assert _mismatches(got) == []
        finally:
            client.close()
        # The till-side checker with the service as its Local Module: each reading is asked.
        with Checker(None, f"http://{USER}:{PASSWORD}@127.0.0.1:{server.port}") as checker:
            receipt = checker.check_receipt(SCANS[:100])
            assert _mismatches([c.decision is Decision.REFUSE for c in receipt.codes] +
                               [checker.check(s).decision is Decision.REFUSE for s in SCANS[100:]]) == []


def test_a_scan_with_too_many_readings_is_refused_not_sold():
    """More GS placeholders than the parser looks at (PH_MAX) cannot all be tried: refused, never "may be sold"."""
    scan = f"01{G}21CfG9VcmbLzUky" + "<GS>" * 17 + "93Ab12"
    with pytest.raises(CodeError):
        _codes.readings_of(scan)
    probe = SetProbe([f"01{G}21CfG9VcmbLzUky"])
    with pytest.raises(CodeError):
        probe.is_blocked(scan)


# ----------------------------------------------------------------------------------------- properties

SERIAL_CHARS = synth.CHARSET_82
PLACEHOLDERS = sorted(FORMS)
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


GS1_GROUPS = [g for g in synth.GROUPS.values() if g.kind == "gs1"]
TAIL_VALUES = {"91": "EE10", "92": SIG, "93": "Ab1z", "3103": "000750", "8005": "012500"}


@st.composite
def written_codes(draw):
    """A code of a product group, its serial drawn from the whole 82-character set (so it may hold `<GS>`, `%1D` or
    pieces of them as its own text), each GS written in a form drawn per GS, or the first GS lost."""
    group = draw(st.sampled_from(GS1_GROUPS))
    body = draw(st.text(string.digits, min_size=13, max_size=13))
    gtin = body + synth.gtin_check_digit(body)
    length = group.serial_length
    pieces = draw(st.lists(st.sampled_from(["<GS>", "<gs>", "%1D", "<", ">", "%", "G", "S"]), max_size=3))
    serial = ("".join(pieces) + draw(st.text(SERIAL_CHARS, min_size=length, max_size=length)))[:length]
    tail = [ai + TAIL_VALUES[ai] for ai in group.tail]
    ident = f"01{gtin}21{serial}"
    forms = draw(st.lists(st.sampled_from(PLACEHOLDERS), min_size=len(tail), max_size=len(tail)))
    lose_first = draw(st.booleans())
    scan = ident
    for k, (ai, form) in enumerate(zip(tail, forms)):
        scan += ("" if (k == 0 and lose_first) else FORMS[form]) + ai
    return ident, scan


@SETTINGS
@given(written_codes())
def test_the_written_code_is_always_a_reading_and_blocked(written):
    """Whatever the serial holds and however each GS is written, the code is one of the scan's readings, so a
    blocklist holding it blocks the scan (or the scan is refused as unreadable: never "may be sold")."""
    ident, scan = written
    try:
        readings = _codes.readings_of(scan)
    except CodeError:
        return      # refused (e.g. a lost GS that leaves the serial's length undecidable): cannot be sold unchecked
    identities = [r.identity for r in readings]
    assert len(set(identities)) == len(identities)
    assert ident in identities, (scan, identities)
    assert SetProbe([ident]).is_blocked(scan)
    assert SetProbe([ident]).is_blocked_many([scan, scan]) == [True, True]
    assert SetProbe(identities[1:]).is_blocked(scan) is (len(identities) > 1)   # every other reading is looked up
    assert SetProbe([]).is_blocked(scan) is False


# ----------------------------------------------------------------------------------------- parser details


def test_readings_order_and_what_each_is():
    scan = f"01{G}21CfG9VcmbLzUky<GS>93Ab12"
    first, second = _codes.readings_of(scan)
    assert (first.serial, first.tail, first.repaired) == ("CfG9VcmbLzUky", {"93": "Ab12"}, ("escaped_gs",))
    assert (second.serial, second.tail, second.repaired) == ("CfG9VcmbLzUky<GS>", {"93": "Ab12"}, ("lost_gs",))
    assert parse_code(scan) == first and _codes.identity_of(scan) == first.identity.encode()
    assert _codes._cut_repeatedly(scan, 3) == first.identity.encode()
    assert _codes.readings_of(scan.encode()) == (first, second)
    # A lost GS alone: the split reading, then the bare CIS.
    lost = _codes.readings_of(f"01{G}21CfG9VcmbLzUky93Ab12")
    assert [r.serial for r in lost] == ["CfG9VcmbLzUky", "CfG9VcmbLzUky93Ab12"]
    # Unambiguous forms have one reading.
    assert len(_codes.readings_of(f"01{G}21CfG9VcmbLzUky{{gs}}93Ab12")) == 1


def test_a_symbology_prefix_does_not_hide_the_bare_reading():
    """The probe found a lost-GS scan's bare reading only when the scan started with its identity; `]d2` hid it."""
    bare = f"01{G}21CfG9VcmbLzUky93Ab12"
    probe = SetProbe([bare])
    for scan in (bare, "]d2" + bare, "\x1d" + bare, bare + "\r\n"):
        assert probe.is_blocked(scan) and probe.is_blocked_many([scan]) == [True], scan


def test_cis_lines_read_their_text_as_it_stands():
    """A blocklist line's `<GS>` is its serial's own text when the line reads that way; else it is a GS."""
    assert parse_code(f"01{G2}21ab<GS>cdefghi", cis=True).serial == "ab<GS>cdefghi"
    assert parse_code(f"01{G2}21ab%1Dcdefghi", cis=True).serial == "ab%1Dcdefghi"
    assert parse_code(f"01{G}21CfG9VcmbLzUky<GS>93Ab12<GS>3103000750", cis=True).serial == "CfG9VcmbLzUky"
    assert _codes.identity_of(f"01{G}21CfG9VcmbLzUky\\u001d93Ab12", cis=True) == f"01{G}21CfG9VcmbLzUky".encode()


def test_errors_of_scans_with_placeholders_point_into_the_input():
    with pytest.raises(CodeError) as err:
        parse_code(f"01{G}21CfG9VcmbLzUky<GS>55Ab12")      # no reading: 55 is no AI, and 20+ characters no serial
    assert err.value.reason in ("unknown_ai", "serial_too_long", "bad_tail")
    with pytest.raises(CodeError) as err:
        parse_code(f"01{G[:-1]}0<GS>21CfG9VcmbLzUky<GS>93Ab12")
    assert (err.value.reason, err.value.position) == ("bad_gtin_check_digit", 15)
    scan = f"01{G}21CfG9Vcmb#zUky{{GS}}93Ab12"
    with pytest.raises(CodeError) as err:
        parse_code(scan)
    assert (err.value.reason, err.value.position) == ("bad_character", scan.index("#"))


def test_placeholder_forms_in_a_russian_layout_scan():
    """A scan typed under the Russian layout: `<GS>` arrives as `БПЫЮ`, mapped back, then read as GS."""
    typed = f"01{G}21CfG9VcmbLzUky<GS>93Ab12".translate(synth._TO_RUSSIAN_LAYOUT)
    assert "БПЫЮ" in typed
    assert [r.identity for r in _codes.readings_of(typed)][0] == f"01{G}21CfG9VcmbLzUky"
    assert parse_code(typed.replace("БПЫЮ", "\u241d")).identity == f"01{G}21CfG9VcmbLzUky"
