"""The store's tables beside the blocked codes: minimum prices and grey GTINs, as typed records.

A *record* is one row of one of these tables, with a canonical one-line text form that feed files, delta files
and `load` sources carry behind an `@` (a character no marking code holds):

    min_price <GTIN> <kopecks>          the minimum price of one product (GTIN-14)
    group_min_price <pg> <kopecks>      the minimum price of a whole product group (pg id, e.g. 3 = tobacco)
    grey_gtin <GTIN>                    a GTIN of the "grey zone" (goods the catalogue does not describe)

Tables are maps: a record's *key* is its kind and GTIN (or group); adding a record sets that key's value,
removing one deletes the key only if it holds exactly that value. Rows live in two LMDB databases of the store's
environment (`prices`: `b"g"` + 6-byte GTIN or `b"p"` + 2-byte group -> 8-byte big-endian price; `grey`: 6-byte
GTIN -> empty), changed in the same write transaction as the codes, and they count in the set digest:
each record adds XXH3-64 of `b"R" + tag + key + value` to the digest's sums, so a store without records has the
digest it always had. Kinds unknown to this version are refused (`RecordError`, reason `unknown_record_kind`),
never skipped: a store must not apply part of what a newer publisher sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

import lmdb

from .._bulk import digest_sums
from .._probe import _register_group_check
from .errors import StoreError
from .keys import gtin_problem

KIND_MIN_PRICE = "min_price"
KIND_GROUP_MIN_PRICE = "group_min_price"
KIND_GREY_GTIN = "grey_gtin"
#: Every record kind this version understands, in the order snapshots list them.
RECORD_KINDS = (KIND_MIN_PRICE, KIND_GROUP_MIN_PRICE, KIND_GREY_GTIN)
PRICE_KINDS = (KIND_MIN_PRICE, KIND_GROUP_MIN_PRICE)

#: Prices are kopecks, non-negative, and fit an int64 (what the Local Module's JSON clients decode them into).
MAX_PRICE = (1 << 63) - 1
MAX_GROUP = 0xFFFF

DB_PRICES = b"prices"
DB_GREY = b"grey"

META_COUNTS = {KIND_MIN_PRICE: "min_prices", KIND_GROUP_MIN_PRICE: "group_min_prices", KIND_GREY_GTIN: "grey_gtins"}
META_TABLES_DIGEST = "tables_digest"
#: The store version of the last write that changed a table: readers keep their in-memory copy of the tables
#: while it (and the tables' digest) stays the same, so code-only updates never make them reread the tables.
META_TABLES_VERSION = "tables_version"

_TAG_GTIN_PRICE = b"g"
_TAG_GROUP_PRICE = b"p"
_TAG_GREY = b"y"
_DIGEST_PREFIX = b"R"

#: Product group ids as tills send them in `pg` (docs/protocol.md), by the names the price files may use.
PRODUCT_GROUPS = {
    "lp": 1, "shoes": 2, "tobacco": 3, "perfumery": 4, "tires": 5, "electronics": 6, "pharma": 7, "milk": 8,
    "bicycle": 9, "wheelchairs": 10, "otp": 12, "water": 13, "furs": 14, "beer": 15, "ncp": 16, "bio": 17,
    "antiseptic": 19, "petfood": 20, "seafood": 21, "nabeer": 22, "softdrinks": 23, "vetpharma": 26, "grocery": 32,
}
PG_TOBACCO = 3


class RecordError(StoreError, ValueError):
    """A table record (or a price, a product group) that this store cannot take; nothing was changed.

    `reason`: `unknown_record_kind` (a kind from a newer version: upgrade), `bad_record` (malformed),
    `bad_price` (not a non-negative integer of kopecks), `bad_group`, `conflict` (two values for one key).
    """

    def __init__(self, reason: str, message: str, text: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.text = text


class Record(NamedTuple):
    """One parsed record: its canonical text, its kind, its table, its key in that table and its value."""

    text: str
    kind: str
    db: bytes
    key: bytes
    value: bytes

    @property
    def digest_key(self) -> bytes:
        return _digest_key(self.db, self.key, self.value)


def _digest_key(db: bytes, key: bytes, value: bytes) -> bytes:
    return _DIGEST_PREFIX + (_TAG_GREY + key if db == DB_GREY else key) + value


def check_price(value: Any, what: str = "a price") -> int:
    """`value` as kopecks: an int (not a bool) from 0 to MAX_PRICE, else `RecordError` (reason `bad_price`)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_PRICE:
        raise RecordError("bad_price", f"{what} is a whole number of kopecks from 0 to {MAX_PRICE}, not {value!r}")
    return value


def parse_price(text: str, what: str = "a price") -> int:
    """Decimal ASCII digits only (no sign, no point, no exponent): kopecks."""
    text = text.strip()
    if not text or not text.isascii() or not text.isdigit() or len(text) > 19:
        raise RecordError("bad_price", f"{what} is a whole number of kopecks (a non-negative integer), "
                                       f"not {text!r}", text)
    return check_price(int(text), what)


def check_group(value: Any) -> int:
    """A product group id: an int from 1 to 65535 (not a bool), else `RecordError` (reason `bad_group`)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_GROUP:
        raise RecordError("bad_group", f"a product group (pg) is an integer id from 1 to {MAX_GROUP}, "
                                       f"not {value!r}")
    return value


_register_group_check(check_group)     # the compiled check's `pg` check (lmcz_fast/_probe/probe.pxi, `check`)


def parse_group(text: str) -> int:
    """A product group id, or one of the names in `PRODUCT_GROUPS` ("tobacco" -> 3)."""
    text = text.strip()
    named = PRODUCT_GROUPS.get(text.lower())
    if named is not None:
        return named
    if not text.isascii() or not text.isdigit() or len(text) > 5:
        raise RecordError("bad_group", f"a product group (pg) is an integer id or one of "
                                       f"{', '.join(sorted(PRODUCT_GROUPS))}, not {text!r}", text)
    return check_group(int(text))


def _gtin_key(gtin: str) -> bytes:
    problem = gtin_problem(gtin)
    if problem is not None:
        raise RecordError("bad_record", f"{problem}: {gtin!r}", gtin)
    return int(gtin).to_bytes(6, "big")


def min_price_record(gtin: str, price: int) -> Record:
    check_price(price)
    key = _gtin_key(gtin)
    return Record(f"{KIND_MIN_PRICE} {gtin} {price}", KIND_MIN_PRICE, DB_PRICES, _TAG_GTIN_PRICE + key,
                  price.to_bytes(8, "big"))


def group_min_price_record(pg: int, price: int) -> Record:
    check_group(pg)
    check_price(price)
    return Record(f"{KIND_GROUP_MIN_PRICE} {pg} {price}", KIND_GROUP_MIN_PRICE, DB_PRICES,
                  _TAG_GROUP_PRICE + pg.to_bytes(2, "big"), price.to_bytes(8, "big"))


def grey_gtin_record(gtin: str) -> Record:
    return Record(f"{KIND_GREY_GTIN} {gtin}", KIND_GREY_GTIN, DB_GREY, _gtin_key(gtin), b"")


def parse_record(text: str | Record) -> Record:
    """A record from its text form (with or without the leading `@`), checked and made canonical."""
    if isinstance(text, Record):
        return text
    if not isinstance(text, str):
        raise RecordError("bad_record", f"a record is a line of text, not {type(text).__name__}")
    body = text[1:] if text.startswith("@") else text
    parts = body.strip().split()
    kind = parts[0] if parts else ""
    if kind not in RECORD_KINDS:
        raise RecordError(
            "unknown_record_kind",
            f"record kind {kind!r} is unknown to this version of lmcz-fast (it knows {', '.join(RECORD_KINDS)}): "
            f"the data comes from a newer publisher; upgrade lmcz-fast to apply it",
            text[:80],
        )
    expected = 2 if kind == KIND_GREY_GTIN else 3
    if len(parts) != expected:
        shape = "@grey_gtin GTIN" if kind == KIND_GREY_GTIN else f"@{kind} {'PG' if 'group' in kind else 'GTIN'} " \
                                                                  "KOPECKS"
        raise RecordError("bad_record", f"a {kind} record is '{shape}', not {text[:80]!r}", text[:80])
    if kind == KIND_GREY_GTIN:
        return grey_gtin_record(parts[1])
    price = parse_price(parts[2], f"the price of {parts[1]}")
    if kind == KIND_MIN_PRICE:
        return min_price_record(parts[1], price)
    if not parts[1].isascii() or not parts[1].isdigit():
        raise RecordError("bad_group", f"a group_min_price record names a product group id, not {parts[1]!r}",
                          text[:80])
    return group_min_price_record(check_group(int(parts[1])), price)


def record_from_row(db: bytes, key: bytes, value: bytes) -> Record:
    """The record a stored row holds (the inverse of `Record.db/key/value`)."""
    if db == DB_GREY:
        return grey_gtin_record(f"{int.from_bytes(key, 'big'):014d}")
    price = int.from_bytes(value, "big")
    if key[:1] == _TAG_GTIN_PRICE:
        return min_price_record(f"{int.from_bytes(key[1:], 'big'):014d}", price)
    return group_min_price_record(int.from_bytes(key[1:], "big"), price)


def records_sums(records: Iterable[Record]) -> tuple[int, int]:
    """The digest sums of `records` (added to the codes' sums to make the set digest)."""
    return digest_sums([record.digest_key for record in records])


def gtin_price_key(gtin: str) -> bytes:
    return _TAG_GTIN_PRICE + _gtin_key(gtin)


def group_price_key(pg: int) -> bytes:
    return _TAG_GROUP_PRICE + check_group(pg).to_bytes(2, "big")


def grey_key(gtin: str) -> bytes:
    return _gtin_key(gtin)


class TableRows(NamedTuple):
    """A whole set of records, ready for a full write: each table's rows in key order, the sums, the counts."""

    rows: dict[bytes, list[tuple[bytes, bytes]]]
    sums: tuple[int, int]
    counts: dict[str, int]
    records: list[Record]


def whole_tables(records: Iterable[str | Record]) -> TableRows:
    """Check a complete set of records: one value per key (the same record twice is counted once; two values for
    one key raise `RecordError` reason `conflict`)."""
    by_key: dict[tuple[bytes, bytes], Record] = {}
    for item in records:
        record = parse_record(item)
        other = by_key.get((record.db, record.key))
        if other is not None and other.value != record.value:
            raise RecordError("conflict", f"two values for one key: {other.text!r} and {record.text!r}",
                              record.text)
        by_key[(record.db, record.key)] = record
    rows: dict[bytes, list[tuple[bytes, bytes]]] = {DB_PRICES: [], DB_GREY: []}
    counts = dict.fromkeys(RECORD_KINDS, 0)
    ordered = [by_key[k] for k in sorted(by_key)]
    for record in ordered:
        rows[record.db].append((record.key, record.value))
        counts[record.kind] += 1
    return TableRows(rows, records_sums(ordered), counts, ordered)


def write_whole(txn: lmdb.Transaction, dbs: dict[bytes, Any], tables: TableRows) -> None:
    """Replace both tables with `tables` inside the caller's write transaction."""
    for name in (DB_PRICES, DB_GREY):
        txn.drop(dbs[name], delete=False)
        with txn.cursor(db=dbs[name]) as cursor:
            cursor.putmulti(tables.rows[name], append=True)


class Applied(NamedTuple):
    """What `apply_records` did: digest keys added and removed, records that really changed, count changes."""

    added: list[bytes]
    removed: list[bytes]
    changed_in: int
    changed_out: int
    counts: dict[str, int]


def apply_records(txn: lmdb.Transaction, dbs: dict[bytes, Any], add: Iterable[Record],
                  remove: Iterable[Record]) -> Applied:
    """Apply record changes inside the caller's write transaction: removals first (a row goes only if it holds
    exactly the removed value), then additions (set the key's value). The digest keys returned are what really
    changed, from the rows as they were, so a store's digest never drifts from its content."""
    plus: list[bytes] = []
    minus: list[bytes] = []
    counts = dict.fromkeys(RECORD_KINDS, 0)
    changed_out = changed_in = 0
    for record in remove:
        db = dbs[record.db]
        old = txn.get(record.key, db=db)
        if old is not None and bytes(old) == record.value:
            txn.delete(record.key, db=db)
            minus.append(record.digest_key)
            counts[record.kind] -= 1
            changed_out += 1
    for record in add:
        db = dbs[record.db]
        old = txn.get(record.key, db=db)
        if old is not None:
            old = bytes(old)
            if old == record.value:
                continue
            minus.append(_digest_key(record.db, record.key, old))
            counts[record.kind] -= 1
        txn.put(record.key, record.value, db=db)
        plus.append(record.digest_key)
        counts[record.kind] += 1
        changed_in += 1
    return Applied(plus, minus, changed_in, changed_out, counts)


def iter_rows(txn: lmdb.Transaction, dbs: dict[bytes, Any]) -> Iterator[Record]:
    """Every stored record: the prices (GTIN entries, then groups), then the grey GTINs, in key order."""
    for name in (DB_PRICES, DB_GREY):
        with txn.cursor(db=dbs[name]) as cursor:
            for key, value in cursor:
                yield record_from_row(name, bytes(key), bytes(value))
