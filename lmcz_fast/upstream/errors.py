"""The errors of the HTTP client layer: what failed (the server, the proxy, the proxy's credentials, a setting)."""

from __future__ import annotations

class UpstreamError(ConnectionError):
    """No complete HTTP response came back. `phase` says where it failed, in a word a log can group on:

    "connect" (DNS, TCP or TLS to the server failed), "proxy" (the proxy could not be reached, or refused or failed
    the tunnel; `status` holds its HTTP status when it answered), "proxy_auth" (the proxy wants other credentials,
    HTTP 407: see `ProxyAuthError`), "dropped" (the connection closed, or the answer was cut or malformed, before a
    complete response), "timeout" (a phase took longer than the client's timeout).
    """

    def __init__(self, phase: str, message: str, *, status: int | None = None, started: bool = False) -> None:
        super().__init__(message)
        self.phase = phase
        self.status = status
        self.started = started


class ProxyAuthError(UpstreamError):
    """The proxy answered 407 Proxy Authentication Required: no credentials given, or the wrong ones."""


class ProxyConfigError(ValueError):
    """A proxy setting cannot be used (bad URL, unreadable or malformed credentials file)."""
