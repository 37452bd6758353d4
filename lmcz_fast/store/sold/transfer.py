"""The sold register's export and import format: JSON lines, a header naming the format and the instance the
entries belong to, then one entry per line, oldest sale first (`lmcz-fast sold export` / `sold import`)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from typing import Any

from ..._codes import CodeError, MarkingCode, parse_code
from ..errors import StoreError
from .records import SoldEntry

#: First line of a register export: names the format and the instance the entries belong to.
EXPORT_KIND = "lmcz-fast sold register"
EXPORT_FORMAT = 1


class SoldRegisterError(StoreError):
    """A register operation refused before anything was written (a bad export, another instance's export)."""


def export_lines(instance_id: Any, count: int, entries: Iterable[SoldEntry]) -> Iterator[str]:
    """The export of `count` entries (`entries`, oldest first) of the register of instance `instance_id`."""
    header = {"kind": EXPORT_KIND, "format": EXPORT_FORMAT, "instanceId": instance_id,
              "exportedAt": int(time.time() * 1000), "count": count}
    yield json.dumps(header, ensure_ascii=False)
    for entry in entries:
        item: dict[str, Any] = {"cis": entry.cis, "identity": entry.identity, "soldAt": entry.sold_at_ms}
        if entry.organisation is not None:
            item["organisation"] = entry.organisation
        yield json.dumps(item, ensure_ascii=False)


def read_export(lines: Iterable[str], mine: Any, *, force: bool = False) -> list[tuple[MarkingCode, int, str | None]]:
    """Every entry of an export (code, sold-at ms, organisation INN or None), read and checked whole before anything
    is written: `SoldRegisterError` for a bad export, or for one of another instance than `mine` unless `force`."""
    iterator = iter(lines)
    try:
        header = json.loads(next(iterator))
    except StopIteration:
        raise SoldRegisterError("the export is empty (no header line)") from None
    except ValueError as exc:
        raise SoldRegisterError(f"line 1 is not JSON: {exc}") from None
    if not isinstance(header, dict) or header.get("kind") != EXPORT_KIND:
        raise SoldRegisterError("line 1 is not the header of a sold-register export "
                                "(made by `lmcz-fast sold export`)")
    if header.get("format") != EXPORT_FORMAT:
        raise SoldRegisterError(f"unknown export format {header.get('format')!r}; this version reads "
                                f"format {EXPORT_FORMAT}")
    theirs = header.get("instanceId")
    if theirs != mine and not force:
        raise SoldRegisterError(
            f"the export belongs to instance {theirs!r}, this database is instance {mine!r}: importing "
            "another store's sales would refuse its codes here. If this store moved to new hardware, "
            "import with force")
    entries: list[tuple[MarkingCode, int, str | None]] = []
    for number, line in enumerate(iterator, start=2):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError as exc:
            raise SoldRegisterError(f"line {number} is not JSON: {exc}") from None
        if not isinstance(item, dict):
            raise SoldRegisterError(f"line {number}: expected an object")
        cis, identity, sold_at = item.get("cis"), item.get("identity"), item.get("soldAt")
        organisation = item.get("organisation")
        if organisation is not None and not (isinstance(organisation, str) and organisation.isdigit()):
            raise SoldRegisterError(f"line {number}: `organisation` must be an INN (digits)")
        if not isinstance(cis, str) or not isinstance(identity, str):
            raise SoldRegisterError(f"line {number}: `cis` and `identity` must be strings")
        if not isinstance(sold_at, int) or isinstance(sold_at, bool) or not 0 <= sold_at < 1 << 63:
            raise SoldRegisterError(f"line {number}: `soldAt` must be a non-negative integer (Unix ms)")
        try:
            code = parse_code(cis)
        except CodeError as exc:
            raise SoldRegisterError(f"line {number}: {cis!r} is not a marking code: {exc}") from None
        if code.identity != identity:
            raise SoldRegisterError(f"line {number}: `identity` {identity!r} is not the identity of `cis` "
                                    f"({code.identity!r})")
        entries.append((code, sold_at, organisation))
    if header.get("count") is not None and header.get("count") != len(entries):
        raise SoldRegisterError(f"the header announces {header.get('count')} entries, the file holds "
                                f"{len(entries)}: the export is incomplete")
    return entries
