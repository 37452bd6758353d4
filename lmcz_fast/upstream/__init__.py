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

The parts, one job each: `errors.py` (the typed errors), `proxies.py` (which proxy a request goes through:
`ProxyConfig`, NO_PROXY, the credentials file), `wire.py` (what both clients share: the User-Agent, and httpx's
errors and a proxy's refusals as `UpstreamError`), `async_client.py` (`HttpClient`: the till's checker, the True
API) and `blocking_client.py` (`SyncHttpClient`: the feed's `sync` and `mirror`).
"""

from __future__ import annotations

from .async_client import HttpClient, HttpResponse
from .blocking_client import StreamedResponse, SyncHttpClient
from .errors import ProxyAuthError, ProxyConfigError, UpstreamError
from .proxies import ProxyConfig, ProxyRoute, read_auth_file
from .wire import USER_AGENT

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
