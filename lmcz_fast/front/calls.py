"""Blocking calls to the official module off the tills' path: the watchdog's polls and `init`, the outbox's
deliveries (`watchdog.py`, `outbox.py`). Each runs on a thread of its own with a timeout; the tills' checks go
through the forwarder's pool instead.

`OfficialCalls.request` answers `(status, body, seconds)` or raises `CallError` (refused, reset, timed out): the
callers decide what a status means.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Mapping

import httpx

#: Seconds a blocking call may take, per phase (connect, each read, each write).
DEFAULT_TIMEOUT = 5.0


class CallError(ConnectionError):
    """A call that got no HTTP answer: refused, reset, timed out, not HTTP."""


def authorization_of(secret: str | None) -> str | None:
    """The `Authorization` header for the official module from a credentials file's first line: `user:password`
    (HTTP Basic) or a token (`Authorization: Token ...`, recommendations v17). None for no credentials."""
    if not secret:
        return None
    if ":" in secret:
        return "Basic " + base64.b64encode(secret.encode("utf-8")).decode("ascii")
    return "Token " + secret


class OfficialCalls:
    """A small blocking HTTP client to one base URL (the official module, or its database), keep-alive, thread-safe
    (httpx.Client is), never through a proxy (the module is the store's own)."""

    def __init__(self, base_url: str, authorization: str | None = None, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": authorization} if authorization else {}
        self._client = httpx.Client(timeout=timeout, trust_env=False, follow_redirects=False,
                                    headers={"User-Agent": "lmcz-fast-front"})

    def request(self, method: str, path: str, body: bytes | None = None, *, headers: Mapping[str, str] | None = None,
                timeout: float | None = None, auth: bool = True) -> tuple[int, bytes, float]:
        """One request; `(status, body, seconds)`, or `CallError` when no HTTP answer came."""
        sent = dict(self._headers) if auth else {}
        if body is not None:
            sent["Content-Type"] = "application/json"
        sent.update(headers or {})
        started = time.perf_counter()
        try:
            response = self._client.request(method, self.base_url + path, content=body, headers=sent,
                                            timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT)
            data = response.content
        except httpx.HTTPError as exc:
            raise CallError(f"{method} {self.base_url}{path}: {type(exc).__name__}: {exc or 'no answer'}") from None
        return response.status_code, data, time.perf_counter() - started

    def close(self) -> None:
        self._client.close()
