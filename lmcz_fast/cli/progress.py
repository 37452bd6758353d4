"""A progress bar with rate and ETA on stderr, drawn only when a person watches (stderr is a terminal).

It takes the library's progress callbacks (`lmcz_fast.progress`: `progress(stage, done, total, unit)`). Each stage
is one line, redrawn in place when its bar grows by a cell or 0.1 s passed (and every 0.5 s by a ticker thread, so the elapsed time of a step
with nothing to count still moves); when the next stage starts, the finished one stays on screen with
its elapsed time. In logs, pipes and with --json nothing is drawn: `progress_for()` returns None and the library
does not even count.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from typing import IO, Any

from .common import clock

__all__ = ["ProgressBar", "progress_for", "progress_shown"]

_WIDTH = 20


def _amount(value: float, unit: str) -> str:
    if unit == "bytes":
        for suffix, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
            if value >= scale:
                return f"{value / scale:.1f} {suffix}"
        return f"{value:.0f} B"
    if value >= 1e6:
        return f"{value / 1e6:.2f}M"
    if value >= 1e3:
        return f"{value / 1e3:.0f}k"
    return f"{value:.0f}"


class ProgressBar:
    """`ProgressBar(stream)(stage, done, total, unit)`; `close()` ends the last line. A context manager."""

    def __init__(self, stream: IO[str] | None = None, *, interval: float = 0.1, clock: Any = time.monotonic,
                 tick: float | None = 0.5) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval
        self.clock = clock
        self.tick = tick
        self._stage: str | None = None
        self._started = 0.0
        self._drawn = 0.0
        self._drawn_cells = 0
        self._last: tuple[int, int | None, str] = (0, None, "")
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def _ticking(self) -> None:
        assert self.tick is not None
        while not self._stop.wait(self.tick):
            with self._lock:
                if self._stage is not None and self.clock() - self._drawn >= self.tick:
                    self._draw(self.clock())

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __call__(self, stage: str, done: int, total: int | None, unit: str) -> None:
        with self._lock:
            self._update(stage, done, total, unit)
        if self._ticker is None and self.tick is not None:
            self._ticker = threading.Thread(target=self._ticking, name="lmcz-fast-progress", daemon=True)
            self._ticker.start()

    def _update(self, stage: str, done: int, total: int | None, unit: str) -> None:
        now = self.clock()
        if stage != self._stage:
            self._finish(now)
            self._stage, self._started, self._drawn = stage, now, 0.0
            self._last = (done, total, unit)
            self._draw(now)
            return
        self._last = (done, total, unit)
        if now - self._drawn >= self.interval or self._cells() != self._drawn_cells or (
                total is not None and done >= total):
            self._draw(now)

    def _cells(self) -> int:
        done, total, _unit = self._last
        return int(min(1.0, done / total) * _WIDTH) if total else 0

    def line(self, now: float | None = None) -> str:
        """The current stage's line, as drawn."""
        now = self.clock() if now is None else now
        done, total, unit = self._last
        elapsed = now - self._started
        rate = done / elapsed if elapsed > 0 and done else 0.0
        parts = [f"{self._stage}"]
        if total:
            fraction = min(1.0, done / total)
            filled = int(fraction * _WIDTH)
            parts.append(f"[{'#' * filled}{'-' * (_WIDTH - filled)}] {fraction * 100:3.0f}%")
            parts.append(f"{_amount(done, unit)}/{_amount(max(total, done), unit)} {unit if unit != 'bytes' else ''}"
                         .rstrip())
        elif done:
            parts.append(f"{_amount(done, unit)} {unit if unit != 'bytes' else ''}".rstrip())
        if done and rate:
            parts.append(f"{_amount(rate, unit)}{'/s' if unit == 'bytes' else f' {unit}/s'}")
        if total and done and rate and done < total:
            parts.append(f"ETA {clock((total - done) / rate)}")
        parts.append(f"{elapsed:.1f} s")
        return "  ".join(parts)

    def _draw(self, now: float) -> None:
        if self._stage is None:
            return
        width = shutil.get_terminal_size((100, 20)).columns - 1
        self.stream.write("\r" + self.line(now)[:width] + "\x1b[K")
        self.stream.flush()
        self._drawn = now
        self._drawn_cells = self._cells()

    def _finish(self, now: float) -> None:
        if self._stage is None:
            return
        done, total, unit = self._last
        if total is not None and done < total and done:
            total = done  # an estimate that overshot: the stage is over, show it complete
        self._last = (done, total, unit)
        self._draw(now)
        self.stream.write("\n")
        self.stream.flush()
        self._stage = None

    def close(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
            self._ticker = None
        with self._lock:
            self._finish(self.clock())


def progress_for(quiet: bool = False, stream: IO[str] | None = None) -> ProgressBar | None:
    """A bar on stderr when it is a terminal and the command is not asked to be quiet (--json); else None."""
    stream = stream if stream is not None else sys.stderr
    if quiet:
        return None
    try:
        if not stream.isatty():
            return None
    except (AttributeError, ValueError):
        return None
    return ProgressBar(stream)


@contextlib.contextmanager
def progress_shown(quiet: bool = False) -> Iterator[ProgressBar | None]:
    """`progress_for` for one block, its bar closed (the line finished) when the block ends, however it ends."""
    bar = progress_for(quiet=quiet)
    try:
        yield bar
    finally:
        if bar is not None:
            bar.close()
