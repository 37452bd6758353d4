"""Helpers for the probe tests: scans built by hand (GS1 with a crypto tail, tobacco packs), and a minimal
ProbeBase subclass whose exact set is a Python set, so tests can see every `_confirm` and `_renew` call.

Prefilter keys come from python-xxhash and bitmaps from pyroaring: the outside oracles.
"""

from __future__ import annotations

import random
import string
from typing import Iterable

import xxhash
from pyroaring import BitMap

from lmcz_fast._probe import ProbeBase

SERIAL_ALPHABET = string.ascii_letters + string.digits + "!\"%&'()*+,-./:;<=>?_"
GS = "\x1d"


def gtin_with_check(body13: str) -> str:
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(body13))
    return body13 + str((10 - total % 10) % 10)


def random_gtin(rng: random.Random) -> str:
    return gtin_with_check("0" + "".join(rng.choice(string.digits) for _ in range(12)))


def make_identity(rng: random.Random, serial_len: int = 13, gtin: str | None = None) -> str:
    serial = "".join(rng.choice(SERIAL_ALPHABET) for _ in range(serial_len))
    return f"01{gtin or random_gtin(rng)}21{serial}"


def make_scan(identity: str, rng: random.Random) -> str:
    """What a till sends for a GS1 code: the identity, GS, a 91/92 crypto tail."""
    key = "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(4))
    sig = "".join(rng.choice(string.ascii_letters + string.digits + "+/=") for _ in range(44))
    return f"{identity}{GS}91{key}{GS}92{sig}"


def make_tobacco_pack(rng: random.Random) -> tuple[str, str]:
    """A 29-character tobacco pack code (GTIN, 7-char serial, MRP, crypto) and its canonical identity."""
    gtin = random_gtin(rng)
    serial = "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(7))
    mrp = "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(4))
    crypto = "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(4))
    return f"{gtin}{serial}{mrp}{crypto}", f"01{gtin}21{serial}"


def key_of(identity: str | bytes) -> int:
    data = identity.encode("ascii") if isinstance(identity, str) else identity
    return xxhash.xxh3_64_intdigest(data) & 0xFFFFFFFF


def prefilter_of(identities: Iterable[str]) -> bytes:
    bm = BitMap(key_of(i) for i in identities)
    bm.run_optimize()
    return bm.serialize()


def gtin_array(gtins: Iterable[str]) -> bytes:
    return b"".join(int(g).to_bytes(8, "little") for g in sorted(set(gtins), key=int))


class SetProbe(ProbeBase):
    """A ProbeBase over a Python set of identities (and GTINs), recording the protocol calls."""

    def __init__(self, identities: Iterable[str], gtins: Iterable[str] = (), refresh_interval: float = 3600.0,
                 prefilter: bytes | None = None) -> None:
        self.blocked = set(identities)
        self.gtins = set(gtins)
        self.refresh_interval = refresh_interval
        self.prefilter = prefilter_of(self.blocked) if prefilter is None else prefilter
        self.confirmed: list[bytes] = []
        self.renewals = 0
        self._attach(self.prefilter, gtin_array(self.gtins), refresh_interval)

    def _confirm(self, identity: bytes) -> bool:
        self.confirmed.append(identity)
        text = identity.decode("ascii")
        return text in self.blocked or text[2:16] in self.gtins

    def _renew(self) -> None:
        self.renewals += 1
        self._attach(self.prefilter, gtin_array(self.gtins), self.refresh_interval)
