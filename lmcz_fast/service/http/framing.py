"""The HTTP stack's limits and what every response's head is made of: its fixed start per status and content type,
and the Date header, formatted once a second."""

from __future__ import annotations

import time
from email.utils import formatdate

import httptools

from ..responses import reason

#: A request with a body (or query) larger than this waits its turn in the scheduler instead of being answered
#: inside the read callback: decoding it is not free, and its client may be gone by its turn.
BULK_BYTES = 8192
#: A response body larger than this is written beside its head (`writelines`: one writev) rather than copied into
#: one bytes object with it.
BIG_BODY = 16384
#: Requests one connection may have queued (pipelined) before the server stops reading from it.
MAX_QUEUED = 64
#: Connections accepted per turn of the loop (a burst of new connections is spread over turns: each costs ~50 us).
ACCEPT_BATCH = 64
#: The timeout sweep checks every open connection once a second, in this many slices (`Server._sweep`).
SWEEP_SLICES = 10

_Request = tuple[bytes, bytes, "bytes | None", bytes, "bytes | None", "bytes | None", "bytes | None", float]


#: What a closed connection's `parser` is (see `_Connection.connection_lost`): nothing is fed to it.
_CLOSED_PARSER = httptools.HttpRequestParser(object())


_HEAD_STARTS: dict[tuple[int, bytes], bytes] = {}


def _head_start(status: int, content_type: bytes) -> bytes:
    """A response's head up to its Content-Length value, built once per status and content type."""
    key = (status, content_type)
    head = _HEAD_STARTS.get(key)
    if head is None:
        head = (b"HTTP/1.1 %d %s\r\nServer: lmcz-fast\r\nContent-Type: %s\r\nContent-Length: "
                % (status, reason(status), content_type))
        if len(_HEAD_STARTS) < 256:     # a few statuses times a few content types; never grows with clients
            _HEAD_STARTS[key] = head
    return head


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
