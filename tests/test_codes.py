"""Unit tests of the compiled marking-code parser: one or more per accepted form, per repair and per refusal."""

from __future__ import annotations

import pickle

import pytest

from lmcz_fast import synth
from lmcz_fast._codes import (
    KINDS,
    REASONS,
    REPAIRS,
    CodeError,
    MarkingCode,
    code_error,
    identity_of,
    parse_code,
    reading_error,
    readings_of,
    reason_of,
)

GS = "\x1d"


def gtin(first13: str) -> str:
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(first13))
    return first13 + str((10 - total % 10) % 10)


G = gtin("0460043993125")            # 04600439931256
G2 = gtin("0401234567890")
SIG = "AbCd+/EfGh0123456789IjKlMnOpQrStUvWxYz0123Q="      # 44 characters, a 92 signature's shape
assert len(SIG) == 44 and G == "04600439931256"

SHOES = f"01{G}21JgXJ5.T(Ab%0x{GS}91EE10{GS}92{SIG}"
MILK = f"01{G}21Ab3!x_{GS}93dGVz"
WATER = f"01{G}21AbCdEfGhIjKlM{GS}93Xy+z"
BEER = f"01{G}21Q;w7'8h{GS}93tEsT"
TOBACCO_PACK = f"{G}aB3!x_-PR1c<>ck"
TOBACCO_BLOCK = f"01{G}21aB3!x_-{GS}8005012500{GS}93AbCd"
MILK_WEIGHTED = f"01{G}21Ab3!x_{GS}93dGVz{GS}3103000750"

RUSSIAN = str.maketrans(
    "qwertyuiop[]asdfghjkl;'zxcvbnm,./QWERTYUIOP{}ASDFGHJKL:\"ZXCVBNM<>?&",
    "йцукенгшщзхъфывапролджэячсмитьбю.ЙЦУКЕНГШЩЗХЪФЫВАПРОЛДЖЭЯЧСМИТЬБЮ,?",
)


def reason(raw, **kw) -> tuple[str, int | None]:
    with pytest.raises(CodeError) as info:
        parse_code(raw, **kw)
    with pytest.raises(CodeError) as info2:
        identity_of(raw, **kw)
    assert (info.value.reason, info.value.position) == (info2.value.reason, info2.value.position)
    return info.value.reason, info.value.position


# ----------------------------------------------------------------------------------------------- accepted forms


def test_shoes_element_string():
    c = parse_code(SHOES)
    assert c.kind == "gs1"
    assert c.gtin == G
    assert c.serial == "JgXJ5.T(Ab%0x"
    assert c.cis == c.identity == f"01{G}21JgXJ5.T(Ab%0x"
    assert c.tail == {"91": "EE10", "92": SIG}
    assert list(c.tail) == ["91", "92"]
    assert c.repaired == ()
    assert c.element_string == SHOES
    assert identity_of(SHOES) == c.identity.encode()


@pytest.mark.parametrize(
    "raw, serial, tail",
    [
        (MILK, "Ab3!x_", {"93": "dGVz"}),
        (WATER, "AbCdEfGhIjKlM", {"93": "Xy+z"}),
        (BEER, "Q;w7'8h", {"93": "tEsT"}),
        (TOBACCO_BLOCK, "aB3!x_-", {"8005": "012500", "93": "AbCd"}),
        (MILK_WEIGHTED, "Ab3!x_", {"93": "dGVz", "3103": "000750"}),
        (f"01{G}21ABCDEFGHIJKLMNOPQRST{GS}93abcd", "ABCDEFGHIJKLMNOPQRST", {"93": "abcd"}),
        (f"01{G}21X{GS}17261231{GS}10LOT-7/A{GS}7003261231235{GS}11251120", "X",
         {"17": "261231", "10": "LOT-7/A", "7003": "2612312359"[:10], "11": "251120"}),
    ],
)
def test_element_strings_with_tails(raw, serial, tail):
    if "7003" in raw:
        raw = raw.replace("7003261231235", "70032612312359")
    c = parse_code(raw)
    assert (c.kind, c.gtin, c.serial, c.tail) == ("gs1", G, serial, tail)
    assert c.identity == f"01{G}21{serial}"
    assert parse_code(c.element_string) == c


def test_fixed_length_ai_needs_no_gs_after_it():
    c = parse_code(f"01{G}21ABC{GS}17261231{GS}93abcd")
    d = parse_code(f"01{G}21ABC{GS}1726123193abcd")
    assert c == d and c.tail == {"17": "261231", "93": "abcd"}


def test_88_character_signature():
    c = parse_code(f"01{G}21JgXJ5.T(Ab%0x{GS}91EE10{GS}92{SIG * 2}")
    assert c.tail["92"] == SIG * 2


def test_bare_cis_line():
    for serial in ("Ab3!x_", "Q;w7'8h", "ABCDEFGH", "JgXJ5.T(Ab%0x", "ABCDEFGHIJKLMNOPQRST"):
        c = parse_code(f"01{G}21{serial}")
        assert (c.serial, c.tail, c.repaired) == (serial, {}, ())


def test_tobacco_pack():
    c = parse_code(TOBACCO_PACK)
    assert c.kind == "tobacco_pack"
    assert c.cis == TOBACCO_PACK[:21]
    assert c.identity == f"01{G}21aB3!x_-"
    assert (c.gtin, c.serial) == (G, "aB3!x_-")
    assert c.tail == {"price": "PR1c", "check": "<>ck"}
    assert c.element_string == TOBACCO_PACK
    assert identity_of(TOBACCO_PACK) == identity_of(f"01{G}21aB3!x_-")


def test_tobacco_pack_cis():
    c = parse_code(TOBACCO_PACK[:21])
    assert c.kind == "tobacco_pack_cis"
    assert c.cis == TOBACCO_PACK[:21]
    assert c.identity == parse_code(TOBACCO_PACK).identity
    assert c.tail == {}


def test_tobacco_pack_with_a_bad_check_digit():
    bad = G[:13] + str((int(G[13]) + 1) % 10) + TOBACCO_PACK[14:]
    assert reason(bad) == ("bad_gtin_check_digit", 13)


def test_bytes_bytearray_memoryview_and_str_agree():
    c = parse_code(SHOES)
    raw = SHOES.encode()
    assert parse_code(raw) == parse_code(bytearray(raw)) == parse_code(memoryview(raw)) == c


def test_kinds_reasons_and_repairs_are_listed():
    assert KINDS == ("gs1", "tobacco_pack", "tobacco_pack_cis")
    assert "ambiguous_serial" in REASONS and len(set(REASONS)) == len(REASONS)
    assert "lost_gs" in REPAIRS


# ------------------------------------------------------------------------------------------------------ repairs


@pytest.mark.parametrize("prefix", ["]d2", "]C1", "]Q3", "]e0", "]d1"])
def test_symbology_prefix(prefix):
    c = parse_code(prefix + SHOES)
    assert c == parse_code(SHOES)
    assert c.repaired == ("symbology_prefix",)


def test_symbology_prefix_on_tobacco_pack():
    c = parse_code("]d1" + TOBACCO_PACK)
    assert c.kind == "tobacco_pack" and c.repaired == ("symbology_prefix",)


def test_leading_fnc1():
    c = parse_code(GS + SHOES)
    assert c == parse_code(SHOES) and c.repaired == ("leading_fnc1",)
    assert parse_code("]d2" + GS + SHOES).repaired == ("symbology_prefix", "leading_fnc1")


@pytest.mark.parametrize("end", ["\r", "\n", "\r\n", "\n\n"])
def test_trailing_newline(end):
    c = parse_code(SHOES + end)
    assert c == parse_code(SHOES) and c.repaired == ("trailing_newline",)
    assert parse_code(TOBACCO_PACK + end).kind == "tobacco_pack"


def test_surrounding_whitespace_and_trailing_gs():
    assert parse_code(" \t" + MILK + " ").repaired == ("whitespace",)
    assert parse_code(MILK + GS).repaired == ("trailing_gs",)


@pytest.mark.parametrize("escape", ["\\u001d", "\\u001D", "\\x1d", "\\x1D", "\\\\u001d"])
def test_escaped_gs(escape):
    c = parse_code(SHOES.replace(GS, escape))
    assert c == parse_code(SHOES) and c.repaired == ("escaped_gs",)


def test_unknown_backslash_escape_is_refused():
    assert reason(MILK.replace(GS, "\\t"))[0] == "bad_character"


@pytest.mark.parametrize("raw", [SHOES, MILK, WATER, BEER, TOBACCO_BLOCK, MILK_WEIGHTED])
def test_lost_gs_is_recovered_from_the_tail(raw):
    c = parse_code(raw.replace(GS, ""))
    assert c == parse_code(raw)
    assert "lost_gs" in c.repaired


def test_lost_gs_with_a_serial_that_looks_like_a_tail():
    # "93" inside a 13-character serial: only the reading with the 91+92 tail is a known shape.
    raw = f"01{G}21NEsGFcO93TLqQ{GS}91805B{GS}92{SIG}"
    assert parse_code(raw.replace(GS, "")) == parse_code(raw)
    # A tobacco block whose price digits make "20" + "00" + "93..." readable as a tail of a 13-character serial.
    raw = f"01{G}21W!Fy6U!{GS}8005032000{GS}937do3"
    assert parse_code(raw.replace(GS, "")) == parse_code(raw)


def test_partly_lost_gs():
    c = parse_code(f"01{G}21JgXJ5.T(Ab%0x91EE10{GS}92{SIG}")
    assert c == parse_code(SHOES) and "lost_gs" in c.repaired


def test_scan_without_gs_prefers_the_tail_reading_and_cis_mode_the_bare_one():
    bare = f"01{G}21Q;w7'8h93tEsT"        # beer (7 + 93) without GS, or a 13-character serial
    assert parse_code(bare).serial == "Q;w7'8h"
    assert parse_code(bare).tail == {"93": "tEsT"}
    line = parse_code(bare, cis=True)
    assert (line.serial, line.tail, line.repaired) == ("Q;w7'8h93tEsT", {}, ())
    assert identity_of(bare, cis=True) == f"01{G}21Q;w7'8h93tEsT".encode()
    # cis=True still reads GS-separated tails, and tails longer than a serial can be.
    assert parse_code(SHOES, cis=True) == parse_code(SHOES)
    assert parse_code(SHOES.replace(GS, ""), cis=True) == parse_code(SHOES)


def test_ambiguous_serial_is_refused():
    # 15 characters: a 15-character serial, or a 9-character serial + 93: no product group has either length.
    assert reason(f"01{G}21ABCDEFGHI93abcd") == ("ambiguous_serial", 18)


def test_serial_too_long_without_any_readable_tail():
    assert reason(f"01{G}21" + "A" * 21) == ("serial_too_long", 38)


@pytest.mark.parametrize("raw", [SHOES, MILK, TOBACCO_PACK, TOBACCO_BLOCK])
def test_russian_layout(raw):
    typed = ("]d2" + raw if raw.startswith("01") else raw).translate(RUSSIAN)
    assert typed != raw and any("\u0400" <= ch <= "\u045f" for ch in typed)
    c = parse_code(typed)
    assert c == parse_code(raw)
    assert "cyrillic_layout" in c.repaired
    assert parse_code(typed.encode("utf-8")) == c


def test_russian_layout_with_lost_gs_and_newline():
    typed = ("]d2" + SHOES.replace(GS, "")).translate(RUSSIAN) + "\r\n"
    c = parse_code(typed)
    assert c == parse_code(SHOES)
    assert c.repaired == ("symbology_prefix", "trailing_newline", "cyrillic_layout", "lost_gs")


def test_russian_layout_punctuation():
    # '.' is typed by the '/' key, ',' by Shift+'/', '?' by Shift+'7' (ampersand) under the Russian layout.
    raw = f"01{G}21a/b?c&d.e,f<{GS}93abcd"
    c = parse_code(raw.translate(RUSSIAN))
    assert c.serial == "a/b?c&d.e,f<"


def test_mixed_layout_is_refused():
    assert reason(f"01{G}21ЙЦabc{GS}93abcd") == ("mixed_layout", 20)


def test_error_positions_count_code_points_of_the_input():
    # Cyrillic letters are 2 UTF-8 bytes: the position is still the character's index.
    typed = f"01{G}21ЙЦУКЕН{GS}93ФЫ№Ф"
    assert reason(typed) == ("bad_character", 29)


# ----------------------------------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("raw", ["", b"", "\r\n", GS, "]d2", "]d2\r\n", " "])
def test_empty(raw):
    assert reason(raw) == ("empty", None)


def test_too_long_is_refused_before_any_work():
    assert reason("01" + "1" * 3_000_000) == ("too_long", None)
    assert reason(b"0" * 3_000_000) == ("too_long", None)
    assert reason(SHOES + "A" * 600) == ("too_long", None)
    assert reason("\ud800" * 5000) == ("too_long", None)


def test_bad_gtin_check_digit():
    bad = G[:13] + str((int(G[13]) + 3) % 10)
    assert reason(f"01{bad}21ABCDEF{GS}93abcd") == ("bad_gtin_check_digit", 15)


def test_non_digit_in_gtin():
    assert reason("0104600439A3125621ABCDEF") == ("unknown_format", 10)
    assert reason("0104600439\x0031256") == ("bad_character", 10)


def test_truncated():
    assert reason(f"01{G[:9]}") == ("truncated", 11)


def test_missing_serial():
    assert reason(f"01{G}") == ("missing_serial", 16)
    assert reason(f"01{G}10ABC") == ("missing_serial", 16)
    assert reason(f"01{G}21{GS}93abcd") == ("missing_serial", 18)


@pytest.mark.parametrize(
    "raw, expected",
    [
        (f"01{G}21ABCDEF{GS}93ab", ("truncated", 29)),
        (f"01{G}21ABCDEF{GS}93ab{GS}cd", ("bad_tail", 29)),
        (f"01{G}21ABCDEF{GS}8005AB1234", ("bad_tail", 29)),
        (f"01{G}21ABCDEF{GS}10", ("bad_tail", 25)),
        (f"01{G}21ABCDEF{GS}10{'A' * 21}", ("bad_tail", 25)),
        (f"01{G}21ABCDEF{GS}55abcd", ("unknown_ai", 25)),
        (f"01{G}21ABCDEF{GS}93abcd{GS}93abcd", ("duplicate_ai", 32)),
        (f"01{G}21ABCDEF{GS}21ABC", ("duplicate_ai", 25)),
        (f"01{G}21ABCDEF{GS}93ab\x7fd", ("bad_character", 29)),
        (f"01{G}21ABC#EF{GS}93abcd", ("bad_character", 21)),
    ],
)
def test_bad_tails(raw, expected):
    assert reason(raw) == expected


@pytest.mark.parametrize("raw", ["hello", "(01)04600439931256(21)ABC", "0" * 40, "12345678901234567890"])
def test_unknown_format(raw):
    assert reason(raw)[0] == "unknown_format"


@pytest.mark.parametrize("raw", [b"\xff\xfe\x00", b"01\xc3", b"\xed\xa0\x80", "\udc80" + SHOES, SHOES + "\ud800"])
def test_invalid_utf8(raw):
    r, pos = reason(raw)
    assert r == "invalid_utf8"
    if isinstance(raw, str):
        assert pos == next(i for i, ch in enumerate(raw) if 0xD800 <= ord(ch) <= 0xDFFF)


def test_other_scripts_are_bad_characters():
    assert reason(f"01{G}21ABC€EF")[0] == "bad_character"
    assert reason(f"01{G}21ABCΩEF") == ("bad_character", 21)


def test_wrong_types():
    with pytest.raises(TypeError):
        parse_code(12345)
    with pytest.raises(TypeError):
        identity_of(None)


# ------------------------------------------------------------------------------------------------- the API


def test_code_error_is_a_value_error_with_reason_position_and_message():
    with pytest.raises(ValueError) as info:
        parse_code(f"01{G[:13]}0")
    err = info.value
    assert isinstance(err, CodeError)
    assert err.reason == "bad_gtin_check_digit" and err.position == 15
    assert "check digit" in str(err) and "15" in str(err)
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.reason, copy.position, str(copy)) == (err.reason, err.position, str(err))


def test_code_error_made_by_others_keeps_their_message():
    err = CodeError("bad_gtin", None, "blocked GTIN '123': not 14 digits")
    assert str(err) == "blocked GTIN '123': not 14 digits" and err.position is None


def test_reason_of_maps_every_cut_identity_code():
    assert [reason_of(-k) for k in range(1, len(REASONS) + 1)] == list(REASONS)
    for bad in (0, 1, -len(REASONS) - 1):
        with pytest.raises(ValueError):
            reason_of(bad)


def test_marking_code_is_made_by_parse_code_only():
    with pytest.raises(TypeError):
        MarkingCode()


def test_equality_hash_repr_pickle():
    a = parse_code(SHOES)
    b = parse_code("]d2" + SHOES.replace(GS, "") + "\r\n")
    assert a == b and hash(a) == hash(b)
    assert a != parse_code(MILK) and a != SHOES
    assert len({a, b, parse_code(MILK)}) == 2
    assert repr(a).startswith("MarkingCode('01" + G) and "kind='gs1'" in repr(a)
    assert "repaired=('symbology_prefix'" in repr(b)
    assert pickle.loads(pickle.dumps(b)) == b
    # A tobacco pack and its CIS are different codes with the same identity.
    assert parse_code(TOBACCO_PACK) != parse_code(TOBACCO_PACK[:21])
    assert parse_code(TOBACCO_PACK).identity == parse_code(TOBACCO_PACK[:21]).identity


def test_marking_code_is_immutable():
    c = parse_code(SHOES)
    with pytest.raises(AttributeError):
        c.serial = "x"  # type: ignore[misc]


def test_cut_identity_from_c_agrees():
    from lmcz_fast._codes import _cut_repeatedly

    for raw in (SHOES, "]d2" + SHOES.replace(GS, "") + "\r\n", TOBACCO_PACK, MILK.translate(RUSSIAN)):
        assert _cut_repeatedly(raw, 3) == identity_of(raw)
    with pytest.raises(CodeError) as info:
        _cut_repeatedly("", 1)
    assert info.value.reason == "empty"
    bare = f"01{G}21Q;w7'8h93tEsT"
    assert _cut_repeatedly(bare, 2) == identity_of(bare) == f"01{G}21Q;w7'8h".encode()
    assert _cut_repeatedly(bare, 2, cis=True) == identity_of(bare, cis=True) == bare.encode()


@pytest.mark.parametrize("raw", [SHOES, "]d2" + GS + MILK + "\r\n", TOBACCO_PACK, TOBACCO_BLOCK])
def test_base64_encoded_scan(raw):
    import base64

    for encode in (base64.b64encode, base64.urlsafe_b64encode, lambda b: base64.b64encode(b).rstrip(b"=")):
        text = encode(raw.encode()).decode()
        c = parse_code(text)
        assert c == parse_code(raw) and "base64" in c.repaired
        assert identity_of(text + "\n") == identity_of(raw)


def test_base64_of_something_else_is_not_a_code():
    import base64

    assert reason("aGVsbG8gd29ybGQ=") == ("unknown_format", 0)           # "hello world"
    assert reason(base64.b64encode(b"\x00" * 30).decode()) == ("unknown_format", 0)
    # Base64 of an incomplete code: the error points at the Base64 character where the code ran out.
    text = base64.b64encode(f"01{G}21".encode()).decode()
    assert reason(text) == ("missing_serial", len(text))


# -- the maximum retail price a code carries (`mrp`) ------------------------------------------------------------------

#: The price alphabet of a tobacco pack, written out here independently of the parser (docs/protocol.md).
BASE80 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789" + "!\"%&'*+-./_,:;=<>?"


def base80(kopecks: int) -> str:
    digits = []
    for _ in range(4):
        kopecks, digit = divmod(kopecks, 80)
        digits.append(BASE80[digit])
    assert kopecks == 0
    return "".join(reversed(digits))


def test_mrp_of_a_tobacco_pack_decodes_the_worked_example():
    assert len(BASE80) == 80 and len(set(BASE80)) == 80
    pack = parse_code(f"{G}aB3!x_-ACW.ck<>")
    assert pack.kind == "tobacco_pack" and pack.tail["price"] == "ACW."
    assert pack.mrp == 14630                  # 0*80^3 + 2*80^2 + 22*80 + 70: 146 roubles 30 kopecks


@pytest.mark.parametrize("kopecks", [0, 1, 79, 80, 14630, 25000, 80 ** 4 - 1, 123457, 4096000])
def test_mrp_of_a_tobacco_pack_round_trips_every_digit_position(kopecks):
    pack = parse_code(f"{G}Zz9?*._{base80(kopecks)}AbCd")
    assert pack.mrp == kopecks


def test_mrp_of_every_price_character():
    for value, char in enumerate(BASE80):
        assert parse_code(f"{G}aB3!x_-AAA{char}AbCd").mrp == value
        assert parse_code(f"{G}aB3!x_-{char}AAAAbCd").mrp == value * 80 ** 3


def test_mrp_is_none_when_a_price_character_is_outside_the_alphabet():
    # '(' and ')' are GS1 code characters (the parser accepts the pack) but not price digits.
    pack = parse_code(f"{G}aB3!x_-A(W.AbCd")
    assert pack.kind == "tobacco_pack" and pack.mrp is None


def test_mrp_of_a_tobacco_block_is_its_ai_8005_value_in_kopecks():
    block = parse_code(TOBACCO_BLOCK)
    assert block.tail["8005"] == "012500" and block.mrp == 12500
    assert parse_code(f"01{G}21aB3!x_-{GS}8005000000{GS}93AbCd").mrp == 0
    assert parse_code(f"01{G}21aB3!x_-{GS}93AbCd{GS}8005999999").mrp == 999999
    lost_gs = parse_code(f"01{G}21aB3!x_-8005012500{GS}93AbCd")     # a scanner dropped the GS
    assert "lost_gs" in lost_gs.repaired and lost_gs.mrp == 12500


def test_codes_without_a_price_have_no_mrp():
    for raw in (SHOES, MILK, WATER, BEER, MILK_WEIGHTED, f"{G}aB3!x_-"):
        assert parse_code(raw).mrp is None, raw


# -- a tail cut short (readings_of(raw, tail_cut=True), the service's checks) ---------------------------------------


def test_tail_cut_reads_the_identity_of_a_code_cut_inside_its_tail():
    beer = f"01{G}21ABCDEFG{GS}93ab"
    with pytest.raises(CodeError) as refused:
        readings_of(beer)
    assert refused.value.reason == "truncated"
    (code,) = readings_of(beer, tail_cut=True)
    assert code.identity == f"01{G}21ABCDEFG" and code.tail == {} and "tail_cut" in code.repaired
    (block,) = readings_of(f"01{G}21ABCDEFG{GS}8005{GS}93", tail_cut=True)     # the AI itself, after a GS
    assert block.identity == f"01{G}21ABCDEFG" and block.mrp is None
    (block,) = readings_of(f"01{G}21ABCDEFG{GS}8005123456{GS}93a", tail_cut=True)
    assert block.tail == {"8005": "123456"} and block.mrp is not None and "tail_cut" in block.repaired
    (partial_ai,) = readings_of(f"01{G}21ABCDEFG{GS}800", tail_cut=True)
    assert partial_ai.identity == f"01{G}21ABCDEFG"


def test_tail_cut_changes_nothing_that_parses_without_it():
    for code in synth.generate(300, seed=20, damage_rate=0.5):
        try:
            plain = readings_of(code.scan)
        except CodeError:
            continue
        assert readings_of(code.scan, tail_cut=True) == plain


@pytest.mark.parametrize("group", sorted(synth.GROUPS))
def test_tail_cut_of_any_prefix_is_the_whole_codes_identity_or_refused(group):
    """Every prefix of every code: where only the flag reads it, every reading is the whole code's identity. So the
    flag turns refusals into the right answer, never into another code (a blocked one answered free).

    A prefix that ends inside the serial is another code's text (no parser can tell): there the flag may list the
    readings a lost GS and a cut allow (a shorter serial before the start of a tail), each a start of the serial."""
    for code in synth.generate(20, seed=31, groups=[group]):
        for end in range(16, len(code.element_string) + 1):
            prefix = code.element_string[:end]
            try:
                readings_of(prefix)
                continue
            except CodeError:
                pass
            try:
                readings = readings_of(prefix, tail_cut=True)
            except CodeError:
                continue
            if end < len(code.identity):
                assert all(code.identity.startswith(r.identity) for r in readings), (group, prefix)
                continue
            assert {r.identity for r in readings} == {code.identity}, (group, prefix)


@pytest.mark.parametrize("raw", [SHOES, SHOES[:31], f"01{G}21ABCDEFGHI93abcd", f"01{G[:13]}0", f"01{G[:9]}", "hello",
                                 SHOES + "\ud800", b"\xff\xfe\x00", "", f"01{G}21ЙЦabc{GS}93abcd",
                                 f"01{G}21" + "A" * 21, SHOES + "A" * 600])
@pytest.mark.parametrize("tail_cut", [False, True])
def test_reading_error_is_the_error_readings_of_raises(raw, tail_cut):
    """`reading_error` (what a batch keeps per unreadable scan, made without a raise) is, field for field, the
    `CodeError` `readings_of` raises for the scan, and None for one it reads."""
    try:
        readings_of(raw, tail_cut=tail_cut)
    except CodeError as exc:
        raised = exc
    else:
        raised = None
    made = reading_error(raw, tail_cut=tail_cut)
    if raised is None:
        assert made is None
    else:
        assert type(made) is CodeError and made.__traceback__ is None
        assert (made.reason, made.position, str(made), made.args) == \
            (raised.reason, raised.position, str(raised), raised.args)


def test_code_error_made_without_init_is_the_same_error():
    made, built = code_error("unknown_format", 3, "no such code"), CodeError("unknown_format", 3, "no such code")
    assert type(made) is CodeError and isinstance(made, ValueError)
    assert (made.args, made.reason, made.position, str(made), made.__dict__) == \
        (built.args, built.reason, built.position, str(built), built.__dict__)
    copy = pickle.loads(pickle.dumps(made))
    assert (copy.reason, copy.position, str(copy)) == ("unknown_format", 3, "no such code")
