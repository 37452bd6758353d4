"""The audit directory's segment files: one per UTC day, `audit-YYYY-MM-DD.jsonl`, gzip-compressed when the day
is over; listed in day order, compressed atomically, pruned past the retention."""

from __future__ import annotations

import datetime as dt
import gzip
import os
import re
import shutil
import time
from pathlib import Path

_SEGMENT = re.compile(r"^audit-(\d{4}-\d{2}-\d{2})\.jsonl(\.gz)?$")


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
