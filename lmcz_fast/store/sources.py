"""Reading blocklist sources (text, CSV, gzip, iterables of lines) into cut keys, with line-numbered rejects."""

from __future__ import annotations

import array
import csv
import gzip
import io
import itertools
import os
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from .._probe import keys_and_hashes
from .errors import StoreError
from .keys import encode_block_id, gtin_problem
from .records import LineError, LoadReport
from .tables import Record, RecordError, parse_record

_MAX_REPORTED_ERRORS = 20

class Collected:
    """What a load gathered before it writes: keys, their hashes and block ids, GTINs, block details."""

    def __init__(self) -> None:
        self.keys: list[bytes] = []
        self.hashes = array.array("I")
        self.values: list[bytes] = []
        self.uniform_value: bytes | None = None
        self.mixed = False
        self.gtins: dict[str, bytes] = {}
        self.blocks: dict[int, dict[str, str]] = {}
        self.block_ids: dict[tuple[tuple[str, str], ...], int] = {}
        self.source_names: list[str] = []
        self.records: list[Record] = []        # `@kind ...` lines: price and grey table records

    def add(self, keys: list[bytes], hashes: Any, values: bytes | list[bytes]) -> None:
        """Take cut codes with one block value for all (`bytes`) or one each (a list)."""
        self.keys.extend(keys)
        self.hashes.extend(hashes)
        if isinstance(values, bytes):
            self.values.extend([values] * len(keys))
            distinct = {values} if keys else set()
        else:
            self.values.extend(values)
            distinct = set(values)
        if self.uniform_value is not None:
            distinct.add(self.uniform_value)
        if len(distinct) > 1:
            self.mixed = True
        elif distinct:
            self.uniform_value = distinct.pop()

    def block_value(self, details: dict[str, str]) -> bytes:
        cleaned = {k: v for k, v in details.items() if v}
        if not cleaned:
            return b""
        signature = tuple(sorted(cleaned.items()))
        block_id = self.block_ids.get(signature)
        if block_id is None:
            block_id = len(self.block_ids) + 1
            self.block_ids[signature] = block_id
            self.blocks[block_id] = cleaned
        return encode_block_id(block_id)


class CutCodes:
    """Blocked codes cut to their keys ahead of a load, a batch at a time: a source that arrives in pieces
    (replication reads `_changes` pages) is held as packed keys, not as text, and the load does not cut it again.

    Pass it to `Blocklist.load` as one of the sources. Only `add` and `remove` fill it: a key and its prefilter key
    come from the same compiled cut, so they always agree (a key stored under a wrong prefilter key would be missed
    by every lookup: a false "may be sold"). Inputs are read as blocklist lines (CIS, or a scan cut to its CIS).
    """

    def __init__(self, name: str = "<cut codes>") -> None:
        self.name = name
        self._keys: list[bytes] = []
        self._hashes = array.array("I")
        self._gone: dict[bytes, int] = {}

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, raws: list[str] | list[bytes]) -> list[tuple[int, str, str]]:
        """Cut and keep `raws`; return `(index, reason, message)` for those that are no marking code (not kept)."""
        keys, hashes, errors = keys_and_hashes(raws)
        self._keys.extend(keys)
        self._hashes.extend(hashes)
        return errors

    def remove(self, raws: list[str] | list[bytes]) -> None:
        """Drop `raws` added so far; one added again later stays (the last word wins). Texts that are no code are
        ignored: they were never kept."""
        keys, _, _ = keys_and_hashes(raws)
        at = len(self._keys)
        for key in keys:
            self._gone[key] = at

    def take(self) -> tuple[list[bytes], array.array[int]]:
        """The kept keys and their prefilter keys, in the order added, removals applied (the lists are the
        holder's own: a load reads them, and the memory goes with the holder)."""
        if self._gone:
            gone = self._gone
            dropped = {index for index, key in enumerate(self._keys) if key in gone and index < gone[key]}
            if dropped:
                self._keys = [key for index, key in enumerate(self._keys) if index not in dropped]
                self._hashes = array.array("I", (h for index, h in enumerate(self._hashes) if index not in dropped))
            self._gone = {}
        return self._keys, self._hashes


_CIS_COLUMNS = ("cis", "code", "km", "mark", "marking_code", "kiz", "ки", "код")
_DETAIL_COLUMNS = {
    "authority": ("authority", "ogv", "ogvs", "огв"),
    "reason": ("reason", "category", "причина"),
    "since": ("since", "date", "blocked_at", "дата"),
}
_PROGRESS_EVERY = 50_000


def open_text(source: str | os.PathLike[str], hint: str = "") -> tuple[io.TextIOBase, io.BufferedReader]:
    """The text of a file, gunzipped if it starts with the gzip magic, and the file to close after it. The file is
    opened once and the magic peeked at: a pipe (`<(zcat ...)`, /dev/stdin) can be read only once. A file that
    cannot be opened raises `StoreError` in words (`hint` is added to a missing file's message)."""
    name = os.fspath(source)
    try:
        raw = open(Path(source), "rb")
    except FileNotFoundError as exc:
        raise StoreError(f"cannot read {name}: no such file{hint}") from exc
    except OSError as exc:
        raise StoreError(f"cannot read {name}: {exc.strerror or exc}") from exc
    try:
        binary: Any = gzip.GzipFile(fileobj=raw, mode="rb") if raw.peek(2)[:2] == b"\x1f\x8b" else raw
    except OSError as exc:
        raw.close()
        raise StoreError(f"cannot read {name}: {exc.strerror or exc}") from exc
    return io.TextIOWrapper(binary, encoding="utf-8-sig", newline=""), raw


def collect(
    source: Any,
    out: Collected,
    report: LoadReport,
    block: dict[str, str] | None,
    progress: Callable[[int], None] | None,
) -> None:
    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        hint = ""
        if isinstance(source, str) and len(source) >= 21 and os.sep not in source:
            hint = " (to load lines from memory, pass a list of them as one source: load([lines]))"
        stream, raw = open_text(name, hint)
        with raw, stream:
            try:
                _collect_lines(name, _chunks_of_stream(stream), out, report, block, progress)
            except UnicodeDecodeError as exc:
                raise StoreError(f"{name} is not UTF-8 text: {exc}") from exc
            except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
                # A damaged gzip file (its trailer's CRC or length wrong, cut short): refused as a whole, and the
                # trailer's claimed length is never used to size anything.
                raise StoreError(f"{name} is damaged gzip: {exc}; nothing was loaded") from exc
    elif isinstance(source, CutCodes):
        out.source_names.append(source.name)
        keys, hashes = source.take()
        out.add(keys, hashes, out.block_value(dict(block or {})))
        report.lines += len(keys)
        if progress is not None:
            progress(len(keys))
    else:
        _collect_lines("<iterable>", _chunks_of_iterable(source), out, report, block, progress)


_CHUNK_CHARS = 1 << 22
_CHUNK_LINES = 100_000


def _chunks_of_stream(stream: io.TextIOBase) -> Iterator[list[str]]:
    """Lines in lists of ~100k, split in C: a Python loop per line would cost more than parsing the codes."""
    carry = ""
    while True:
        chunk = stream.read(_CHUNK_CHARS)
        if not chunk:
            break
        lines = (carry + chunk).split("\n")
        carry = lines.pop()
        yield lines
    if carry:
        yield [carry]


def _chunks_of_iterable(lines: Iterable[str]) -> Iterator[list[str]]:
    iterator = iter(lines)
    while True:
        chunk = [line.rstrip("\r\n") for line in itertools.islice(iterator, _CHUNK_LINES)]
        if not chunk:
            return
        yield chunk


def _collect_lines(
    name: str,
    chunks: Iterator[list[str]],
    out: Collected,
    report: LoadReport,
    block: dict[str, str] | None,
    progress: Callable[[int], None] | None,
) -> None:
    """Plain text: one scan, CIS or 14-digit GTIN per line. Hands over to the CSV reader on a header line."""
    out.source_names.append(os.path.basename(name) if name != "<iterable>" else name)
    default_details = dict(block or {})
    first_chunk = next(chunks, None)
    if first_chunk is None:
        return
    header = _csv_header(first_chunk[0]) if first_chunk else None
    if header is not None:
        rows = itertools.chain(first_chunk[1:], (line for chunk in chunks for line in chunk))
        _collect_csv(name, header, rows, out, report, default_details, progress)
        return
    default_value = out.block_value(default_details)
    offset = 0
    for chunk in itertools.chain([first_chunk], chunks):
        keys, hashes, errors = keys_and_hashes(chunk)
        out.add(keys, hashes, default_value)
        for index, reason, message in errors:
            text = chunk[index].strip()
            if not text or text.startswith("#"):
                continue
            if len(text) == 14 and text.isdigit():
                _take_gtin(name, offset + index + 1, text, default_value, out, report)
            elif text.startswith("@"):
                _take_record(name, offset + index + 1, text, out, report)
            else:
                reject(report, name, offset + index + 1, reason, message, chunk[index])
        offset += len(chunk)
        if progress is not None:
            progress(offset)
    report.lines += offset


def _csv_header(first: str) -> list[str] | None:
    """A first line is a CSV header when it names a code column; anything else is data."""
    for delimiter in (",", ";", "\t"):
        if delimiter in first:
            fields = [f.strip().strip('"').lower() for f in first.strip("\r\n").split(delimiter)]
            if any(f in _CIS_COLUMNS or f == "gtin" for f in fields):
                return fields + [delimiter]
    stripped = first.strip().lower()
    if stripped in _CIS_COLUMNS:
        return [stripped, ","]
    return None


def _collect_csv(
    name: str,
    header: list[str],
    lines: Iterator[str],
    out: Collected,
    report: LoadReport,
    default_details: dict[str, str],
    progress: Callable[[int], None] | None,
) -> None:
    delimiter = header.pop()
    cis_col = next((header.index(c) for c in _CIS_COLUMNS if c in header), None)
    gtin_col = header.index("gtin") if "gtin" in header else None
    detail_cols = {
        field_name: next((header.index(c) for c in names if c in header), None)
        for field_name, names in _DETAIL_COLUMNS.items()
    }
    texts: list[str] = []
    numbers: list[int] = []
    values: list[bytes] = []
    line_no = 1
    for line_no, row in enumerate(csv.reader(lines, delimiter=delimiter), 2):
        if not row or not any(cell.strip() for cell in row):
            continue
        details = dict(default_details)
        for field_name, col in detail_cols.items():
            if col is not None and col < len(row) and row[col].strip():
                details[field_name] = row[col].strip()
        value = out.block_value(details)
        cis = row[cis_col].strip() if cis_col is not None and cis_col < len(row) else ""
        if cis:
            texts.append(cis)
            numbers.append(line_no)
            values.append(value)
        elif gtin_col is not None and gtin_col < len(row) and row[gtin_col].strip():
            _take_gtin(name, line_no, row[gtin_col].strip(), value, out, report)
        else:
            reject(report, name, line_no, "missing_code", "the row has neither a code nor a GTIN", ",".join(row))
        if progress is not None and line_no % _PROGRESS_EVERY == 0:
            progress(line_no)
    report.lines += line_no
    _take_codes(name, texts, numbers, values, out, report)
    if progress is not None:
        progress(line_no)


def _take_gtin(name: str, line_no: int, gtin: str, value: bytes, out: Collected, report: LoadReport) -> None:
    problem = gtin_problem(gtin)
    if problem is not None:
        reject(report, name, line_no, "bad_gtin", problem, gtin)
        return
    if gtin in out.gtins:
        report.duplicates += 1
    out.gtins[gtin] = value


def _take_record(name: str, line_no: int, text: str, out: Collected, report: LoadReport) -> None:
    """A table record line (`@min_price GTIN KOPECKS`, ...); an unknown kind is a bad line, never skipped."""
    try:
        out.records.append(parse_record(text))
    except RecordError as exc:
        reject(report, name, line_no, exc.reason, str(exc), text)


def _take_codes(
    name: str,
    texts: list[str],
    numbers: list[int],
    values: list[bytes],
    out: Collected,
    report: LoadReport,
) -> None:
    keys, hashes, errors = keys_and_hashes(texts)
    if errors:
        bad = {index for index, _, _ in errors}
        for index, reason, message in errors:
            reject(report, name, numbers[index], reason, message, texts[index])
        values = [value for index, value in enumerate(values) if index not in bad]
    out.add(keys, hashes, values)


def reject(report: LoadReport, name: str, line_no: int, reason: str, message: str, text: str) -> None:
    """Count a bad line, and keep its details among the first `_MAX_REPORTED_ERRORS`."""
    report.rejected += 1
    if len(report.errors) < _MAX_REPORTED_ERRORS:
        report.errors.append(LineError(name, line_no, reason, message, text[:80]))

