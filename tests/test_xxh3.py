"""The native XXH3-64 against python-xxhash, bit for bit, on every code path of the algorithm."""

from __future__ import annotations

import random

import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from lmcz_fast._probe import prefilter_key, xxh3_64_intdigest


@pytest.mark.parametrize("content_seed", [0, 1, 2, 3])
def test_every_length_up_to_300(content_seed: int) -> None:
    """0-16, 17-128, 129-240 and the first long blocks, with random contents."""
    rnd = random.Random(content_seed)
    for n in range(301):
        data = rnd.randbytes(n)
        assert xxh3_64_intdigest(data) == xxhash.xxh3_64_intdigest(data), n


@pytest.mark.parametrize("fill", [0x00, 0xFF, 0x5A])
def test_uniform_contents(fill: int) -> None:
    """Constant bytes exercise the carries of the 128-bit products and the length mixing."""
    for n in range(301):
        data = bytes([fill]) * n
        assert xxh3_64_intdigest(data) == xxhash.xxh3_64_intdigest(data), n


@pytest.mark.parametrize(
    "n",
    [1000, 1023, 1024, 1025, 1088, 2047, 2048, 2049, 4096, 10_000, 16_384, 65_537, 100_000],
)
def test_long_inputs(n: int) -> None:
    """Block boundaries of the long path (1024-byte blocks, 64-byte stripes, overlapping last stripe)."""
    data = random.Random(n).randbytes(n)
    assert xxh3_64_intdigest(data) == xxhash.xxh3_64_intdigest(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2500))
def test_matches_xxhash(data: bytes) -> None:
    assert xxh3_64_intdigest(data) == xxhash.xxh3_64_intdigest(data)


def test_unaligned_and_bytes_like() -> None:
    """The hash reads through unaligned pointers and takes any contiguous buffer."""
    base = random.Random(7).randbytes(400)
    for offset in range(1, 9):
        view = memoryview(base)[offset:]
        for n in (3, 8, 16, 31, 129, 241, 300):
            expected = xxhash.xxh3_64_intdigest(bytes(view[:n]))
            assert xxh3_64_intdigest(view[:n]) == expected
            assert xxh3_64_intdigest(bytearray(view[:n])) == expected


def test_str_is_refused() -> None:
    with pytest.raises(TypeError):
        xxh3_64_intdigest("0104600439931256215abc")  # type: ignore[arg-type]


def test_prefilter_key_is_low_32_bits() -> None:
    identity = b"010460043993125621JgXJ5.T"
    assert prefilter_key(identity) == xxhash.xxh3_64_intdigest(identity) & 0xFFFFFFFF
    assert prefilter_key(identity.decode()) == prefilter_key(identity)
