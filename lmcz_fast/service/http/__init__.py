"""The HTTP/1.1 stack: asyncio protocols over `httptools` (the llhttp parser), uvloop when installed.

A small request — a check is a few microseconds of compiled probe plus an LMDB read — is answered at once, from
the parser callback. Everything that could hold the event loop longer waits its turn in the `Scheduler`
(`scheduler.py`), round-robin across connections with a time budget per turn of the loop: a request with a large
body, a check of many codes (answered in slices, `Steps`), and requests pipelined behind another one (a client
that pipelines 100 requests gets one per turn, like everyone else). Responses leave in request order. Work of a
connection that has hung up is dropped, not run.

Wrong credentials are answered late (`throttle.py`): the 401 (or, past the address's slots, a 429) is held with
`loop.call_later`, never a sleep; a right password is answered at once whatever else its address is doing.

A request's credentials are judged on its headers, before any of its body is read (`LocalModule.
request_authorised`, the one hook every scheme goes through): a request with a body that would be refused is
answered 401 (through the throttle, like any failure) and the connection closed with the body unread, so an
unauthenticated client can make the server hold nothing but its headers. Bodies that are read count against one
budget for the whole server (`ServiceConfig.max_pending_bodies`, reserved at their declared length when the headers
arrive): a body that would take the total past it is refused 503 (Retry-After: 1) and its connection closed, unread,
and the budget is returned when the request is answered or its client goes. A request line of another HTTP version
than 1.0 or 1.1 is refused 505.

The server accepts connections itself (`loop.add_reader` on the listening socket, up to `ACCEPT_BATCH` at a
time) instead of leaving it to uvloop's `create_server`: under load, uvloop's listener took one waiting connection
per turn of the loop, so with 1,000 busy connections a new one waited seconds in the kernel's accept queue.

A durable write (a sale) is answered with a `Deferred`, resolved once the group commit holding it is on disk; it
stands ahead of the connection's queue like a check in slices, so requests pipelined behind a sale are handled only
after its answer (a check sent after a sale sees the sale) and responses still leave in request order.

The application behind it (`api.LocalModule`) knows nothing of sockets.

This package's parts: `framing.py` (the limits, a response head's fixed start, the Date header), `connection.py`
(`_Connection`, one client connection: httptools' callbacks, the request queue, the answers written in order) and
`server.py` (`Server`: the listening sockets, accepting, the timeout sweep, draining).
"""

from __future__ import annotations

from .connection import _Connection
from .framing import ACCEPT_BATCH, BIG_BODY, BULK_BYTES, MAX_QUEUED, SWEEP_SLICES
from .server import Server

__all__ = ["ACCEPT_BATCH", "BIG_BODY", "BULK_BYTES", "MAX_QUEUED", "SWEEP_SLICES", "Server", "_Connection"]
