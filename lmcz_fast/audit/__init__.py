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

The parts, one job each: `errors.py` (`AuditError`), `directory.py` (the segment files: names, listing,
compressing, pruning), `lines.py` (a record as its JSON line), `writer.py` (`AuditLog`: the queue and the writer
thread) and `reading.py` (reading the records back, `export`, `parse_when`).
"""

from __future__ import annotations

from .directory import compress, prune, segment_day, segments
from .errors import AuditError
from .lines import Lines, Record, _format, line_ends
from .reading import CSV_COLUMNS, ReadStats, export, iter_records, parse_when
from .writer import DEFAULT_FLUSH_INTERVAL, DEFAULT_RETENTION_DAYS, MAX_PENDING, AuditLog

__all__ = ["AuditError", "AuditLog", "CSV_COLUMNS", "ReadStats", "export", "iter_records", "parse_when",
           "prune", "segments"]
