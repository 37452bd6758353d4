"""The HTTP/1.1 server around a `LocalModule` (`Server`): its listening sockets, accepting connections itself, the
timeout sweep, draining on close."""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import time

from ..api import LocalModule
from ..bodies import BodyBudget
from ..config import ServiceConfig
from ..scheduler import Scheduler
from ..throttle import AuthThrottle
from .connection import _Connection
from .framing import ACCEPT_BATCH, SWEEP_SLICES, _Clock

log = logging.getLogger("lmcz_fast.service")


def _check_timeouts(connections: list[_Connection], now: float) -> None:
    for conn in connections:
        conn.timed_out(now)


class Server:
    """The HTTP/1.1 server around a `LocalModule`. `start()` binds; `close()` drains and stops."""

    def __init__(self, app: LocalModule, config: ServiceConfig | None = None, *, backlog: int = 4096,
                 throttle: AuthThrottle | None = None) -> None:
        self.app = app
        self.config = config or app.config
        self.backlog = backlog
        self.connections: set[_Connection] = set()
        self.clock = _Clock()
        self.draining = False
        self.scheduler = Scheduler()
        self.throttle = throttle if throttle is not None else (AuthThrottle() if self.config.auth else None)
        self.dropped_total = 0
        self.accept_errors_total = 0
        self.bodies = BodyBudget(self.config.max_pending_bodies)
        app.metrics.sources.append(self.metrics)
        self._sockets: list[socket.socket] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._accept_error_logged = 0.0
        self.port: int | None = None

    async def start(self, sock: socket.socket | None = None) -> None:
        loop = self._loop = asyncio.get_running_loop()
        if sock is not None:
            sock.setblocking(False)
            self._sockets = [sock]
        else:
            self._sockets = await self._bind(loop)
        self.port = self._sockets[0].getsockname()[1]
        for listener in self._sockets:
            loop.add_reader(listener.fileno(), self._accept, listener)
        self.app.start_writer(loop)
        self._sweeper = loop.create_task(self._sweep())

    async def _bind(self, loop: asyncio.AbstractEventLoop) -> list[socket.socket]:
        """Listening sockets for `config.host` (every address it resolves to) on `config.port`."""
        infos = await loop.getaddrinfo(self.config.host or None, self.config.port, family=socket.AF_UNSPEC,
                                       type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        sockets: list[socket.socket] = []
        seen = set()
        port = self.config.port
        try:
            for family, kind, proto, _, address in infos:
                if (family, address) in seen:
                    continue
                seen.add((family, address))
                listener = socket.socket(family, kind, proto)
                sockets.append(listener)
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                if port == 0 and len(sockets) > 1:  # one free port for every address of the name
                    address = (address[0], sockets[0].getsockname()[1], *address[2:])
                listener.bind(address)
                listener.listen(self.backlog)
                listener.setblocking(False)
        except OSError:
            for listener in sockets:
                listener.close()
            raise
        return sockets

    def _accept(self, listener: socket.socket) -> None:
        loop = self._loop
        assert loop is not None
        for _ in range(ACCEPT_BATCH):
            try:
                conn, _address = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                # Out of file descriptors: the socket stays readable, so stop watching it for a moment instead of
                # spinning on it.
                self.accept_errors_total += 1
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    now = time.monotonic()
                    if now - self._accept_error_logged > 60:
                        log.error("cannot accept connections: %s (%d connections open); retrying every 0.1 s",
                                  exc.strerror, len(self.connections))
                        self._accept_error_logged = now
                    loop.remove_reader(listener.fileno())
                    loop.call_later(0.1, self._resume_accepting, listener)
                    return
                log.warning("accept failed: %s", exc)
                return
            conn.setblocking(False)
            loop.create_task(self._connect(loop, conn))

    def _resume_accepting(self, listener: socket.socket) -> None:
        if self._loop is not None and not self.draining and listener.fileno() >= 0:
            self._loop.add_reader(listener.fileno(), self._accept, listener)

    async def _connect(self, loop: asyncio.AbstractEventLoop, conn: socket.socket) -> None:
        try:
            await loop.connect_accepted_socket(lambda: _Connection(self), conn)
        except OSError:
            conn.close()

    async def _sweep(self) -> None:
        """Every connection's timeouts are checked once a second, a tenth of them every 0.1 s: with 10,000 open
        connections one pass over all of them held the loop for ~3 ms (15 ms on a loaded machine) once a second,
        which every request arriving meanwhile waited out; a tenth of it is within the noise of one request."""
        pending: list[_Connection] = []
        per_slice = 1
        while True:
            await asyncio.sleep(1.0 / SWEEP_SLICES)
            if not pending:
                pending = list(self.connections)
                per_slice = -(-len(pending) // SWEEP_SLICES)
                if self.throttle is not None:
                    self.throttle.sweep()
            batch = pending[-per_slice:]     # rebound every slice: no connection outlives its close in here
            del pending[-per_slice:]
            _check_timeouts(batch, time.monotonic())

    def metrics(self) -> dict[str, float]:
        """The HTTP stack's own figures, for /metrics."""
        out: dict[str, float] = {
            **self.bodies.metrics(),
            "lmcz_connections_open": len(self.connections),
            "lmcz_queued_dropped_total": self.dropped_total,
            "lmcz_scheduler_longest_step_seconds": round(self.scheduler.longest_step, 6),
            "lmcz_accept_errors_total": self.accept_errors_total,
        }
        if self.throttle is not None:
            out.update(self.throttle.metrics())
        return out

    async def close(self, grace: float = 2.0) -> None:
        """Stop accepting, let connections finish the requests they are in, then close them all."""
        self.draining = True
        loop = self._loop
        for listener in self._sockets:
            if loop is not None and listener.fileno() >= 0:
                loop.remove_reader(listener.fileno())
            listener.close()
        self._sockets = []
        if self._sweeper is not None:
            self._sweeper.cancel()
        deadline = time.monotonic() + grace
        while any(c.busy for c in self.connections) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        self.app.stop_writer()
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.close()
