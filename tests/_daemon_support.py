"""Starting an external daemon (nginx, tinyproxy) on a free loopback port, and stopping it."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable

Process = subprocess.Popen  # of bytes


def stop_process(proc: Process | None) -> None:
    """Terminate `proc` if it still runs (kill it if it has not exited 10 s later) and reap it."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def start_on_free_port(launch: Callable[[int], Process], stop: Callable[[Process], None] = stop_process, *,
                       attempts: int = 5, timeout: float = 10.0) -> tuple[int, Process] | None:
    """`launch(port)` a daemon on a port that was free a moment before, and wait until it accepts connections on
    127.0.0.1. Another process may take the port in between (the daemon then exits or never listens): that
    attempt is stopped with `stop` and another port tried, `attempts` times in all. Returns the port and the
    process, or None when no attempt worked (the caller says why, from the daemon's own log)."""
    for _ in range(attempts):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        proc = launch(port)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return port, proc
            except OSError:
                time.sleep(0.02)
        stop(proc)
    return None
