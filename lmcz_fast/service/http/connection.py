"""One client connection (`_Connection`): feeds bytes to llhttp (httptools' callbacks), answers a small request at
once, queues the rest in order, writes the answers in request order (the package's docstring says the rules)."""

from __future__ import annotations

import asyncio
import math
import socket
import time
from collections import deque
from typing import Any

import httptools

from ..config import MAX_HEAD_BYTES
from ..responses import Deferred, HttpError, Response, Steps, error
from ..throttle import address_key
from .framing import _CLOSED_PARSER, BIG_BODY, BULK_BYTES, MAX_QUEUED, _head_start, _Request

class _Held:
    """A 401 held back by the throttle until its delay is over."""

    __slots__ = ("response", "keep_alive", "waiting")

    def __init__(self, response: Response, keep_alive: bool, waiting: bool = False) -> None:
        self.response = response
        self.keep_alive = keep_alive
        self.waiting = waiting     # held among the address's waiting guesses, not in one of its slots


class _Connection(asyncio.Protocol):
    """One client connection: feeds bytes to llhttp; answers a small request at once, queues the rest in order."""

    __slots__ = ("server", "app", "parser", "transport", "url", "headers_size", "authorization", "client_id",
                 "content_type", "expect", "body", "body_size", "reject", "started", "in_message",
                 "last_activity", "closing", "peer", "queue", "current", "current_keep_alive", "scheduled",
                 "fresh", "stopped", "reading_paused", "writing_paused", "peer_key", "declared", "chunked",
                 "reserved", "queued_bytes", "parsed")

    def __init__(self, server: Any) -> None:      # the `Server` (server.py, which imports this module)
        self.server = server
        self.app = server.app
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.in_message = False
        self.closing = False
        self.last_activity = time.monotonic()
        self.peer: str | None = None  # the client's address (the status page names a till by it)
        self.peer_key = "unknown"     # what its failed logins are counted under (throttle.address_key)
        #: Requests read but not yet answered, in order: a parsed request, or a refusal to send and close on.
        self.queue: deque[tuple[_Request | HttpError | Response, bool]] = deque()
        #: The answer being worked out (in slices), held (a delayed 401) or awaited (a sale's commit), ahead of `queue`.
        self.current: Steps | _Held | Deferred | None = None
        self.current_keep_alive = False
        self.scheduled = False
        self.fresh = False          # no request answered yet in this data_received: the first may go inline
        self.stopped = False        # the stream is out of step (a refusal is queued): ignore further bytes
        self.reading_paused = False  # by us: too many requests queued, or a refusal waits its turn
        self.writing_paused = False  # by the transport: the client does not read its answers
        self.reserved = 0           # bytes of the server's body budget this connection's body in progress holds
        self.queued_bytes = 0       # bytes of the bodies of its requests read and waiting in `queue`
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
        self.declared = -1          # Content-Length, if given
        self.chunked = False
        self.parsed: Any = None     # the URL (httptools.parse_url), once parsed on its headers

    # asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server.connections.add(self)
        self.app.metrics.connections_total += 1
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if isinstance(peer, tuple) and peer else None
        self.peer_key = address_key(peer)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.transport = None
        # The parser holds this protocol's bound callbacks (a reference cycle): a closed connection that had lived
        # long enough to reach the oldest generation would wait for a full collection, with its buffers, to be
        # freed. Given a parser that refers to nothing, it is freed by reference counting when the transport lets go.
        self.parser = _CLOSED_PARSER
        self.body = []          # freed before the budget is given back (and the allocator maybe trimmed)
        self._drop()
        self._unreserve()

    def _drop(self) -> None:
        """The client is gone: nothing queued for it runs (a held 401 still keeps its throttle slot to the end)."""
        if self.queue:
            self.server.dropped_total += len(self.queue)
            self.queue.clear()
            self.server.bodies.done(self.queued_bytes)
            self.queued_bytes = 0
        if isinstance(self.current, Steps):
            self.server.dropped_total += 1
            self.current.close()
            self.current = None

    def pause_writing(self) -> None:
        self.writing_paused = True
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.writing_paused = False
        if self.transport is not None and not self.closing and not self.reading_paused:
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self.stopped:
            return
        self.last_activity = time.monotonic()
        self.fresh = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse(error(400, "bad_http", "protocol upgrades are not supported"))
        except httptools.HttpParserError as exc:
            if "version" in str(exc).lower():
                self._refuse(error(505, "http_version_not_supported", f"{exc}: use HTTP/1.1"))
            else:
                self._refuse(error(400, "bad_http", f"malformed HTTP request: {exc}"))
            return
        if self.reject is not None and self.in_message and not self.closing:
            self._refuse(self.reject)

    def timed_out(self, now: float) -> bool:
        """Idle keep-alive connections, and requests not complete `request_timeout` after their first byte
        (however slowly they trickle in), are closed."""
        if self.in_message:
            if time.perf_counter() - self.started > self.server.config.request_timeout:
                self._refuse(error(408, "request_timeout", "the request did not arrive in time"))
                return True
        elif (self.current is None and not self.queue
              and now - self.last_activity > self.server.config.keepalive_timeout):
            if self.transport is not None:
                self.transport.close()
            return True
        return False

    @property
    def busy(self) -> bool:
        """A request is being read, queued or answered."""
        return self.in_message or self.current is not None or bool(self.queue)

    # httptools callbacks

    def on_message_begin(self) -> None:
        if self.stopped:        # pipelined behind a refusal, in the same read: never answered
            return
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
            if self.authorization is not None and self.reject is None:
                # Which one would count is a guess a proxy and this server may make differently: refuse.
                self.reject = error(400, "duplicate_authorization",
                                    "more than one Authorization header: send exactly one")
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
            self.declared = max(declared, 0)
            if declared > self.server.config.max_body and self.reject is None:
                self.reject = error(413, "body_too_large",
                                     f"the body exceeds {self.server.config.max_body} bytes",
                                     limit=self.server.config.max_body)
        elif lname == b"expect" and value.lower() == b"100-continue":
            self.expect = True
        elif lname == b"transfer-encoding":
            self.chunked = True

    def on_headers_complete(self) -> None:
        if self.stopped:
            return
        if self.reject is None and self.parser.get_http_version() not in ("1.1", "1.0"):
            self.reject = error(505, "http_version_not_supported",
                                f"HTTP/{self.parser.get_http_version()} is not supported: use HTTP/1.1")
        if self.reject is not None:
            # Refused on its head (a 431, 413 or 505): nothing of its body is read.
            self.in_message = False
            self._refuse(self.reject)
            return
        if self.declared > 0 or self.chunked:
            if not self._authorised_head():
                return
            if not self._reserve(self.declared if self.declared > 0 else 0):
                return
        # An interim 100 may only follow the answers of the requests before it: with some still queued, the
        # client sends its body after its own short wait instead.
        if self.expect and self.reject is None and self.transport is not None and not self.queue \
                and self.current is None:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _authorised_head(self) -> bool:
        """Judge the credentials of a request with a body on its headers, before reading any of it: a request that
        would be refused is answered (through the throttle, like every failure) with its body unread, and the
        connection is closed after the answer, since the stream is out of step."""
        try:
            parsed = httptools.parse_url(self.url)
        except httptools.HttpParserInvalidURLError:
            return True      # refused as a bad request when complete (its body is bounded by max_body)
        self.parsed = parsed
        method = self.parser.get_method()
        if self.app.request_authorised(method, parsed.path, self.authorization):
            return True
        request: _Request = (method, parsed.path, parsed.query, b"", self.authorization, self.client_id,
                             self.content_type, self.started)
        self.server.bodies.unread_total += 1
        self._stop(request)
        return False

    def _reserve(self, size: int) -> bool:
        """Take `size` bytes of the server's budget for pending bodies; over it, refuse 503 with the body unread."""
        size = min(size, self.server.config.max_body)
        if self.server.bodies.reserve(size):
            self.reserved += size
            return True
        seconds = 1
        response = self.app.error_response(error(
            503, "busy", f"the server holds {self.server.bodies.limit} bytes of request bodies already: "
                         f"retry in {seconds} s", retryAfter=seconds))
        response.headers += b"Retry-After: 1\r\n"
        self.app.metrics.observe("http", "busy", 0.0)
        self.server.bodies.refused_total += 1
        self._stop(response)
        return False

    def _stop(self, answer: _Request | Response) -> None:
        """Answer `answer` (a request to answer without its body, or a response) after those before it, then
        close: nothing more of this connection is read."""
        self.in_message = False
        self.stopped = True
        self.body = []
        self._unreserve()
        if self.transport is None or self.closing:
            return
        self.transport.pause_reading()
        self.reading_paused = True
        if self.current is None and not self.queue:
            if isinstance(answer, Response):
                self._write(answer, keep_alive=False)
            else:
                self._answer(answer, keep_alive=False)
            return
        self.queue.append((answer, False))
        if self.current is None:
            self.server.scheduler.add(self)

    def _unreserve(self) -> None:
        if self.reserved:
            self.server.bodies.done(self.reserved)
            self.reserved = 0

    def on_body(self, data: bytes) -> None:
        if self.stopped:
            return
        if self.body_size + len(data) > self.reserved and self.body_size + len(data) <= self.server.config.max_body:
            # a chunked body (or one longer than it declared) takes more of the budget as it arrives
            if not self._reserve(self.body_size + len(data) - self.reserved):
                self.body = []
                return
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
        if self.closing or self.transport is None or self.stopped:
            return
        if self.reject is not None:
            self._refuse(self.reject)
            return
        parsed = self.parsed or httptools.parse_url(self.url)
        body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
        self._unreserve()
        request: _Request = (self.parser.get_method(), parsed.path, parsed.query, body, self.authorization,
                             self.client_id, self.content_type, self.started)
        keep_alive = self.parser.should_keep_alive() and not self.server.draining
        self.body = []
        self.authorization = None
        if (self.fresh and self.current is None and not self.queue and len(body) <= BULK_BYTES
                and (parsed.query is None or len(parsed.query) <= BULK_BYTES)):
            self.fresh = False
            self._answer(request, keep_alive)
            return
        self.queue.append((request, keep_alive))
        if body:
            self.queued_bytes += len(body)
            self.server.bodies.add(len(body))
        if len(self.queue) >= MAX_QUEUED and not self.reading_paused:
            self.reading_paused = True
            self.transport.pause_reading()
        if self.current is None:
            self.server.scheduler.add(self)

    # answering, in order

    def _answer(self, request: _Request, keep_alive: bool) -> None:
        throttle = self.server.throttle
        if throttle is not None and self.app.needs_auth(request[1]):
            retry = throttle.refuse(self.peer_key)
            if retry is not None:
                self._write(self._too_many_failures(retry), keep_alive)
                return
            answer = self.app.handle(*request, peer=self.peer)
            # A request without credentials (a browser's first request, answered with the 401 challenge) is not
            # a failed login: only wrong credentials count (lmcz_auth_failures_total) and are delayed.
            if isinstance(answer, Response) and answer.status == 401 and request[4] is not None:
                delay, waiting = throttle.failed(self.peer_key)
                if delay > 0:
                    if waiting:
                        answer = self._too_many_failures(delay)
                    held = self.current = _Held(answer, keep_alive, waiting)
                    asyncio.get_running_loop().call_later(delay, self._release, held)
                    return
        else:
            answer = self.app.handle(*request, peer=self.peer)
        self._take(answer, keep_alive)

    def _take(self, answer: Response | Steps | Deferred, keep_alive: bool) -> None:
        if isinstance(answer, Steps):
            self.current = answer
            self.current_keep_alive = keep_alive
            self.server.scheduler.add(self)
            return
        if isinstance(answer, Deferred):
            if answer.response is None:
                self.current = answer
                self.current_keep_alive = keep_alive
                answer.on_resolved(self._resolved)
                return
            answer = answer.response
        self._write(answer, keep_alive and not answer.close)
        if self.queue and self.current is None:
            self.server.scheduler.add(self)

    def _resolved(self) -> None:
        """A durable write is on disk: send its answer, then go on with what was pipelined behind it."""
        current = self.current
        if not isinstance(current, Deferred) or current.response is None:
            return
        self.current = None
        if self.transport is None or self.closing:
            self._drop()
            return
        self._take(current.response, self.current_keep_alive)

    def _release(self, held: _Held) -> None:
        """A held answer's delay is over: free its throttle slot, send it if the client is still there."""
        if self.server.throttle is not None:
            self.server.throttle.release(self.peer_key, held.waiting)
        if self.current is not held:
            return
        self.current = None
        if self.transport is None or self.closing:
            return
        self._write(held.response, held.keep_alive and not held.response.close)
        if self.queue:
            self.server.scheduler.add(self)

    def step(self) -> None:
        """One slice of this connection's queued work (the scheduler calls it in turn with the others')."""
        if self.transport is None or self.closing:
            self._drop()
            return
        current = self.current
        if isinstance(current, Steps):
            response = current.step()
            if response is None:
                self.server.scheduler.add(self)
                return
            self.current = None
            self._take(response, self.current_keep_alive)
            return
        if current is not None or not self.queue:
            return
        item, keep_alive = self.queue.popleft()
        if self.reading_paused and len(self.queue) < MAX_QUEUED // 2 and not self.stopped:
            self.reading_paused = False
            if not self.writing_paused:
                self.transport.resume_reading()
        if isinstance(item, HttpError):
            self._fail(item)
            return
        if isinstance(item, Response):
            self._write(item, keep_alive)
            return
        if item[3]:
            self.queued_bytes -= len(item[3])
            self.server.bodies.done(len(item[3]))
        self._answer(item, keep_alive)

    def _too_many_failures(self, retry: float) -> Response:
        seconds = max(1, math.ceil(retry))
        self.app.metrics.observe("http", "too_many_failed_logins", 0.0)
        response = self.app.error_response(error(
            429, "too_many_failed_logins",
            f"too many failed logins from this address: try again in {seconds} s", retryAfter=seconds))
        response.headers += b"Retry-After: " + str(seconds).encode() + b"\r\n"
        return response

    # writing

    def _write(self, response: Response, keep_alive: bool) -> None:
        transport = self.transport
        if transport is None or self.closing:
            return
        body = response.body
        if not keep_alive:
            connection = b"Connection: close\r\n\r\n"
        elif self.parser.get_http_version() == "1.0":
            connection = b"Connection: keep-alive\r\n\r\n"
        else:
            connection = b"\r\n"
        head = b"".join((_head_start(response.status, response.content_type), b"%d\r\n" % len(body),
                         self.server.clock.date(), response.headers, connection))
        # One write per response (a second write would be a second send on loopback): a small body joined to its
        # head, a large one (a protocol 2 answer is ~1 KB a code) handed over beside it, one writev, not copied.
        if len(body) > BIG_BODY:
            transport.writelines((head, body))
        else:
            transport.write(head + body)
        if not keep_alive:
            self.closing = True
            transport.close()
            self._drop()

    def _refuse(self, exc: HttpError) -> None:
        """A request the parser or the limits refused: answer it after those before it, then close (the stream
        is out of step, so nothing after it is read)."""
        if self.closing or self.transport is None or self.stopped:
            return
        self.stopped = True
        if self.current is None and not self.queue:
            self._fail(exc)
            return
        self.queue.append((exc, False))
        self.transport.pause_reading()
        self.reading_paused = True

    def _fail(self, exc: HttpError) -> None:
        if self.closing or self.transport is None:
            return
        self.app.metrics.observe("http", exc.error, time.perf_counter() - self.started if self.started else 0.0)
        self._write(self.app.error_response(exc), keep_alive=False)
