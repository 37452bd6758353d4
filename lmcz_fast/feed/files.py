"""Snapshot and delta files: reading them (gzip or plain text, headers checked), writing them, composing a chain
of deltas into one."""

from __future__ import annotations

import gzip
import io
import os
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..progress import Progress
from ..store import RecordError, digest_after, parse_record
from .errors import IntegrityError, PublishError, UnsupportedFeedError
from .manifest import FORMAT_1, FORMATS


@dataclass
class Snapshot:
    """A parsed snapshot: sorted canonical identities and blocked GTINs at `version`, and the table records
    (canonical text without the `@`; format 2)."""

    version: int
    gtins: list[str]
    identities: list[str]
    records: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The code lines (GTINs, identities), as `Blocklist.load` takes them; the records go as `records=`."""
        return self.gtins + self.identities


@dataclass
class Delta:
    """A parsed delta. Within one delta, adds and removes are disjoint; the store applies removes first."""

    from_version: int | None
    to_version: int | None
    add: list[str] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)
    add_gtins: list[str] = field(default_factory=list)
    remove_gtins: list[str] = field(default_factory=list)
    add_records: list[str] = field(default_factory=list)
    remove_records: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return (len(self.add) + len(self.remove) + len(self.add_gtins) + len(self.remove_gtins)
                + len(self.add_records) + len(self.remove_records))


def _is_gtin(text: str) -> bool:
    return len(text) == 14 and text.isascii() and text.isdigit()


#: The most text a feed file may expand to when nothing says better (a hand-given delta, the publisher's own
#: files): 1 GiB, ~25x a 900k-code snapshot. A sync passes the bound its signed manifest implies (`text_limit`).
MAX_TEXT_BYTES = 1 << 30
#: What one line of a feed file can take: an identity is at most 38 bytes, a table record a few dozen; the
#: margin is wide, the bound is still a few hundred bytes a line rather than what the file claims.
MAX_LINE_BYTES = 512
_HEADER_BYTES = 1 << 16


def text_limit(lines: int) -> int:
    """The most text a feed file of `lines` counted lines (its manifest's counts) can hold, header included."""
    return _HEADER_BYTES + max(0, lines) * MAX_LINE_BYTES


def _gunzip(data: bytes, limit: int) -> bytes:
    """The gzip members of `data`, decompressed in bounded steps: more than `limit` bytes of output is refused
    as soon as it is produced. The trailer's own length (ISIZE) is an untrusted claim: zlib checks it, with the
    CRC, against what was produced, and nothing is sized by it."""
    out: list[bytes] = []
    total = 0
    rest = data
    while rest[:2] == b"\x1f\x8b":
        unpack = zlib.decompressobj(wbits=31)     # one gzip member: header, deflate, CRC-32 and ISIZE checked
        pending = rest
        while not unpack.eof:
            chunk = unpack.decompress(pending, min(1 << 20, limit + 1 - total))
            total += len(chunk)
            if total > limit:
                raise IntegrityError(f"the file expands past {limit} bytes of text; refused")
            out.append(chunk)
            pending = unpack.unconsumed_tail
            if not pending and not unpack.eof and not chunk:
                raise IntegrityError("not gzip text: the compressed data is cut short")
        rest = unpack.unused_data.lstrip(b"\x00")
    if rest:
        raise IntegrityError("not gzip text: trailing bytes after the last gzip member")
    return b"".join(out)


def _read_text(source: str | os.PathLike[str] | bytes, max_bytes: int | None = None) -> str:
    limit = MAX_TEXT_BYTES if max_bytes is None else max_bytes
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    try:
        if data[:2] == b"\x1f\x8b":
            data = _gunzip(data, limit)
        elif len(data) > limit:
            raise IntegrityError(f"the file holds more than {limit} bytes of text; refused")
        return data.decode("utf-8")
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as exc:
        raise IntegrityError(f"not gzip text: {exc}") from exc


_FILE_HEAD = re.compile(r"# lmcz-feed (snapshot|delta) (\d{1,6})")


def _header(lines: list[str], kind: str) -> tuple[dict[str, int] | None, int]:
    """The `# name value` lines after a `# lmcz-feed <kind> <format>` first line, and where the data starts.
    None when the first line is not that (a hand-written file). A format newer than this version reads raises
    `UnsupportedFeedError`."""
    head = _FILE_HEAD.fullmatch(lines[0].strip()) if lines else None
    if head is None or head.group(1) != kind:
        return None, 0
    number = int(head.group(2))
    if f"lmcz-feed/{number}" not in FORMATS:
        raise UnsupportedFeedError(
            f"this {kind} file is in format lmcz-feed/{number}; this version of lmcz-fast reads "
            f"{', '.join(FORMATS)}: upgrade lmcz-fast; nothing was changed"
        )
    fields: dict[str, int] = {"format": number}
    start = 1
    while start < len(lines) and lines[start].startswith("#"):
        parts = lines[start][1:].split()
        if len(parts) == 2 and parts[1].isdigit():
            fields[parts[0]] = int(parts[1])
        start += 1
    return fields, start


def _record_line(text: str, where: str) -> str:
    """The canonical text of one `@kind ...` line of a feed file. A kind this version does not know raises
    `UnsupportedFeedError` (the feed is newer: never skip it), a malformed record `IntegrityError`."""
    try:
        return parse_record(text).text
    except RecordError as exc:
        if exc.reason == "unknown_record_kind":
            raise UnsupportedFeedError(f"{where}: {exc}; nothing was changed") from exc
        raise IntegrityError(f"{where}: {exc}") from exc


def read_snapshot(source: str | os.PathLike[str] | bytes, max_bytes: int | None = None) -> Snapshot:
    """Parse a feed snapshot (path or bytes, gzip or plain) and check its header against its contents.

    The body is the GTIN lines, then the identity lines, then (format 2) the `@` record lines: what `publish`
    writes; anything else there shows up as a count mismatch here or as a bad identity when the digest is
    computed. A record of a kind this version does not know raises `UnsupportedFeedError`. Text past
    `max_bytes` (default `MAX_TEXT_BYTES`) is refused with `IntegrityError` as it is decompressed.
    """
    lines = _read_text(source, max_bytes).split("\n")
    if lines and not lines[-1]:
        lines.pop()
    fields, start = _header(lines, "snapshot")
    if fields is None or "version" not in fields:
        raise IntegrityError("not an lmcz-feed snapshot (missing '# lmcz-feed snapshot N' / '# version' header)")
    body = lines[start:]
    split = fields.get("gtins", -1)
    codes = fields.get("codes", -1)
    records = fields.get("records", 0)
    if (not 0 <= split <= len(body) or codes < 0 or split + codes + records != len(body)
            or not all(map(_is_gtin, body[:split]))):
        raise IntegrityError(
            f"the snapshot's header says {fields.get('codes')} codes, {fields.get('gtins')} GTINs and {records} "
            f"records; its {len(body)} lines do not match"
        )
    tail = body[split + codes:]
    if tail and fields["format"] == 1:
        raise IntegrityError(f"a {FORMAT_1} snapshot holds no records; its header counts {records}")
    texts = []
    for number, line in enumerate(tail, start + split + codes + 1):
        if not line.startswith("@"):
            raise IntegrityError(f"snapshot line {number}: expected a '@kind ...' record, got {line[:60]!r}")
        text = _record_line(line, f"snapshot line {number}")
        if text != line[1:]:
            raise IntegrityError(f"snapshot line {number}: the record {line[:60]!r} is not in canonical form")
        texts.append(text)
    return Snapshot(fields["version"], body[:split], body[split:split + codes], texts)


def read_delta(source: str | os.PathLike[str] | bytes, max_bytes: int | None = None) -> Delta:
    """Parse a delta file (`+CODE`, `-CODE`, `+GTIN`, `-GTIN` per line, `#` comments; gzip or plain).

    Feed deltas carry `# from N` / `# to N` headers; a hand-written delta has none (versions are then None).
    A line that both adds and removes the same entry is refused, since the order would be ambiguous.
    `+@kind ...` / `-@kind ...` lines change the price and grey tables (a changed price: `-` the old record, `+`
    the new); a record of a kind this version does not know raises `UnsupportedFeedError`. Text past
    `max_bytes` (default `MAX_TEXT_BYTES`) is refused with `IntegrityError` as it is decompressed.
    """
    # Lines end at "\n" only: str.splitlines() also ends one at a GS (0x1D, the separator inside a GS1 scan), FS,
    # RS, NEL and the Unicode separators, which would cut a scan in two and shift every line number after it.
    lines = _read_text(source, max_bytes).split("\n")
    fields = _header(lines, "delta")[0] or {}
    delta = Delta(fields.get("from"), fields.get("to"))
    for number, line in enumerate(lines, 1):
        text = line.rstrip("\r")
        if not text.strip() or text.startswith("#"):
            continue
        sign, body = text[0], text[1:]
        if sign not in "+-" or not body:
            raise IntegrityError(f"delta line {number}: expected '+CODE' or '-CODE', got {text[:60]!r}")
        if body.startswith("@"):
            record = _record_line(body, f"delta line {number}")
            (delta.add_records if sign == "+" else delta.remove_records).append(record)
        elif _is_gtin(body):
            (delta.add_gtins if sign == "+" else delta.remove_gtins).append(body)
        else:
            (delta.add if sign == "+" else delta.remove).append(body)
    for adds, removes, what in ((delta.add, delta.remove, "code"), (delta.add_gtins, delta.remove_gtins, "GTIN"),
                                (delta.add_records, delta.remove_records, "record")):
        both = set(adds) & set(removes)
        if both:
            raise IntegrityError(f"the delta both adds and removes {what} {min(both)!r}")
    return delta


_PROGRESS_LINES = 1 << 16


def _format_number(fmt: str) -> int:
    return int(fmt.split("/")[1])


def _snapshot_bytes(version: int, gtins: Sequence[str], identities: Sequence[str], records: Sequence[str] = (),
                    fmt: str = FORMAT_1, progress: Progress | None = None) -> bytes:
    """The gzip snapshot file. Compressed in slices of 64k lines (the bytes are exactly those of one
    `gzip.compress(..., mtime=0)` over the whole text), reporting each slice to `progress`. Format 2 adds the
    `# records N` header and the `@` record lines after the codes."""
    if records and fmt == FORMAT_1:
        raise PublishError(f"internal error: table records in a {FORMAT_1} snapshot")
    head = (f"# lmcz-feed snapshot {_format_number(fmt)}\n# version {version}\n# codes {len(identities)}\n"
            f"# gtins {len(gtins)}\n")
    if fmt != FORMAT_1:
        head += f"# records {len(records)}\n"
    packer = zlib.compressobj(6, zlib.DEFLATED, 31)  # what gzip.compress(data, 6, mtime=0) uses, incrementally
    out = [packer.compress(head.encode("ascii"))]
    total = len(gtins) + len(identities)
    done = 0
    for lines in (gtins, identities):
        for start in range(0, len(lines), _PROGRESS_LINES):
            piece = lines[start:start + _PROGRESS_LINES]
            out.append(packer.compress("".join(f"{line}\n" for line in piece).encode("ascii")))
            done += len(piece)
            if progress is not None:
                progress("compressing the snapshot", done, total, "lines")
    out.append(packer.compress("".join(f"@{text}\n" for text in records).encode("ascii")))
    out.append(packer.flush())
    return b"".join(out)


def _delta_bytes(from_version: int, to_version: int, delta: Delta, fmt: str = FORMAT_1) -> bytes:
    if (delta.add_records or delta.remove_records) and fmt == FORMAT_1:
        raise PublishError(f"internal error: table records in a {FORMAT_1} delta")
    out = io.StringIO()
    out.write(f"# lmcz-feed delta {_format_number(fmt)}\n# from {from_version}\n# to {to_version}\n")
    for sign, items in (("-", delta.remove_gtins), ("+", delta.add_gtins), ("-", delta.remove), ("+", delta.add)):
        for item in items:
            out.write(f"{sign}{item}\n")
    for sign, items in (("-", delta.remove_records), ("+", delta.add_records)):
        for item in items:
            out.write(f"{sign}@{item}\n")
    return gzip.compress(out.getvalue().encode("ascii"), compresslevel=6, mtime=0)


def _compose(deltas: Sequence[Delta]) -> Delta:
    """One delta with the effect of `deltas` applied in order, exact relative to the first one's start.

    For each entry only its first and last operation matter: removed then re-added (or added then removed)
    cancels out, otherwise the last operation wins. Applying the result is one transaction instead of several.
    """
    first: dict[tuple[int, str], str] = {}
    last: dict[tuple[int, str], str] = {}
    for delta in deltas:
        # Within one delta removals come first (the store applies them first): a changed price is -old +new.
        for sign, what, items in (("-", 0, delta.remove), ("-", 1, delta.remove_gtins), ("-", 2, delta.remove_records),
                                  ("+", 0, delta.add), ("+", 1, delta.add_gtins), ("+", 2, delta.add_records)):
            for item in items:
                first.setdefault((what, item), sign)
                last[(what, item)] = sign
    result = Delta(deltas[0].from_version if deltas else None, deltas[-1].to_version if deltas else None)
    targets = {("+", 0): result.add, ("-", 0): result.remove, ("+", 1): result.add_gtins,
               ("-", 1): result.remove_gtins, ("+", 2): result.add_records, ("-", 2): result.remove_records}
    for (what, item), sign in last.items():
        if first[(what, item)] == sign:
            targets[(sign, what)].append(item)
    return result


def _digest_after(digest: str, delta: Delta) -> str:
    """The set digest after an exact delta, by the store's own arithmetic (`store.digest_after`), so the feed
    can never drift from what `Blocklist.info()["set_digest"]` reports."""
    return digest_after(digest, add=delta.add, remove=delta.remove, add_gtins=delta.add_gtins,
                        remove_gtins=delta.remove_gtins, add_records=delta.add_records,
                        remove_records=delta.remove_records)
