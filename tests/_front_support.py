"""The service in front of the official module's stand-in (tests/_official_standin.py), in a thread of the test
process: `FrontServer` is `ServerThread` with a `Front` attached on its event loop (as `serve --front` does)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _service_support import Client, ServerThread

from lmcz_fast.front import Front, FrontConfig


class FrontServer(ServerThread):
    def __init__(self, db: Path, official_url: str, *, deadline_ms: float = 300, state_dir: Path | None = None,
                 credentials_file: Path | None = None, **kwargs: Any) -> None:
        super().__init__(db, **kwargs)
        self.front_config = FrontConfig.build(official_url, None if credentials_file is None else
                                              str(credentials_file), deadline_ms,
                                              None if state_dir is None else str(state_dir))
        self.front: Front | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.front = Front(self.front_config)
        self.front.start(self.loop)
        self.app.attach_front(self.front)
        super()._run()


def check(client: Client, codes: list[str], protocol: int = 1) -> tuple[int, dict[str, str], Any]:
    items: list[Any] = codes
    return client.request("POST", f"/api/v{protocol}/cis/outCheck", json.dumps({"cis_list": items}),
                          {"Content-Type": "application/json"})


def blocked_of(protocol: int, payload: Any) -> list[bool]:
    if protocol == 1:
        return [c["isBlocked"] for c in payload["codes"]]
    return [c["isBlocked"] for r in payload["results"] for c in r["codes"]]


# -- many tills at once ----------------------------------------------------------------------------------------------


class _Till(asyncio.Protocol):
    """One till's keep-alive connection: one request at a time, the whole answer awaited."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes, bytes]] | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0 or self.waiter is None:
            return
        head = bytes(self.buf[:end])
        lower = head.lower()
        at = lower.find(b"content-length:")
        length = int(lower[at + 15:lower.find(b"\r\n", at) if lower.find(b"\r\n", at) > 0 else None]) if at >= 0 else 0
        if len(self.buf) < end + 4 + length:
            return
        body = bytes(self.buf[end + 4:end + 4 + length])
        del self.buf[:end + 4 + length]
        waiter, self.waiter = self.waiter, None
        if not waiter.done():
            waiter.set_result((int(head[9:12]), head, body))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("closed"))

    async def ask(self, data: bytes) -> tuple[int, bytes, bytes]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return await self.waiter


def till_requests(codes: list[str], auth: str, path: str = "/api/v1/cis/outCheck") -> list[bytes]:
    out = []
    for code in codes:
        body = json.dumps({"cis_list": [code]}).encode()
        out.append((f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {auth}\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body)
    return out


@dataclass
class Load:
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    answered_by: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    bodies: list[bytes] = field(default_factory=list)

    def pct(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] if ordered else float("nan")


async def _tills(port: int, requests: list[bytes], tills: int, duration: float, keep_bodies: bool,
                 pause: float) -> Load:
    loop = asyncio.get_running_loop()
    conns: list[_Till] = []
    for start in range(0, tills, 50):
        batch = await asyncio.gather(*(loop.create_connection(_Till, "127.0.0.1", port)
                                       for _ in range(min(50, tills - start))))
        conns.extend(proto for _, proto in batch)
    load = Load()
    end = time.perf_counter() + duration

    async def till(index: int, conn: _Till) -> None:
        i = index
        if pause:
            await asyncio.sleep(pause * index / tills)       # spread the tills over one pause
        while time.perf_counter() < end:
            started = time.perf_counter()
            try:
                status, head, body = await conn.ask(requests[i % len(requests)])
            except ConnectionError:
                load.errors += 1
                return
            load.latencies.append(time.perf_counter() - started)
            load.statuses[status] = load.statuses.get(status, 0) + 1
            at = head.lower().find(b"x-lmcz-answered-by:")
            who = "none" if at < 0 else head[at + 19:head.find(b"\r\n", at) if head.find(b"\r\n", at) > 0
                                              else None].decode().strip()
            load.answered_by[who] = load.answered_by.get(who, 0) + 1
            if keep_bodies:
                load.bodies.append(body)
            i += tills
            if pause:
                await asyncio.sleep(pause)

    await asyncio.gather(*(till(i, c) for i, c in enumerate(conns)))
    for conn in conns:
        if conn.transport is not None:
            conn.transport.close()
    return load


def run_tills(port: int, requests: list[bytes], tills: int = 200, duration: float = 1.5,
              keep_bodies: bool = False, pause: float = 0.0) -> Load:
    """`tills` keep-alive connections, each asking its next check `pause` s after it has the last answer (0: at
    once, a closed loop that measures throughput more than latency)."""
    return asyncio.run(_tills(port, requests, tills, duration, keep_bodies, pause))


def cpu_times(*pids: int) -> tuple[int, int] | None:
    """(ns on a CPU, ns runnable but waiting for one) summed over the threads of `pids` (/proc/PID/task/*/schedstat),
    or None where the kernel does not keep them. The control of a latency comparison: a process that waited for a
    CPU longer than it ran measured the machine's queue of other work, not the code under test."""
    run = wait = 0
    try:
        for pid in pids:
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/schedstat") as fh:
                    fields = fh.read().split()
                run, wait = run + int(fields[0]), wait + int(fields[1])
    except (OSError, IndexError, ValueError):
        return None
    return run, wait


def oversubscribed(before: tuple[int, int] | None, after: tuple[int, int] | None) -> str | None:
    """Why a latency comparison cannot be judged (the processes waited longer for a CPU than they ran between
    `before` and `after`, two `cpu_times`), or None."""
    if before is None or after is None:
        return None
    ran, waited = after[0] - before[0], after[1] - before[1]
    if waited > ran > 0:
        return f"the machine was oversubscribed: waited {waited / 1e6:.0f} ms for a CPU, ran {ran / 1e6:.0f} ms"
    return None
