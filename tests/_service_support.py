"""Helpers for service and audit tests: real databases, the real server on a free loopback port, an HTTP client.

The server runs either in a thread of the test process (`ServerThread`, fast, inspectable) or as a separate
`lmcz-fast serve` process (`ServeProcess`, for signals and kill -9).
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import os
import random
import re
import signal
import socket
import string
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import lmcz_fast
from lmcz_fast.audit import AuditLog
from lmcz_fast.service import LocalModule, Server, ServiceConfig
from lmcz_fast.service.throttle import AuthThrottle
from lmcz_fast.store import Blocklist

GS = "\x1d"
USER = "till"
PASSWORD = "s3cret-Pa55"
SERIAL_ALPHABET = string.ascii_letters + string.digits + "!\"%&'()*+,-./:;<=>?_"


def gtin_with_check(body13: str) -> str:
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(body13))
    return body13 + str((10 - total % 10) % 10)


def make_identity(rng: random.Random, serial_len: int = 13, alphabet: str = SERIAL_ALPHABET) -> str:
    gtin = gtin_with_check("0" + "".join(rng.choice(string.digits) for _ in range(12)))
    return f"01{gtin}21{''.join(rng.choice(alphabet) for _ in range(serial_len))}"


def identity_sets(rng: random.Random, **counts: int) -> dict[str, list[str]]:
    """Named lists of fresh identities drawn from `rng` in the order given (`blocked=20, free=200`): the codes
    fixture of the service tests."""
    return {name: [make_identity(rng) for _ in range(count)] for name, count in counts.items()}


def make_scan(identity: str, rng: random.Random) -> str:
    """A scan as a till sends it: the identity, GS, a 91/92 crypto tail."""
    key = "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(4))
    sig = "".join(rng.choice(string.ascii_letters + string.digits + "+/=") for _ in range(44))
    return f"{identity}{GS}91{key}{GS}92{sig}"


def make_db(path: Path, blocked: list[str], *, synced_ago: float | None = 0.0, load: bool = True) -> Path:
    """A database at `path` holding `blocked` identities; last sync `synced_ago` seconds ago (None: never)."""
    bl = Blocklist.create(path)
    try:
        if load:
            source = path.parent / f"{path.name}-list.txt"
            source.write_text("".join(code + "\n" for code in blocked), encoding="utf-8")
            bl.load([str(source)])
            if synced_ago is not None:
                bl.mark_synced(at=time.time() - synced_ago, feed_url="https://feed.example/lm")
    finally:
        bl.close()
    return path


def set_synced_ago(path: Path, seconds: float) -> None:
    with Blocklist.open(path, readonly=False) as bl:
        bl.mark_synced(at=time.time() - seconds)


def auth_header(user: str = USER, password: str = PASSWORD) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class ServerThread:
    """The real `Server` over a real database, on 127.0.0.1 and a free port, in a background event loop."""

    def __init__(self, db: Path, *, audit_dir: Path | None = None, flush_interval: float = 0.2,
                 status_cache: float = 0.0, throttle: AuthThrottle | None = None, **config: Any) -> None:
        self.config = ServiceConfig(host="127.0.0.1", port=0, user=USER, password=PASSWORD,
                                    status_cache=status_cache, **config)
        self.blocklist = Blocklist.open(db, refresh_interval=0.05)
        self.audit = AuditLog(audit_dir, flush_interval=flush_interval) if audit_dir else None
        self.app = LocalModule(self.blocklist, self.config, audit=self.audit)
        # The suite fails logins on purpose, from one address: delays of a few ms keep it fast (the real delays
        # are tested in test_service_abuse.py).
        self.server = Server(self.app, throttle=throttle if throttle is not None else AuthThrottle(first_delay=0.001, max_delay=0.002))
        self.loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lmcz-test-server", daemon=True)
        self.port = 0

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.server.start())
        self.port = self.server.port or 0
        self._started.set()
        self.loop.run_forever()

    def __enter__(self) -> ServerThread:
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("test server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.server.close(grace=1.0), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()
        if self.audit is not None:
            self.audit.close()
        self.blocklist.close()

    def client(self) -> Client:
        return Client(self.port)


class Client:
    """A keep-alive HTTP client (http.client) with the test credentials by default."""

    def __init__(self, port: int, auth: str | None = None) -> None:
        self.port = port
        self.auth = auth_header() if auth is None else auth
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def request(self, method: str, path: str, body: bytes | str | None = None,
                headers: dict[str, str] | None = None, *, auth: bool = True) -> tuple[int, dict[str, str], Any]:
        all_headers = {}
        if auth and self.auth:
            all_headers["Authorization"] = self.auth
        all_headers.update(headers or {})
        if isinstance(body, str):
            body = body.encode()
        self.conn.request(method, path, body=body, headers=all_headers)
        response = self.conn.getresponse()
        data = response.read()
        got_headers = {k.lower(): v for k, v in response.getheaders()}
        if response.will_close:
            self.conn.close()
        if got_headers.get("content-type", "").startswith("application/json"):
            return response.status, got_headers, json.loads(data)
        return response.status, got_headers, data.decode()

    def check(self, codes: list[str], **kwargs: Any) -> tuple[int, dict[str, str], Any]:
        headers = {"Content-Type": "application/json", **kwargs.pop("headers", {})}
        return self.request("POST", "/api/v1/cis/outCheck", json.dumps({"cis_list": codes}), headers, **kwargs)

    def close(self) -> None:
        self.conn.close()


def raw_exchange(port: int, data: bytes, *, timeout: float = 5.0) -> bytes:
    """Send raw bytes, read until the server closes or goes quiet; for requests http.client would not send."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        sock.settimeout(1.0)
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except (TimeoutError, socket.timeout):
            pass
        except ConnectionResetError:
            pass
    return b"".join(chunks)


def parse_responses(data: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """Split a byte stream of HTTP/1.1 responses with Content-Length."""
    out = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            break
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        if status == 100:
            data = rest
            continue
        out.append((status, headers, rest[:length]))
        data = rest[length:]
    return out


class ServeProcess:
    """`lmcz-fast serve` in a separate process; the port is read from its startup log line."""

    def __init__(self, db: Path, *args: str, password_file: Path | None = None, prefix: tuple[str, ...] = ()) -> None:
        self.db = db
        self.args = list(args)
        self.password_file = password_file
        self.prefix = list(prefix)      # a command to run serve under (e.g. faketime)
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0
        self.log: list[str] = []

    def __enter__(self) -> ServeProcess:
        env = dict(os.environ)
        package_root = os.path.dirname(os.path.dirname(os.path.abspath(lmcz_fast.__file__)))
        env["PYTHONPATH"] = package_root + os.pathsep + env.get("PYTHONPATH", "")
        cmd = [*self.prefix, sys.executable, "-c", "import sys; from lmcz_fast.cli.serve import serve; sys.exit(serve())",
               str(self.db), "--port", "0", "--user", USER]
        if self.password_file is not None:
            cmd += ["--password-file", str(self.password_file)]
        # Under a prefix (faketime runs serve as its child) serve gets a process group of its own, killed whole.
        self.proc = subprocess.Popen(cmd + self.args, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                                     env=env, start_new_session=bool(self.prefix))
        # Under arm64 emulation (tests/test_arm64.py) starting serve (its imports) takes ~10x as long.
        deadline = time.monotonic() + (180 if os.environ.get("LMCZ_EMULATED") else 20)
        assert self.proc.stderr is not None
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            self.log.append(line)
            found = re.search(r"on http://127\.0\.0\.1:(\d+)", line)
            if found:
                self.port = int(found.group(1))
                threading.Thread(target=self._drain, daemon=True).start()
                return self
        self.proc.kill()
        raise RuntimeError("serve did not start:\n" + "".join(self.log))

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)

    def wait_for_log(self, text: str, timeout: float = 20.0) -> str:
        """The first log line holding `text`, waited for up to `timeout` seconds: the server writes its log from its
        own threads, and a line about an event can arrive after the answer that followed the event."""
        deadline = time.monotonic() + timeout
        while True:
            for line in list(self.log):
                if text in line:
                    return line
            if time.monotonic() >= deadline:
                raise AssertionError(f"no log line with {text!r} within {timeout:g} s; last lines: "
                                     f"{''.join(self.log[-5:])}")
            time.sleep(0.02)

    def signal(self, sig: int) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(15)

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.prefix:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)
        elif self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
