"""The HTTP/1.1 stack: asyncio protocols over `httptools` (the llhttp parser), uvloop when installed.

Handling is synchronous — a check is a few microseconds of compiled probe plus an LMDB read — so responses are
written from the parser callback, in order, and pipelining needs nothing more. The one exception is a durable
write (a sale): the application answers a `Deferred`, resolved once the group commit holding it is on disk; until
then the connection queues the answers of any requests pipelined behind it, so responses still leave in request
order. The application behind it (`api.LocalModule`) knows nothing of sockets.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import socket
import time
from email.utils import formatdate
from typing import Any

import httptools

from .api import LocalModule
from .config import MAX_HEAD_BYTES, ServiceConfig
from .responses import Deferred, HttpError, Response, error

log = logging.getLogger("lmcz_fast.service")

_REASONS = {200: b"OK", 201: b"Created", 400: b"Bad Request", 401: b"Unauthorized", 404: b"Not Found", 405: b"Method Not Allowed",
            408: b"Request Timeout", 413: b"Content Too Large", 415: b"Unsupported Media Type",
            431: b"Request Header Fields Too Large", 500: b"Internal Server Error", 503: b"Service Unavailable"}


class _Clock:
    """The Date header, formatted once a second rather than per response."""

    __slots__ = ("second", "header")

    def __init__(self) -> None:
        self.second = -1
        self.header = b""

    def date(self) -> bytes:
        now = int(time.time())
        if now != self.second:
            self.second = now
            self.header = b"Date: " + formatdate(now, usegmt=True).encode() + b"\r\n"
        return self.header


class _Connection(asyncio.Protocol):
    """One client connection: feeds bytes to llhttp, answers each complete request at once, in order."""

    __slots__ = ("server", "app", "parser", "transport", "url", "headers_size", "authorization", "client_id",
                 "content_type", "expect", "body", "body_size", "reject", "started", "in_message",
                 "last_activity", "closing", "queue", "peer")

    def __init__(self, server: Server) -> None:
        self.server = server
        self.app = server.app
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.in_message = False
        self.closing = False
        self.peer: str | None = None
        self.last_activity = time.monotonic()
        self.queue: collections.deque[tuple[Any, Response | Deferred | None, bool]] | None = None
        self._reset()

    def _reset(self) -> None:
        self.url = b""
        self.headers_size = 0
        self.authorization: bytes | None = None
        self.client_id: bytes | None = None
        self.content_type: bytes | None = None
        self.expect = False
        self.body: list[bytes] = []
        self.body_size = 0
        self.reject: HttpError | None = None
        self.started = 0.0

    # asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server.connections.add(self)
        self.app.metrics.connections_total += 1
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if isinstance(peer, tuple) and peer else None
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.transport = None

    def pause_writing(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self.closing:
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        self.last_activity = time.monotonic()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(error(400, "bad_http", "protocol upgrades are not supported"))
        except httptools.HttpParserError as exc:
            self._fail(error(400, "bad_http", f"malformed HTTP request: {exc}"))
            return
        if self.reject is not None and self.in_message and not self.closing:
            self._fail(self.reject)

    def timed_out(self, now: float) -> bool:
        """Idle keep-alive connections, and requests not complete `request_timeout` after their first byte
        (however slowly they trickle in), are closed."""
        if self.in_message:
            if time.perf_counter() - self.started > self.server.config.request_timeout:
                self._fail(error(408, "request_timeout", "the request did not arrive in time"))
                return True
        elif now - self.last_activity > self.server.config.keepalive_timeout:
            if self.transport is not None:
                self.transport.close()
            return True
        return False

    # httptools callbacks

    def on_message_begin(self) -> None:
        self._reset()
        self.in_message = True
        self.started = time.perf_counter()

    def on_url(self, url: bytes) -> None:
        self.url += url
        self.headers_size += len(url)
        if self.headers_size > MAX_HEAD_BYTES and self.reject is None:
            self.reject = error(431, "head_too_large", f"request line and headers exceed {MAX_HEAD_BYTES} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers_size += len(name) + len(value) + 4
        if self.headers_size > MAX_HEAD_BYTES:
            if self.reject is None:
                self.reject = error(431, "head_too_large",
                                     f"request line and headers exceed {MAX_HEAD_BYTES} bytes")
            return
        lname = name.lower()
        if lname == b"authorization":
            self.authorization = value
        elif lname == b"x-clientid":
            self.client_id = value[:64]
        elif lname == b"content-type":
            self.content_type = value
        elif lname == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                declared = 0
            if declared > self.server.config.max_body and self.reject is None:
                self.reject = error(413, "body_too_large",
                                     f"the body exceeds {self.server.config.max_body} bytes",
                                     limit=self.server.config.max_body)
        elif lname == b"expect" and value.lower() == b"100-continue":
            self.expect = True

    def on_headers_complete(self) -> None:
        if self.expect and self.reject is None and self.transport is not None:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, data: bytes) -> None:
        self.body_size += len(data)
        if self.body_size > self.server.config.max_body:
            if self.reject is None:
                self.reject = error(413, "body_too_large", f"the body exceeds {self.server.config.max_body} bytes",
                                     limit=self.server.config.max_body)
            self.body = []
            return
        self.body.append(data)

    def on_message_complete(self) -> None:
        self.in_message = False
        if self.closing or self.transport is None:
            return
        if self.reject is not None:
            self._fail(self.reject)
            return
        parsed = httptools.parse_url(self.url)
        body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
        request = (self.parser.get_method(), parsed.path, parsed.query, body, self.authorization, self.client_id,
                   self.content_type, self.started)
        keep_alive = self.parser.should_keep_alive() and not self.server.draining
        self.body = []
        self.authorization = None
        if self.queue is not None:  # an earlier request still waits for its commit: this one runs after it
            self.queue.append((request, None, keep_alive))
            return
        response = self.app.handle(*request, peer=self.peer)
        if isinstance(response, Response):
            self._write(response, keep_alive and not response.close)
        else:
            self.queue = collections.deque([(None, response, keep_alive)])
            response.on_resolved(self._flush)

    # a request that waits for a durable write, and those pipelined behind it

    def _flush(self) -> None:
        """Write the answers that are ready, in request order; handle the requests pipelined behind a durable
        write only once it is answered (a check sent after a sale sees the sale), stopping at the next one."""
        queue = self.queue
        while queue:
            request, answer, keep_alive = queue[0]
            if answer is None:
                if self.closing or self.transport is None:
                    queue.popleft()
                    continue
                answer = self.app.handle(*request, peer=self.peer)
                queue[0] = (None, answer, keep_alive)
            if isinstance(answer, Deferred):
                if answer.response is None:
                    answer.on_resolved(self._flush)
                    return
                answer = answer.response
            queue.popleft()
            if self.closing or self.transport is None:
                continue
            self._write(answer, keep_alive and not answer.close)
        self.queue = None

    # writing

    def _write(self, response: Response, keep_alive: bool) -> None:
        transport = self.transport
        if transport is None:
            return
        head = [
            b"HTTP/1.1 ", str(response.status).encode(), b" ", _REASONS.get(response.status, b"Error"),
            b"\r\nServer: lmcz-fast\r\nContent-Type: ", response.content_type,
            b"\r\nContent-Length: ", str(len(response.body)).encode(), b"\r\n",
            self.server.clock.date(), response.headers,
        ]
        if not keep_alive:
            head.append(b"Connection: close\r\n")
        elif self.parser.get_http_version() == "1.0":
            head.append(b"Connection: keep-alive\r\n")
        head.append(b"\r\n")
        head.append(response.body)
        transport.write(b"".join(head))
        if not keep_alive:
            self.closing = True
            transport.close()

    def _fail(self, exc: HttpError) -> None:
        """Answer a request the parser or the limits refused, then close: the stream is out of step."""
        if self.closing or self.transport is None:
            return
        self.app.metrics.observe("http", exc.error, time.perf_counter() - self.started if self.started else 0.0)
        self._write(self.app._error_response(exc), keep_alive=False)


class Server:
    """The HTTP/1.1 server around a `LocalModule`. `start()` binds; `close()` drains and stops."""

    def __init__(self, app: LocalModule, config: ServiceConfig | None = None, *, backlog: int = 4096) -> None:
        self.app = app
        self.config = config or app.config
        self.backlog = backlog
        self.connections: set[_Connection] = set()
        self.clock = _Clock()
        self.draining = False
        self._server: asyncio.base_events.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self.port: int | None = None

    async def start(self, sock: socket.socket | None = None) -> None:
        loop = asyncio.get_running_loop()
        if sock is not None:
            self._server = await loop.create_server(lambda: _Connection(self), sock=sock, backlog=self.backlog)
        else:
            self._server = await loop.create_server(lambda: _Connection(self), self.config.host, self.config.port,
                                                    backlog=self.backlog, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]
        self.app.start_writer(loop)
        self._sweeper = loop.create_task(self._sweep())

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for conn in list(self.connections):
                conn.timed_out(now)

    async def close(self, grace: float = 2.0) -> None:
        """Stop accepting, let connections finish the request they are in, then close them all."""
        self.draining = True
        if self._server is not None:
            self._server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        deadline = time.monotonic() + grace
        while any(c.in_message or c.queue for c in self.connections) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        self.app.stop_writer()
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.close()
        if self._server is not None:
            await self._server.wait_closed()

