"""Real HTTP servers on loopback that play CRPT's online system (True API + CDN) and a Local Module, for the
checker's tests and benchmarks.

Each server is a small HTTP/1.1 implementation on asyncio streams running in its own thread and event loop, so a
test can make it slow (1.4 s, 1.6 s, 10 s), drop connections, answer 429/5xx or garbage, while the code under test
runs its own loop. Nothing here imports the code under test except `parse_code` (to key codes by their full form).
"""

from __future__ import annotations

import asyncio
import base64
import gc
import json
import os
import random
import string
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

GS = "\x1d"
SERIAL_ALPHABET = string.ascii_letters + string.digits + "!\"%&'()*+,-./:;<=>?_"

#: How late, past the deadline, a call may return. Measured on the project's shared 2-core VM: median 0.3 ms (sync)
#: and 1.2 ms (async), worst seen 4 ms (benches/bench_checker.py, docs/checker.md); 50 ms leaves room for a loaded
#: CI machine. `margin()` adds what the machine itself stalled during the call (a control from the same run).
MARGIN = 0.050

# The stall probe: another process that sleeps 5 ms at a time and records how late each wake-up came, in 10 ms
# slots of CLOCK_MONOTONIC (one clock for every process of the machine) in a file both read. A call that was late
# only because the machine ran nothing (a loaded 2-core VM, a paused VM) is late by what the probe saw; a call late
# for its own reasons (a blocked event loop, a lock, the GIL held) is not, since the probe is another process. On a
# quiet machine the probe is late by ~0.1-1 ms, so `margin()` is MARGIN as before.
_SLOT = 0.01
_SLOTS = 32768   # 327 s of slots, so a long timed window (a kill -9 loop's) is covered whole
_PROBE = r"""
import mmap, os, struct, sys, time
slots, parent = int(sys.argv[2]), os.getppid()
with open(sys.argv[1], "r+b") as f:
    m = mmap.mmap(f.fileno(), slots * 16)
pair = struct.Struct("<dd")
while os.getppid() == parent:
    before = time.monotonic(); time.sleep(0.005); after = time.monotonic()
    slot = int(after / %(slot)r); at = (slot %% slots) * 16
    stamp, worst = pair.unpack_from(m, at)
    late = after - before - 0.005
    if stamp != slot or late > worst:
        pair.pack_into(m, at, float(slot), late if stamp != slot else max(late, worst))
""" % {"slot": _SLOT}
_probe: dict[str, Any] = {}
_last_window: list[float] = [0.0, 0.0]


def _stall_file() -> str | None:
    """The probe's file; the probe is started on first use and ends with this process."""
    if "path" not in _probe:
        import atexit
        import subprocess
        import sys
        import tempfile

        fd, path = tempfile.mkstemp(prefix="lmcz-stall-probe-")
        os.ftruncate(fd, _SLOTS * 16)
        os.close(fd)
        try:
            proc = subprocess.Popen([sys.executable, "-c", _PROBE, path, str(_SLOTS)])
        except OSError:
            _probe["path"] = None
            return None
        atexit.register(lambda: (proc.kill(), proc.wait(), os.unlink(path)))
        _probe["path"] = path
        time.sleep(0.1)     # its first wake-ups, so a window that starts now is covered
    return _probe["path"]


def machine_stall(started: float, ended: float) -> float:
    """The longest the machine kept the probe process waiting past a wake-up within [started, ended] (monotonic)."""
    path = _stall_file()
    if path is None or ended <= started:
        return 0.0
    import struct

    with open(path, "rb") as f:
        data = f.read()
    worst = 0.0
    for slot in range(int(started / _SLOT), int((ended + 2 * _SLOT) / _SLOT) + 1):
        stamp, late = struct.unpack_from("<dd", data, (slot % _SLOTS) * 16)
        if stamp == slot:
            worst = max(worst, late)
    return worst


def machine_stall_total(started: float, ended: float) -> float:
    """How long, in all, the machine kept the probe process waiting past its wake-ups within [started, ended]
    (monotonic): the worst of each 10 ms slot, summed. A call made of many steps (a process's socket calls, each
    waiting its turn for a CPU) is delayed by the sum of the machine's stalls, not only its longest one. On a quiet
    machine it is ~0.1 ms a slot."""
    path = _stall_file()
    if path is None or ended <= started:
        return 0.0
    import struct

    with open(path, "rb") as f:
        data = f.read()
    total = 0.0
    for slot in range(int(started / _SLOT), int((ended + 2 * _SLOT) / _SLOT) + 1):
        stamp, late = struct.unpack_from("<dd", data, (slot % _SLOTS) * 16)
        if stamp == slot:
            total += late
    return total


def timing() -> float:
    """Start of a timed call (the probe running before it), for `timed_since`."""
    _stall_file()
    return time.monotonic()


def timed_since(started: float) -> float:
    """Seconds since `started`; the window is kept for `margin()`."""
    ended = time.monotonic()
    _last_window[:] = [started, ended]
    return ended - started


# This process's own garbage collections, as (ended, seconds). A full collection of the suite's heap (hundreds of
# thousands of objects by the time the checker's tests run) holds the GIL for tens of milliseconds; every thread of
# the process waits, the code under test included, and the probe (another process) cannot see it. Like the machine's
# stalls, it is measured in the same run and added to the margin, not guessed.
_gc_pauses: list[tuple[float, float]] = []
_gc_started: list[float] = [0.0]


def _on_gc(phase: str, info: dict[str, int]) -> None:
    now = time.monotonic()
    if phase == "start":
        _gc_started[0] = now
    else:
        _gc_pauses.append((now, now - _gc_started[0]))
        if len(_gc_pauses) > 4096:
            del _gc_pauses[:2048]


gc.callbacks.append(_on_gc)


def gc_paused(started: float, ended: float) -> float:
    """Seconds this process spent in garbage collection within [started, ended] (monotonic)."""
    return sum(min(took, end - started) for end, took in _gc_pauses if started < end <= ended + _SLOT)


def stalled() -> float:
    """What held the last timed call up from outside the code under test (seconds): the machine's stalls as the
    probe saw them, summed over the call (a call of many steps waits at each), plus this process's garbage
    collections within it."""
    return machine_stall_total(*_last_window) + gc_paused(*_last_window)


def margin() -> float:
    """How late past its deadline the last timed call may return: MARGIN plus what the machine stalled meanwhile."""
    return MARGIN + stalled()


def gtin_with_check(body13: str) -> str:
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(body13))
    return body13 + str((10 - total % 10) % 10)


def make_scan(rng: random.Random) -> str:
    """A shoe/clothing-style scan: 01 GTIN 21 serial(13) GS 91 key GS 92 signature(44)."""
    gtin = gtin_with_check("0" + "".join(rng.choice(string.digits) for _ in range(12)))
    serial = "".join(rng.choice(SERIAL_ALPHABET) for _ in range(13))
    key = "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(4))
    sig = "".join(rng.choice(string.ascii_letters + string.digits + "+/=") for _ in range(44))
    return f"01{gtin}21{serial}{GS}91{key}{GS}92{sig}"


def open_fds() -> set[tuple[str, str]]:
    """This process's open file descriptors as (number, what it points to), e.g. ("12", "socket:[4711]")."""
    out = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            out.add((fd, os.readlink(f"/proc/self/fd/{fd}")))
        except OSError:  # the descriptor listdir itself used, closed by now
            pass
    return out


@dataclass(frozen=True)
class Snapshot:
    threads: frozenset[threading.Thread]
    fds: frozenset[tuple[str, str]]


def snapshot() -> Snapshot:
    return Snapshot(frozenset(threading.enumerate()), frozenset(open_fds()))


def leaks(before: Snapshot, within: float = 2.0) -> tuple[list[str], list[str]]:
    """Threads and descriptors opened since `before` and still open, once they are gone or `within` seconds passed.

    Compared as sets, so threads or sockets that other tests' servers close meanwhile do not count. The wait is
    there because a loopback server closes its side of a connection in its own thread, a moment after the client.
    """
    end = time.monotonic() + within
    while True:
        threads = [t.name for t in threading.enumerate() if t not in before.threads]
        fds = sorted(f"{fd}->{target}" for fd, target in open_fds() - before.fds)
        if (not threads and not fds) or time.monotonic() > end:
            return threads, fds
        time.sleep(0.01)


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


#: A handler's way to say "close the connection without answering".
DROP = object()


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    close_midway: bool = False

    @classmethod
    def json(cls, payload: Any, status: int = 200, **kw: Any) -> Reply:
        return cls(status, json.dumps(payload).encode(), {"Content-Type": "application/json"}, **kw)


Handler = Callable[[Request], Awaitable[Any]]


class LoopbackServer:
    """An HTTP/1.1 keep-alive server on 127.0.0.1:<free port>, in its own thread. Use as a context manager."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="loopback-server", daemon=True)
        self.requests: list[Request] = []
        self.connections = 0
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LoopbackServer:
        self.thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0), self.loop).result()
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            # The connections' handlers are cancelled and awaited, so none is left pending when the loop stops. A
            # handler ends a cancellation by returning (`_serve`): asyncio 3.11's done-callback of a connection's
            # task calls `task.exception()`, which for a cancelled task raises and is logged as an error.
            assert self._server is not None
            self._server.close()
            for w in list(self._writers):
                w.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()

    async def handle(self, request: Request) -> Any:
        raise NotImplementedError

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        try:
            while True:
                try:
                    line = await reader.readuntil(b"\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                method, path, _ = line.decode("latin-1").split(" ", 2)
                headers: dict[str, str] = {}
                while (h := await reader.readuntil(b"\r\n")) != b"\r\n":
                    name, _, value = h.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                request = Request(method, path, headers, body)
                self.requests.append(request)
                reply = await self.handle(request)
                if reply is DROP:
                    return
                assert isinstance(reply, Reply)
                if reply.delay:
                    await asyncio.sleep(reply.delay)
                reason = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
                          429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
                          503: "Service Unavailable"}.get(reply.status, "X")
                head = [f"HTTP/1.1 {reply.status} {reason}", f"Content-Length: {len(reply.body)}"]
                head += [f"{k}: {v}" for k, v in reply.headers.items()]
                data = ("\r\n".join(head) + "\r\n\r\n").encode() + reply.body
                if reply.close_midway:
                    writer.write(data[: len(data) // 2])
                    await writer.drain()
                    return
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        except asyncio.CancelledError:
            return      # the server is stopping (__exit__): the connection closes below, the task ends cleanly
        finally:
            self._writers.discard(writer)
            writer.close()


@dataclass
class Behaviour:
    """How the fake online system answers `codes/check` right now."""

    delay: float = 0.0
    status: int = 200
    drop: bool = False
    close_midway: bool = False
    garbage: bool = False
    api_code: int = 0
    retry_after: str | None = None


SELLABLE = {
    "valid": True, "found": True, "utilised": True, "verified": True, "sold": False, "realizable": True,
    "isBlocked": False, "isOwner": False, "isTracking": False, "grayZone": False, "errorCode": 0,
    "expireDate": "2099-12-31T00:00:00.000Z", "productionDate": "2026-01-01T00:00:00.000Z", "groupIds": [3],
    "packageType": "UNIT",
}


class FakeTrueApi(LoopbackServer):
    """CRPT's True API host (and CDN): `cdn/info`, `cdn/health/check`, `codes/check`.

    `states` maps a full code (element string, GS included) to field overrides (e.g. {"isBlocked": True});
    unknown codes are sellable. `hosts` is what `cdn/info` lists; `avg_time_ms`/`health_code` what the health
    check says; `behaviour` how `codes/check` answers.
    """

    def __init__(self, api_key: str = "test-key") -> None:
        super().__init__()
        self.api_key = api_key
        self.states: dict[str, dict[str, Any]] = {}
        self.behaviour = Behaviour()
        self.hosts: list[str] = []
        self.avg_time_ms = 10
        self.health_code = 0
        self.health_delay = 0.0
        self.checks = 0

    async def handle(self, request: Request) -> Any:
        if request.headers.get("x-api-key") != self.api_key:
            return Reply.json({"code": 401, "description": "bad X-API-KEY"}, status=401)
        if request.method == "GET" and request.path == "/api/v4/true-api/cdn/info":
            return Reply.json({"code": 0, "description": "ok", "hosts": [{"host": h} for h in self.hosts]})
        if request.method == "GET" and request.path == "/api/v4/true-api/cdn/health/check":
            return Reply.json({"code": self.health_code, "description": "ok", "avgTimeMs": self.avg_time_ms},
                              delay=self.health_delay)
        if request.method == "POST" and request.path == "/api/v4/true-api/codes/check":
            self.checks += 1
            b = self.behaviour
            if b.drop:
                if b.delay:
                    await asyncio.sleep(b.delay)
                return DROP
            if b.garbage:
                return Reply(200, b"<html>502 upstream</html>{not json", {"Content-Type": "text/html"},
                             delay=b.delay)
            if b.status != 200:
                headers = {"Retry-After": b.retry_after} if b.retry_after else {}
                return Reply(b.status, b'{"code": 500, "description": "error"}', headers, delay=b.delay)
            codes = request.json()["codes"]
            out = []
            for code in codes:
                entry = dict(SELLABLE)
                entry.update(cis=code.split(GS)[0], gtin=code[2:16], printView=code.split(GS)[0])
                entry.update(self.states.get(code, {}))
                out.append(entry)
            payload = {"code": b.api_code, "description": "ok" if not b.api_code else "error",
                       "reqId": str(uuid.uuid4()), "reqTimestamp": int(time.time() * 1000), "codes": out}
            return Reply.json(payload, delay=b.delay, close_midway=b.close_midway)
        return Reply.json({"code": 404, "description": "no such path"}, status=404)


class FakeLocalModule(LoopbackServer):
    """The official Local Module's `POST /api/v1/cis/outCheck` as integrators describe it (Basic auth), and the
    second protocol's `POST /api/v2/cis/outCheck` (`cis_list` of `{"cis", "pg"}`, answer `{"results": [...]}`,
    per code `isGreyGtin`, `mrp`, `smp`; docs/protocol.md). `grey` holds CIS answered `isGreyGtin`, `prices`
    the `mrp`/`smp` fields to answer per CIS."""

    def __init__(self, user: str = "admin", password: str = "admin") -> None:
        super().__init__()
        self.auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.blocked: set[str] = set()
        self.sold: set[str] = set()
        self.grey: set[str] = set()
        self.prices: dict[str, dict[str, int]] = {}
        self.state = "ready"
        self.delay = 0.0
        self.inst = str(uuid.uuid4())
        self.version = str(uuid.uuid4())

    async def handle(self, request: Request) -> Any:
        if request.headers.get("authorization") != self.auth:
            return Reply.json({"error": "unauthorized"}, status=401)
        if request.path not in ("/api/v1/cis/outCheck", "/api/v2/cis/outCheck") or request.method != "POST":
            return Reply.json({"error": "not found"}, status=404)
        if self.state != "ready":
            code = 4050 if self.state == "sync_error" else 4045
            return Reply.json({"errorCode": code, "description": self.state}, status=400, delay=self.delay)
        v2 = request.path.startswith("/api/v2/")
        out = []
        for item in request.json()["cis_list"]:
            code = item["cis"] if v2 else item
            pack = len(code) == 29 and GS not in code and not code.startswith("01")   # a tobacco pack: CIS = 21
            cis = code[:21] if pack else code.split(GS)[0]
            entry = {"cis": cis, "gtin": code[:14] if pack else code[2:16], "printView": cis, "found": True,
                     "valid": True,
                     "verified": True, "realizable": True, "utilised": True,
                     "isBlocked": cis in self.blocked, "sold": cis in self.sold, "ogvs": [], "groupIds": [3]}
            if v2:
                entry.update(isGreyGtin=cis in self.grey, mrp=0, smp=0)
            entry.update(self.prices.get(cis, {}))
            out.append(entry)
        payload = {"code": 0, "description": "ok", "reqId": str(uuid.uuid4()),
                   "reqTimestamp": int(time.time() * 1000), "inst": self.inst, "version": self.version,
                   "isCheckedOffline": True, "codes": out}
        return Reply.json({"results": [payload]} if v2 else payload, delay=self.delay)


def self_signed(tmp_path: Any) -> tuple[Any, Any]:
    """A self-signed certificate for localhost and 127.0.0.1 (cert.pem, key.pem in tmp_path): a test CA."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file
