"""Source documents to store records: a marking code's identity, a GTIN, a minimum price; or unmapped, and why."""

from __future__ import annotations

from typing import Any

from .._codes import CodeError, parse_code
from ..store import CutCodes, RecordError, parse_record
from .changes import _Change, _IdChange
from .config import Mapping


class _Batch:
    """The changes of one page of one database, mapped: what to block, unblock, price and un-price."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.add: dict[str, str] = {}         # doc id -> identity / GTIN / price key
        self.remove: dict[str, None] = {}     # doc ids deleted
        self.prices: dict[str, int] = {}      # price key -> kopecks (prices kind)
        self.cut: CutCodes | None = None      # a full pass of codes keyed by the id: their keys, cut
        self.changes = 0
        self.unmapped: list[str] = []
        self.anchor: dict[str, Any] | None = None     # the page's last data change: {"id", "rev", "seq"}


def _value_of(doc: dict[str, Any], name: str) -> Any:
    """The value at a field path: a top-level name (dots included, if the document has such a name), else the
    dotted path into nested objects; None where it is absent."""
    if name in doc:
        return doc[name]
    value: Any = doc
    for part in name.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _map_bulk(changes: list[Any], batch: _Batch) -> None:
    """A full pass of codes keyed by the document id: the ids are cut to keys in compiled code as each page
    arrives (`batch.cut`), so the pass holds packed keys, never the ids' text, and the load does not cut them again.
    In a pass from the start each document comes once, at its latest revision; one deleted later in the pass is
    dropped from what came before (`CutCodes.remove`: the last word wins)."""
    if changes and type(changes[0]) is _Change:       # one decode gives all `_Change`s or all dicts
        live = [c.id for c in changes if c.deleted is not True]
        gone = [c.id for c in changes if c.deleted is True] if len(live) != len(changes) else []
    else:
        live, gone = [], []
        for change in changes:
            doc_id = change.get("id") if type(change) is dict else getattr(change, "id", None)
            deleted = change.get("deleted") if type(change) is dict else getattr(change, "deleted", False)
            if type(doc_id) is not str:
                batch.unmapped.append(f"a change without a document id: {str(change)[:80]}")
            elif deleted is True:
                gone.append(doc_id)
            else:
                live.append(doc_id)
    assert batch.cut is not None
    for index, _, message in batch.cut.add(live):
        doc_id = live[index]
        if doc_id.startswith("_design/"):
            continue                                  # views and validation functions, not data
        if len(doc_id) == 14 and doc_id.isdigit():
            message = "a GTIN, not a marking code"
        batch.unmapped.append(f"{doc_id}: {message}")
    if gone:
        batch.cut.remove(gone)
    batch.changes += len(changes)


def _map_keyed(changes: list[_IdChange], batch: _Batch) -> None:
    """An incremental page of codes or GTINs keyed by the document id, decoded as `_IdChange`s: what `_map_change`
    does with each (design documents skipped, a deletion, a record from the id or unmapped, the last word wins),
    without a dict per change."""
    kind, add, remove, unmapped = batch.kind, batch.add, batch.remove, batch.unmapped
    for change in changes:
        doc_id = change.id
        if doc_id.startswith("_design/"):
            continue                                  # views and validation functions, not data
        if change.deleted:
            add.pop(doc_id, None)
            remove[doc_id] = None
            continue
        remove.pop(doc_id, None)
        try:
            add[doc_id] = _record_of(kind, doc_id, "_id")
        except (ValueError, CodeError) as exc:
            add.pop(doc_id, None)
            unmapped.append(f"{doc_id}: {exc}")
    batch.changes += len(changes)


def _map_change(change: Any, batch: _Batch, mapping: Mapping) -> None:
    """Map one change into `batch`: a record to add (from the document id or a field), a deletion, or unmapped."""
    batch.changes += 1
    if not isinstance(change, dict) or not isinstance(change.get("id"), str):
        batch.unmapped.append(f"a change without a document id: {str(change)[:80]}")
        return
    doc_id = change["id"]
    if doc_id.startswith("_design/"):
        return                                    # views and validation functions, not data
    if change.get("deleted") is True:
        batch.add.pop(doc_id, None)
        batch.remove[doc_id] = None
        return
    batch.remove.pop(doc_id, None)
    name = mapping.field_of(batch.kind)
    doc = {"_id": doc_id} if _needs_no_doc(batch.kind, mapping) else change.get("doc")
    if not isinstance(doc, dict):
        batch.unmapped.append(f"{doc_id}: no document in the change (include_docs unsupported?)")
        return
    try:
        if batch.kind == "prices":
            record = _price_key_of(doc, mapping)
        else:
            record = _record_of(batch.kind, _value_of(doc, name), name)
        if batch.kind == "prices":
            price = _value_of(doc, mapping.price_field)
            if isinstance(price, bool) or not isinstance(price, int) or price < 0:
                raise ValueError(f"field {mapping.price_field!r} is not a non-negative integer of kopecks")
            parse_record(price_record(record, price))     # the store's own bounds: pg 1-65535, a price that fits
            batch.prices[record] = price
        batch.add[doc_id] = record
    except (ValueError, CodeError, RecordError) as exc:
        batch.add.pop(doc_id, None)
        batch.unmapped.append(f"{doc_id}: {exc}")


def _price_key_of(doc: dict[str, Any], mapping: Mapping) -> str:
    """What a minimum-price document applies to: its key field (a GTIN or `pg:N`), or else its group field."""
    key = _value_of(doc, mapping.price_key_field) if mapping.price_key_field else None
    if key not in (None, "") or not mapping.price_group_field:
        return _price_key(key, mapping.price_key_field)
    group = _value_of(doc, mapping.price_group_field)
    if isinstance(group, str) and group.isdigit():
        group = int(group)
    if isinstance(group, bool) or not isinstance(group, int) or not 1 <= group <= 65535:
        raise ValueError(f"field {mapping.price_group_field!r} is not a product group (1-65535)")
    return f"pg:{group}"


def _needs_no_doc(kind: str, mapping: Mapping) -> bool:
    """Codes and GTINs keyed by the document id are read off the change itself: no `include_docs` needed."""
    return kind != "prices" and mapping.field_of(kind) == "_id"


def _record_of(kind: str, value: Any, name: str) -> str:
    """The record a document's field maps to: an identity, a GTIN, or a price key. `ValueError`/`CodeError`."""
    if kind == "codes":
        if not isinstance(value, str):
            raise ValueError(f"field {name!r} is not a string")
        return parse_code(value, cis=True).identity
    if kind in ("gtins", "grey"):
        gtin = str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
        if not gtin.isdigit() or len(gtin) > 14:
            raise ValueError(f"field {name!r} is not a GTIN")
        gtin = gtin.zfill(14)
        parse_code(f"01{gtin}21A", cis=True)          # checks the check digit
        return gtin
    return _price_key(value, name)


def _price_key(value: Any, name: str) -> str:
    """A minimum price applies to a GTIN (14 digits) or to a product group (`pg:N`)."""
    text = str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
    if text.startswith("pg:") and text[3:].isdigit():
        return f"pg:{int(text[3:])}"
    if text.isdigit() and len(text) <= 3:
        return f"pg:{int(text)}"
    if text.isdigit() and len(text) <= 14:
        gtin = text.zfill(14)
        parse_code(f"01{gtin}21A", cis=True)
        return gtin
    raise ValueError(f"field {name!r} is neither a GTIN nor a product group")


def grey_record(gtin: str) -> str:
    """A grey GTIN as the store's table record (store/tables.py)."""
    return f"grey_gtin {gtin}"


def price_record(key: str, price: int) -> str:
    """A price key (`pg:N` or a GTIN) and its kopecks as the store's table record (store/tables.py)."""
    return f"group_min_price {key[3:]} {price}" if key.startswith("pg:") else f"min_price {key} {price}"
