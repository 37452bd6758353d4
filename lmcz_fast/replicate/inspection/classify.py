"""What a value in a source document can be, read with our own parser; and what each field path of a sample holds.

A value's readings (`readings`): `code` (a marking code: `parse_code(cis=True)` accepts it and it is longer than a
GTIN), `gtin` (8 to 14 digits, as a string or an integer, whose GS1 check digit holds once padded to 14), `pgkey`
(`pg:N`, N a product group 1-65535), `group` (an integer, or a string of up to 5 digits, 1-65535), `price` (a
non-negative integer of kopecks that fits the store's price record). A value can have several (500: a group and a
price) or none (a text, a float, a list).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..._codes import CodeError, parse_code
from ...store import RecordError, parse_record

CODE, GTIN, PGKEY, GROUP, PRICE = "code", "gtin", "pgkey", "group", "price"
READINGS = (CODE, GTIN, PGKEY, GROUP, PRICE)

#: Keys CouchDB adds that never hold data (the document id `_id` does, and stays a candidate).
_SKIPPED = {"_rev", "_attachments", "_conflicts", "_deleted", "_deleted_conflicts", "_revisions", "_revs_info",
            "_local_seq"}
MAX_DEPTH = 8


def gtin_check_ok(digits14: str) -> bool:
    """The GS1 check digit of a 14-digit string (read by the parser, the same check a code's GTIN gets)."""
    try:
        parse_code(f"01{digits14}21A", cis=True)
        return True
    except CodeError:
        return False


def _price_fits(value: int) -> bool:
    try:
        parse_record(f"group_min_price 1 {value}")
        return True
    except RecordError:
        return False


def readings(value: Any) -> frozenset[str]:
    """Every reading `value` admits (see the module's text)."""
    if value is None or isinstance(value, bool):
        return frozenset()
    out: set[str] = set()
    if isinstance(value, int):
        if value >= 0 and _price_fits(value):
            out.add(PRICE)
        if 1 <= value <= 65535:
            out.add(GROUP)
        text = str(value)
    elif isinstance(value, str):
        text = value
        if len(text) > 14:
            try:
                parse_code(text, cis=True)
                out.add(CODE)
            except CodeError:
                pass
        if text.startswith("pg:") and text[3:].isascii() and text[3:].isdigit() and 1 <= int(text[3:]) <= 65535:
            out.add(PGKEY)
        if text.isascii() and text.isdigit() and len(text) <= 5 and 1 <= int(text) <= 65535:
            out.add(GROUP)
    else:
        return frozenset()
    if text.isascii() and text.isdigit() and 8 <= len(text) <= 14 and gtin_check_ok(text.zfill(14)):
        out.add(GTIN)
    return frozenset(out)


def leaves(doc: dict[str, Any], prefix: str = "", depth: int = 0) -> Iterator[tuple[str, Any]]:
    """Each scalar field of a document and its dotted path (nested objects walked, lists and CouchDB's own
    keys skipped)."""
    for key, value in doc.items():
        if not isinstance(key, str) or (not prefix and key in _SKIPPED) or "." in key or not key:
            continue
        path = prefix + key
        if isinstance(value, dict):
            if depth < MAX_DEPTH:
                yield from leaves(value, path + ".", depth + 1)
        elif not isinstance(value, list):
            yield path, value


def shorten(value: Any) -> str:
    """A value for a report: a code cut to its GTIN and the serial's first characters."""
    text = value if isinstance(value, str) else repr(value)
    text = "".join(c if c.isprintable() else "?" for c in text)
    return (text or repr(text)) if len(text) <= 20 else text[:20] + "…"


@dataclass
class FieldStats:
    """One field path over a sample: in how many documents it is present, per reading how many of its values
    admit it, how many distinct values, a few examples."""

    path: str
    present: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(READINGS, 0))
    distinct: set[Any] = field(default_factory=set)
    examples: list[str] = field(default_factory=list)
    others: list[str] = field(default_factory=list)

    def add(self, value: Any) -> frozenset[str]:
        self.present += 1
        found = readings(value)
        for name in found:
            self.counts[name] += 1
        if len(self.distinct) < 10_000:
            self.distinct.add(value if isinstance(value, (str, int, float)) else repr(value))
        if found and len(self.examples) < 3:
            self.examples.append(shorten(value))        # a value that reads as something, for the report
        elif not found and len(self.others) < 3:
            self.others.append(shorten(value))
        return found

    def shown(self) -> list[str]:
        """Up to three examples: values that read as something first."""
        return (self.examples + self.others)[:3]


@dataclass
class Sample:
    """A database's sampled documents, each as {path: (value, readings)}, and per path its `FieldStats`."""

    name: str
    doc_count: int | None
    docs: list[dict[str, tuple[Any, frozenset[str]]]] = field(default_factory=list)
    fields: dict[str, FieldStats] = field(default_factory=dict)

    def add(self, doc: dict[str, Any]) -> None:
        row: dict[str, tuple[Any, frozenset[str]]] = {}
        for path, value in leaves(doc):
            stats = self.fields.get(path)
            if stats is None:
                stats = self.fields[path] = FieldStats(path)
            row[path] = (value, stats.add(value))
        self.docs.append(row)

    def share(self, path: str, *names: str) -> float:
        """The share of sampled documents whose `path` admits one of `names`."""
        if not self.docs:
            return 0.0
        hits = sum(1 for row in self.docs if path in row and row[path][1].intersection(names))
        return hits / len(self.docs)
