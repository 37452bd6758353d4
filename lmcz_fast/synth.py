"""Deterministic generator of realistic Chestny Znak marking codes (demo, tests, benches).

Every code is generated from a seed, so the same call gives the same codes on every machine and Python version
(only `random.Random` with an explicit seed is used). What is realistic about them:

* GTINs are GTIN-14 with a valid check digit, drawn from a pool of products per group (Russian `0460`/`0461`
  prefixes, some imports), so a blocklist has many codes per GTIN as real ones do.
* Each product group has its serial length and alphabet and its tail (see `GROUPS`): 13-character serials over
  GS1's 82-character set with a `91` key id and a `92` signature for shoes, clothing, tyres, perfume, medicine;
  6 characters + `93` for milk (plus `3103` net weight for variable-weight dairy); 13 + `93` for water and soft
  drinks; 7 + `93` for beer; the 29-character tobacco pack (GTIN + serial + price + check, no AIs) and the
  tobacco block (`8005` price + `93`).
* Optional scanner damage (`DAMAGES`, `damage()`): a lost GS (keyboard wedge), a symbology identifier
  (`]d2`, `]C1`, `]Q3`), a leading GS standing for FNC1, a trailing CR/LF, GS written as the text `\\u001d`,
  the scan typed under a Russian keyboard layout, the whole scan Base64-encoded by a till.

Signatures and check codes are random characters of the right alphabet and length, not real cryptography.

Entry points: `generate(n, seed=..., groups=..., damage_rate=...)` -> list of `GeneratedCode`;
`cis_list(n, seed=...)` -> CIS strings only (fast, for big blocklists); `blocklist_and_probes(...)` -> a blocklist
and raw scans to probe it with, and the truth; `damage(scan, kind, rng)`.
"""

from __future__ import annotations

import base64
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

__all__ = [
    "DAMAGES",
    "GROUPS",
    "GeneratedCode",
    "ProductGroup",
    "blocklist_and_probes",
    "cis_list",
    "damage",
    "generate",
    "gtin_check_digit",
]

GS = "\x1d"

#: GS1 AI encodable character set 82: every character a serial or a tail value may hold.
CHARSET_82 = "!\"%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
KEY_ID = "0123456789ABCDEF"
DIGITS = "0123456789"


@dataclass(frozen=True, slots=True)
class ProductGroup:
    """How one product group's codes look.

    `tail` lists the AIs after the serial in order; the empty tuple with `kind="tobacco_pack"` means the 29-character
    AI-less pack code. `signature_length` is the `92` value's length (44, or 88 in older codes).
    """

    name: str
    serial_length: int
    serial_alphabet: str
    tail: tuple[str, ...]
    kind: str = "gs1"
    signature_length: int = 44
    share: float = 1.0


#: The product groups, with their share of a mixed stream (roughly a shop's mix).
GROUPS: dict[str, ProductGroup] = {
    g.name: g
    for g in (
        ProductGroup("shoes", 13, CHARSET_82, ("91", "92"), share=1.0),
        ProductGroup("clothing", 13, CHARSET_82, ("91", "92"), share=1.5),
        ProductGroup("tyres", 13, CHARSET_82, ("91", "92"), signature_length=88, share=0.3),
        ProductGroup("perfume", 13, CHARSET_82, ("91", "92"), share=0.5),
        ProductGroup("medicine", 13, ALNUM, ("91", "92"), share=1.5),
        ProductGroup("milk", 6, CHARSET_82, ("93",), share=2.0),
        ProductGroup("milk_weighted", 6, CHARSET_82, ("93", "3103"), share=0.3),
        ProductGroup("water", 13, CHARSET_82, ("93",), share=1.0),
        ProductGroup("soft_drinks", 13, CHARSET_82, ("93",), share=0.7),
        ProductGroup("beer", 7, CHARSET_82, ("93",), share=1.0),
        ProductGroup("tobacco_pack", 7, CHARSET_82, (), kind="tobacco_pack", share=1.5),
        ProductGroup("tobacco_block", 7, CHARSET_82, ("8005", "93"), share=0.3),
    )
}

#: Kinds of scanner damage `damage()` knows.
DAMAGES = (
    "lost_gs",
    "symbology_prefix",
    "leading_fnc1",
    "trailing_newline",
    "escaped_gs",
    "cyrillic_layout",
    "base64",
)

_US = "qwertyuiop[]asdfghjkl;'zxcvbnm,./QWERTYUIOP{}ASDFGHJKL:\"ZXCVBNM<>?&`~"
_RU = "йцукенгшщзхъфывапролджэячсмитьбю.ЙЦУКЕНГШЩЗХЪФЫВАПРОЛДЖЭЯЧСМИТЬБЮ,?ёЁ"
_TO_RUSSIAN_LAYOUT = str.maketrans(_US, _RU)


class GeneratedCode(NamedTuple):
    """One generated code: what a scanner sends (`scan`, possibly damaged) and what it must parse to.

    A NamedTuple rather than a frozen dataclass: making 900k of them stays well under a second."""

    group: str
    scan: str
    element_string: str     # the undamaged code, GS before every tail AI (a tobacco pack: its 29 characters)
    cis: str                # CIS as CRPT prints it
    identity: str           # "01" + GTIN + "21" + serial
    gtin: str
    serial: str
    tail: tuple[tuple[str, str], ...]
    damage: tuple[str, ...]

    @property
    def kind(self) -> str:
        return GROUPS[self.group].kind


def gtin_check_digit(first13: str) -> str:
    """The GS1 mod-10 check digit of a GTIN-14's first 13 digits."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(first13))
    return str((10 - total % 10) % 10)


def _table(alphabet: str) -> bytes:
    """A bytes.translate table sending each byte value to a character of `alphabet` (nearly uniform)."""
    size = len(alphabet)
    return bytes(ord(alphabet[(b * size) >> 8]) for b in range(256))


_TABLES: dict[str, bytes] = {}


def _chars(rng: random.Random, alphabet: str, count: int, length: int) -> list[str]:
    """`count` random strings of `length` characters of `alphabet`, generated in one go (C speed)."""
    table = _TABLES.get(alphabet)
    if table is None:
        table = _TABLES[alphabet] = _table(alphabet)
    blob = rng.randbytes(count * length).translate(table).decode("ascii")
    return [blob[i : i + length] for i in range(0, count * length, length)]


def _gtin_pool(rng: random.Random, size: int) -> list[str]:
    prefixes = ("0460", "0460", "0460", "0461", "0462", "0400", "0590", "0869")
    pool = []
    for _ in range(size):
        body = rng.choice(prefixes) + "".join(rng.choices(DIGITS, k=9))
        pool.append(body + gtin_check_digit(body))
    return pool


def _tail_values(rng: random.Random, group: ProductGroup, count: int) -> list[tuple[tuple[str, str], ...]]:
    """`count` tails for the group: each a tuple of (AI, value) pairs (a tobacco pack: price and check)."""
    if group.kind == "tobacco_pack":
        prices = _chars(rng, CHARSET_82, count, 4)
        checks = _chars(rng, CHARSET_82, count, 4)
        return [(("price", p), ("check", c)) for p, c in zip(prices, checks)]
    columns: list[list[tuple[str, str]]] = []
    for ai in group.tail:
        if ai == "91":
            values = _chars(rng, KEY_ID, count, 4)
        elif ai == "92":
            values = [v[:-1] + "=" for v in _chars(rng, BASE64, count, group.signature_length)]
        elif ai == "93":
            values = _chars(rng, BASE64, count, 4)
        elif ai == "8005":
            values = [f"{rng.randrange(80, 400) * 100:06d}" for _ in range(count)]
        elif ai == "3103":
            values = [f"{rng.randrange(150, 5000):06d}" for _ in range(count)]
        else:
            raise ValueError(f"no generator for AI {ai}")
        columns.append([(ai, v) for v in values])
    return list(zip(*columns)) if columns else [()] * count


def _group_codes(
    seed: int, group: ProductGroup, count: int, gtins_per_group: int, tails: bool
) -> list[tuple[str, str, tuple[tuple[str, str], ...]]]:
    """(gtin, serial, tail) of `count` codes of one group. Identities and tails come from separate seeded streams,
    so asking for no tails (`cis_list`) gives the same identities as asking for them (`generate`)."""
    rng = random.Random(f"{seed}/{group.name}/identities")
    pool = _gtin_pool(rng, gtins_per_group)
    picks = memoryview(rng.randbytes(2 * count)).cast("H")
    size = len(pool)
    gtins = [pool[k % size] for k in picks]
    serials = _chars(rng, group.serial_alphabet, count, group.serial_length)
    if not tails:
        return [(g, s, ()) for g, s in zip(gtins, serials)]
    return list(zip(gtins, serials, _tail_values(random.Random(f"{seed}/{group.name}/tails"), group, count)))


def _assign(n: int, groups: Sequence[ProductGroup], rng: random.Random) -> bytes:
    """The group (index) of each of n codes, drawn by the groups' shares; one byte per code (C speed)."""
    total = sum(g.share for g in groups)
    table = bytearray()
    edge = 0.0
    for i, g in enumerate(groups):
        edge += g.share / total * 256
        table.extend([i] * max(1, round(edge) - len(table)))
    table = (table + bytes([len(groups) - 1]) * 256)[:256]
    return rng.randbytes(n).translate(bytes(table))


def _resolve(groups: Iterable[str] | None) -> list[ProductGroup]:
    if groups is None:
        return list(GROUPS.values())
    chosen = []
    for name in groups:
        if name not in GROUPS:
            raise ValueError(f"unknown product group {name!r}; known: {', '.join(GROUPS)}")
        chosen.append(GROUPS[name])
    if not chosen:
        raise ValueError("no product groups given")
    return chosen


def _raw_codes(n: int, seed: int, groups: Iterable[str] | None, gtins_per_group: int, tails: bool = True):
    """(group, gtin, serial, tail) for n codes with distinct identities, in a seeded order."""
    if n < 0:
        raise ValueError("the number of codes must be >= 0")
    rng = random.Random(seed)
    chosen = _resolve(groups)
    order = _assign(n, chosen, rng)
    streams = [iter(_group_codes(seed, g, order.count(i), gtins_per_group, tails)) for i, g in enumerate(chosen)]
    rows = [(chosen[i], *next(streams[i])) for i in order]
    keys = [gtin + serial for _, gtin, serial, _ in rows]
    if len(set(keys)) != n:     # a repeated identity (rare): draw fresh serials for the repeats
        seen: set[str] = set()
        for k, (g, gtin, serial, tail) in enumerate(rows):
            while gtin + serial in seen:
                serial = _chars(rng, g.serial_alphabet, 1, g.serial_length)[0]
            seen.add(gtin + serial)
            rows[k] = (g, gtin, serial, tail)
    return rows


def _element_string(group: ProductGroup, gtin: str, serial: str, tail: tuple[tuple[str, str], ...]) -> str:
    if group.kind == "tobacco_pack":
        return gtin + serial + "".join(v for _, v in tail)
    return "".join(["01", gtin, "21", serial, *[GS + ai + v for ai, v in tail]])


def damage(scan: str, kind: str, rng: random.Random) -> str:
    """`scan` as a scanner or till with this kind of fault would send it (kind: one of DAMAGES).

    A damage that does not apply leaves the scan unchanged: a lost GS or escaped GS in a code without GS, the
    Russian layout on a code with no letter to show it (no parser could tell; see docs/codes.md), Base64 (a till's
    encoding of the whole scan, applied last) on a scan that is not ASCII.
    """
    if kind == "lost_gs":
        return scan.replace(GS, "")
    if kind == "symbology_prefix":
        if not scan.startswith("01"):
            return "]d1" + scan
        return rng.choice(("]d2", "]C1", "]Q3")) + scan
    if kind == "leading_fnc1":
        return GS + scan if scan.startswith("01") else scan
    if kind == "trailing_newline":
        return scan + rng.choice(("\r", "\n", "\r\n"))
    if kind == "escaped_gs":
        return scan.replace(GS, "\\u001d")
    if kind == "cyrillic_layout":
        typed = scan.translate(_TO_RUSSIAN_LAYOUT)
        if not any("\u0400" <= ch <= "\u045f" for ch in typed):
            return scan
        return typed
    if kind == "base64":
        if not scan.isascii():
            return scan
        return base64.b64encode(scan.encode("ascii")).decode("ascii")
    raise ValueError(f"unknown damage {kind!r}; known: {', '.join(DAMAGES)}")


def _damages_for(rng: random.Random) -> tuple[str, ...]:
    """One or two damages that can occur together, in the order they happen (the order of DAMAGES): the keyboard
    layout retypes everything the scanner sent, prefix included; Base64 is the till's encoding of what it got.
    A till's textual GS escapes meet neither."""
    first = rng.choice(DAMAGES)
    if rng.random() < 0.3:
        second = rng.choice(("symbology_prefix", "trailing_newline", "lost_gs", "base64"))
        if second != first and not (first == "escaped_gs" and second == "base64"):
            return tuple(sorted((first, second), key=DAMAGES.index))
    return (first,)


def generate(
    n: int,
    *,
    seed: int = 0,
    groups: Iterable[str] | None = None,
    damage_rate: float = 0.0,
    gtins_per_group: int = 500,
) -> list[GeneratedCode]:
    """n codes with distinct identities, groups mixed by their shares (or only `groups`), deterministic in seed.

    With `damage_rate` > 0 that share of scans carries one or two kinds of scanner damage (`GeneratedCode.damage`
    names them); the truth fields always describe the undamaged code.
    """
    rng = random.Random(seed ^ 0x5EED)
    make = GeneratedCode._make
    out = []
    for group, gtin, serial, tail in _raw_codes(n, seed, groups, gtins_per_group):
        element = _element_string(group, gtin, serial, tail)
        identity = "01" + gtin + "21" + serial
        cis = gtin + serial if group.kind == "tobacco_pack" else identity
        scan = element
        applied: tuple[str, ...] = ()
        if damage_rate and rng.random() < damage_rate:
            for kind in _damages_for(rng):
                damaged = damage(scan, kind, rng)
                if damaged != scan:
                    applied += (kind,)
                    scan = damaged
        out.append(make((group.name, scan, element, cis, identity, gtin, serial, tail, applied)))
    return out


def cis_list(n: int, *, seed: int = 0, groups: Iterable[str] | None = None, gtins_per_group: int = 500) -> list[str]:
    """n distinct CIS strings (CRPT's printed form), as a blocklist file holds them: fast, no tails built."""
    return [
        gtin + serial if g.kind == "tobacco_pack" else "01" + gtin + "21" + serial
        for g, gtin, serial, _ in _raw_codes(n, seed, groups, gtins_per_group, tails=False)
    ]


def blocklist_and_probes(
    n_codes: int,
    n_probes: int,
    *,
    blocked_share: float = 0.01,
    seed: int = 0,
    groups: Iterable[str] | None = None,
) -> tuple[list[str], list[str], list[str], list[bool]]:
    """A blocklist and the scans a till would check against it.

    Returns (blocked CIS lines, probe scans, the probes' CIS, whether each probe is blocked). Probe scans are full
    element strings with their tails (tobacco packs: 29 characters); `blocked_share` of them are codes of the
    blocklist, the rest are codes not on it. Deterministic in seed.
    """
    n_hits = int(round(n_probes * blocked_share))
    rows = _raw_codes(n_codes + n_probes - n_hits, seed, groups, 500, tails=False)
    blocked_rows = rows[:n_codes]
    fresh_rows = rows[n_codes:]
    rng = random.Random(seed ^ 0xB10C)
    hits = rng.sample(range(n_codes), n_hits) if n_hits and n_codes else []
    probe_rows = [(blocked_rows[i], True) for i in hits] + [(r, False) for r in fresh_rows]
    rng.shuffle(probe_rows)

    def cis_of(g: ProductGroup, gtin: str, serial: str) -> str:
        return gtin + serial if g.kind == "tobacco_pack" else "01" + gtin + "21" + serial

    blocked = [cis_of(g, gtin, serial) for g, gtin, serial, _ in blocked_rows]
    scans = [_element_string(g, gtin, serial, _tail_values(rng, g, 1)[0]) for (g, gtin, serial, _), _ in probe_rows]
    probe_cis = [cis_of(g, gtin, serial) for (g, gtin, serial, _), _ in probe_rows]
    truth = [hit for _, hit in probe_rows]
    return blocked, scans, probe_cis, truth
