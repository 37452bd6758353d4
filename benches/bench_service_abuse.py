"""What a hostile or careless client costs `lmcz-fast serve`: the figures of docs/service.md's "Abuse" section.

The server runs as `lmcz-fast serve` in its own process (`bench_service._Serve`) on a free loopback port; clients
are threads of this process, each on its own loopback source address (127.0.0.x) so the per-address throttle of
one phase does not touch the next. Every phase is bounded in time and count.

- brute force: wrong passwords as fast as 1 and 50 connections can send them; the figure is wrong guesses
  answered per second (401 or 429: each answer tells the attacker one guess was wrong; a guess still held when the
  phase ends told it nothing), against the answered requests per second of one connection with the right password
  (the baseline, same run). The right password from the attacker's own address is answered throughout.
- reset flood: 200 peers send a 1000-code check and reset; a till's health check every 2 ms meanwhile; its
  worst latency against 100 ms (and, printed, the same probe with no flood in the same run: the VM's own noise).
- paced and saturated load with Debian's `wrk` (skipped without it): 1000 keep-alive connections, each pausing
  150-250 ms between requests (~5000 req/s), then closed loop; p99 and max.
- memory: RSS over N audited invalid checks (100 codes, a new X-ClientId each), after a warm-up. (Whether
  anything leaks is asserted exactly, by live allocations, in tests/test_service_abuse.py; RSS moves with the
  audit writer's backlog, ~17 KB per queued 100-code record, and the allocator's arenas.)

Durations: LMCZ_BENCH_ABUSE_SECONDS (default 3) per phase, LMCZ_BENCH_ABUSE_RSS_REQUESTS (default 10000).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable

import pytest
from bench_service import _enabled, _make_corpus, _Serve

SECONDS = float(os.environ.get("LMCZ_BENCH_ABUSE_SECONDS", "3"))
AUTH = "Basic " + base64.b64encode(b"admin:admin").decode()


def _request(path: str, auth: str, body: bytes | None = None, client_id: str | None = None) -> bytes:
    head = f"{'POST' if body is not None else 'GET'} {path} HTTP/1.1\r\nHost: lm\r\nAuthorization: {auth}\r\n"
    if client_id:
        head += f"X-ClientId: {client_id}\r\n"
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + (body or b"")


def _connect(port: int, source: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=20, source_address=(source, 0))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _read(sock: socket.socket, buffer: bytearray) -> int:
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        buffer += chunk
    end = buffer.index(b"\r\n\r\n")
    head = bytes(buffer[:end]).lower()
    at = head.find(b"content-length:")
    length = int(head[at + 15:].split(b"\r\n", 1)[0]) if at >= 0 else 0
    while len(buffer) < end + 4 + length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        buffer += chunk
    del buffer[:end + 4 + length]
    return int(head[9:12])


def _metrics(port: int) -> dict[str, float]:
    with _connect(port, "127.0.0.1") as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: lm\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    out = {}
    for line in data.split(b"\r\n\r\n", 1)[1].decode().splitlines():
        if line and not line.startswith("#") and "{" not in line:
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def _hammer(port: int, source: str, connections: int, seconds: float,
            auth_of: Callable[[int, int], str]) -> dict[int, int]:
    """`connections` threads sending request after request for `seconds`; statuses counted."""
    deadline = time.monotonic() + seconds
    statuses: dict[int, int] = {}
    lock = threading.Lock()

    def worker(index: int) -> None:
        n = 0
        with _connect(port, source) as sock:
            buffer = bytearray()
            while time.monotonic() < deadline:
                sock.sendall(_request("/api/v1/status", auth_of(index, n)))
                n += 1
                sock.settimeout(max(0.05, deadline - time.monotonic() + 0.05))
                try:
                    status = _read(sock, buffer)
                except (TimeoutError, socket.timeout):
                    return
                with lock:
                    statuses[status] = statuses.get(status, 0) + 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 30)
    return statuses


def _wrong(index: int, n: int) -> str:
    return "Basic " + base64.b64encode(f"admin:guess-{index}-{n}".encode()).decode()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    if not _enabled():
        pytest.skip("LMCZ_BENCH_SERVICE=0")
    return _make_corpus(str(tmp_path_factory.mktemp("abuse")), blocked_count=100_000, scans=5_000)


def test_brute_force_rate(corpus: tuple[str, str], board) -> None:  # type: ignore[no-untyped-def]
    db, _ = corpus
    with _Serve(db, "--no-audit") as srv:
        right = _hammer(srv.port, "127.0.0.13", 1, SECONDS, lambda i, n: AUTH)
        answered = sum(right.values()) / SECONDS
        wrong_answered = {}
        for connections, source in ((1, "127.0.0.11"), (50, "127.0.0.12")):
            statuses = _hammer(srv.port, source, connections, SECONDS, _wrong)
            assert set(statuses) <= {401, 429}, statuses
            wrong_answered[connections] = sum(statuses.values()) / SECONDS
            board.notes.append(f"brute force, {connections} connection(s) for {SECONDS:g} s: "
                               f"{wrong_answered[connections]:.1f} wrong guesses answered/s, statuses {statuses}")
        # the right password from the attacker's address, while its guesses are still held
        same = _hammer(srv.port, "127.0.0.12", 1, 0.5, lambda i, n: AUTH)
    board.record("abuse: wrong guesses answered per second, 50 connections", wrong_answered[50], "1/s")
    board.record("abuse: right-password answers per second, 1 connection", answered, "1/s")
    board.target("abuse: wrong guesses answered per second, 50 connections",
                 "abuse: right-password answers per second, 1 connection", 0.01,
                 "abuse: brute-force guesses/s vs answers/s")
    assert right == {200: sum(right.values())}
    assert same and same == {200: sum(same.values())}, same
    assert wrong_answered[1] < 10 and wrong_answered[50] < 10, wrong_answered


class _Probe(threading.Thread):
    """A till's health check every 2 ms on one keep-alive connection."""

    def __init__(self, port: int, source: str) -> None:
        super().__init__(daemon=True)
        self.port, self.source = port, source
        self.latencies: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with _connect(self.port, self.source) as sock:
            buffer = bytearray()
            data = _request("/api/v1/status", AUTH)
            while not self.stop.is_set():
                started = time.perf_counter()
                sock.sendall(data)
                assert _read(sock, buffer) == 200
                self.latencies.append(time.perf_counter() - started)
                time.sleep(0.002)

    def finish(self) -> tuple[float, float]:
        self.stop.set()
        self.join(10)
        ordered = sorted(self.latencies)
        return ordered[int(len(ordered) * 0.99)], ordered[-1]


def test_reset_flood_health_check(corpus: tuple[str, str], board) -> None:  # type: ignore[no-untyped-def]
    db, codes_file = corpus
    with open(codes_file, encoding="utf-8") as fh:
        scans = [json.loads(line) for _, line in zip(range(1000), fh)]
    flood = _request("/api/v1/cis/outCheck", AUTH, json.dumps({"cis_list": scans}).encode())
    with _Serve(db, "--no-audit") as srv:
        quiet = _Probe(srv.port, "127.0.0.21")
        quiet.start()
        time.sleep(SECONDS)
        quiet_p99, quiet_max = quiet.finish()
        peers = [_connect(srv.port, "127.0.0.22") for _ in range(200)]
        probe = _Probe(srv.port, "127.0.0.23")
        probe.start()
        time.sleep(0.2)
        for peer in peers:
            peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            peer.sendall(flood)
        for peer in peers:
            peer.close()
        time.sleep(SECONDS)
        flood_p99, flood_max = probe.finish()
        figures = _metrics(srv.port)
    board.record("abuse: health check max during a reset flood", flood_max)
    board.record("abuse: 100 ms", 0.1)
    board.target("abuse: health check max during a reset flood", "abuse: 100 ms", 1.0,
                 "abuse: health-check max during a reset flood / 100 ms")
    board.notes.append(
        f"reset flood, 200 peers x 1000 codes: health check p99 {flood_p99 * 1000:.2f} ms, "
        f"max {flood_max * 1000:.1f} ms (quiet: p99 {quiet_p99 * 1000:.2f} ms, max {quiet_max * 1000:.1f} ms); "
        f"{figures['lmcz_queued_dropped_total']:.0f} requests dropped, "
        f"{figures['lmcz_codes_checked_total']:.0f} codes checked")
    assert figures["lmcz_codes_checked_total"] < 200 * 1000 / 2
    assert flood_max < 1.0


_PACED = """
local codes = {}
for line in io.lines("%(codes)s") do codes[#codes + 1] = line end
local i = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "%(auth)s"
request = function()
  i = i + 1
  return wrk.format(nil, "/api/v1/cis/outCheck", nil, '{"cis_list":[' .. codes[(i %% #codes) + 1] .. ']}')
end
%(delay)s
done = function(summary, latency, requests)
  io.write(string.format("RESULT %%d %%.3f %%.3f %%.3f %%d %%d %%.1f\\n", summary.requests,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
    summary.errors.timeout, summary.errors.status, summary.requests / (summary.duration / 1e6)))
end
"""


def _wrk(port: int, script: str, seconds: float) -> dict[str, float]:
    done = subprocess.run(["wrk", "-t2", "-c1000", f"-d{seconds:g}s", "-s", script, f"http://127.0.0.1:{port}/"],
                          capture_output=True, text=True, timeout=seconds + 60, check=True)
    line = [x for x in done.stdout.splitlines() if x.startswith("RESULT")][-1].split()[1:]
    keys = ("requests", "p50_ms", "p99_ms", "max_ms", "timeouts", "non_2xx", "per_s")
    return dict(zip(keys, map(float, line)))


def test_paced_and_saturated_with_wrk(corpus: tuple[str, str], tmp_path, board) -> None:  # type: ignore[no-untyped-def]
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (Debian: apt-get install wrk)")
    db, codes_file = corpus
    paced, saturated = tmp_path / "paced.lua", tmp_path / "saturated.lua"
    values = {"codes": codes_file, "auth": AUTH}
    paced.write_text(_PACED % {**values, "delay": "function delay() return math.random(150, 250) end"})
    saturated.write_text(_PACED % {**values, "delay": ""})
    seconds = max(5.0, SECONDS * 3)
    with _Serve(db, "--audit-dir", str(tmp_path / "audit")) as srv:
        before = srv.cpu_seconds()
        slow = _wrk(srv.port, str(paced), seconds)
        cpu = (srv.cpu_seconds() - before) / seconds
        full = _wrk(srv.port, str(saturated), seconds)
    board.record("abuse: paced p99 (wrk, 1000 conns)", slow["p99_ms"] / 1000)
    board.record("abuse: saturated max (wrk, 1000 conns)", full["max_ms"] / 1000)
    board.notes.append(
        f"wrk paced, 1000 conns: {slow['per_s']:.0f} req/s, p50 {slow['p50_ms']:.2f} ms, p99 {slow['p99_ms']:.2f} ms, "
        f"max {slow['max_ms']:.1f} ms, server CPU {cpu:.2f} cores; saturated: {full['per_s']:.0f} req/s, "
        f"p50 {full['p50_ms']:.1f} ms, p99 {full['p99_ms']:.1f} ms, max {full['max_ms']:.0f} ms, "
        f"{full['timeouts']:.0f} over 2 s")
    assert slow["non_2xx"] == 0 and full["non_2xx"] == 0
    if os.environ.get("LMCZ_BENCH_ENFORCE") == "1":
        assert slow["p99_ms"] < 5.0 and full["max_ms"] < 1000 and full["timeouts"] == 0


def test_rss_over_invalid_requests(corpus: tuple[str, str], tmp_path, board) -> None:  # type: ignore[no-untyped-def]
    db, codes_file = corpus
    total = int(os.environ.get("LMCZ_BENCH_ABUSE_RSS_REQUESTS", "10000"))
    with open(codes_file, encoding="utf-8") as fh:
        scans = [json.loads(line) for _, line in zip(range(99), fh)]

    def rss(pid: int) -> float:
        with open(f"/proc/{pid}/status") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:")) / 1024

    with _Serve(db, "--audit-dir", str(tmp_path / "audit")) as srv:
        samples = [rss(srv.proc.pid)]
        with _connect(srv.port, "127.0.0.31") as sock:
            buffer = bytearray()
            for n in range(total):
                body = json.dumps({"cis_list": scans + [f"not a code {n}"]}).encode()
                sock.sendall(_request("/api/v1/cis/outCheck", AUTH, body, client_id=f"till-{n}"))
                assert _read(sock, buffer) == 200   # answered per code: the bad one gets its own error entry
                if (n + 1) % (total // 10) == 0:
                    samples.append(rss(srv.proc.pid))
    warm = samples[2]
    board.record("abuse: RSS after invalid requests", samples[-1], "MB")
    board.record("abuse: RSS after a fifth of them", warm, "MB")
    board.target("abuse: RSS after invalid requests", "abuse: RSS after a fifth of them", 1.3,
                 "abuse: RSS growth after warm-up (end / after 20 %)")
    board.notes.append(f"RSS over {total} audited invalid 100-code checks (new X-ClientId each), every "
                       f"{total // 10}: {[round(s, 1) for s in samples]} MB")
    if os.environ.get("LMCZ_BENCH_ENFORCE") == "1":
        assert samples[-1] < warm * 1.3, samples
