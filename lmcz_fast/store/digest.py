"""The set digest: an order-free checksum of a whole blocklist that deltas update by adding and subtracting."""

from __future__ import annotations

from collections.abc import Iterable

from .._bulk import digest_sums
from .._probe import pack_identity
from .keys import pack_gtin
from .tables import Record, parse_record, records_sums

DIGEST_MOD = 1 << 64
_GTIN_DIGEST_PREFIX = b"G"


def set_digest_of(identities: Iterable[str | bytes], gtins: Iterable[str] = (),
                  records: Iterable[str | Record] = ()) -> str:
    """Digest of a whole blocklist, independent of order: what a feed publishes and a store must match.

    Two sums modulo 2**64, over every packed identity key `k` (and every packed GTIN, prefixed with `G`, and every
    table record's row, prefixed with `R`: see `store.tables`), of XXH3-64(`k`) and XXH3-64(`k` + b"\x01"), as 32
    hex digits. Sums let a store keep the digest up to date across deltas by adding and subtracting, without
    rereading the set; a set without records has the digest it had before records existed.
    """
    keys = []
    for identity in identities:
        raw = identity.encode("ascii") if isinstance(identity, str) else identity
        keys.append(pack_identity(raw))
    sums = digest_add((0, 0), keys, [pack_gtin(g) for g in gtins])
    table = records_sums(_unique_records(records))
    return format_digest((sums[0] + table[0], sums[1] + table[1]))


def _unique_records(records: Iterable[str | Record]) -> list[Record]:
    """Parsed records, each once (a set holds a record once, however often a list names it)."""
    seen: dict[str, Record] = {}
    for item in records:
        record = parse_record(item)
        seen[record.text] = record
    return list(seen.values())


def digest_after(
    digest: str,
    *,
    add: Iterable[str | bytes] = (),
    remove: Iterable[str | bytes] = (),
    add_gtins: Iterable[str] = (),
    remove_gtins: Iterable[str] = (),
    add_records: Iterable[str | Record] = (),
    remove_records: Iterable[str | Record] = (),
) -> str:
    """The set digest after an exact delta: every added identity absent before, every removed one present.

    The digest is made of sums (`set_digest_of`), so this adds the added and subtracts the removed without the
    rest of the set: what a feed publisher and a syncing store compute before touching the store.
    Records count the same way: every added record absent before, every removed one present (a changed price is
    the old record removed and the new one added).
    Raises `ValueError` for an identity that is not canonical, `CodeError` for a bad GTIN, `RecordError` (a
    `ValueError`) for a bad record.
    """
    def packed(identities: Iterable[str | bytes]) -> list[bytes]:
        return [pack_identity(i.encode("ascii") if isinstance(i, str) else i) for i in identities]

    sums = digest_add(parse_digest(digest), packed(add), [pack_gtin(g) for g in add_gtins])
    sums = digest_add(sums, [r.digest_key for r in _unique_records(add_records)], ())
    sums = digest_add(sums, [r.digest_key for r in _unique_records(remove_records)], (), -1)
    return format_digest(digest_add(sums, packed(remove), [pack_gtin(g) for g in remove_gtins], -1))


def format_digest(sums: tuple[int, int]) -> str:
    return f"{sums[0] % DIGEST_MOD:016x}{sums[1] % DIGEST_MOD:016x}"


def parse_digest(text: str) -> tuple[int, int]:
    if len(text) != 32:
        raise ValueError(f"a set digest is 32 hex digits, not {text!r}")
    return int(text[:16], 16), int(text[16:], 16)


def digest_add(sums: tuple[int, int], code_keys: Iterable[bytes], gtin_keys: Iterable[bytes],
                sign: int = 1) -> tuple[int, int]:
    codes_a, codes_b = digest_sums(list(code_keys))
    gtins_a, gtins_b = digest_sums(list(gtin_keys), _GTIN_DIGEST_PREFIX)
    return (sums[0] + sign * (codes_a + gtins_a)) % DIGEST_MOD, (sums[1] + sign * (codes_b + gtins_b)) % DIGEST_MOD

