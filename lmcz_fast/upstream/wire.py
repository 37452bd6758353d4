"""What both clients share on the wire: the User-Agent they send, and how httpx's transport errors and a
proxy's refusals become an `UpstreamError` that names the failing side."""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from .errors import ProxyAuthError, UpstreamError
from .proxies import ProxyRoute

USER_AGENT = "lmcz-fast/0.1"


def _proxy_error(exc: httpx.ProxyError, route: ProxyRoute) -> UpstreamError:
    """httpcore raises ProxyError("407 Proxy Authentication Required") when the proxy refuses a CONNECT."""
    text = str(exc)
    head = text.split(" ", 1)[0]
    status = int(head) if head.isdigit() else None
    if status == 407 or (status == 401 and route.username is not None):
        return _auth_error(route, status)
    what = f"answered HTTP {text}" if status is not None else f"failed: {text or type(exc).__name__}"
    return UpstreamError("proxy", f"the proxy {route.url} {what}", status=status)


def _refused_by_proxy(status: int, headers: Mapping[str, str], route: ProxyRoute | None, url: str) -> bool:
    """Whether a response to a forwarded (plain http) request is the proxy refusing us: 407, or 401 with our proxy
    credentials and no `Via` header (the proxy's own answer, not a relayed one: tinyproxy answers wrong
    credentials so). An https request goes through a CONNECT tunnel: its response is the server's own, and the
    proxy's refusal came earlier, as the answer to CONNECT (`httpx.ProxyError`)."""
    if route is None or not url.lower().startswith("http:"):
        return False
    return status == 407 or (status == 401 and route.username is not None and "via" not in headers)


def _auth_error(route: ProxyRoute, status: int | None = 407) -> ProxyAuthError:
    said = "407 Proxy Authentication Required" if status == 407 else f"{status}"
    if route.username is None:
        message = (f"the proxy {route.url} asks for credentials (HTTP {said}); give them in a file with "
                   f"--proxy-auth-file (one line user:password)")
    else:
        message = (f"the proxy {route.url} refused the credentials of user {route.username!r} (HTTP {said}); "
                   f"check the proxy credentials file")
    return ProxyAuthError("proxy_auth", message, status=status)


def _transport_error(exc: httpx.HTTPError, url: str, route: ProxyRoute | None, started: bool) -> UpstreamError:
    """An httpx transport error -> an UpstreamError that names the failing side."""
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.ProxyError) and route is not None:
        return _proxy_error(exc, route)
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
        if route is not None:
            return UpstreamError("proxy", f"cannot connect through the proxy {route.url} to {url}: {detail}")
        return UpstreamError("connect", f"cannot connect to {url}: {detail}")
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamError("timeout", f"{url}: timed out ({type(exc).__name__})", started=started)
    return UpstreamError("dropped", f"{url}: {detail} ({type(exc).__name__})", started=started)
