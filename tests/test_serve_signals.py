"""`serve` under a service manager: sd_notify readiness, SIGHUP reloads the password without dropping connections."""

from __future__ import annotations

import random
import signal
import socket
import time

from _service_support import USER, Client, ServeProcess, auth_header, make_db, make_identity


def _messages(sock: socket.socket, until: str, timeout: float = 15.0) -> list[str]:
    """Datagrams from the service until one contains `until`."""
    got: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            got.append(sock.recv(4096).decode())
        except TimeoutError:
            break
        if until in got[-1]:
            return got
    raise AssertionError(f"no {until!r} from the service; got {got}")


def test_sd_notify_and_sighup_password_reload(tmp_path, monkeypatch):
    db = make_db(tmp_path / "db", [make_identity(random.Random(3)) for _ in range(10)], synced_ago=5.0)
    notify_path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(notify_path))
        monkeypatch.setenv("NOTIFY_SOCKET", str(notify_path))
        password_file = tmp_path / "password"
        password_file.write_text("first-Pa55\n")
        with ServeProcess(db, password_file=password_file) as served:
            ready = _messages(notify, "READY=1")
            assert any("STATUS=serving version 1" in m for m in ready), ready

            client = Client(served.port, auth_header(USER, "first-Pa55"))
            assert client.request("GET", "/api/v1/status")[0] == 200
            before = client.conn.sock
            assert before is not None

            password_file.write_text("second-Pa55\n")
            served.proc.send_signal(signal.SIGHUP)        # type: ignore[union-attr]
            reload = _messages(notify, "READY=1")
            assert any("RELOADING=1" in m for m in reload), reload
            # The same keep-alive connection: the old password is refused, the new one taken.
            assert client.request("GET", "/api/v1/status")[0] == 401
            client.auth = auth_header(USER, "second-Pa55")
            assert client.request("GET", "/api/v1/status")[0] == 200
            assert client.conn.sock is before, "the connection was dropped by the reload"

            password_file.write_text("\n")                # unreadable: the old password stays in force
            served.proc.send_signal(signal.SIGHUP)        # type: ignore[union-attr]
            _messages(notify, "READY=1")
            assert client.request("GET", "/api/v1/status")[0] == 200
            served.wait_for_log("password not reloaded")
            client.close()

            assert served.signal(signal.SIGTERM) == 0
            assert any("STOPPING=1" in m for m in _messages(notify, "STOPPING=1"))
