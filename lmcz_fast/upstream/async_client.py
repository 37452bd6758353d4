"""The asyncio client (the till's checker, the True API): `HttpClient`, one httpx client per event loop and
upstream, keep-alive with one retry on a connection the server had closed, a DNS answer cache, a body cap."""

from __future__ import annotations

import asyncio
import importlib
import ipaddress
import json
import logging
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio.abc
import anyio.streams.tls
import anyio.to_thread
import h11
import httpcore
import httpx

from .errors import UpstreamError
from .proxies import ProxyConfig, ProxyRoute
from .wire import USER_AGENT, _auth_error, _refused_by_proxy, _transport_error

# httpx imports its connection core, and anyio its asyncio backend, on first use: that is ~60-200 ms on this project's
# machines, which would land on a till's first check (its deadline is 1.5 s). Import them with this module instead.
importlib.import_module("anyio._backends._asyncio")
del anyio, h11, httpcore

log = logging.getLogger("lmcz_fast.upstream")


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class _Trace:
    """httpcore's trace extension: did this attempt open a connection, did the response's head arrive."""

    __slots__ = ("client", "connected", "started")

    def __init__(self, client: HttpClient) -> None:
        self.client = client
        self.connected = False
        self.started = False

    async def __call__(self, event: str, info: Mapping[str, Any]) -> None:
        if event == "connection.connect_tcp.complete":
            self.connected = True
            self.client.connects += 1
        elif event == "http11.receive_response_headers.complete":
            self.started = True


_ClientKey = tuple[asyncio.AbstractEventLoop, str | None, str, str]

#: The TLS context of clients that only speak plain http to their servers (httpx wants one; it is never used).
_NO_TLS = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


class HttpClient:
    """A keep-alive HTTP/1.1 client (httpx) for a handful of hosts, usable from several event loops at once.

    Connections belong to the loop that opened them (asyncio transports cannot move between loops), so there is
    one httpx client per loop and upstream (a direct host, or a proxy). A request that fails or is cancelled
    part-way closes its connection instead of returning it to the pool. `proxy` (default: the environment's)
    routes requests; `ProxyConfig.direct()` for servers on the store's own network. `connects` counts new TCP
    connections (tests and logs).
    """

    def __init__(
        self,
        *,
        proxy: ProxyConfig | None = None,
        ssl_context: ssl.SSLContext | None = None,
        idle_timeout: float = 30.0,
        max_idle_per_host: int = 4,
        dns_ttl: float = 300.0,
        max_body: int = 8 << 20,
    ) -> None:
        self.proxy = proxy if proxy is not None else ProxyConfig()
        self._ssl = ssl_context
        self.idle_timeout = idle_timeout
        self.max_idle_per_host = max_idle_per_host
        self.dns_ttl = dns_ttl
        self.max_body = max_body
        self._clients: dict[_ClientKey, httpx.AsyncClient] = {}
        self._dns: dict[tuple[str, int], tuple[float, list[str]]] = {}
        self.connects = 0

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()  # the system's CAs (a chain's own CA is installed there)
        return self._ssl

    def _client(self, loop: asyncio.AbstractEventLoop, route: ProxyRoute | None, scheme: str,
                host: str) -> httpx.AsyncClient:
        # Direct connections are pooled per host name: they are opened to the address the DNS cache gave, and a
        # connection opened with one TLS server name must never serve another host that shares the address.
        key: _ClientKey = (loop, route.url if route is not None else None, scheme, host if route is None else "")
        client = self._clients.get(key)
        if client is None or client.is_closed:
            proxy = None
            if route is not None:
                proxy = httpx.Proxy(route.url, auth=route.auth,
                                    ssl_context=self._ssl_context() if route.url.startswith("https:") else None)
            client = httpx.AsyncClient(
                proxy=proxy,
                # loading the system's CAs costs ~100 ms: only clients that speak TLS to their servers pay for it
                verify=self._ssl_context() if scheme == "https" else _NO_TLS,
                trust_env=False,  # ProxyConfig decides; and no ~/.netrc or SSL_CERT_FILE surprises
                timeout=None,  # the caller's deadline bounds every request from outside
                follow_redirects=False,
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=self.max_idle_per_host,
                                    keepalive_expiry=self.idle_timeout),
                headers={"User-Agent": USER_AGENT},
            )
            self._clients[key] = client
        return client

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
    ) -> HttpResponse:
        """Send one request and read the whole response. Raises `UpstreamError` (a `ConnectionError`) on transport
        trouble, `ProxyAuthError` when the proxy wants other credentials.

        A request that fails on a *reused* connection before any byte of the response arrived is retried once on a
        fresh connection: the server may have closed an idle keep-alive connection just as we sent on it.
        """
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        for name, value in (headers or {}).items():
            if "\r" in name or "\n" in name or "\r" in value or "\n" in value:
                raise ValueError(f"header {name!r} holds a line break")
        loop = asyncio.get_running_loop()
        route = self.proxy.route(url)
        host = parts.hostname
        if route is not None:
            return await self._send(self._client(loop, route, scheme, host), method, url, url, dict(headers or {}), body,
                                    {}, route)
        port = parts.port or (443 if scheme == "https" else 80)
        try:
            addresses = await self._resolve(host, port)
        except OSError as exc:
            raise UpstreamError("connect", f"cannot resolve {host}: {exc}") from exc
        if not addresses:
            raise UpstreamError("connect", f"cannot resolve {host}: no address")
        client = self._client(loop, None, scheme, host)
        literal = _is_ip(host)
        send_headers = dict(headers or {})
        if not literal:
            send_headers.setdefault("Host", parts.netloc.rpartition("@")[2])
        extensions = {"sni_hostname": host} if scheme == "https" and not literal else {}
        for index, address in enumerate(addresses):
            netloc = (f"[{address}]" if ":" in address else address) + (f":{parts.port}" if parts.port else "")
            target = urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))
            try:
                return await self._send(client, method, target, url, send_headers, body, extensions, None)
            except UpstreamError as exc:
                if exc.phase != "connect" or index + 1 == len(addresses):
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def _send(self, client: httpx.AsyncClient, method: str, target: str, url: str, headers: dict[str, str],
                    body: bytes | None, extensions: dict[str, Any], route: ProxyRoute | None) -> HttpResponse:
        for attempt in (0, 1):
            trace = _Trace(self)
            try:
                async with client.stream(method, target, headers=headers, content=body,
                                         extensions={**extensions, "trace": trace}) as response:
                    trace.started = True
                    if _refused_by_proxy(response.status_code, response.headers, route, target):
                        assert route is not None
                        raise _auth_error(route, response.status_code)
                    chunks = []
                    total = 0
                    async for chunk in response.aiter_bytes():
                        total += len(chunk)
                        if total > self.max_body:
                            raise UpstreamError("dropped", f"{url}: response body larger than {self.max_body} "
                                                "bytes", started=True)
                        chunks.append(chunk)
                    return HttpResponse(response.status_code,
                                        {k.lower(): v for k, v in response.headers.items()}, b"".join(chunks))
            except httpx.HTTPError as exc:
                error = _transport_error(exc, url, route, trace.started)
                reused = not trace.connected
                if attempt == 0 and reused and not trace.started and error.phase in ("dropped", "timeout"):
                    log.debug("%s on a reused connection before any answer; retrying on a fresh one", error)
                    continue
                raise error from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def _resolve(self, host: str, port: int) -> list[str]:
        if _is_ip(host):
            return [host]
        loop = asyncio.get_running_loop()
        now = loop.time()
        cached = self._dns.get((host, port))
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError:
            if cached is not None:
                log.warning("DNS lookup of %s failed; using the cached answer", host)
                return cached[1]
            raise
        addresses = list(dict.fromkeys(str(sockaddr[0]) for _f, _t, _p, _c, sockaddr in infos))
        self._dns[(host, port)] = (now + self.dns_ttl, addresses)
        return addresses

    async def aclose(self) -> None:
        """Close this loop's connections, idle or busy (and forget those of loops already closed)."""
        loop = asyncio.get_running_loop()
        for key in list(self._clients):
            if key[0] is loop:
                await self._clients.pop(key).aclose()
            elif key[0].is_closed():
                del self._clients[key]


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True
