"""Debian's tinyproxy on loopback (a free port, a generated config, optional Basic auth) for the proxy tests, and a
proxy that black-holes (accepts TCP, never answers).

`Tinyproxy.requests` reads what the proxy really relayed from its own log ("GET http://127.0.0.1:P/manifest.json",
"CONNECT localhost:P"), so a test can tell that a request went through it and not around it.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from _daemon_support import start_on_free_port, stop_process

TINYPROXY_CONF = """\
Port {port}
Listen 127.0.0.1
Timeout 30
LogFile "{work}/tinyproxy.log"
LogLevel Info
PidFile "{work}/tinyproxy.pid"
MaxClients 64
Allow 127.0.0.1
DisableViaHeader No
{auth}
"""

_REQUEST = re.compile(r"Request \(file descriptor \d+\): (\S+) (\S+) HTTP/1\.[01]")


def tinyproxy_binary() -> str | None:
    return shutil.which("tinyproxy") or shutil.which("tinyproxy", path="/usr/bin:/usr/sbin:/usr/local/bin")


class Tinyproxy:
    """tinyproxy in the foreground on 127.0.0.1:<free port>, for one `with` block. `auth=(user, password)` turns on
    its Basic auth (`BasicAuth user password`): then requests without those credentials get HTTP 407."""

    def __init__(self, auth: tuple[str, str] | None = None) -> None:
        binary = tinyproxy_binary()
        if binary is None:
            raise FileNotFoundError("tinyproxy is not installed (.ci/run installs Debian's tinyproxy)")
        self.binary = binary
        self.auth = auth
        self.work = Path(tempfile.mkdtemp(prefix="lmcz-tinyproxy-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> str:
        path = self.work / "tinyproxy.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def requests(self) -> list[str]:
        """'METHOD TARGET' of every request the proxy read, in order (407s included: it reads them first)."""
        return [f"{m.group(1)} {m.group(2)}" for m in _REQUEST.finditer(self.log)]

    def wait_for(self, count: int, timeout: float = 5.0) -> list[str]:
        """The requests once at least `count` are logged (the log is written a moment after the answer)."""
        end = time.monotonic() + timeout
        while True:
            seen = self.requests()
            if len(seen) >= count or time.monotonic() > end:
                return seen
            time.sleep(0.02)

    def __enter__(self) -> Tinyproxy:
        auth = f"BasicAuth {self.auth[0]} {self.auth[1]}" if self.auth else ""
        conf = self.work / "tinyproxy.conf"

        def launch(port: int) -> subprocess.Popen[bytes]:
            self.port = port
            conf.write_text(TINYPROXY_CONF.format(port=port, work=self.work, auth=auth))
            with open(self.work / "stderr", "wb") as err:
                self.proc = subprocess.Popen([self.binary, "-d", "-c", str(conf)], stdout=subprocess.DEVNULL,
                                             stderr=err)
            return self.proc

        if start_on_free_port(launch) is not None:
            return self
        stderr = (self.work / "stderr").read_text(errors="replace")
        raise RuntimeError(f"tinyproxy did not start: {stderr[-1000:]} {self.log[-1000:]}")

    def _stop(self) -> None:
        stop_process(self.proc)

    def __exit__(self, *exc: object) -> None:
        self._stop()
        shutil.rmtree(self.work, ignore_errors=True)


class BlackHole:
    """A TCP listener on 127.0.0.1 that accepts connections and never says a word (as a proxy or a server that
    hangs). Accepted sockets are kept open until the block ends; `accepted` counts them."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="black-hole", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            self.accepted.append(conn)

    def __enter__(self) -> BlackHole:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        for conn in self.accepted:
            conn.close()
        self.sock.close()
