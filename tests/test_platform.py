"""What the compiled core assumes of the machine, made explicit and tested on each platform it is built for
(x86_64 here, aarch64 under emulation in tests/test_arm64.py; docs/platforms.md).

- Byte order: the compiler's stated order picks the read path at build time; every multi-byte read of stored or
  hashed bytes is little-endian whatever the machine, at any alignment (the memory map gives none).
- XXH3's 64x64->128 multiply: 128-bit integers where the compiler has them, else 32-bit halves; both paths are
  compiled everywhere and must agree with exact arithmetic.
- Word size: the build refuses a machine that is not 64-bit (a compile-time #error), so this must hold wherever it
  imports.
"""

from __future__ import annotations

import platform
import random
import sys

import pytest
import xxhash
from hypothesis import given
from hypothesis import strategies as st

from lmcz_fast import _probe

U64 = st.integers(min_value=0, max_value=(1 << 64) - 1)
MASK = (1 << 64) - 1


def _exact_fold(a: int, b: int) -> int:
    product = a * b
    return (product & MASK) ^ (product >> 64)


def test_the_build_states_the_machine_it_was_built_for() -> None:
    assert _probe.PLATFORM["big_endian"] == (sys.byteorder == "big")
    assert _probe.PLATFORM["pointer_bits"] == 64
    if platform.machine() in ("x86_64", "AMD64", "aarch64", "arm64"):
        # both built platforms have 128-bit integers and GCC's prefetch hint (a hint only: no answer depends on it)
        assert _probe.PLATFORM["int128"] and _probe.PLATFORM["prefetch"], _probe.PLATFORM


@given(U64, U64)
def test_both_multiply_paths_agree_with_exact_arithmetic(a: int, b: int) -> None:
    assert _probe._mul_fold(a, b) == (_exact_fold(a, b), _exact_fold(a, b))


def test_multiply_paths_at_the_carries() -> None:
    edges = [0, 1, 2, 0xFFFFFFFF, 0x100000000, 0xFFFFFFFFFFFFFFFF, 0x8000000000000000, 0x9E3779B185EBCA87,
             0x165667B19E3779F9, 0xFFFFFFFF00000000, 0x00000000FFFFFFFF]
    for a in edges:
        for b in edges:
            assert _probe._mul_fold(a, b) == (_exact_fold(a, b),) * 2, (hex(a), hex(b))


def test_reads_are_little_endian_at_every_alignment() -> None:
    rng = random.Random(25)
    data = bytes(rng.randrange(256) for _ in range(64))
    for offset in range(57):
        assert _probe._read_u64(data, offset) == int.from_bytes(data[offset:offset + 8], "little"), offset
    with pytest.raises(ValueError):
        _probe._read_u64(data, 57)
    for size in range(0, 130):          # every XXH3 length branch, at odd and even addresses
        for start in (0, 1, 3, 7):
            chunk = memoryview(data * 3)[start:start + size]
            assert _probe.xxh3_64_intdigest(chunk) == xxhash.xxh3_64_intdigest(bytes(chunk)), (size, start)


def test_high_bytes_are_not_read_as_negative_chars() -> None:
    """`char` is signed on x86_64 and unsigned on aarch64: bytes >= 0x80 must hash and be refused the same."""
    high = bytes(range(128, 256))
    for n in (1, 3, 8, 16, 17, 64, 128):
        assert _probe.xxh3_64_intdigest(high[:n]) == xxhash.xxh3_64_intdigest(high[:n])
    with pytest.raises(ValueError):
        _probe.unpack_key(b"\x00\x00\x00\x00\x00\x01\xff")    # a serial byte outside GS1 set 82


def test_the_map_size_can_be_set_where_address_space_costs(tmp_path) -> None:
    """LMCZ_FAST_MAP_SIZE: a smaller LMDB map for a process whose address space costs memory (qemu-user 7.x keeps
    ~6 MB of host memory per GiB mapped, per open, never given back; RLIMIT_AS). Bad values are a clear error."""
    import subprocess

    from lmcz_fast.store import StoreError
    from lmcz_fast.store.environment import DEFAULT_MAP_SIZE, map_size_from

    assert map_size_from(None) == map_size_from("") == DEFAULT_MAP_SIZE == 1 << 34
    assert map_size_from("256M") == 256 << 20 and map_size_from("16g") == 16 << 30
    assert map_size_from(str(1 << 20)) == 1 << 20
    for bad in ("0", "1K", "12X", "2000G", "-5", "1.5G"):
        with pytest.raises(StoreError, match="LMCZ_FAST_MAP_SIZE"):
            map_size_from(bad)
    child = ("import sys; from lmcz_fast.store import Blocklist; from lmcz_fast.synth import cis_list\n"
             "with Blocklist.building(sys.argv[1]) as bl: bl.load([cis_list(10, seed=1)])\n"
             "from lmcz_fast.store.environment import acquire_env, release_env\n"
             "env = acquire_env(sys.argv[1]); print(env.info()['map_size']); release_env(env)")
    env = {**__import__("os").environ, "LMCZ_FAST_MAP_SIZE": "64M"}
    done = subprocess.run([sys.executable, "-c", child, str(tmp_path / "db")], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.split()[-1]) == 64 << 20
