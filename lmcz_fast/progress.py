"""How long work reports how far it got, for a person watching (the CLI draws a bar on a terminal).

A progress callback is `progress(stage, done, total, unit)`: `stage` names the step in a few words ("reading
input", "downloading snapshot-00000042.txt.gz", "loading into the store"); `done` is how far it got, in `unit`
("lines", "bytes", "codes"); `total` is where it ends, or None when that is not known (then only the step and its
elapsed time can be shown). A new `stage` starts a new step; a step with nothing to count is announced once with
`done=0, total=None`. `total` may be an estimate that `done` ends up passing. Callers that are not watched pass no
callback and pay nothing.
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

__all__ = ["Progress", "announce_after", "estimate_lines", "line_counter"]

Progress = Callable[[str, int, "int | None", str], None]

_SAMPLE = 1 << 16
# Deflate's densest code turns 258 bytes of output into about 2 bits: no gzip member expands more than ~1032x.
_MAX_DEFLATE_RATIO = 1032


def _gzip_size(isize: int, compressed: int, sampled: int, consumed: int) -> int:
    """The uncompressed size of a gzip file, for an estimate only. Its trailer's ISIZE is an untrusted number
    (a damaged or hostile file says what it likes, and it is the size mod 2**32): it is taken only where it
    agrees with what can be true of the file, else the ratio of the sample read (`sampled` bytes out of
    `consumed` compressed bytes) stands in for it. Nothing is ever allocated by either figure."""
    from_sample = compressed * sampled // max(1, consumed)
    if sampled <= isize <= compressed * _MAX_DEFLATE_RATIO and from_sample < (1 << 32):
        return isize
    return min(from_sample, compressed * _MAX_DEFLATE_RATIO)


def estimate_lines(sources: Iterable[Any]) -> int | None:
    """About how many lines the files `sources` hold (plain text or gzip), from their sizes and a 64 KiB sample of
    each: cheap (no file is read whole), and close for blocklists, whose lines are all about the same length.
    None if a source is not a readable file."""
    total = 0
    for source in sources:
        if not isinstance(source, (str, os.PathLike)):
            return None
        try:
            with open(source, "rb") as raw:
                magic = raw.read(2)
                raw.seek(0, os.SEEK_END)
                size = raw.tell()
                if magic == b"\x1f\x8b" and size >= 18:
                    raw.seek(-4, os.SEEK_END)  # ISIZE: the uncompressed size mod 2**32, as the file says
                    isize = int.from_bytes(raw.read(4), "little")
                    raw.seek(0)
                    sample = gzip.GzipFile(fileobj=raw).read(_SAMPLE)
                    size = _gzip_size(isize, size, len(sample), raw.tell())
                else:
                    raw.seek(0)
                    sample = raw.read(_SAMPLE)
        except (OSError, EOFError, gzip.BadGzipFile, zlib.error):
            return None
        if not sample:
            continue
        lines = sample.count(b"\n") or 1
        if len(sample) < _SAMPLE:  # the whole file was sampled
            total += lines if sample.endswith(b"\n") else lines + 1
        else:
            total += max(lines, round(size * lines / len(sample)))
    return total


def line_counter(progress: Progress, stage: str, total: int | None) -> Callable[[int], None]:
    """Adapt `Blocklist.load(progress=...)`, which counts lines per source from zero, to one running count over
    all sources for `progress`."""
    state = {"base": 0, "last": 0}

    def seen(lines: int) -> None:
        if lines < state["last"]:  # the next source started
            state["base"] += state["last"]
        state["last"] = lines
        progress(stage, state["base"] + lines, total, "lines")

    progress(stage, 0, total, "lines")
    return seen


def announce_after(sources: Iterable[Any], progress: Progress, stage: str) -> Iterator[Any]:
    """`sources`, then announce `stage`: `Blocklist.load` asks for its next source once it has read the last one,
    which is when it starts writing (a step with nothing to count, shown with its elapsed time)."""
    yield from sources
    progress(stage, 0, None, "")
