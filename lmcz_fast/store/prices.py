"""Minimum prices and grey GTINs: reading their files, loading them into the store, answering for a code.

The tables themselves (record kinds, rows, digest) are `tables.py`; this module is what a store does with them:

- `Blocklist.load_prices(files)` replaces the minimum-price table (per GTIN and per product group) with a CSV file's
  rows; `Blocklist.load_grey(files)` replaces the grey list with a file of GTINs. Each is one write transaction
  that moves the version forward (as a delta of what really changed), and refuses the whole file on any bad line.
- `Blocklist.min_price(gtin, pg=None)` and `Blocklist.is_grey_gtin(gtin)` answer from the reader's current version;
  `Blocklist.check(raw, pg=None)` puts both in its `Verdict` (`smp`, `grey_gtin`, with `mrp` from the code).

These are separate questions from `is_blocked`, which never looks at them; `check` reads them in its compiled pass
(`Tables.compiled_of`: sorted arrays built once per copy of the tables).

File formats (UTF-8, optionally gzip; `#` starts a comment line):

    gtin,price              # minimum price of one product, kopecks
    04601234567893,14630
    pg,price                # or a whole product group (id or name: 3, tobacco)
    3,12000

A file may mix both kinds of rows under one header `gtin,pg,price` (a row fills `gtin` or `pg`, not both).
The grey list is one GTIN per line (or a CSV with a `gtin` column).
"""

from __future__ import annotations

import csv
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import lmdb

from .._codes import MarkingCode
from .._probe import VerdictTables
from .errors import LoadError, StoreError
from .change import Change
from .environment import DB_META
from .handle import StoreHandle
from .records import DeltaReport, LoadReport
from .sources import open_text, reject
from .tables import (
    KIND_GREY_GTIN,
    META_COUNTS,
    META_TABLES_DIGEST,
    META_TABLES_VERSION,
    PG_TOBACCO,
    PRICE_KINDS,
    Record,
    RecordError,
    group_min_price_record,
    group_price_key,
    grey_gtin_record,
    grey_key,
    gtin_price_key,
    iter_rows,
    min_price_record,
    parse_group,
    parse_price,
)

__all__ = ["TableCopy", "Tables", "TablesReport", "product_group_of", "read_grey_file", "read_price_file",
           "tables_answer"]

_NOTHING: tuple[int | None, bool] = (None, False)
_PRICE_COLUMNS = ("price", "min_price", "smp", "kopecks", "цена")
_GROUP_COLUMNS = ("pg", "group", "product_group")


def product_group_of(code: MarkingCode) -> int | None:
    """The product group a code's form proves: a tobacco pack (29 characters, or its 21-character CIS) is tobacco
    (pg 3). Every other form is shared by several groups, so the caller must say (`pg`)."""
    return PG_TOBACCO if code.kind != "gs1" else None


@dataclass(slots=True)
class TablesReport:
    """What a price or grey-list load did. `changed` is False when the file held exactly what the store had."""

    kind: str
    version: int
    lines: int
    min_prices: int
    group_min_prices: int
    grey_gtins: int
    added: int
    removed: int
    duplicates: int
    changed: bool
    seconds: float

    def summary(self) -> str:
        if self.kind == "grey":
            held = f"{self.grey_gtins} grey GTINs"
        else:
            held = f"{self.min_prices} GTIN minimum prices, {self.group_min_prices} product-group minimum prices"
        if not self.changed:
            return f"version {self.version} unchanged: the store already holds these {held}"
        return (f"version {self.version}: {held} from {self.lines} lines (+{self.added} -{self.removed} records, "
                f"{self.duplicates} duplicates), in {self.seconds:.2f} s")


def _lines(source: Any) -> tuple[str, Iterator[str]]:
    """(name, lines without line ends) of a path or an iterable of lines."""
    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        stream, raw = open_text(name)

        def read() -> Iterator[str]:
            with raw, stream:
                try:
                    for line in stream:
                        yield line.rstrip("\r\n")
                except (UnicodeDecodeError, OSError, EOFError) as exc:
                    raise StoreError(f"{name} is not UTF-8 text (or gzip of it): {exc}") from exc
        return name, read()
    return "<iterable>", (line.rstrip("\r\n") for line in source)


def _delimiter(line: str) -> str:
    return next((d for d in (",", ";", "\t") if d in line), ",")


def read_price_file(sources: Iterable[Any] | str | os.PathLike[str],
                    report: LoadReport | None = None) -> tuple[list[Record], LoadReport]:
    """The minimum-price records of CSV files (header naming `price` and `gtin` and/or `pg`), line-checked.

    A price is a whole number of kopecks (`14630`, not `146.30`); a GTIN is 14 digits with its check digit; a
    product group is its id or name. The same GTIN (or group) twice with one price counts as a duplicate, with two
    prices it is a bad line. Bad lines are in `report.errors` (the caller decides; the store's loads refuse them).
    """
    report = report if report is not None else LoadReport()
    if isinstance(sources, (str, bytes, os.PathLike)):
        sources = [sources]
    seen: dict[tuple[str, str], Record] = {}
    for source in sources:
        name, lines = _lines(source)
        header: list[str] | None = None
        delimiter = ","
        for line_no, line in enumerate(lines, 1):
            report.lines += 1
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if header is None:
                delimiter = _delimiter(line)
                header = [f.strip().strip('"').lower() for f in line.split(delimiter)]
                price_col = next((header.index(c) for c in _PRICE_COLUMNS if c in header), None)
                gtin_col = header.index("gtin") if "gtin" in header else None
                group_col = next((header.index(c) for c in _GROUP_COLUMNS if c in header), None)
                if price_col is None or (gtin_col is None and group_col is None):
                    raise StoreError(
                        f"{name}:{line_no}: a price file starts with a CSV header naming a 'price' column and a "
                        f"'gtin' and/or 'pg' column (e.g. 'gtin,price'), not {line[:80]!r}")
                continue
            row = next(csv.reader([line], delimiter=delimiter))
            cell = lambda col: row[col].strip() if col is not None and col < len(row) else ""  # noqa: E731
            gtin, group, price_text = cell(gtin_col), cell(group_col), cell(price_col)
            try:
                if gtin and group:
                    raise RecordError("bad_record", "a row sets the price of one GTIN or of one product group, "
                                                    "not both")
                if not gtin and not group:
                    raise RecordError("bad_record", "the row names neither a GTIN nor a product group")
                price = parse_price(price_text, f"the price of {gtin or group}")
                record = min_price_record(gtin, price) if gtin else group_min_price_record(parse_group(group), price)
            except RecordError as exc:
                reject(report, name, line_no, exc.reason, str(exc), line)
                continue
            key = (record.kind, record.text.split()[1])
            other = seen.get(key)
            if other is not None:
                if other.value == record.value:
                    report.duplicates += 1
                else:
                    reject(report, name, line_no, "conflict",
                            f"{key[1]} already has the price {int.from_bytes(other.value, 'big')}", line)
                continue
            seen[key] = record
        if header is None and report.rejected == 0:
            raise StoreError(f"{name} holds no price header and no rows (expected e.g. 'gtin,price')")
    return list(seen.values()), report


def read_grey_file(sources: Iterable[Any] | str | os.PathLike[str],
                   report: LoadReport | None = None) -> tuple[list[Record], LoadReport]:
    """The grey-GTIN records of files holding one GTIN per line (or a CSV with a `gtin` column)."""
    report = report if report is not None else LoadReport()
    if isinstance(sources, (str, bytes, os.PathLike)):
        sources = [sources]
    seen: dict[str, Record] = {}
    for source in sources:
        name, lines = _lines(source)
        column: int | None = None
        delimiter = ","
        first = True
        for line_no, line in enumerate(lines, 1):
            report.lines += 1
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            if first:
                first = False
                fields = [f.strip().strip('"').lower() for f in text.split(_delimiter(text))]
                if "gtin" in fields:
                    delimiter, column = _delimiter(text), fields.index("gtin")
                    continue
            if column is not None:
                row = next(csv.reader([line], delimiter=delimiter))
                text = row[column].strip() if column < len(row) else ""
            try:
                record = grey_gtin_record(text)
            except RecordError as exc:
                reject(report, name, line_no, "bad_gtin", str(exc), line)
                continue
            if text in seen:
                report.duplicates += 1
            seen[text] = record
    return list(seen.values()), report


# -- the tables as a version answers from them ----------------------------------------------------------------
#
# A version's tables are read once into dicts (thousands of rows: milliseconds): GTIN -> (its minimum price or
# None, grey), and group -> price, so one dict lookup answers both questions about a GTIN. The `Tables` part of a
# blocklist keeps its last copy while the version of the tables' last change (`tables_version`) and their digest
# stay the same, so code-only updates never make a reader reread them; each read version (`reading.Reading`)
# holds the copy it answers from, taken in its own transaction.

TableCopy = tuple[dict[str, tuple[int | None, bool]], dict[int, int]]
_NO_TABLES: TableCopy = ({}, {})


def tables_answer(copy: TableCopy, code: MarkingCode, pg: int | None) -> tuple[int | None, bool]:
    """(smp, grey) of a parsed code in a version's tables: the GTIN's minimum price, else its product group's
    (`pg`, or the group the code's form proves); nothing to look up when the tables are empty."""
    gtins, groups = copy
    if not gtins and not groups:
        return None, False
    smp, grey = gtins.get(code.gtin, _NOTHING)
    if smp is None and groups:
        group = pg if pg is not None else product_group_of(code)
        if group is not None:
            smp = groups.get(group)
    return smp, grey


def min_price_in(copy: TableCopy, gtin: str, pg: int | None) -> int | None:
    gtin_price_key(gtin)
    if pg is not None:
        group_price_key(pg)
    gtins, groups = copy
    price = gtins.get(gtin, _NOTHING)[0]
    return price if price is not None or pg is None else groups.get(pg)


def is_grey_in(copy: TableCopy, gtin: str) -> bool:
    grey_key(gtin)
    return copy[0].get(gtin, _NOTHING)[1]


class Tables:
    """The minimum-price and grey-GTIN tables of one `Blocklist` (`bl.tables`): questions, whole-table loads, and
    the in-memory copy the versions answer from. Given the store's handle and the blocklist's `apply` (a table
    load is a `Change` like any other)."""

    def __init__(self, handle: StoreHandle, apply: Callable[[Change], DeltaReport]) -> None:
        self._handle = handle
        self._apply = apply
        self._copy_lock = threading.Lock()
        self._kept: tuple[Any, TableCopy] | None = None
        self._compiled: tuple[TableCopy, VerdictTables] | None = None

    def copy_of(self, txn: lmdb.Transaction, meta: dict[str, Any]) -> TableCopy:
        """The tables of the version `txn` reads (whose metadata is `meta`), as dicts: the copy kept from an
        earlier version when the tables did not change since, else read now."""
        if not any(meta.get(name) for name in META_COUNTS.values()):
            return _NO_TABLES
        stamp = (meta.get(META_TABLES_VERSION), meta.get(META_TABLES_DIGEST))
        with self._copy_lock:
            kept = self._kept
        if kept is not None and kept[0] == stamp:
            return kept[1]
        gtins: dict[str, tuple[int | None, bool]] = {}
        groups: dict[int, int] = {}
        for record in iter_rows(txn, self._handle.dbs):
            parts = record.text.split()
            if record.kind == KIND_GREY_GTIN:
                gtins[parts[1]] = (gtins.get(parts[1], _NOTHING)[0], True)
            elif record.kind == "min_price":
                gtins[parts[1]] = (int(parts[2]), gtins.get(parts[1], _NOTHING)[1])
            else:
                groups[int(parts[1])] = int(parts[2])
        copy = (gtins, groups)
        with self._copy_lock:
            self._kept = (stamp, copy)
        return copy

    def compiled_of(self, copy: TableCopy) -> VerdictTables | None:
        """`copy` as the compiled check reads it (sorted arrays), built once per copy; None for empty tables."""
        if not copy[0] and not copy[1]:
            return None
        with self._copy_lock:
            kept = self._compiled
        if kept is not None and kept[0] is copy:
            return kept[1]
        compiled = VerdictTables(copy[0], copy[1])
        with self._copy_lock:
            self._compiled = (copy, compiled)
        return compiled

    # -- questions -------------------------------------------------------------------------------------------

    def min_price(self, gtin: str, pg: int | None = None) -> int | None:
        """The minimum price (kopecks) that applies to GTIN `gtin`: its own entry, else the entry of product group
        `pg` when one is given, else None. Raises `RecordError` (a `ValueError`) for a bad GTIN or group."""
        with self._handle.lock:
            return self._handle.fresh().min_price(gtin, pg)

    def is_grey_gtin(self, gtin: str) -> bool:
        """Whether `gtin` is in the grey list. Raises `RecordError` (a `ValueError`) for a bad GTIN."""
        with self._handle.lock:
            return self._handle.fresh().is_grey(gtin)

    def group_min_price(self, pg: int) -> int | None:
        """The minimum price (kopecks) set for product group `pg` as a whole, or None."""
        group_price_key(pg)
        with self._handle.lock:
            return self._handle.fresh().tables()[1].get(pg)

    def iter_records(self) -> Iterator[str]:
        """Every table record in canonical text form (`min_price GTIN KOPECKS`, ...), from one consistent
        snapshot: GTIN prices, group prices, then grey GTINs, each in key order."""
        with self._handle.read() as txn:
            for record in iter_rows(txn, self._handle.dbs):
                yield record.text

    # -- loads -----------------------------------------------------------------------------------------------

    def load_prices(self, sources: Iterable[Any] | str | os.PathLike[str], *,
                    version: int | None = None) -> TablesReport:
        """Replace the minimum-price table (GTIN and product-group entries) with the rows of `sources` (CSV, see
        the module doc), in one write transaction that moves the version forward. Any bad row refuses the whole
        load (`LoadError`, with line numbers in `.report`) and nothing changes. The grey list is kept."""
        self._handle.require_writable()
        started = time.perf_counter()
        records, report = read_price_file(sources)
        _refuse_bad_lines(report, "price")
        return self._replace_kinds(PRICE_KINDS, records, version, report, ("prices", started))

    def load_grey(self, sources: Iterable[Any] | str | os.PathLike[str], *,
                  version: int | None = None) -> TablesReport:
        """Replace the grey list with the GTINs of `sources` (one per line), as `load_prices` does for prices."""
        self._handle.require_writable()
        started = time.perf_counter()
        records, report = read_grey_file(sources)
        _refuse_bad_lines(report, "grey-list")
        return self._replace_kinds((KIND_GREY_GTIN,), records, version, report, ("grey", started))

    def _replace_kinds(self, kinds: tuple[str, ...], records: list[Record], version: int | None,
                       report: LoadReport, label: tuple[str, float]) -> TablesReport:
        with self._handle.read() as txn:
            current = [r for r in iter_rows(txn, self._handle.dbs) if r.kind in kinds]
            raw_version = txn.get(b"version", db=self._handle.dbs[DB_META])
        at = json.loads(bytes(raw_version)) if raw_version is not None else 0
        old = {r.text for r in current}
        new = {r.text for r in records}
        remove = [r for r in current if r.text not in new]
        add = [r for r in records if r.text not in old]
        changed = bool(add or remove) or (version is not None and version != at)
        if changed:
            delta = self._apply(Change(add_records=add, remove_records=remove, from_version=at,
                                       to_version=at + 1 if version is None else version))
            at = delta.to_version
        counts = {kind: 0 for kind in META_COUNTS}
        for record in records:
            counts[record.kind] += 1
        kind, started = label
        return TablesReport(
            kind=kind, version=at, lines=report.lines, min_prices=counts["min_price"],
            group_min_prices=counts["group_min_price"], grey_gtins=counts["grey_gtin"], added=len(add),
            removed=len(remove), duplicates=report.duplicates, changed=changed,
            seconds=time.perf_counter() - started,
        )


def _refuse_bad_lines(report: LoadReport, what: str) -> None:
    if report.rejected:
        first = report.errors[0]
        raise LoadError(f"{report.rejected} bad lines in the {what} file (first: line {first.line} of "
                        f"{first.source}: {first.message}); nothing was loaded", report)
