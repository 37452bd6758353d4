"""The watching half of the front, as one object the service holds: the cross-check, the sold register's outbox
and the watchdog (each optional), started and stopped together, and what they show on the surfaces: the `front`
object of `/api/v1/status`, the status page's front section and warnings, the /metrics lines.

The service (a layer above) knows only this object's faces; it never reaches into the parts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .crosscheck import CrossCheck
    from .forwarder import Front
    from .outbox import SaleQueue
    from .watchdog import Watchdog

log = logging.getLogger("lmcz_fast.front")


class FrontWatch:
    """The cross-check, the outbox and the watchdog of one `serve --front URL`; see the module doc."""

    def __init__(self, url: str, *, crosscheck: CrossCheck | None = None, outbox: SaleQueue | None = None,
                 watchdog: Watchdog | None = None) -> None:
        self.url = url
        self.crosscheck = crosscheck
        self.outbox = outbox
        self.watchdog = watchdog
        #: More `front` fields from other parts of the front (the forwarder's counts): callables returning a dict.
        self.sources: list[Callable[[], dict[str, Any]]] = []
        #: More /metrics lines from other parts of the front.
        self.families: list[Callable[[], list[str]]] = []
        #: Called once the parts stopped (the HTTP clients they used).
        self.closers: list[Callable[[], None]] = []

    def start(self, loop: asyncio.AbstractEventLoop | None) -> None:
        """Start the parts: the cross-check drains on `loop`, the outbox and the watchdog on threads of their own."""
        if self.crosscheck is not None and loop is not None:
            self.crosscheck.attach(loop)
        if self.outbox is not None:
            self.outbox.start()
        if self.watchdog is not None:
            self.watchdog.start()

    def stop(self) -> None:
        if self.watchdog is not None:
            self.watchdog.stop()
        if self.outbox is not None:
            self.outbox.stop()
        for close in self.closers:
            close()

    def status(self) -> dict[str, Any]:
        """The `front` object of `/api/v1/status` (an extra field: no existing field changes)."""
        out: dict[str, Any] = {"url": self.url}
        if self.watchdog is not None:
            out["official"] = self.watchdog.status()
        if self.crosscheck is not None:
            out["crossCheck"] = self.crosscheck.status()
        if self.outbox is not None:
            out["outbox"] = self.outbox.status()
        for source in self.sources:
            out.update(source())
        return out

    def warnings(self) -> list[str]:
        """What the status page (and status `warnings`) say of the front: an isBlocked disagreement first."""
        out = []
        for part in (self.crosscheck, self.watchdog):
            text = part.warning() if part is not None else None
            if text:
                out.append(text)
        if self.outbox is not None:
            state = self.outbox.status()
            if state["pending"] and state["lastError"]:
                out.append(f"{state['pending']} sales/returns wait for the official module ({state['lastError']}); "
                           "they are delivered in order when it answers (продажи ждут официальный модуль)")
        return out

    def prometheus_lines(self) -> list[str]:
        out: list[str] = []
        if self.crosscheck is not None:
            out += self.crosscheck.prometheus_lines()
        if self.watchdog is not None:
            out += self.watchdog.prometheus_lines()
        if self.outbox is not None:
            for name, value in sorted(self.outbox.metrics().items()):
                out += [f"# TYPE {name} {'counter' if name.endswith('_total') else 'gauge'}", f"{name} {value}"]
        for family in self.families:
            out += family()
        return out



@dataclass(frozen=True)
class WatchOptions:
    """What `serve --front` watches (cli/front_watch.py's options): the cross-check and the outbox on or off, the
    watchdog's poll interval (0: no watchdog) and re-init interval, the module's database root URL ("": the
    module's host on CouchDB's port 5984; None: not watched), the outbox's longest pause between two tries."""

    crosscheck: bool = True
    outbox: bool = True
    poll_every: float = 10.0
    reinit_every: float = 300.0
    database_url: str | None = ""
    retry_max: float = 30.0


def watch_front(blocklist: Any, front: Front, options: WatchOptions) -> FrontWatch:
    """The watching half of `serve --front` over `blocklist`, beside the forwarder `front`: its cross-check
    observes every check the module answered, its watchdog re-inits with the token `front` kept, its outbox and
    watchdog log in with the front's credentials."""
    from .calls import OfficialCalls
    from .crosscheck import CrossCheck
    from .outbox import SaleQueue
    from .watchdog import Watchdog, database_url_of

    url = front.config.target.url
    calls = OfficialCalls(url, front.config.credentials.header.decode("latin-1"))
    queue = None
    if options.outbox:
        def send(path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
            status, answer, _ = calls.request("POST", path, body, headers=headers)
            return status, answer

        queue = SaleQueue(blocklist, send, retry_max=options.retry_max)
    dog = None
    closers = [calls.close]
    if options.poll_every > 0:
        database = None
        if options.database_url is not None:
            database = OfficialCalls(options.database_url or database_url_of(url))
            closers.append(database.close)
        dog = Watchdog(calls, database, front.token, every=options.poll_every, reinit_every=options.reinit_every)
    cross = None
    if options.crosscheck:
        cross = CrossCheck(blocklist)
        front.observers.append(cross.observe_official)
    watch = FrontWatch(url, crosscheck=cross, outbox=queue, watchdog=dog)
    watch.closers += closers
    return watch
