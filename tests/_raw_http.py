"""A raw HTTP/1.1 client on a socket, standard library only: tests that need exact bytes on the wire use it, and
so can a child process of theirs (it imports nothing of the project, so it starts in milliseconds)."""

from __future__ import annotations

import socket


def _connect(port: int, source: str = "127.0.0.1", timeout: float = 15.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _read_response(sock: socket.socket, buffer: bytearray) -> tuple[int, bytes]:
    """One response with Content-Length from a keep-alive socket (`buffer` keeps what was read past it)."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        buffer += chunk
    head, _, _ = bytes(buffer).partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    total = len(head) + 4 + length
    while len(buffer) < total:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        buffer += chunk
    body = bytes(buffer[len(head) + 4:total])
    del buffer[:total]
    return int(head[9:12]), body
