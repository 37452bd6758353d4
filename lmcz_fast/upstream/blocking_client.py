"""The blocking client (the feed's `sync` and `mirror`): `SyncHttpClient`, GETs with redirects routed hop by hop
and the body streamed raw."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import httpx

from .errors import UpstreamError
from .proxies import ProxyConfig, ProxyRoute
from .wire import USER_AGENT, _auth_error, _refused_by_proxy, _transport_error

_REDIRECTS = (301, 302, 303, 307, 308)


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
