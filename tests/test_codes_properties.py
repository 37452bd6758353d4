"""Property tests of the parser: generated codes of every group round-trip (clean and damaged), random input never
crashes and always gives a MarkingCode or a CodeError in bounded time, and element strings agree with biip."""

from __future__ import annotations

import random
import time

import biip
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from lmcz_fast import synth
from lmcz_fast._codes import CodeError, _cut_repeatedly, identity_of, parse_code

GS = "\x1d"
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -------------------------------------------------------------------------------------- valid codes, by group


@st.composite
def codes(draw, group_names=tuple(synth.GROUPS)):
    """A code of a product group with hypothesis-chosen GTIN, serial and tail values (not synth's random ones)."""
    group = synth.GROUPS[draw(st.sampled_from(group_names))]
    body = draw(st.text("0123456789", min_size=13, max_size=13))
    gtin = body + synth.gtin_check_digit(body)
    serial = draw(st.text(group.serial_alphabet, min_size=group.serial_length, max_size=group.serial_length))
    if group.kind == "tobacco_pack":
        price = draw(st.text(synth.CHARSET_82, min_size=4, max_size=4))
        check = draw(st.text(synth.CHARSET_82, min_size=4, max_size=4))
        assume(not (gtin.startswith("01")))     # a pack whose GTIN starts "01" reads as an element string
        return group, gtin, serial, (("price", price), ("check", check)), gtin + serial + price + check
    tail = []
    for ai in group.tail:
        if ai == "91":
            value = draw(st.text(synth.KEY_ID, min_size=4, max_size=4))
        elif ai == "92":
            value = draw(st.text(synth.BASE64, min_size=group.signature_length, max_size=group.signature_length))
        elif ai == "93":
            value = draw(st.text(synth.BASE64, min_size=4, max_size=4))
        else:
            value = draw(st.text("0123456789", min_size=6, max_size=6))
        tail.append((ai, value))
    element = "01" + gtin + "21" + serial + "".join(GS + ai + v for ai, v in tail)
    return group, gtin, serial, tuple(tail), element


def check_parses_to(raw, group, gtin, serial, tail):
    c = parse_code(raw)
    assert (c.gtin, c.serial) == (gtin, serial)
    assert c.identity == "01" + gtin + "21" + serial
    assert c.kind == ("tobacco_pack" if group.kind == "tobacco_pack" else "gs1")
    assert tuple(c.tail.items()) == tail
    assert identity_of(raw) == c.identity.encode()
    return c


@SETTINGS
@given(codes())
def test_every_group_round_trips(code):
    group, gtin, serial, tail, element = code
    c = check_parses_to(element, group, gtin, serial, tail)
    assert c.repaired == ()
    assert c.element_string == element
    assert c.cis == (gtin + serial if group.kind == "tobacco_pack" else c.identity)
    assert parse_code(c.identity, cis=True).identity == c.identity


@SETTINGS
@given(codes(), st.lists(st.sampled_from(synth.DAMAGES), min_size=1, max_size=3, unique=True), st.randoms())
def test_damaged_scans_round_trip(code, kinds, rnd):
    group, gtin, serial, tail, element = code
    if "escaped_gs" in kinds and ("cyrillic_layout" in kinds or "base64" in kinds):
        kinds.remove("escaped_gs")      # a till's textual escapes meet neither a keyboard layout nor Base64
    scan = element
    applied = []
    for kind in sorted(kinds, key=synth.DAMAGES.index):
        damaged = synth.damage(scan, kind, rnd)
        if damaged != scan:
            applied.append(kind)
            scan = damaged
    c = check_parses_to(scan, group, gtin, serial, tail)
    for kind in applied:
        expected = {"trailing_newline": "trailing_newline"}.get(kind, kind)
        if kind == "lost_gs" and len(tail) == 0:
            continue
        assert expected in c.repaired, (kind, c.repaired)


def test_synth_codes_of_every_group_round_trip_with_damage():
    for g in synth.generate(3000, seed=11, damage_rate=0.7):
        c = parse_code(g.scan)
        assert (c.identity, c.cis, tuple(c.tail.items())) == (g.identity, g.cis, g.tail), g


# ------------------------------------------------------------------------------------ hostile, random input


def agrees(raw):
    """parse_code, identity_of and the C cut agree on raw: same identity, or the same refusal."""
    try:
        c = parse_code(raw)
    except CodeError as err:
        assert err.reason and isinstance(err.reason, str)
        assert err.position is None or 0 <= err.position <= len(raw)
        with pytest.raises(CodeError) as again:
            identity_of(raw)
        assert (again.value.reason, again.value.position) == (err.reason, err.position)
        return None
    assert identity_of(raw) == c.identity.encode()
    assert len(c.gtin) == 14 and c.gtin.isdigit() and 1 <= len(c.serial) <= 20
    assert parse_code(c.element_string) == c
    if isinstance(raw, bytes):
        assert _cut_repeatedly(raw, 1) == c.identity.encode()
    try:
        line = parse_code(raw, cis=True)
    except CodeError as err:
        assert err.reason in ("ambiguous_serial", "serial_too_long", "bad_tail", "unknown_ai", "duplicate_ai",
                              "bad_character", "truncated"), err.reason
    else:
        assert identity_of(raw, cis=True) == line.identity.encode()
        assert line.gtin == c.gtin
    return c


@SETTINGS
@given(st.text())
def test_random_text_never_crashes(raw):
    agrees(raw)


@SETTINGS
@given(st.binary(max_size=600))
def test_random_bytes_never_crash(raw):
    agrees(raw)


ALPHABET = list(synth.CHARSET_82) + [GS, "\r", "\n", "]", "\\", "u", "0", "1", "2", "9", "3", "Й", "ю", "\ud800", "MDEw", "XWQy"]


@SETTINGS
@given(st.lists(st.sampled_from(ALPHABET), max_size=120).map("".join))
def test_code_like_text_never_crashes(raw):
    agrees(raw)


@SETTINGS
@given(codes(), st.integers(min_value=0, max_value=200), st.sampled_from(ALPHABET + ["", "\x00", "\xff", "€"]))
def test_one_character_changed_in_a_valid_code(code, at, ch):
    element = code[4]
    at %= len(element) + 1
    agrees(element[:at] + ch + element[at + 1 :])
    agrees(element[:at] + ch + element[at:])


def test_unpaired_surrogates_anywhere():
    rng = random.Random(5)
    for _ in range(500):
        chars = [rng.choice(ALPHABET) for _ in range(rng.randrange(1, 80))]
        chars.insert(rng.randrange(len(chars) + 1), rng.choice(["\ud800", "\udfff", "\udc00"]))
        with pytest.raises(CodeError) as info:
            parse_code("".join(chars))
        assert info.value.reason in ("invalid_utf8", "too_long")


@pytest.mark.parametrize(
    "raw",
    [
        "01" + "1" * 5_000_000,
        b"9" * 5_000_000,
        "Й" * 3_000_000,
        "\r\n" * 2_000_000,
        "01" + "\ud800" * 1_000_000,
        "0104600439931256" + "21" + "A" * 2000,
        "0104600439931256" + "21" + ("93AbCd" * 300),
    ],
)
def test_huge_input_is_refused_in_bounded_time(raw):
    start = time.perf_counter()
    for _ in range(100):
        with pytest.raises(CodeError):
            parse_code(raw)
    assert time.perf_counter() - start < 0.5


def test_worst_case_lost_gs_search_is_bounded():
    # The longest scan the parser looks at, GS-less, made to offer as many tail readings as possible.
    raw = "0104600439931256" + "21" + "9" * 490
    start = time.perf_counter()
    for _ in range(1000):
        agrees(raw)
    assert time.perf_counter() - start < 1.0


# -------------------------------------------------------------------------------------------- biip as oracle


@settings(max_examples=150, deadline=None)
@given(codes(tuple(n for n, g in synth.GROUPS.items() if g.kind == "gs1")))
def test_element_strings_agree_with_biip(code):
    group, gtin, serial, tail, element = code
    ours = parse_code(element)
    theirs = biip.parse(element)
    assert theirs.gs1_message is not None, theirs.gs1_message_error
    pairs = [(es.ai.ai, es.value) for es in theirs.gs1_message.element_strings]
    assert pairs == [("01", ours.gtin), ("21", ours.serial), *ours.tail.items()]


def test_synth_element_strings_agree_with_biip():
    for g in synth.generate(200, seed=3, groups=[n for n, gr in synth.GROUPS.items() if gr.kind == "gs1"]):
        theirs = biip.parse(g.element_string)
        pairs = [(es.ai.ai, es.value) for es in theirs.gs1_message.element_strings]
        ours = parse_code(g.element_string)
        assert pairs == [("01", ours.gtin), ("21", ours.serial), *ours.tail.items()]
