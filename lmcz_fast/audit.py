"""Audit log of every check the service answered: append-only daily segments, bounded loss, export.

Layout of the audit directory:

- `audit-YYYY-MM-DD.jsonl` — the current UTC day's segment, one compact JSON object per request:
  `{"t": <Unix ms>, "id": "<reqId>", "c": "<X-ClientId>"|null, "v": <db version>|null, "o": "<outcome>",
  "k": [["<cis>", 1|0|null], ...]}` (1 blocked, 0 not blocked, null not checked: refused or invalid request),
  and `"a": "<who>"` when the request authenticated by `Authorization: Token` (`token:<label>`, the label the
  operator gave the token in `serve --token-file`; never the token itself), and `"i": "<INN>"` when `serve
  --organisations` serves several organisations: the organisation the request's credentials named.
- `audit-YYYY-MM-DD.jsonl.gz` — earlier days, gzip-compressed when the day is over (or at the next start).
  Segments older than the retention (default 100 days) are deleted.

The event loop only appends a tuple to a deque (`record`); a writer thread formats and writes what has queued every
`flush_interval` seconds (default 0.5 s) and on `close()`, then `fdatasync`s. So a killed process loses at most the
records of the last interval plus the write in progress, and a power cut at most what the disk had not yet synced.
A line cut short by a crash is skipped (and counted) by the reader.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import json
import logging
import os
import re
import shutil
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

log = logging.getLogger("lmcz_fast.audit")

DEFAULT_RETENTION_DAYS = 100
DEFAULT_FLUSH_INTERVAL = 0.5
MAX_PENDING = 2_000_000
_SEGMENT = re.compile(r"^audit-(\d{4}-\d{2}-\d{2})\.jsonl(\.gz)?$")
_DUMPS = json.JSONEncoder(separators=(",", ":")).encode

Record = tuple[str, int, "str | None", "int | None", str, "tuple[tuple[str, bool | None], ...]", "str | None",
               "str | None"]
#: Lines formatted by the caller (`AuditLog.record_lines`): `(None, <Unix ms>, "<lines>", <records in them>)`.
Lines = tuple[None, int, str, int]
#: Seconds of formatting by the writer thread between two releases of the GIL, so that the event loop's thread,
#: which wants it back, waits that long at most rather than the interpreter's 5 ms switch interval.
_HOLD_GIL = 0.0005
#: Bytes of formatted records written at a time (fdatasync once per flush): a flush of big records (1000 codes
#: each) as one string of megabytes made glibc raise its mmap threshold and keep that much heap resident.
_WRITE_CHUNK = 64 * 1024


class AuditError(Exception):
    """The audit directory cannot be used, or an export was asked for something impossible."""


def _day_of(ms: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ms / 1000))


def segment_day(path: Path) -> dt.date | None:
    """The UTC day a segment file holds, or None if the name is not a segment's."""
    match = _SEGMENT.match(path.name)
    return dt.date.fromisoformat(match.group(1)) if match else None


def segments(directory: str | os.PathLike[str]) -> list[Path]:
    """Segment files in day order (a day's plain and compressed files both listed, plain last)."""
    root = Path(directory)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if _SEGMENT.match(p.name)]
    return sorted(found, key=lambda p: (p.name.split(".")[0], not p.name.endswith(".gz")))


def prune(directory: str | os.PathLike[str], retention_days: int, now: float | None = None) -> list[Path]:
    """Delete segments whose whole day is older than `retention_days`; return what was deleted."""
    if retention_days <= 0:
        return []
    today = dt.datetime.fromtimestamp(time.time() if now is None else now, dt.timezone.utc).date()
    oldest_kept = today - dt.timedelta(days=retention_days)
    removed = []
    for path in segments(directory):
        day = segment_day(path)
        if day is not None and day < oldest_kept:
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def compress(path: Path) -> Path:
    """Gzip one finished plain segment next to itself (atomically), then delete the plain file."""
    target = path.with_name(path.name + ".gz")
    partial = path.with_name(path.name + ".gz.part")
    if target.exists():
        # a crash hit between the atomic rename of the .gz and the unlink: the .gz is complete.
        path.unlink()
        return target
    with open(path, "rb") as src, gzip.open(partial, "wb", compresslevel=6) as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    with open(partial, "rb") as done:
        os.fsync(done.fileno())
    os.replace(partial, target)
    path.unlink()
    return target


def _json_str(text: str | None) -> str:
    """A string as JSON; plain printable ASCII (a fiscal drive number) without the encoder."""
    if text is None:
        return "null"
    if '"' in text or "\\" in text or not (text.isascii() and text.isprintable()):
        return _DUMPS(text)
    return f'"{text}"'


def line_ends(client: str | None, who: Any) -> tuple[str, str]:
    """What a caller formatting its own lines (`AuditLog.record_lines`) writes as `"c"` (the client's JSON text) and
    after `"k"` (`,"a":...` of a token's label, or ""), exactly as `_format` does."""
    inn = None
    if who is not None and not isinstance(who, str):       # an organisation's caller (serve --organisations)
        who, inn = who.label, who.inn
    tail = "" if who is None else f',"a":{_json_str(who)}'
    return _json_str(client), tail if inn is None else tail + f',"i":{_json_str(inn)}'


def _format(record: Record) -> str:
    """One record as a compact JSON line, built by hand: ~5x cheaper than json.dumps of a dict.

    A CIS the store returned holds only GS1's 82 characters, of which only '"' needs escaping in JSON;
    anything else (a client id, a refused request's raw text) goes through the JSON encoder.
    """
    req_id, ts_ms, client, version, outcome, codes, who = record[:7]
    inn = record[7] if len(record) > 7 else None       # the organisation (serve --organisations)
    # No cache of client ids: a client may send a new one with every request, and each cached one, long-lived
    # among short-lived objects, pinned an allocator arena (RSS grew 40 MB over 10k ids and did not come back).
    client_json = _json_str(client)
    parts = []
    for cis, blocked in codes:
        if blocked is None:
            parts.append(f"[{_DUMPS(cis)},null]")
        elif '"' in cis or "\\" in cis or not (cis.isascii() and cis.isprintable()):
            parts.append(f"[{_DUMPS(cis)},{1 if blocked else 0}]")
        else:
            parts.append(f'["{cis}",{1 if blocked else 0}]')
    who_json = "" if who is None else f',"a":{_json_str(who)}'
    if inn is not None:
        who_json += f',"i":{_json_str(inn)}'
    return (f'{{"t":{ts_ms},"id":"{req_id}","c":{client_json},"v":{"null" if version is None else version},'
            f'"o":"{outcome}","k":[{",".join(parts)}]{who_json}}}\n')


class AuditLog:
    """Buffered, append-only writer of check records. `record` is called on the event loop; a thread writes.

    `flush_interval` bounds what a crash loses; `retention_days` (0: keep forever) bounds the disk used.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        retention_days: int = DEFAULT_RETENTION_DAYS,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        fsync: bool = True,
    ) -> None:
        if flush_interval <= 0:
            raise ValueError("flush_interval must be positive")
        self.directory = Path(directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            probe = self.directory / ".write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise AuditError(f"audit directory {self.directory} is not writable: {exc}") from exc
        self.retention_days = retention_days
        self.flush_interval = flush_interval
        self.fsync = fsync
        self.records_total = 0
        self.bytes_total = 0
        self.errors_total = 0
        self.dropped_total = 0
        self.last_flush = time.time()
        self._pending: deque[Record | Lines] = deque()
        self._unsynced = False
        self._file: IO[bytes] | None = None
        self._day: str | None = None
        self._day_bounds = (0, 0)
        self._write_lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._housekeeping(today=_day_of(int(time.time() * 1000)))
        self._thread = threading.Thread(target=self._run, name="lmcz-audit-writer", daemon=True)
        self._thread.start()

    # -- the event loop's side ---------------------------------------------------------------------------------

    def record(
        self,
        req_id: str,
        ts_ms: int,
        client: str | None,
        db_version: int | None,
        outcome: str,
        codes: list[tuple[str, bool | None]],
        who: Any = None,
    ) -> None:
        """Queue one request's record; cheap and non-blocking (the writer thread does the rest).

        The record is kept as tuples of strings and numbers only, which the garbage collector stops tracking at
        its first pass: the queue, up to a flush interval of records, then never makes a full collection (a
        stall of the event loop) more frequent. `who`: "token:<label>" for a request authenticated by a token
        (recorded as "a"); None for HTTP Basic (one user) or no authentication; or, when several organisations are
        served, an object with `label` (the same, or None) and `inn` (recorded as "i")."""
        inn = None
        if who is not None and not isinstance(who, str):
            who, inn = who.label, who.inn
        pending = self._pending
        if len(pending) >= MAX_PENDING:
            pending.popleft()
            self.dropped_total += 1
        pending.append((req_id, ts_ms, client, db_version, outcome, tuple(codes), who, inn))

    def record_lines(self, ts_ms: int, lines: str, count: int) -> None:
        """Queue `count` records already formatted as `lines` (JSON lines, each as `_format` would write it, all
        of the moment `ts_ms`): what the compiled check answers write in the pass that builds the answer
        (lmcz_fast/_answer.pyx), one queue entry per request. Cheap and non-blocking, like `record`."""
        pending = self._pending
        if len(pending) >= MAX_PENDING:
            pending.popleft()
            self.dropped_total += 1
        pending.append((None, ts_ms, lines, count))

    def metrics(self) -> dict[str, float]:
        return {
            "lmcz_audit_records_total": self.records_total,
            "lmcz_audit_bytes_total": self.bytes_total,
            "lmcz_audit_errors_total": self.errors_total,
            "lmcz_audit_dropped_total": self.dropped_total,
            "lmcz_audit_pending": len(self._pending),
            "lmcz_audit_last_flush_age_seconds": round(time.time() - self.last_flush, 3),
        }

    # -- the writer thread -------------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            try:
                self.flush()
            except Exception:
                log.exception("audit flush failed")

    def flush(self) -> int:
        """Write and sync everything queued so far; returns the number of records written."""
        with self._write_lock:
            pending = self._pending
            count = len(pending)
            if not count:
                self.last_flush = time.time()
                return 0
            lines: list[str] = []
            size = 0
            day_start, day_end = self._day_bounds
            written = 0
            try:
                held_since = time.perf_counter()
                for _ in range(count):
                    if time.perf_counter() - held_since > _HOLD_GIL:
                        time.sleep(0)  # let the event loop's thread have the GIL
                        held_since = time.perf_counter()
                    record = pending[0]
                    ts_ms = record[1]
                    if not day_start <= ts_ms < day_end:
                        self._write(lines)
                        lines, size = [], 0
                        self._open(_day_of(ts_ms))
                        day_start, day_end = self._day_bounds
                    try:
                        if record[0] is None:           # formatted by the caller (record_lines)
                            line, records = record[2], record[3]
                        else:
                            line, records = _format(record), 1  # type: ignore[arg-type]
                        lines.append(line)
                        size += len(line)
                        written += records
                        if size >= _WRITE_CHUNK:
                            self._write(lines, sync=False)
                            lines, size = [], 0
                    except OSError:
                        raise
                    except Exception:
                        self.dropped_total += 1
                        log.exception("audit record %r cannot be formatted; dropped", record[0])
                    pending.popleft()
                self._write(lines)
            except OSError as exc:
                self.errors_total += 1
                log.error("audit write to %s failed (%s); %d records kept in memory for the next try",
                          self.directory, exc, len(pending))
                return 0
            self.records_total += written
            self.last_flush = time.time()
            return written

    def _write(self, lines: list[str], sync: bool = True) -> None:
        """Append `lines`; with `sync`, make everything appended so far durable."""
        if self._file is None:
            return
        if lines:
            data = "".join(lines).encode("utf-8")
            self._file.write(data)
            self._file.flush()
            self.bytes_total += len(data)
            self._unsynced = True
        if sync and self._unsynced:
            if self.fsync:
                os.fdatasync(self._file.fileno())
            self._unsynced = False

    def _open(self, day: str) -> None:
        previous = self._day
        if self._file is not None:
            self._file.close()
        self._file = open(self.directory / f"audit-{day}.jsonl", "ab", buffering=0)
        self._day = day
        start = int(dt.datetime.fromisoformat(day).replace(tzinfo=dt.timezone.utc).timestamp() * 1000)
        self._day_bounds = (start, start + 86_400_000)
        if previous is not None and previous != day:
            self._housekeeping(today=day)

    def _housekeeping(self, today: str) -> None:
        """Compress finished days' plain segments and delete those past retention."""
        for path in segments(self.directory):
            day = segment_day(path)
            if path.suffix == ".jsonl" and day is not None and day.isoformat() < today:
                try:
                    compress(path)
                except (OSError, AuditError) as exc:
                    log.error("cannot compress audit segment %s: %s", path, exc)
        for path in prune(self.directory, self.retention_days):
            log.info("audit segment %s deleted (older than %d days)", path.name, self.retention_days)

    def close(self) -> None:
        """Flush what is queued and stop the writer. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        self._thread.join(timeout=10)
        self.flush()
        with self._write_lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# -- reading and export ---------------------------------------------------------------------------------------


@dataclass
class ReadStats:
    records: int = 0
    damaged: int = 0


def _open_segment(path: Path) -> IO[bytes]:
    if path.name.endswith(".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def iter_records(
    directory: str | os.PathLike[str],
    since_ms: int | None = None,
    until_ms: int | None = None,
    stats: ReadStats | None = None,
) -> Iterator[dict[str, Any]]:
    """Stored records with `since_ms <= t < until_ms`, in file order; damaged lines are skipped and counted."""
    stats = stats if stats is not None else ReadStats()
    first_day = None if since_ms is None else dt.date.fromisoformat(_day_of(since_ms))
    last_day = None if until_ms is None else dt.date.fromisoformat(_day_of(until_ms))
    for path in segments(directory):
        day = segment_day(path)
        if day is None or (first_day and day < first_day) or (last_day and day > last_day):
            continue
        try:
            handle = _open_segment(path)
        except OSError as exc:
            raise AuditError(f"cannot read {path}: {exc}") from exc
        with handle:
            try:
                for line in handle:
                    try:
                        record = json.loads(line)
                        t = record["t"]
                    except (ValueError, KeyError, TypeError):
                        stats.damaged += 1
                        continue
                    if (since_ms is not None and t < since_ms) or (until_ms is not None and t >= until_ms):
                        continue
                    stats.records += 1
                    yield record
            except (EOFError, gzip.BadGzipFile) as exc:
                stats.damaged += 1
                log.warning("audit segment %s is damaged: %s", path.name, exc)


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).isoformat(timespec="milliseconds")


def _readable(record: dict[str, Any]) -> dict[str, Any]:
    out = {
        "reqId": record.get("id"),
        "time": _iso(record["t"]),
        "reqTimestamp": record["t"],
        "clientId": record.get("c"),
        "dbVersion": record.get("v"),
        "outcome": record.get("o"),
        "codes": [{"cis": cis, "isBlocked": None if b is None else bool(b)} for cis, b in record.get("k", ())],
    }
    if record.get("a") is not None:
        out["auth"] = record["a"]           # a token's label (serve --token-file), never the token
    if record.get("i") is not None:
        out["inn"] = record["i"]            # the organisation (serve --organisations)
    return out


def _of_organisation(records: Iterator[dict[str, Any]], inn: str, stats: ReadStats) -> Iterator[dict[str, Any]]:
    """The records of one organisation's requests (`"i"`); `stats.records` counts only those."""
    for record in records:
        if record.get("i") == inn:
            yield record
        else:
            stats.records -= 1


# `inn` last: the columns before it keep their positions; empty for a record without an organisation.
CSV_COLUMNS = ("reqId", "time", "reqTimestamp", "clientId", "dbVersion", "outcome", "cis", "isBlocked", "inn")


def export(
    directory: str | os.PathLike[str],
    out: IO[str],
    *,
    since_ms: int | None = None,
    until_ms: int | None = None,
    fmt: str = "json",
    inn: str | None = None,
) -> ReadStats:
    """Write the records in [since, until) as JSON lines (one per request) or CSV (one row per code, columns
    `CSV_COLUMNS`: the last, `inn`, is the request's organisation, empty without `serve --organisations`); with
    `inn`, only the requests of that organisation."""
    if fmt not in ("json", "csv"):
        raise AuditError(f"unknown export format {fmt!r}; use json or csv")
    if since_ms is not None and until_ms is not None and until_ms <= since_ms:
        raise AuditError("--until must be later than --since")
    stats = ReadStats()
    records = iter_records(directory, since_ms, until_ms, stats)
    if inn is not None:
        records = _of_organisation(records, inn, stats)
    if fmt == "json":
        for record in records:
            out.write(json.dumps(_readable(record), ensure_ascii=False) + "\n")
        return stats
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for record in records:
        base = (record.get("id"), _iso(record["t"]), record["t"], record.get("c") or "",
                "" if record.get("v") is None else record["v"], record.get("o"))
        organisation = record.get("i") or ""
        for cis, b in record.get("k", ()):
            writer.writerow((*base, cis, "" if b is None else ("true" if b else "false"), organisation))
    return stats


_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_when(text: str, now: float | None = None) -> int:
    """A point in time as Unix ms: ISO date or date-time (UTC unless an offset is given), Unix seconds, or an age
    such as `90m`, `24h`, `7d` (that long before now)."""
    text = text.strip()
    now = time.time() if now is None else now
    match = _RELATIVE.match(text)
    if match:
        return int((now - float(match.group(1)) * _UNIT[match.group(2)]) * 1000)
    if re.fullmatch(r"\d{9,11}(\.\d+)?", text):
        return int(float(text) * 1000)
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise AuditError(f"cannot read {text!r} as a time: use 2026-11-01, 2026-11-01T10:00, 2026-11-01T10:00+03:00, "
                         "a Unix time, or an age like 24h or 7d") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return int(when.timestamp() * 1000)


__all__ = ["AuditError", "AuditLog", "CSV_COLUMNS", "ReadStats", "export", "iter_records", "parse_when",
           "prune", "segments"]
