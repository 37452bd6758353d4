"""Reading the audit log back: its records in a span of time (damaged lines skipped and counted), `export` as
JSON lines or CSV, and `parse_when` (the times `audit export --since/--until` take)."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import json
import logging
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from .directory import _day_of, segment_day, segments
from .errors import AuditError

log = logging.getLogger("lmcz_fast.audit")


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
