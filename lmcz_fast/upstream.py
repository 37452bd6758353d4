"""HTTP to upstream servers (the feed, CRPT's True API), through a proxy when the store has one: the project's one
HTTP client layer, on httpx.

Why httpx: it is the maintained Python HTTP client with both a blocking client (the feed's `sync` and `mirror`
run in plain threads) and an asyncio one (the till's checker) over one connection core (httpcore), with HTTP
proxies, proxy Basic auth and CONNECT tunnels for https built in. aiohttp has no blocking client and urllib3 no
asyncio one, so either would leave two HTTP stacks in the project again. httpx's timeouts are per phase; that does
not matter here: the checker's hard deadline is enforced from outside the client (the caller waits on the request
with a timeout and cancels it), and a cancelled request closes its connection (httpcore never returns a half-read
connection to its pool).

Proxies (`ProxyConfig`): an explicit proxy (`--proxy http://proxy.shop.local:3128`) with credentials read from a
file (`--proxy-auth-file`, one line `user:password`; never on the command line, where `ps` shows it), or the usual
environment variables `https_proxy`/`HTTPS_PROXY`, `http_proxy`/`HTTP_PROXY`, `all_proxy`/`ALL_PROXY` and
`no_proxy`/`NO_PROXY` (host names, domain suffixes, IP addresses, CIDR networks, `*`; NO_PROXY applies to an explicit
proxy too). http:// targets are forwarded by the proxy, https:// ones tunnelled (CONNECT), so TLS to the upstream
stays end to end.

What the async client (`HttpClient`) adds to httpx for the till: one httpx client per event loop (connections
belong to the loop that opened them), keep-alive reuse with a request on a reused connection that the server had
closed retried once, a DNS answer cache for direct connections (a stalling resolver costs a till at most one check;
a stale answer is used if the resolver fails), a cap on the body size, and typed errors (`UpstreamError`,
`ProxyAuthError`) that say whether the proxy or the server failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import ipaddress
import json
import logging
import os
import socket
import ssl
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import anyio.abc
import anyio.streams.tls
import anyio.to_thread
import h11
import httpcore
import httpx

from .secret_files import first_line

# httpx imports its connection core, and anyio its asyncio backend, on first use: that is ~60-200 ms on this project's
# machines, which would land on a till's first check (its deadline is 1.5 s). Import them with this module instead.
importlib.import_module("anyio._backends._asyncio")
del anyio, h11, httpcore

__all__ = [
    "HttpClient",
    "HttpResponse",
    "ProxyAuthError",
    "ProxyConfig",
    "ProxyConfigError",
    "ProxyRoute",
    "SyncHttpClient",
    "UpstreamError",
]

log = logging.getLogger("lmcz_fast.upstream")

USER_AGENT = "lmcz-fast/0.1"
_REDIRECTS = (301, 302, 303, 307, 308)


# --------------------------------------------------------------------------------------------------------------------
# Errors


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


# --------------------------------------------------------------------------------------------------------------------
# Proxy configuration


@dataclass(frozen=True)
class ProxyRoute:
    """The proxy one request goes through: its URL (without credentials) and the Basic credentials, if any."""

    url: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def auth(self) -> tuple[str, str] | None:
        return None if self.username is None else (self.username, self.password or "")

    def describe(self) -> str:
        return self.url + (f" (as {self.username})" if self.username is not None else "")


_ENV_NAMES = {"http": ("http_proxy", "HTTP_PROXY"), "https": ("https_proxy", "HTTPS_PROXY"),
              "all": ("all_proxy", "ALL_PROXY"), "no": ("no_proxy", "NO_PROXY")}


def _env(kind: str, environ: Mapping[str, str]) -> str | None:
    for name in _ENV_NAMES[kind]:
        value = environ.get(name, "").strip()
        if value:
            return value
    return None


def _split_proxy_url(text: str, where: str) -> tuple[str, str | None, str | None]:
    """A proxy URL (scheme optional, default http) -> (URL without credentials, user, password)."""
    raw = text.strip()
    if "://" not in raw:
        raw = "http://" + raw
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError as exc:
        raise ProxyConfigError(f"{where}: not a proxy URL: {text!r} ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ProxyConfigError(f"{where}: a proxy URL is http://HOST:PORT or https://HOST:PORT, not {text!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ProxyConfigError(f"{where}: a proxy URL has no path or query: {text!r}")
    host = parts.hostname
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    user = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    return urlunsplit((parts.scheme, netloc, "", "", "")), user, password


def read_auth_file(path: str | os.PathLike[str]) -> tuple[str, str]:
    """`user:password` from the first line of `path` (the password may hold ':'; the line end, a BOM and trailing
    spaces are not part of it: `secret_files.first_line`, which also warns when others may read the file)."""
    try:
        line = first_line(path, "proxy credentials file")
    except OSError as exc:
        raise ProxyConfigError(f"cannot read the proxy credentials file {os.fspath(path)}: "
                               f"{exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ProxyConfigError(f"the proxy credentials file {os.fspath(path)} is not UTF-8 text") from None
    user, sep, password = line.partition(":")
    if not sep or not user:
        raise ProxyConfigError(f"the proxy credentials file {os.fspath(path)} must hold one line user:password")
    return user, password


def _bypass(host: str, port: int, no_proxy: str | None) -> bool:
    """Whether NO_PROXY names `host` (exact name, domain suffix with or without a leading dot, IP, CIDR, `*`)."""
    if not no_proxy:
        return False
    host = host.strip("[]").lower().rstrip(".")
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for entry in no_proxy.replace(" ", ",").split(","):
        entry = entry.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        name, entry_port = entry, None
        if entry.startswith("[") and "]" in entry:  # [v6]:port
            name, _, rest = entry[1:].partition("]")
            entry_port = rest[1:] if rest.startswith(":") else None
        elif entry.count(":") == 1:
            name, entry_port = entry.split(":")
        if entry_port is not None and entry_port.isdigit() and int(entry_port) != port:
            continue
        if address is not None:
            try:
                if address in ipaddress.ip_network(name, strict=False):
                    return True
            except ValueError:
                pass
            continue
        name = name.lstrip("*").lstrip(".").rstrip(".")
        if name and (host == name or host.endswith("." + name)):
            return True
    return False


@dataclass(frozen=True)
class ProxyConfig:
    """Which proxy upstream requests use.

    `url`: an explicit proxy for http and https targets (None: take it from the environment when `trust_env`).
    `username`/`password`: its Basic credentials (`from_options` reads them from a file); they also apply to a
    proxy taken from the environment, unless that URL carries its own. `trust_env`: read the proxy variables
    (`https_proxy`, `http_proxy`, `all_proxy`, `no_proxy`, upper or lower case). `ProxyConfig.direct()` uses none.
    """

    url: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    trust_env: bool = True

    def __post_init__(self) -> None:
        if self.url is not None:
            clean, user, password = _split_proxy_url(self.url, "proxy")
            object.__setattr__(self, "url", clean)
            if user is not None and self.username is None:
                object.__setattr__(self, "username", user)
                object.__setattr__(self, "password", password or "")

    @classmethod
    def direct(cls) -> ProxyConfig:
        """No proxy at all, whatever the environment says."""
        return cls(trust_env=False)

    @classmethod
    def from_options(cls, url: str | None = None, auth_file: str | os.PathLike[str] | None = None,
                     *, trust_env: bool = True) -> ProxyConfig:
        """What the command line gives: `--proxy URL` and `--proxy-auth-file PATH`.

        A password inside the URL is refused: a command line is visible to every user of the machine (`ps`).
        """
        if url is not None:
            _clean, _user, password = _split_proxy_url(url, "--proxy")
            if password is not None:
                raise ProxyConfigError("--proxy must not carry a password (the command line is visible to other "
                                       "users); put user:password in a file and give it with --proxy-auth-file")
        user = password = None
        if auth_file is not None:
            user, password = read_auth_file(auth_file)
        return cls(url=url, username=user, password=password, trust_env=trust_env)

    def route(self, url: str, environ: Mapping[str, str] | None = None) -> ProxyRoute | None:
        """The proxy a request to `url` goes through, or None for a direct connection."""
        env = os.environ if environ is None else environ
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        host = parts.hostname or ""
        port = parts.port or (443 if scheme == "https" else 80)
        if self.trust_env and _bypass(host, port, _env("no", env)):
            return None
        if self.url is not None:
            return ProxyRoute(self.url, self.username, self.password)
        if not self.trust_env:
            return None
        raw = _env(scheme, env) if scheme in ("http", "https") else None
        raw = raw or _env("all", env)
        if raw is None:
            return None
        clean, user, password = _split_proxy_url(raw, f"the {scheme}_proxy environment variable")
        if user is None and self.username is not None:
            user, password = self.username, self.password
        return ProxyRoute(clean, user, password)

    def describe(self) -> str:
        """For logs: where requests go, without the password."""
        if self.url is not None:
            return ProxyRoute(self.url, self.username).describe()
        return "proxy from the environment" if self.trust_env else "direct"


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


# --------------------------------------------------------------------------------------------------------------------
# The asyncio client (True API, Local Module)


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


# --------------------------------------------------------------------------------------------------------------------
# The blocking client (feed sync and mirror)


@dataclass
class StreamedResponse:
    """An open response: status, headers (lower-case names), and its body as raw chunks (no decoding)."""

    status: int
    headers: Mapping[str, str]
    url: str
    _response: httpx.Response = field(repr=False)
    _route: ProxyRoute | None = field(repr=False)

    def iter_raw(self, chunk_size: int) -> Iterator[bytes]:
        try:
            yield from self._response.iter_raw(chunk_size)
        except httpx.HTTPError as exc:
            raise _transport_error(exc, self.url, self._route, True) from exc


class SyncHttpClient:
    """Blocking GETs through `ProxyConfig` with httpx: one pooled client per upstream route, redirects followed
    (each hop routed on its own, so NO_PROXY applies to where a redirect points), `timeout` seconds per phase
    (connect, each read, each write). Use as a context manager."""

    def __init__(self, proxy: ProxyConfig | None = None, *, timeout: float = 30.0, max_redirects: int = 5,
                 user_agent: str = USER_AGENT) -> None:
        self.proxy = proxy if proxy is not None else ProxyConfig()
        self.timeout = timeout
        self.max_redirects = max_redirects
        self.user_agent = user_agent
        self._clients: dict[str | None, httpx.Client] = {}
        self._ssl: ssl.SSLContext | None = None

    def __enter__(self) -> SyncHttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _client(self, route: ProxyRoute | None) -> httpx.Client:
        key = route.url if route is not None else None
        client = self._clients.get(key)
        if client is None:
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            proxy = None
            if route is not None:
                proxy = httpx.Proxy(route.url, auth=route.auth,
                                    ssl_context=self._ssl if route.url.startswith("https:") else None)
            client = self._clients[key] = httpx.Client(
                proxy=proxy, verify=self._ssl, trust_env=False, timeout=self.timeout, follow_redirects=False,
                headers={"User-Agent": self.user_agent})
        return client

    @contextlib.contextmanager
    def get(self, url: str, headers: Mapping[str, str] | None = None) -> Iterator[StreamedResponse]:
        """GET `url` and yield the open response (any status). Raises `UpstreamError` on transport trouble,
        `ProxyAuthError` on HTTP 407 from the proxy."""
        for _hop in range(self.max_redirects + 1):
            route = self.proxy.route(url)
            client = self._client(route)
            try:
                request = client.build_request("GET", url, headers=dict(headers or {}))
                response = client.send(request, stream=True)
            except httpx.HTTPError as exc:
                raise _transport_error(exc, url, route, False) from exc
            try:
                if _refused_by_proxy(response.status_code, response.headers, route, url):
                    assert route is not None
                    raise _auth_error(route, response.status_code)
                location = response.headers.get("location")
                if response.status_code in _REDIRECTS and location:
                    url = str(httpx.URL(url).join(location))
                    continue
                yield StreamedResponse(response.status_code, {k.lower(): v for k, v in response.headers.items()},
                                       url, response, route)
                return
            finally:
                response.close()
        raise UpstreamError("dropped", f"{url}: more than {self.max_redirects} redirects")

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()
