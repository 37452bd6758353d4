"""Kept-alive HTTP/1.1 connections to the official module, on the service's event loop (asyncio + llhttp).

One request at a time per connection (the module is not known to pipeline). A request takes an idle connection,
or opens one while fewer than `size` are open, or waits for one to come back. A connection the module closed while
idle (a restart, a kill -9) is found out on its next use: a request that got no byte back on a reused connection
is sent once more on a new one (checks and init may be repeated; the caller's deadline still bounds the whole).
A connection whose request was cut off (the caller's deadline) is closed, never reused: its answer may still come.

Failures are `PoolError`s with a short `reason` the front reports: `refused` (nothing listens), `connect_failed`,
`reset` (closed or reset before the whole answer), `bad_http` (not HTTP).

Two ways in, one set of connections: `request` (a coroutine, bounded by the caller's deadline: init, sales) and
`call` (the tills' checks: a callback with the answer or the failure, a deadline watched by the pool's one timer, no
task, no future and no timer of its own per request; on a kept-alive connection the answer goes on in the callback
that read it, in the same turn of the loop). Per forwarded check that is a task, a future, five coroutine frames, a
timer and one turn of the loop fewer: a few per cent of the front's CPU per check (docs/front.md, "Measured";
issue 21).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import httptools

from .config import Credentials, Target

log = logging.getLogger("lmcz_fast.front")


class PoolError(Exception):
    """The official module gave no whole HTTP answer: `reason` says how."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(slots=True)
class Answer:
    """The official module's HTTP answer, as it came."""

    status: int
    body: bytes
    content_type: bytes


class _Connection(asyncio.Protocol):
    __slots__ = ("pool", "transport", "parser", "waiter", "body", "content_type", "got_bytes", "alive",
                 "keep_alive", "reused", "call")

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[Answer] | None = None
        self.body: list[bytes] = []
        self.content_type = b"application/json; charset=utf-8"
        self.got_bytes = False
        self.alive = True
        self.keep_alive = True
        self.reused = False
        self.call: Call | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.alive = False
        self.transport = None
        self.pool._lost(self)
        error = PoolError("reset" if self.got_bytes or not self.reused else "closed_idle",
                          str(exc or "the module closed the connection"))
        call = self.call
        if call is not None:
            call._lost(self, error)
            return
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)

    def start(self, data: bytes) -> None:
        """Send one request whose answer goes to `self.call` (set by the caller)."""
        assert self.transport is not None
        self.body = []
        self.got_bytes = False
        self.content_type = b"application/json; charset=utf-8"
        self.transport.write(data)

    def send(self, data: bytes) -> asyncio.Future[Answer]:
        assert self.transport is not None
        self.waiter = self.pool.loop.create_future()
        self.body = []
        self.got_bytes = False
        self.content_type = b"application/json; charset=utf-8"
        self.transport.write(data)
        return self.waiter

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(PoolError("bad_http", str(exc)))

    def _fail(self, exc: PoolError) -> None:
        call = self.call
        if call is not None:
            self.abort()
            call._lost(self, exc)
            return
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.abort()

    def abort(self) -> None:
        self.alive = False
        if self.transport is not None:
            self.transport.abort()

    # llhttp callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"content-type":
            self.content_type = value

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        parser = self.parser
        self.keep_alive = keep_alive = parser.should_keep_alive()
        body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
        answer = Answer(parser.get_status_code(), body, self.content_type)
        if not keep_alive:          # llhttp reads the next answer of a kept-alive connection with the same parser
            self.parser = httptools.HttpResponseParser(self)
        call = self.call
        if call is not None:
            call._answered(self, answer)
            return
        waiter = self.waiter
        self.waiter = None
        if waiter is not None and not waiter.done():
            waiter.set_result(answer)


#: `callback(answer, error)`: the module's whole answer and None, or None and why there is none (a `PoolError`, or
#: `TimeoutError` past the call's deadline).
Callback = Callable[["Answer | None", "Exception | None"], None]


class Call:
    """One request sent by `Pool.call`: on a connection, waiting for one, or opening one; finished once, by its
    answer, its failure or its deadline (whichever comes first; the rest find it `finished`)."""

    __slots__ = ("pool", "data", "callback", "conn", "fresh", "finished", "seconds", "expires")

    def __init__(self, pool: Pool, data: bytes, callback: Callback | None, seconds: float) -> None:
        self.pool = pool
        self.data = data
        self.callback = callback
        self.seconds = seconds
        self.conn: _Connection | None = None
        self.fresh = False
        self.finished = False
        #: When its deadline passes (the loop's clock); the pool's one deadline timer watches it (`Pool._due`).
        self.expires = pool.loop.time() + seconds

    # as a waiter in `Pool._waiting` (`Pool._release` hands it a connection, or with None a free slot)
    def done(self) -> bool:
        return self.finished

    def set_result(self, conn: _Connection | None) -> None:
        if conn is not None and conn.alive and not self.fresh:
            self.pool._send(self, conn)
            return
        if conn is not None:
            conn.abort()
        self.pool._connect(self)

    # what its connection says
    def _answered(self, conn: _Connection, answer: Answer) -> None:
        self.conn = None
        conn.call = None
        self.pool._give_back(conn)
        self._finish(answer, None)

    def _lost(self, conn: _Connection, error: PoolError) -> None:
        self.conn = None
        conn.call = None
        self.pool._release(None)
        if self.finished:
            return
        if error.reason == "closed_idle":
            if not self.fresh:              # the module closed it while idle: once more, on a new connection
                self.fresh = True
                self.pool._dispatch(self)
                return
            error = PoolError("reset", str(error))
        self._finish(None, error)

    def _expire(self) -> None:
        if self.finished:
            return
        conn = self.conn
        if conn is not None:                # cut off mid-answer: its answer may still come, never reuse it
            self.conn = None
            conn.call = None
            conn.abort()
            self.pool._release(None)
        # waiting for a connection: `_release` passes over a finished call; opening one: it is kept for others
        self._finish(None, TimeoutError(f"no answer within {self.seconds:g} s"))

    def _finish(self, answer: Answer | None, error: Exception | None) -> None:
        if self.finished:
            return
        self.finished = True
        callback, self.callback, self.data = self.callback, None, b""   # the deadline heap keeps the call a while
        try:
            if callback is not None:
                callback(answer, error)
        except Exception:
            log.exception("a front call's callback failed")


class Pool:
    """Up to `size` kept-alive connections to `target`, sending `credentials` on every request."""

    def __init__(self, target: Target, credentials: Credentials, size: int,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.target = target
        self.size = size
        self.loop = loop or asyncio.get_running_loop()
        self._head = b"\r\nHost: " + target.host_header + b"\r\nAuthorization: " + credentials.header
        self._prefix = target.prefix.encode()
        self.idle: deque[_Connection] = deque()
        self.open = 0
        self._waiting: deque[asyncio.Future[_Connection | None]] = deque()
        self._opening: set[asyncio.Task[None]] = set()
        self._deadlines: list[tuple[float, int, Call]] = []
        self._order = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self.opened_total = 0
        self.closed = False

    def request_bytes(self, method: bytes, path: bytes, query: bytes | None, body: bytes,
                      content_type: bytes | None, client_id: bytes | None) -> bytes:
        parts = [method, b" ", self._prefix, path]
        if query:
            parts += [b"?", query]
        parts += [b" HTTP/1.1", self._head]
        if client_id:
            parts += [b"\r\nX-ClientId: ", client_id]
        if body or method == b"POST":
            parts += [b"\r\nContent-Type: ", content_type or b"application/json",
                      b"\r\nContent-Length: ", str(len(body)).encode()]
        parts += [b"\r\n\r\n", body]
        return b"".join(parts)

    def call(self, data: bytes, seconds: float, callback: Callback) -> Call:
        """Send one request (`request_bytes`); `callback(answer, None)` with the whole answer, or `callback(None,
        error)`: a `PoolError`, or `TimeoutError` when no whole answer came within `seconds`. Called once, on the
        loop, never from inside `call` itself unless it failed at once."""
        call = Call(self, data, callback, seconds)
        self._watch(call)
        self._dispatch(call)
        return call

    def _watch(self, call: Call) -> None:
        """Put `call` under the pool's one deadline timer: a heap of calls by deadline (a finished call stays in it
        until its deadline, or until the timer finds it at the top), the timer armed for the top. Per call that is
        a push instead of a timer of its own started and cancelled: the tills' checks all have the same deadline,
        so the timer is armed again only when it fires."""
        heapq.heappush(self._deadlines, (call.expires, next(self._order), call))
        if self._timer is None or call.expires < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = call.expires
            self._timer = self.loop.call_at(call.expires, self._due)

    def _due(self) -> None:
        """The deadline timer: expire the calls whose deadline passed (the loop's clock counts in ms: within 1 ms
        is due), drop the finished ones at the top, arm the timer for the next."""
        self._timer = None
        due = self.loop.time() + 0.001
        heap = self._deadlines
        while heap and (heap[0][2].finished or heap[0][0] <= due):
            call = heapq.heappop(heap)[2]
            if not call.finished:
                call._expire()
        if heap:
            self._timer_at = heap[0][0]
            self._timer = self.loop.call_at(self._timer_at, self._due)

    def _dispatch(self, call: Call) -> None:
        if not call.fresh:
            idle = self.idle
            while idle:
                conn = idle.pop()
                if conn.alive and conn.transport is not None and not conn.transport.is_closing():
                    self._send(call, conn)
                    return
                self.open -= 1
        if self.open >= self.size:
            self._waiting.append(call)      # type: ignore[arg-type]
            return
        self.open += 1
        self._connect(call)

    def _send(self, call: Call, conn: _Connection) -> None:
        call.conn = conn
        conn.call = call
        conn.waiter = None
        conn.start(call.data)

    def _connect(self, call: Call) -> None:
        """Open a connection in a slot already counted in `open`, for `call`."""
        task = self.loop.create_task(self._open_for(call))
        self._opening.add(task)
        task.add_done_callback(self._opening.discard)

    async def _open_for(self, call: Call) -> None:
        try:
            _, conn = await self.loop.create_connection(lambda: _Connection(self), self.target.host,
                                                        self.target.port)
        except ConnectionRefusedError as exc:
            self._release(None)
            call._finish(None, PoolError("refused", str(exc)))
            return
        except OSError as exc:
            self._release(None)
            call._finish(None, PoolError("connect_failed", str(exc)))
            return
        except BaseException:
            self._release(None)
            call._finish(None, PoolError("connect_failed", "cancelled"))
            raise
        self.opened_total += 1
        if self.closed:
            conn.abort()
            self._release(None)
            call._finish(None, PoolError("reset", "the front is closing"))
            return
        if call.finished:                   # its deadline passed meanwhile: the connection serves the next one
            conn.reused = True
            self._release(conn)
            return
        self._send(call, conn)

    async def request(self, data: bytes) -> Answer:
        """Send one request (`request_bytes`) and return the whole answer; `PoolError` when there is none. The
        caller bounds it with its deadline (cancelling closes the connection in use)."""
        for attempt in (0, 1):
            conn = await self._acquire(fresh=attempt > 0)
            try:
                answer = await conn.send(data)
            except PoolError as exc:
                conn.abort()
                self._release(None)
                if exc.reason == "closed_idle" and attempt == 0:
                    continue
                if exc.reason == "closed_idle":
                    raise PoolError("reset", str(exc)) from None
                raise
            except BaseException:          # the deadline (cancelled): its answer may still come, never reuse it
                conn.abort()
                self._release(None)
                raise
            self._give_back(conn)
            return answer
        raise AssertionError("unreachable")

    async def _acquire(self, fresh: bool = False) -> _Connection:
        while not fresh and self.idle:
            conn = self.idle.pop()
            if conn.alive and conn.transport is not None and not conn.transport.is_closing():
                return conn
            self.open -= 1
        if self.open >= self.size:
            waiter: asyncio.Future[_Connection | None] = self.loop.create_future()
            self._waiting.append(waiter)
            try:
                got = await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled() and waiter.result() is not None:
                    self._release(waiter.result())
                elif waiter.done() and not waiter.cancelled():
                    self._release(None)
                raise
            if got is not None and got.alive and not fresh:
                return got
            if got is not None:
                got.abort()
            # a slot was freed (open was not decremented for us): open a new connection in it
        else:
            self.open += 1
        try:
            _, conn = await self.loop.create_connection(lambda: _Connection(self), self.target.host,
                                                        self.target.port)
        except ConnectionRefusedError as exc:
            self._release(None)
            raise PoolError("refused", str(exc)) from None
        except OSError as exc:
            self._release(None)
            raise PoolError("connect_failed", str(exc)) from None
        except BaseException:
            self._release(None)
            raise
        self.opened_total += 1
        return conn

    def _give_back(self, conn: _Connection) -> None:
        """A connection whose answer came whole: kept for the next request when the module keeps it alive, else
        closed and its slot freed."""
        if conn.keep_alive and conn.alive and not self.closed:
            conn.reused = True
            self._release(conn)
        else:
            conn.abort()
            self._release(None)

    def _release(self, conn: _Connection | None) -> None:
        """Hand a connection (or, with None, its slot) to the next waiter, else keep it idle (or free the slot)."""
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        if conn is not None:
            conn.waiter = None
            self.idle.append(conn)
        else:
            self.open -= 1

    def _lost(self, conn: _Connection) -> None:
        """An idle connection the module closed: forget it now rather than on its next use."""
        try:
            self.idle.remove(conn)
        except ValueError:
            return
        self.open -= 1

    def close(self) -> None:
        self.closed = True
        while self.idle:
            conn = self.idle.pop()
            self.open -= 1
            conn.abort()
