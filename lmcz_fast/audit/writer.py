"""`AuditLog`: records queued on the event loop, formatted, written and synced by a thread every flush interval;
a new day opens a new segment and compresses and prunes the finished ones."""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import time
from collections import deque
from pathlib import Path
from typing import IO, Any

from .directory import _day_of, compress, prune, segment_day, segments
from .errors import AuditError
from .lines import Lines, Record, _format

log = logging.getLogger("lmcz_fast.audit")

DEFAULT_RETENTION_DAYS = 100
DEFAULT_FLUSH_INTERVAL = 0.5
MAX_PENDING = 2_000_000
#: Seconds of formatting by the writer thread between two releases of the GIL, so that the event loop's thread,
#: which wants it back, waits that long at most rather than the interpreter's 5 ms switch interval.
_HOLD_GIL = 0.0005
#: Bytes of formatted records written at a time (fdatasync once per flush): a flush of big records (1000 codes
#: each) as one string of megabytes made glibc raise its mmap threshold and keep that much heap resident.
_WRITE_CHUNK = 64 * 1024

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
