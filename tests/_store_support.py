"""Independent helpers for store tests: valid GS1 codes built by hand, and prefilter collisions found by brute force.

They use python-xxhash (not the project's own XXH3) so the tests check the store against an outside oracle.
"""

from __future__ import annotations

import random
import string

import xxhash

SERIAL_ALPHABET = string.ascii_letters + string.digits + "!\"%&'()*+,-./:;<=>?_"
GS = "\x1d"


def gtin_with_check(body13: str) -> str:
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(body13))
    return body13 + str((10 - total % 10) % 10)


def make_identity(rng: random.Random, serial_len: int = 13) -> str:
    gtin = gtin_with_check("0" + "".join(rng.choice(string.digits) for _ in range(12)))
    serial = "".join(rng.choice(SERIAL_ALPHABET) for _ in range(serial_len))
    return f"01{gtin}21{serial}"


def make_scan(identity: str, rng: random.Random) -> str:
    """A scan as a till sends it: the identity, GS, a 91/92 crypto tail."""
    key = "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(4))
    sig = "".join(rng.choice(string.ascii_letters + string.digits + "+/=") for _ in range(44))
    return f"{identity}{GS}91{key}{GS}92{sig}"


def prefilter_key(identity: str) -> int:
    return xxhash.xxh3_64_intdigest(identity.encode("ascii")) & 0xFFFFFFFF


def colliding_pairs(count: int, seed: int = 7) -> list[tuple[str, str]]:
    """Pairs of distinct identities whose prefilter keys are equal (birthday search, ~4 pairs per 200k)."""
    rng = random.Random(seed)
    gtin = gtin_with_check("0460000000001")
    seen: dict[int, str] = {}
    pairs: list[tuple[str, str]] = []
    while len(pairs) < count:
        identity = f"01{gtin}21{''.join(rng.choice(SERIAL_ALPHABET) for _ in range(13))}"
        key = prefilter_key(identity)
        other = seen.get(key)
        if other is not None and other != identity:
            pairs.append((other, identity))
        else:
            seen[key] = identity
    return pairs
