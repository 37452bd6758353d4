"""The zero-copy Roaring reader against pyroaring: every container kind, both cookies, with and without the
offset header, and corrupt or truncated buffers (which must raise ValueError, never crash)."""

from __future__ import annotations

import random
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyroaring import BitMap

from lmcz_fast._probe import RoaringView

SERIAL_COOKIE_NO_RUNCONTAINER = 12346
SERIAL_COOKIE = 12347


def cookie_of(data: bytes) -> int:
    return struct.unpack_from("<I", data)[0] & 0xFFFF


def assert_same(bm: BitMap, probes: int = 2000, seed: int = 0) -> RoaringView:
    """Every member is found, random and neighbouring non-members are not, and the lengths agree."""
    view = RoaringView(bm.serialize())
    assert len(view) == len(bm)
    for value in bm:
        assert value in view
    rnd = random.Random(seed)
    candidates = [rnd.getrandbits(32) for _ in range(probes)]
    for value in list(bm)[:probes]:
        candidates += [value - 1, value + 1, value ^ 0x10000]
    for value in candidates:
        if 0 <= value <= 0xFFFFFFFF:
            assert (value in view) == (value in bm), value
    return view


def test_empty() -> None:
    view = assert_same(BitMap())
    assert len(view) == 0 and view.containers == 0
    assert 0 not in view and 0xFFFFFFFF not in view


@pytest.mark.parametrize("value", [0, 1, 65535, 65536, 2**31, 2**32 - 2, 2**32 - 1])
def test_single_value(value: int) -> None:
    view = assert_same(BitMap([value]))
    assert value in view and len(view) == 1


def test_extremes_together() -> None:
    bm = BitMap([0, 2**32 - 1])
    view = assert_same(bm)
    assert 0 in view and 2**32 - 1 in view and 1 not in view and 2**32 - 2 not in view


@pytest.mark.parametrize("size", [1, 10, 1000, 100_000])
def test_random_sparse(size: int) -> None:
    rnd = random.Random(size)
    bm = BitMap(rnd.getrandbits(32) for _ in range(size))
    assert cookie_of(bm.serialize()) == SERIAL_COOKIE_NO_RUNCONTAINER
    assert_same(bm, seed=size)


def test_prefilter_sized() -> None:
    """The production shape: ~900k random 32-bit keys, every high 16-bit key present, arrays of ~14 values."""
    rnd = random.Random(900)
    bm = BitMap(rnd.getrandbits(32) for _ in range(900_000))
    view = RoaringView(bm.serialize())
    assert len(view) == len(bm) and view.containers == 65536
    for value in rnd.sample(list(bm), 20_000):
        assert value in view
    for _ in range(20_000):
        value = rnd.getrandbits(32)
        assert (value in view) == (value in bm)


def test_dense_bitset_containers() -> None:
    rnd = random.Random(5)
    values = [key << 16 | rnd.getrandbits(16) for key in (0, 3, 0xFFFF) for _ in range(20_000)]
    bm = BitMap(values)
    data = bm.serialize()
    assert cookie_of(data) == SERIAL_COOKIE_NO_RUNCONTAINER
    assert len(data) > 3 * 8192
    assert_same(bm)


def test_array_bitset_boundary() -> None:
    """4096 values is still an array container, 4097 a bitset."""
    for count in (4095, 4096, 4097):
        bm = BitMap(range(0, 2 * count, 2))
        assert_same(bm)


@pytest.mark.parametrize("containers", [1, 3, 4, 10])
def test_run_containers(containers: int) -> None:
    """Runs with fewer than 4 containers have no offset header, with 4 or more they have one."""
    bm = BitMap()
    for key in range(containers):
        base = key * 3 << 16
        bm.update(range(base + 10, base + 5000))
        bm.update(range(base + 6000, base + 6001))
        bm.update(range(base + 60_000, base + 65_536))
    bm.run_optimize()
    data = bm.serialize()
    assert cookie_of(data) == SERIAL_COOKIE
    assert_same(bm)


def test_mixed_container_kinds() -> None:
    bm = BitMap(range(100, 40_000))  # run
    bm.update(range(1 << 16, (1 << 16) + 20_000, 3))  # bitset
    bm.update([5 << 16, (5 << 16) + 7, (5 << 16) + 65_535])  # array
    bm.update(range((0xFFFF << 16) + 65_000, 1 << 32))  # run touching 2**32 - 1
    bm.run_optimize()
    assert cookie_of(bm.serialize()) == SERIAL_COOKIE
    view = assert_same(bm)
    assert 2**32 - 1 in view


def test_full_container_run() -> None:
    bm = BitMap(range(7 << 16, 8 << 16))
    bm.run_optimize()
    view = assert_same(bm)
    assert len(view) == 65536


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.integers(0, 2**32 - 1), max_size=300),
    st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(1, 3000)), max_size=4),
    st.booleans(),
)
def test_random_shapes(values: list[int], runs: list[tuple[int, int]], optimize: bool) -> None:
    bm = BitMap(values)
    for start, length in runs:
        bm.update(range(start, min(start + length, 2**32)))
    if optimize:
        bm.run_optimize()
    assert_same(bm, probes=200)


def test_not_an_int_or_out_of_range_is_absent() -> None:
    view = RoaringView(BitMap([0, 5]).serialize())
    assert -1 not in view and 2**32 not in view and "5" not in view and 5.0 not in view


def test_holds_the_buffer() -> None:
    """A bytearray cannot be resized under a live view, so the view never reads freed memory."""
    data = bytearray(BitMap([1, 2, 3]).serialize())
    view = RoaringView(data)
    with pytest.raises(BufferError):
        data.extend(b"x")
    del view
    data.extend(b"x")


def test_reads_any_alignment() -> None:
    bm = BitMap(random.Random(3).getrandbits(32) for _ in range(5000))
    data = bm.serialize()
    for pad in range(1, 8):
        view = RoaringView(memoryview(b"\0" * pad + data)[pad:])
        assert len(view) == len(bm)
        assert all(value in view for value in list(bm)[:500])


# -- corrupt input ---------------------------------------------------------------------------------------------

SAMPLES = {
    "empty": BitMap(),
    "arrays": BitMap([1, 2, 3, 70_000, 2**32 - 1]),
    "bitset": BitMap(range(0, 20_000, 2)),
}
_runs_small = BitMap(range(10, 500))
_runs_small.update([1 << 16, 3 << 16])
_runs_small.run_optimize()
SAMPLES["runs_no_offsets"] = _runs_small
_runs_big = BitMap()
for _key in range(6):
    _runs_big.update(range(_key << 16, (_key << 16) + 300))
_runs_big.add(9 << 16)
_runs_big.run_optimize()
SAMPLES["runs_with_offsets"] = _runs_big


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_truncation_raises(name: str) -> None:
    data = SAMPLES[name].serialize()
    RoaringView(data)
    for cut in range(len(data)):
        with pytest.raises(ValueError):
            RoaringView(data[:cut])


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_trailing_bytes_raise(name: str) -> None:
    with pytest.raises(ValueError, match="trailing"):
        RoaringView(SAMPLES[name].serialize() + b"\0")


def test_unknown_cookie() -> None:
    data = bytearray(BitMap([1]).serialize())
    data[0] ^= 0xFF
    with pytest.raises(ValueError, match="cookie"):
        RoaringView(bytes(data))


def test_too_many_containers() -> None:
    with pytest.raises(ValueError):
        RoaringView(struct.pack("<II", SERIAL_COOKIE_NO_RUNCONTAINER, 65537))


def _no_run_bitmap(containers: list[tuple[int, list[int]]], offsets: list[int] | None = None) -> bytes:
    """A hand-made 12346 serialization of array containers (to build the malformed cases pyroaring won't)."""
    header = struct.pack("<II", SERIAL_COOKIE_NO_RUNCONTAINER, len(containers))
    desc = b"".join(struct.pack("<HH", key, len(vals) - 1) for key, vals in containers)
    pos = len(header) + len(desc) + 4 * len(containers)
    computed = []
    for _, vals in containers:
        computed.append(pos)
        pos += 2 * len(vals)
    offs = b"".join(struct.pack("<I", o) for o in (offsets if offsets is not None else computed))
    body = b"".join(struct.pack(f"<{len(vals)}H", *vals) for _, vals in containers)
    return header + desc + offs + body


def test_hand_made_matches_pyroaring() -> None:
    data = _no_run_bitmap([(0, [1, 2, 3]), (1, [7])])
    assert data == BitMap([1, 2, 3, 65536 + 7]).serialize()
    assert 65543 in RoaringView(data)


@pytest.mark.parametrize(
    "containers, offsets, message",
    [
        ([(1, [1]), (1, [2])], None, "keys not strictly increasing"),
        ([(2, [1]), (1, [2])], None, "keys not strictly increasing"),
        ([(0, [3, 2])], None, "not strictly increasing"),
        ([(0, [3, 3])], None, "not strictly increasing"),
        ([(0, [1]), (1, [2])], [24, 99], "offset of container 1 is 99, expected 26"),
    ],
)
def test_malformed_structure(containers, offsets, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RoaringView(_no_run_bitmap(containers, offsets))


def test_bitset_cardinality_mismatch() -> None:
    data = bytearray(BitMap(range(0, 20_000, 2)).serialize())
    data[-1] ^= 0x01
    with pytest.raises(ValueError, match="bitset container 0 holds"):
        RoaringView(bytes(data))


def test_run_container_faults() -> None:
    bm = BitMap(range(10, 500))
    bm.run_optimize()
    good = bm.serialize()
    # cookie(4) + run bitset(1) + descriptive header(4) = 9; then n_runs (2), then (start, length-1).
    assert struct.unpack_from("<HHH", good, 9) == (1, 10, 489)
    past_end = bytearray(good)
    struct.pack_into("<HH", past_end, 11, 65_000, 1000)
    with pytest.raises(ValueError):
        RoaringView(bytes(past_end))
    zero_runs = bytearray(good)
    struct.pack_into("<H", zero_runs, 9, 0)
    with pytest.raises(ValueError):
        RoaringView(bytes(zero_runs))
    wrong_card = bytearray(good)
    struct.pack_into("<HH", wrong_card, 11, 10, 488)
    with pytest.raises(ValueError, match="holds 489 values, header says 490"):
        RoaringView(bytes(wrong_card))


def test_overlapping_runs() -> None:
    bm = BitMap(range(10, 20))
    bm.update(range(30, 40))
    bm.run_optimize()
    data = bytearray(bm.serialize())
    assert struct.unpack_from("<HHHHH", data, 9) == (2, 10, 9, 30, 9)
    struct.pack_into("<H", data, 15, 15)  # second run starts inside the first
    with pytest.raises(ValueError, match="overlapping"):
        RoaringView(bytes(data))


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(sorted(SAMPLES)), st.data())
def test_random_corruption_never_crashes(name: str, data: st.DataObject) -> None:
    """Flipped bytes either raise ValueError or give a view whose probes stay inside the buffer."""
    raw = bytearray(SAMPLES[name].serialize())
    for _ in range(data.draw(st.integers(1, 4))):
        if not raw:
            break
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    try:
        view = RoaringView(bytes(raw[:cut]))
    except ValueError:
        return
    for value in data.draw(st.lists(st.integers(0, 2**32 - 1), max_size=50)):
        value in view  # noqa: B015 - only has to not crash
    assert len(view) >= 0


def test_segment_summary_boundaries() -> None:
    """The per-container summary (one bit per 1024 values) must not hide values at segment edges."""
    edges = [0, 1023, 1024, 2047, 2048, 64_511, 64_512, 65_535]
    for base in (0, 7 << 16):
        assert_same(BitMap(base + v for v in edges))
        runs = BitMap(range(base + 1000, base + 1030))
        runs.update(range(base + 3071, base + 3073))
        runs.update(range(base + 65_000, base + 65_536))
        runs.run_optimize()
        assert_same(runs)
        dense = BitMap(base + v for v in range(0, 65_536, 7) if not 5000 <= v < 9000)
        assert_same(dense)
