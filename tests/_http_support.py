"""A plain HTTP client for tests that run `lmcz-fast serve` as a process: one call with Basic credentials, its
status and body (an error status is an answer too, not an exception)."""

from __future__ import annotations

import base64
import urllib.error
import urllib.request


def basic_auth(user: str, password: str) -> str:
    """The Authorization header's value for `user`:`password`."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def call(port: int, path: str, auth: str, body: bytes | None = None) -> tuple[int, bytes]:
    """GET `path` (POST with a JSON `body`) on loopback `port` with `auth`: (status, body)."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body,
                                     headers={"Authorization": auth, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
