"""ProbeBase: raw scans cut, hashed and probed in compiled code; hits confirmed by the subclass; staleness;
errors; the bulk-load helpers. Oracles: python-xxhash, pyroaring and the parser's own `parse_code`."""

from __future__ import annotations

import array
import random
import time

import pytest
import xxhash
from _probe_support import (
    GS,
    SetProbe,
    gtin_array,
    key_of,
    make_identity,
    make_scan,
    make_tobacco_pack,
    prefilter_of,
    random_gtin,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from pyroaring import BitMap

from lmcz_fast._codes import CodeError, parse_code
from lmcz_fast._probe import (
    INDEX_NBYTES,
    STORED_INDEX_NBYTES,
    NotAttachedError,
    ProbeBase,
    build_index,
    keys_and_hashes,
    pack_identity,
    unpack_key,
)


@pytest.fixture(scope="module")
def world() -> dict:
    rng = random.Random(2026)
    blocked = [make_identity(rng, serial_len=rng.choice((6, 7, 13, 20))) for _ in range(3000)]
    free = [make_identity(rng, serial_len=13) for _ in range(3000)]
    scans_blocked = [make_scan(i, rng) for i in blocked]
    scans_free = [make_scan(i, rng) for i in free]
    return {"rng": rng, "blocked": blocked, "free": free, "scans_blocked": scans_blocked, "scans_free": scans_free}


def test_blocked_and_free_scans(world: dict) -> None:
    probe = SetProbe(world["blocked"])
    assert all(probe.is_blocked(s) for s in world["scans_blocked"][:500])
    assert not any(probe.is_blocked(s) for s in world["scans_free"][:500])
    # bare identities and bytes are scans too
    assert probe.is_blocked(world["blocked"][0])
    assert probe.is_blocked(world["scans_blocked"][1].encode())
    assert probe.is_blocked(bytearray(world["scans_blocked"][2].encode()))
    assert probe.is_blocked(memoryview(world["scans_blocked"][3].encode()))
    assert not probe.is_blocked(world["free"][0].encode())


def test_tobacco_pack_matches_its_gs1_form() -> None:
    rng = random.Random(29)
    pack, identity = make_tobacco_pack(rng)
    assert parse_code(pack).identity == identity
    probe = SetProbe([identity])
    assert probe.is_blocked(pack) and probe.is_blocked(identity)
    other_pack, _ = make_tobacco_pack(rng)
    assert not probe.is_blocked(other_pack)


def test_confirm_is_called_only_on_prefilter_hits(world: dict) -> None:
    probe = SetProbe(world["blocked"])
    probe.is_blocked_many(world["scans_free"])
    hits = [i for i in world["free"] if key_of(i) in BitMap.deserialize(probe.prefilter)]
    assert [c.decode() for c in probe.confirmed] == hits
    probe.confirmed.clear()
    probe.is_blocked(world["scans_blocked"][5])
    assert probe.confirmed == [world["blocked"][5].encode()]


def test_false_positive_never_blocks(world: dict) -> None:
    """A prefilter holding a code's key while the exact set does not: confirmed, and answered False."""
    ghost = world["free"][0]
    probe = SetProbe(world["blocked"], prefilter=prefilter_of(world["blocked"] + [ghost]))
    scan = world["scans_free"][0]
    assert probe._maybe(ghost.encode())
    assert probe.is_blocked(scan) is False
    assert probe.is_blocked_many([scan]) == [False]
    assert probe.confirmed == [ghost.encode(), ghost.encode()]


def test_blocked_gtin(world: dict) -> None:
    rng = random.Random(14)
    gtin = random_gtin(rng)
    other_gtins = [random_gtin(rng) for _ in range(50)]
    code = make_identity(rng, gtin=gtin)
    probe = SetProbe([], gtins=[gtin, *other_gtins])
    assert probe.is_blocked(make_scan(code, rng))
    assert probe.confirmed == [code.encode()]
    assert probe._maybe(code.encode())
    assert not probe.is_blocked(world["scans_free"][0])
    assert probe.is_blocked_many([world["scans_free"][0], code, world["free"][1]]) == [False, True, False]


def test_lost_gs_scan_is_looked_up_in_both_readings() -> None:
    """`01`+GTIN+`21ABCDEFG93wxyz` is a 13-character serial or a 7-character one before a `93` tail whose GS
    was lost; the parser prefers the tail, so the probe also checks the bare reading (as `Blocklist.check`)."""
    rng = random.Random(93)
    gtin = random_gtin(rng)
    full = f"01{gtin}21ABCDEFG93wxyz"
    short = f"01{gtin}21ABCDEFG"
    assert parse_code(full).identity == short
    by_line = SetProbe([full])
    assert by_line.is_blocked(full) and by_line.is_blocked(full.encode())
    assert by_line.is_blocked_many([short, full] * 40) == [False, True] * 40
    assert not by_line.is_blocked(f"{short}{GS}93wxyz")  # with its GS, the scan is the short code only
    by_short = SetProbe([short])
    assert by_short.is_blocked(full) and by_short.is_blocked(f"{short}{GS}93wxyz")
    assert by_short.is_blocked_many([full, short]) == [True, True]
    assert not SetProbe([make_identity(rng)]).is_blocked(full)


def test_empty_lists() -> None:
    probe = SetProbe([])
    assert not probe.is_blocked(make_identity(random.Random(1)))
    assert probe.is_blocked_many([]) == []
    assert probe._attached_info == (0, 0, 0)


@pytest.mark.parametrize("count", [0, 1, 31, 32, 33, 64, 65, 1000])
def test_many_equals_one_by_one(world: dict, count: int) -> None:
    probe = SetProbe(world["blocked"])
    rng = random.Random(count)
    scans = rng.sample(world["scans_blocked"], count // 2) + rng.sample(world["scans_free"], count - count // 2)
    rng.shuffle(scans)
    expected = [probe.is_blocked(s) for s in scans]
    assert probe.is_blocked_many(scans) == expected
    assert probe.is_blocked_many(tuple(scans)) == expected
    assert probe.is_blocked_many(iter(scans)) == expected
    mixed = [s.encode() if i % 3 == 0 else s for i, s in enumerate(scans)]
    assert probe.is_blocked_many(mixed) == expected


def test_many_reports_first_bad_index(world: dict) -> None:
    probe = SetProbe(world["blocked"])
    scans = world["scans_free"][:40] + ["not a code"] + world["scans_free"][40:45] + [""]
    with pytest.raises(CodeError) as info:
        probe.is_blocked_many(scans)
    err = info.value
    assert err.index == 40
    assert "item 40" in str(err)
    with pytest.raises(CodeError) as direct:
        parse_code("not a code")
    assert err.reason == direct.value.reason


def test_single_bad_scan_raises_the_parsers_error(world: dict) -> None:
    probe = SetProbe(world["blocked"])
    for bad in ["", "hello", "01" + "1" * 14 + "21", "\ud800", "x" * 5000, "ф" * 3000]:
        with pytest.raises(CodeError) as ours:
            probe.is_blocked(bad)
        with pytest.raises(CodeError) as theirs:
            parse_code(bad)
        assert (ours.value.reason, ours.value.position, str(ours.value)) == (
            theirs.value.reason, theirs.value.position, str(theirs.value))
    with pytest.raises(TypeError):
        probe.is_blocked(12345)
    with pytest.raises(TypeError):
        probe.is_blocked_many([world["scans_free"][0], None])


def test_not_attached() -> None:
    class Bare(ProbeBase):
        def _confirm(self, identity: bytes) -> bool:
            return True

        def _renew(self) -> None:
            pass

    probe = Bare()
    for call in (lambda: probe.is_blocked("0104600439931256215abc"),
                 lambda: probe.is_blocked_many(["0104600439931256215abc"]),
                 lambda: probe._maybe(b"0104600439931256215abc")):
        with pytest.raises(NotAttachedError):
            call()
    assert issubclass(NotAttachedError, RuntimeError)
    identity = make_identity(random.Random(3))
    probe._attach(prefilter_of([identity]), b"", 3600)
    assert probe.is_blocked(identity)
    probe._detach()
    with pytest.raises(NotAttachedError):
        probe.is_blocked(identity)
    probe._detach()


def test_bad_attach_leaves_it_detached(world: dict) -> None:
    probe = SetProbe(world["blocked"])
    good = probe.prefilter
    with pytest.raises(ValueError):
        probe._attach(good[:-1], b"", 1.0)
    with pytest.raises(NotAttachedError):
        probe.is_blocked(world["scans_free"][0])
    with pytest.raises(ValueError, match="whole number"):
        probe._attach(good, b"\0" * 7, 1.0)
    with pytest.raises(ValueError, match="not sorted"):
        probe._attach(good, (5).to_bytes(8, "little") + (3).to_bytes(8, "little"), 1.0)
    with pytest.raises(ValueError, match="refresh_interval"):
        probe._attach(good, b"", -1.0)
    probe._attach(good, b"", 1.0)
    assert probe.is_blocked(world["scans_blocked"][0])


def test_attach_holds_buffers_until_detach(world: dict) -> None:
    probe = SetProbe([])
    prefilter = bytearray(prefilter_of(world["blocked"]))
    gtins = bytearray(gtin_array(["04600439931256"]))
    probe._attach(prefilter, gtins, 3600)
    with pytest.raises(BufferError):
        prefilter.extend(b"\0")
    with pytest.raises(BufferError):
        gtins.extend(b"\0")
    probe._attach(prefilter_of([]), b"", 3600)
    prefilter.extend(b"\0")
    gtins.extend(b"\0")


def test_same_version_reuses_the_index(world: dict) -> None:
    """With a version token, an unchanged prefilter (even at a new address) is not re-validated."""
    probe = SetProbe(world["blocked"])
    data = prefilter_of(world["blocked"])
    probe._attach(data, b"", 3600, version=7)
    moved = bytes(bytearray(data))
    assert moved is not data
    probe._attach(moved, b"", 3600, version=7)
    assert probe.is_blocked(world["scans_blocked"][0])
    assert not probe.is_blocked(world["scans_free"][0])
    probe._attach(prefilter_of(world["free"]), b"", 3600, version=8)
    assert probe.is_blocked(world["free"][0]) is False  # the exact set still says no
    assert probe._maybe(world["free"][0].encode())


def test_stored_index_answers_as_the_derived_one(world: dict) -> None:
    """A stored index (built once by the writer) gives the same answers, with no private table."""
    data = prefilter_of(world["blocked"])
    index = build_index(data)
    assert len(index) == STORED_INDEX_NBYTES
    derived = SetProbe(world["blocked"])
    for verify in (True, False):
        probe = SetProbe(world["blocked"])
        probe._attach(data, b"", 3600, 1, index, verify)
        assert probe._index_nbytes == 0 and derived._index_nbytes == INDEX_NBYTES
        assert probe._attached_info == derived._attached_info
        scans = world["scans_blocked"][:300] + world["scans_free"][:300]
        assert probe.is_blocked_many(scans) == derived.is_blocked_many(scans) == [True] * 300 + [False] * 300
        bitmap = BitMap.deserialize(data)
        rng = random.Random(5)
        keys = [key_of(i) for i in world["blocked"][:500]] + [rng.getrandbits(32) for _ in range(20000)]
        assert [probe._maybe_key(k) for k in keys] == [k in bitmap for k in keys]
    with pytest.raises(ValueError, match="corrupt Roaring"):
        build_index(data[:-2])


def _tampered(index: bytes, entry: int, field: slice, value: bytes) -> bytes:
    out = bytearray(index)
    at = 32 + 16 * entry
    out[at + field.start:at + field.stop] = value
    return bytes(out)


def test_stored_index_is_checked_before_use(world: dict) -> None:
    """Whatever a stored index holds, attaching it either fails with ValueError or probes inside the prefilter;
    with verify, it must equal the index derived from the prefilter."""
    data = prefilter_of(world["blocked"])
    index = build_index(data)
    used = next(k for k in range(65536) if index[32 + 16 * k + 12] != 0)   # kind byte of a present entry
    bad = {
        "size": (index[:-1], "bytes; expected"),
        "magic": (b"X" + index[1:], "not written by this build"),
        "other prefilter": (build_index(prefilter_of(world["free"])), "describes"),
        "offset": (_tampered(index, used, slice(8, 12), (len(data) - 1).to_bytes(4, "little")), "past"),
        "kind": (_tampered(index, used, slice(12, 14), (9).to_bytes(2, "little")), "unknown kind"),
        "count": (_tampered(index, used, slice(14, 16), (0).to_bytes(2, "little")), "holds 0 values"),
    }
    probe = SetProbe(world["blocked"])
    for name, (stored, message) in bad.items():
        for verify in (False, True):
            with pytest.raises(ValueError, match=f"{message}|does not match" if verify else message):
                probe._attach(data, b"", 3600, None, stored, verify)
            with pytest.raises(NotAttachedError):
                probe.is_blocked(world["scans_free"][0])
    # in bounds but wrong (a summary bit cleared): passes the bounds check, caught by verify
    quiet = _tampered(index, used, slice(0, 8), (0).to_bytes(8, "little"))
    probe._attach(data, b"", 3600, None, quiet, False)
    with pytest.raises(ValueError, match="does not match"):
        probe._attach(data, b"", 3600, None, quiet, True)
    probe._attach(data, b"", 3600, None, index, True)
    assert probe.is_blocked(world["scans_blocked"][0])


@given(st.binary(min_size=0, max_size=64), st.integers(0, 65535))
@settings(max_examples=200, deadline=None)
def test_random_stored_entries_never_read_outside(junk: bytes, entry: int) -> None:
    """Random bytes over one entry: the attach fails cleanly or every probe stays in bounds (ASan-free check:
    probing values all over that container runs without crashing)."""
    data = prefilter_of([make_identity(random.Random(entry), serial_len=13) for _ in range(50)])
    index = bytearray(build_index(data))
    at = 32 + 16 * entry
    index[at:at + len(junk[:16])] = junk[:16]
    probe = SetProbe([])
    try:
        probe._attach(data, b"", 3600, None, bytes(index), False)
    except ValueError:
        return
    for low in range(0, 65536, 7):
        probe._maybe_key((entry << 16) | low)


def test_renew_after_the_deadline(world: dict) -> None:
    probe = SetProbe(world["blocked"], refresh_interval=0.05)
    scan = world["scans_free"][0]
    probe.is_blocked(scan)
    assert probe.renewals == 0
    time.sleep(0.08)
    probe.is_blocked(scan)
    assert probe.renewals == 1
    probe.is_blocked(scan)
    assert probe.renewals == 1
    time.sleep(0.08)
    probe.is_blocked_many([scan] * 100)
    assert probe.renewals == 1 + 1


def test_renew_sees_a_new_version(world: dict) -> None:
    probe = SetProbe(world["blocked"][:10], refresh_interval=0.0)
    target = world["free"][0]
    assert not probe.is_blocked(target)
    probe.blocked.add(target)
    probe.prefilter = prefilter_of(probe.blocked)
    assert probe.is_blocked(target)  # interval 0: every call renews first
    assert probe.renewals >= 2


def test_renew_that_detaches_fails_cleanly(world: dict) -> None:
    class Closing(SetProbe):
        def _renew(self) -> None:
            self._detach()

    probe = Closing(world["blocked"], refresh_interval=0.0)
    with pytest.raises(NotAttachedError):
        probe.is_blocked(world["scans_free"][0])


def test_renew_errors_propagate(world: dict) -> None:
    class Failing(SetProbe):
        def _renew(self) -> None:
            raise OSError("disk gone")

    probe = Failing(world["blocked"], refresh_interval=0.0)
    with pytest.raises(OSError, match="disk gone"):
        probe.is_blocked(world["scans_free"][0])


def test_confirm_errors_propagate(world: dict) -> None:
    class Failing(SetProbe):
        def _confirm(self, identity: bytes) -> bool:
            raise KeyError(identity)

    probe = Failing(world["blocked"])
    with pytest.raises(KeyError):
        probe.is_blocked(world["scans_blocked"][0])
    with pytest.raises(KeyError):
        probe.is_blocked_many(world["scans_free"][:50] + world["scans_blocked"][:1])


def test_confirm_that_reattaches_or_mutates_the_input(world: dict) -> None:
    """Python callbacks in the middle of a batch may re-attach or shrink the list: no crash, a clear error."""
    scans = list(world["scans_blocked"][:100])

    class Reattaching(SetProbe):
        def _confirm(self, identity: bytes) -> bool:
            self._attach(prefilter_of(self.blocked), b"", 3600)
            return super()._confirm(identity)

    assert Reattaching(world["blocked"]).is_blocked_many(scans) == [True] * 100

    class Shrinking(SetProbe):
        def _confirm(self, identity: bytes) -> bool:
            del scans[:]
            return True

    with pytest.raises(RuntimeError, match="changed size"):
        Shrinking(world["blocked"]).is_blocked_many(scans)


def test_subclass_can_define_slots_and_attributes(world: dict) -> None:
    probe = SetProbe(world["blocked"])
    probe.extra = 1
    assert isinstance(probe, ProbeBase)
    assert probe._index_nbytes == INDEX_NBYTES == 1 << 20


def test_maybe_is_prefilter_only(world: dict) -> None:
    probe = SetProbe(world["blocked"])
    assert all(probe._maybe(i.encode()) for i in world["blocked"][:300])
    bm = BitMap.deserialize(probe.prefilter)
    for identity in world["free"][:1000]:
        assert probe._maybe(identity.encode()) == (key_of(identity) in bm)
    assert probe.confirmed == []


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10**9), st.integers(1, 20), st.booleans()), max_size=80), st.integers(0, 99))
def test_many_agrees_with_a_set(spec: list[tuple[int, int, bool]], seed: int) -> None:
    rng = random.Random(seed)
    identities = [make_identity(random.Random(s), serial_len=n) for s, n, _ in spec]
    blocked = [i for i, (_, _, b) in zip(identities, spec) if b]
    probe = SetProbe(blocked)
    scans = [make_scan(i, rng) for i in identities]
    assert probe.is_blocked_many(scans) == [i in set(blocked) for i in identities]


# -- bulk helpers ----------------------------------------------------------------------------------------------


def test_keys_and_hashes(world: dict) -> None:
    rng = random.Random(5)
    pack, pack_identity_text = make_tobacco_pack(rng)
    raws = world["scans_blocked"][:100] + ["bad one", pack] + world["blocked"][:10] + [b"", world["blocked"][3].encode()]
    keys, hashes, errors = keys_and_hashes(raws)
    good = [r for i, r in enumerate(raws) if i not in (100, 112)]
    identities = [parse_code(r, cis=True).identity for r in good]
    assert identities[100] == pack_identity_text
    assert keys == [pack_identity(i.encode()) for i in identities]
    assert isinstance(hashes, array.array) and hashes.typecode == "I"
    assert list(hashes) == [xxhash.xxh3_64_intdigest(i.encode()) & 0xFFFFFFFF for i in identities]
    assert [(i, reason) for i, reason, _ in errors] == [(100, "unknown_format"), (112, "empty")] or [
        i for i, _, _ in errors] == [100, 112]
    for index, reason, message in errors:
        with pytest.raises(CodeError) as info:
            parse_code(raws[index], cis=True)
        assert (reason, message) == (info.value.reason, str(info.value))


def test_keys_and_hashes_reads_blocklist_lines_or_scans() -> None:
    """A GS-less text after AI 21 is all serial in a blocklist line; as a scan the parser may split a tail off."""
    gtin = random_gtin(random.Random(93))
    line = f"01{gtin}21ABCDEFG93wxyz"
    (as_line,), _, _ = keys_and_hashes([line])
    (as_scan,), _, _ = keys_and_hashes([line], cis=False)
    assert as_line == pack_identity(line.encode())
    assert as_scan == pack_identity(parse_code(line).identity.encode())
    assert as_scan != as_line


def test_keys_and_hashes_takes_any_iterable(world: dict) -> None:
    keys, hashes, errors = keys_and_hashes(s for s in world["scans_free"][:2000])
    assert len(keys) == len(hashes) == 2000 and errors == []
    assert keys_and_hashes([]) == ([], array.array("I"), [])


def test_pack_and_unpack() -> None:
    rng = random.Random(9)
    for n in (1, 7, 13, 20):
        identity = make_identity(rng, serial_len=n)
        key = pack_identity(identity.encode())
        assert len(key) == 6 + n
        assert key[:6] == int(identity[2:16]).to_bytes(6, "big")
        assert key[6:] == identity[18:].encode()
        assert unpack_key(key) == identity
        assert pack_identity(identity) == key
    assert unpack_key(pack_identity(b"010000000000000021A")) == "010000000000000021A"
    for bad in [b"", b"0104600439931256", b"0204600439931256215abc", b"01046004399312x6215abc",
                b"0104600439931256225abc", b"010460043993125621" + b"a" * 21, b"010460043993125621a\x1d"]:
        with pytest.raises(ValueError):
            pack_identity(bad)
    for bad in [b"", b"\0" * 6, b"\xff" * 6 + b"a", b"\0" * 6 + b"\x1d", b"\0" * 6 + b"a" * 21]:
        with pytest.raises(ValueError):
            unpack_key(bad)
