"""What the commands share: exit statuses, the error line, logging, durations and times in words, the loop of a
command that runs for ever (`sync --every`, `replicate --follow`). The one home of the CLI's helpers: commands
import them from here, never from each other."""

from __future__ import annotations

import logging
import os
import random
import re
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, NoReturn

import click

from ..store import Blocklist, StoreError, wake

EXIT_OK = 0
EXIT_BLOCKED = 1
EXIT_USAGE = 2
EXIT_INVALID = 3
EXIT_STORE = 4
#: The feed or the replication source failed (nothing was changed).
EXIT_FEED = 5
#: `sync --nice` and `replicate --nice` default: a writer runs below the readers it shares the cores with.
WRITER_NICE = 10

#: The logger of the commands that run for ever (sync, mirror, replicate).
log = logging.getLogger("lmcz_fast.feed")

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def fail(message: str, code: int = EXIT_STORE) -> NoReturn:
    """Print `error: message` in red on stderr and exit with `code`."""
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(code)


def print_errors(report: Any) -> None:
    """The bad lines a load report kept, one per line on stderr, and how many more there were."""
    for error in report.errors:
        click.echo(f"  {error.source}:{error.line}: {error.reason}: {error.message}: {error.text!r}", err=True)
    if report.rejected > len(report.errors):
        click.echo(f"  ... and {report.rejected - len(report.errors)} more bad lines", err=True)


def error_kind(exc: BaseException) -> str:
    """The error's public class name: a package's internal subclasses are named by their documented parent."""
    return next(c.__name__ for c in type(exc).__mro__ if not c.__name__.startswith("_"))


def exists(db: str) -> bool:
    """Whether a store is at `db`."""
    return os.path.exists(os.path.join(db, "data.mdb"))


# -- durations and times --------------------------------------------------------------------------------------


def parse_duration(text: str) -> float:
    """'2h', '90m', '1h30m', '45s', '1d' or plain seconds -> seconds."""
    text = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    if not text or _DURATION.sub("", text):
        raise click.BadParameter(f"expected a duration like 2h, 30m, 1h30m, 45s: {text!r}")
    return sum(float(number) * _UNITS[unit] for number, unit in _DURATION.findall(text))


class Duration(click.ParamType):
    name = "DURATION"

    def convert(self, value: Any, param: Any, ctx: Any) -> float:
        if isinstance(value, (int, float)):
            return float(value)
        seconds = parse_duration(value)
        if seconds <= 0:
            self.fail("must be positive", param, ctx)
        return seconds


def span(seconds: float) -> str:
    """A duration for a person reading a status or a log: `45s`, `12m`, `2h 05m`, `3d 4h`."""
    seconds = int(abs(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, _ = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m"
    return f"{hours // 24}d {hours % 24}h"


def clock(seconds: float) -> str:
    """A duration as a running clock shows it (a progress bar's elapsed time and ETA): `4:05`, `1:02:03`."""
    seconds = max(0, int(round(seconds)))
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def when(ts: float | None, now: float) -> str:
    """A moment in UTC, with how long ago or how soon: `2026-12-07 10:00:00 UTC (2h 05m ago)`."""
    if ts is None:
        return "never"
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))
    delta = ts - now
    return f"{stamp} ({span(-delta)} ago)" if delta < 0 else f"{stamp} (in {span(delta)})"


# -- logging --------------------------------------------------------------------------------------------------


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is at the time of each record (click's test runner swaps it)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        return None


def setup_logging(level: str | int, *, names: tuple[str, ...] = ("lmcz_fast.feed", "lmcz_fast.store")) -> None:
    """Log records of the loggers `names` (and their children) at `level` and above to stderr, one line each:
    `2026-12-07T10:00:00Z INFO    lmcz_fast.feed: message` (UTC). The store's logger, when named, says INFO and
    up whatever `level` is (e.g. the stale reader slots a write cleared)."""
    if isinstance(level, str):
        level = getattr(logging, level.upper())
    handler = _StderrHandler()
    formatter = logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%SZ")
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    for name in names:
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(logging.INFO if name == "lmcz_fast.store" else level)
        logger.propagate = False


# -- running for ever -----------------------------------------------------------------------------------------


class Stopped(Exception):
    """SIGTERM/SIGINT arrived while a round was waiting to retry: give up this round, change nothing."""


def lower_priority(niceness: int) -> None:
    """Writers yield the CPU to readers: on a 2-core till server a sync at equal priority can hold a core the
    service needs, and a lookup then waits for the scheduler rather than for the store (benches/bench_delta.py)."""
    if niceness:
        try:
            os.nice(niceness)
        except OSError as exc:
            log.warning("could not lower the CPU priority: %s", exc)


def run_forever(every: float, once: Callable[[Callable[[float], Any]], str], on_schedule: Callable[[float], None],
                store: Callable[[], Blocklist | None] | None = None,
                retry_on: tuple[type[BaseException], ...] = ()) -> None:
    """Run `once` now and then every `every` seconds (±10% jitter, so a chain's stores spread out) until SIGTERM.

    A failed round (a feed, store or OS error, or one of `retry_on`: `replicate --every` passes its source
    errors) is retried sooner (1 min, doubling up to `every`). A signal lets the running round finish its
    transaction (a write is one LMDB transaction either way) but cuts retry waits short; then the loop exits 0.
    While it waits, the loop looks at `store()` every `wake.POLL` seconds for a request for a round now (the
    service's `init` on a store that is not ready writes one; `store/wake.py`) and starts the round at once.
    """
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        log.info("received %s: stopping after the current step", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def sleep(seconds: float) -> None:
        if stop.wait(seconds):
            raise Stopped()

    failures = 0
    rng = random.Random()
    from ..feed import FeedError

    retriable: tuple[type[BaseException], ...] = (FeedError, StoreError, OSError, *retry_on)
    log.info("running every %s; stop with SIGTERM", span(every))
    while not stop.is_set():
        round_started = time.time()
        try:
            log.info("%s", once(sleep))
            failures = 0
            delay = every * rng.uniform(0.9, 1.1)
        except Stopped:
            break
        except retriable as exc:
            failures += 1
            delay = min(every, 60.0 * 2 ** min(failures - 1, 10)) * rng.uniform(0.9, 1.1)
            said = "" if "nothing was changed" in str(exc) else "; nothing was changed"
            log.error("FAILED (%s): %s%s; retrying in %s", error_kind(exc), exc, said, span(delay))
        if stop.is_set():
            break
        try:
            on_schedule(time.time() + delay)
        except StoreError as exc:   # e.g. a full disk: keep serving the old version and try again next round
            log.error("could not record the next sync time (%s): %s", type(exc).__name__, exc)
        log.info("next run at %s", time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(time.time() + delay)))
        wait_for_round(stop, delay, store, round_started)
    log.info("stopped")


def wait_for_round(stop: threading.Event, delay: float, store: Callable[[], Blocklist | None] | None,
          round_started: float | None = None) -> None:
    """Wait `delay` seconds, or less: until `stop`, or until a request for a round now appears in the store (then
    record that this loop took it). A request made before the round that just ran (`round_started`) was answered by
    it: it is recorded as taken, and the wait goes on; one made while it ran starts the next round at once."""
    deadline = time.monotonic() + delay
    bl = store() if store is not None else None
    if bl is not None and round_started is not None:
        try:
            requested = wake.pending(bl)
            if requested is not None and requested <= round_started:
                bl.set_meta(**{wake.META_TAKEN: round_started})
        except StoreError as exc:
            log.error("could not record a request for a round as taken (%s): %s", type(exc).__name__, exc)
    first = True
    while True:
        left = deadline - time.monotonic()
        if not first and (left <= 0 or stop.wait(min(left, wake.POLL) if store is not None else left)):
            return
        if first and (left <= 0 or stop.is_set()):
            return
        first = False
        bl = store() if store is not None else None
        if bl is None:
            continue
        try:
            requested = wake.pending(bl)
            if requested is not None:
                bl.set_meta(**{wake.META_TAKEN: time.time()})
                log.info("a round was asked for at %s (%s): starting it now",
                         time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(requested)),
                         bl.get_meta(wake.META_BY) or "unknown")
                return
        except StoreError as exc:
            log.error("could not read or take a request for a round now (%s): %s", type(exc).__name__, exc)
