"""A feed directory on disk: atomic writes (temp file, fsync, rename), checking a file against the manifest,
pruning the files no manifest names any more."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from pathlib import Path

#: Files are read and streamed in pieces of this size.
_CHUNK = 1 << 20
_FEED_FILE = re.compile(r"(snapshot|delta)-[0-9-]+\.txt\.gz")
_STALE_TEMP_SECONDS = 3600


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write `data` to `path` so that readers see the old file or the whole new one: temp file, fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    _fsync_dir(path.parent)


def _file_matches(path: Path, size: int, sha256: str) -> bool:
    try:
        if path.stat().st_size != size:
            return False
        digest = hashlib.sha256()
        with open(path, "rb") as stream:
            for chunk in iter(lambda: stream.read(_CHUNK), b""):
                digest.update(chunk)
        return digest.hexdigest() == sha256
    except OSError:
        return False


def _prune(directory: Path, keep: set[str], now: float) -> list[str]:
    """Delete feed files (by their naming pattern only) that no kept manifest names, and our stale temp files."""
    removed = []
    for entry in directory.iterdir():
        name = entry.name
        stale_temp = (name.startswith(".") and name.endswith(".tmp")
                      and now - entry.stat().st_mtime > _STALE_TEMP_SECONDS)
        if (_FEED_FILE.fullmatch(name) and name not in keep) or stale_temp:
            with contextlib.suppress(OSError):
                entry.unlink()
                removed.append(name)
    return sorted(removed)
