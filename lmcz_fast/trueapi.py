"""Online client for CRPT's True API permissive-mode check.

It runs on the project's one HTTP client layer (`lmcz_fast.upstream`: httpx, with proxies, keep-alive, a DNS answer
cache and typed errors). The till's rule is a *hard* 1.5 s over DNS, connect, TLS and read; that is enforced by the
caller (`Checker`) waiting on an asyncio task with a deadline and cancelling it, which works the same whatever the
client is: a cancelled request closes its connection, it is never returned to the pool half-read.

Protocol facts (CRPT's methodological recommendations as integrators quote them, see docs/protocol.md):
`GET {cdn}/api/v4/true-api/cdn/info` (X-API-KEY) -> `{code, description, hosts: [{host}]}`;
`GET {host}/api/v4/true-api/cdn/health/check` -> `{code, avgTimeMs}`; hosts ranked by `avgTimeMs`, a failing host
set aside for 15 minutes, the list refreshed every 6 hours; `POST {host}/api/v4/true-api/codes/check` with
`{"codes": [...], "fiscalDriveNumber": ...}` -> `{code, description, reqId, reqTimestamp, codes: [...]}`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .upstream import HttpClient, HttpResponse, ProxyConfig, UpstreamError

__all__ = [
    "CDN_URL",
    "CheckResponse",
    "HostState",
    "HttpClient",
    "HttpResponse",
    "ProxyConfig",
    "TrueApiClient",
    "TrueApiError",
]

log = logging.getLogger("lmcz_fast.trueapi")

CDN_URL = "https://cdn.crpt.ru"
INFO_PATH = "/api/v4/true-api/cdn/info"
HEALTH_PATH = "/api/v4/true-api/cdn/health/check"
CHECK_PATH = "/api/v4/true-api/codes/check"


class TrueApiError(Exception):
    """The online check gave no usable answer.

    `kind` says why, in a word a log or metric can group on: "connect" (DNS, TCP or TLS failed), "dropped" (the
    connection closed before a full response), "proxy" (the proxy could not be reached or failed the tunnel),
    "proxy_auth" (the proxy refused the credentials, HTTP 407: no host is set aside, none is tried next), "http" (an HTTP status other than 200; `status` holds it),
    "throttled" (429), "bad_response" (not JSON, or not the True API's shape), "api" (the envelope's `code` is not 0),
    "no_hosts" (discovery found no host to ask), "timeout" (a standalone call ran out of time).
    """

    def __init__(self, kind: str, message: str, *, host: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.host = host
        self.status = status


# --------------------------------------------------------------------------------------------------------------------
# True API


@dataclass
class HostState:
    """What the client knows about one True API host. `aside_until` is on the event loop's monotonic clock."""

    url: str
    avg_time_ms: float | None = None
    rtt_ms: float | None = None
    aside_until: float = 0.0
    last_error: str | None = None
    failures: int = 0

    def rank_key(self) -> tuple[float, float]:
        return (
            self.avg_time_ms if self.avg_time_ms is not None else float("inf"),
            self.rtt_ms if self.rtt_ms is not None else float("inf"),
        )


@dataclass(frozen=True)
class CheckResponse:
    """One `codes/check` answer: the envelope as the API sent it, plus where and how fast it came."""

    code: int
    description: str | None
    req_id: str
    req_timestamp: int
    codes: list[dict[str, Any]]
    host: str
    elapsed: float
    raw: dict[str, Any] = field(repr=False, default_factory=dict)


@dataclass(frozen=True)
class HostPolicy:
    """How `TrueApiClient` ranks and sets aside hosts (seconds): a host that fails, throttles or answers slower than
    `slow_after` is set aside for `set_aside`; `/health` probes wait `health_timeout`; the host list is discovered
    again every `refresh_every`; after a failed first discovery, checks fail at once for `retry_discovery`."""

    set_aside: float = 900.0
    slow_after: float = 1.5
    refresh_every: float = 6 * 3600.0
    health_timeout: float = 1.0
    retry_discovery: float = 30.0


class TrueApiClient:
    """Asks CRPT's True API whether marking codes may be sold.

    Hosts come from CDN discovery (or `hosts=[...]`, which skips it), ranked by the `avgTimeMs` their health check
    reports; the timings are `policy` (a `HostPolicy`): a host that fails, throttles or answers slower than
    `slow_after` seconds is set aside for `set_aside`
    seconds (15 minutes, as the recommendations say) and the next one is asked. When every host is set aside, the
    one due back soonest is asked anyway: a till with one reachable host must not wait 15 minutes. The host list is
    refreshed every `refresh_every` seconds (6 h) in the background; checks keep using the old ranking meanwhile.
    If the very first discovery fails, checks fail at once (no host to ask) for `retry_discovery` seconds rather
    than each waiting on the CDN again.

    The client sets no deadline of its own inside `check_codes`: the caller (the `Checker`) enforces the till's
    hard deadline around it. `try_until` (loop clock) only stops it from *starting* another host after that time.
    """

    def __init__(
        self,
        api_key: str,
        *,
        cdn_url: str = CDN_URL,
        hosts: Sequence[str] | None = None,
        fiscal_drive_number: str | None = None,
        max_codes_per_request: int = 100,
        http: HttpClient | None = None,
        proxy: ProxyConfig | None = None,
        policy: HostPolicy = HostPolicy(),
    ) -> None:
        if not api_key:
            raise ValueError("the True API needs an API key (X-API-KEY)")
        self.api_key = api_key
        self.cdn_url = cdn_url.rstrip("/")
        self.fiscal_drive_number = fiscal_drive_number
        self.policy = policy
        self.set_aside = policy.set_aside
        self.slow_after = policy.slow_after
        self.refresh_every = policy.refresh_every
        self.health_timeout = policy.health_timeout
        self.max_codes_per_request = max_codes_per_request
        self.http = http or HttpClient(proxy=proxy)
        self._static = hosts is not None
        self._hosts: list[HostState] = [HostState(h.rstrip("/")) for h in (hosts or ())]
        self._discovered_at: float | None = time.monotonic() if self._static else None
        self._discovery_failed_at: float | None = None
        self.retry_discovery = policy.retry_discovery
        self._discovery: dict[asyncio.AbstractEventLoop, asyncio.Task[None]] = {}

    # ----- hosts

    def hosts(self) -> list[HostState]:
        """The hosts in the order they would be tried now (a copy)."""
        return [HostState(**vars(h)) for h in self._ranked(time.monotonic())]

    def _ranked(self, now: float) -> list[HostState]:
        ready = sorted((h for h in self._hosts if h.aside_until <= now), key=HostState.rank_key)
        if ready:
            return ready
        return sorted(self._hosts, key=lambda h: h.aside_until)[:1]

    def put_aside(self, host: str, why: str, seconds: float | None = None) -> None:
        for state in self._hosts:
            if state.url == host:
                state.aside_until = time.monotonic() + (self.set_aside if seconds is None else seconds)
                state.last_error = why
                state.failures += 1
                log.warning("True API host %s set aside for %.0f s: %s", host, state.aside_until - time.monotonic(), why)

    def _headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = {"X-API-KEY": self.api_key, "Accept": "application/json"}
        if extra:
            headers.update(extra)
        return headers

    async def discover(self) -> list[HostState]:
        """Fetch the host list from the CDN and rank it by health check; returns the ranking."""
        response = await self._call("GET", self.cdn_url + INFO_PATH, self.cdn_url)
        try:
            payload = response.json()
            code = payload.get("code", 0)
            entries = payload["hosts"]
            urls = [str(e["host"] if isinstance(e, Mapping) else e).rstrip("/") for e in entries]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise TrueApiError("bad_response", f"CDN info is not the expected JSON: {exc}", host=self.cdn_url) from exc
        if code not in (0, None):
            raise TrueApiError("api", f"CDN info answered code {code}: {payload.get('description')}", host=self.cdn_url)
        if not urls:
            raise TrueApiError("no_hosts", "CDN info listed no hosts", host=self.cdn_url)
        old = {h.url: h for h in self._hosts}
        states = [old.get(u) or HostState(u) for u in urls]
        await asyncio.gather(*(self._health(s) for s in states))
        self._hosts = states
        self._discovered_at = time.monotonic()
        log.info("True API hosts: %s", ", ".join(f"{h.url} ({h.avg_time_ms} ms)" for h in self._ranked(time.monotonic())))
        return self.hosts()

    async def _health(self, state: HostState) -> None:
        started = time.monotonic()
        try:
            response = await asyncio.wait_for(
                self.http.request("GET", state.url + HEALTH_PATH, headers=self._headers()), self.health_timeout
            )
            payload = response.json() if response.status == 200 else None
            if not isinstance(payload, Mapping) or payload.get("code", 0) != 0:
                raise TrueApiError("http", f"health check answered HTTP {response.status}: {response.body[:120]!r}")
            avg = payload.get("avgTimeMs")
            state.avg_time_ms = float(avg) if isinstance(avg, (int, float)) else None
            state.rtt_ms = (time.monotonic() - started) * 1000.0
            state.aside_until = 0.0
            state.last_error = None
        except (asyncio.TimeoutError, OSError, ConnectionError, ValueError, TrueApiError) as exc:
            state.aside_until = time.monotonic() + self.set_aside
            state.last_error = f"health check failed: {exc!r}"
            log.warning("True API host %s failed its health check (%r); set aside", state.url, exc)

    async def ensure_hosts(self) -> None:
        """Discover hosts if none are known (awaited); refresh a stale list in the background (not awaited)."""
        if self._static:
            return
        loop = asyncio.get_running_loop()
        task = self._discovery.get(loop)
        if not self._hosts:
            failed = self._discovery_failed_at
            if failed is not None and time.monotonic() - failed < self.retry_discovery:
                raise TrueApiError("no_hosts", f"host discovery failed {time.monotonic() - failed:.0f} s ago; "
                                   f"next try in {self.retry_discovery - (time.monotonic() - failed):.0f} s",
                                   host=self.cdn_url)
            if task is None or task.done():
                task = self._discovery[loop] = loop.create_task(self._first_discovery())
            await asyncio.shield(task)
            return
        if self._discovered_at is not None and time.monotonic() - self._discovered_at > self.refresh_every:
            if task is None or task.done():
                self._discovered_at = time.monotonic()
                self._discovery[loop] = loop.create_task(self._refresh_quietly())

    async def _first_discovery(self) -> None:
        """Discovery with no hosts known yet: a failure makes checks fail fast (not wait for the CDN on every
        scan) for `retry_discovery` seconds."""
        try:
            await self.discover()
        except BaseException:
            self._discovery_failed_at = time.monotonic()
            raise
        self._discovery_failed_at = None

    async def _refresh_quietly(self) -> None:
        try:
            await self.discover()
        except (TrueApiError, OSError, ConnectionError) as exc:
            log.warning("refreshing the True API host list failed: %r; keeping the old list", exc)

    # ----- check

    async def check_codes(
        self,
        codes: Sequence[str],
        *,
        fiscal_drive_number: str | None = None,
        try_until: float | None = None,
        timeout: float | None = None,
        slow_after: float | None = None,
    ) -> CheckResponse:
        """POST `codes/check` to the best host, the next one on failure while `try_until` allows.

        `codes` are full codes as scanned (GS as the 0x1D character; JSON escapes it as \\u001d). At most
        `max_codes_per_request`; split larger batches yourself (`Checker.check_receipt` does). `timeout` (seconds)
        is for standalone use; the `Checker` passes none and enforces its deadline from outside, and passes its
        deadline as `slow_after` so a host that answers after it is set aside.
        """
        if timeout is not None:
            try:
                return await asyncio.wait_for(
                    self.check_codes(codes, fiscal_drive_number=fiscal_drive_number, try_until=try_until,
                                     slow_after=slow_after),
                    timeout,
                )
            except asyncio.TimeoutError:
                raise TrueApiError("timeout", f"no answer within {timeout} s") from None
        if not codes:
            raise ValueError("no codes to check")
        if len(codes) > self.max_codes_per_request:
            raise ValueError(f"at most {self.max_codes_per_request} codes per codes/check request, got {len(codes)}")
        await self.ensure_hosts()
        body: dict[str, Any] = {"codes": list(codes)}
        fdn = fiscal_drive_number or self.fiscal_drive_number
        if fdn:
            body["fiscalDriveNumber"] = fdn
        payload = json.dumps(body, separators=(",", ":")).encode()
        headers = self._headers({"Content-Type": "application/json"})
        tried: set[str] = set()
        last: TrueApiError | None = None
        while True:
            candidates = [h for h in self._ranked(time.monotonic()) if h.url not in tried]
            if not candidates:
                raise last or TrueApiError("no_hosts", "no True API host to ask")
            if tried and try_until is not None and time.monotonic() >= try_until:
                assert last is not None
                raise last
            host = candidates[0].url
            tried.add(host)
            try:
                return await self._check_on(host, payload, headers, self.slow_after if slow_after is None else slow_after)
            except TrueApiError as exc:
                last = exc
                if exc.kind in ("api", "proxy_auth"):
                    raise

    async def _check_on(
        self, host: str, payload: bytes, headers: Mapping[str, str], slow_after: float
    ) -> CheckResponse:
        started = time.monotonic()
        try:
            response = await self._call("POST", host + CHECK_PATH, host, headers=headers, body=payload)
        except asyncio.CancelledError:
            self.put_aside(host, f"no answer within {time.monotonic() - started:.2f} s (cancelled)")
            raise
        except TrueApiError as exc:
            if exc.kind == "proxy_auth":  # the store's proxy settings are wrong, not the host
                raise
            seconds = None
            if exc.kind == "throttled":
                seconds = _retry_after(exc) or None
            self.put_aside(host, str(exc), seconds)
            raise
        elapsed = time.monotonic() - started
        try:
            data = response.json()
            result = CheckResponse(
                code=int(data.get("code", 0)),
                description=data.get("description"),
                req_id=str(data["reqId"]),
                req_timestamp=int(data["reqTimestamp"]),
                codes=[dict(c) for c in data["codes"]],
                host=host,
                elapsed=elapsed,
                raw=data,
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            self.put_aside(host, f"answer is not the True API's JSON: {exc!r}")
            raise TrueApiError("bad_response", f"{host} answered something that is not a codes/check response: "
                               f"{response.body[:120]!r}", host=host) from exc
        if result.code != 0:
            raise TrueApiError("api", f"True API answered code {result.code}: {result.description}", host=host)
        if elapsed > slow_after:
            self.put_aside(host, f"answered in {elapsed:.2f} s (slower than {slow_after} s)")
        return result

    async def _call(
        self, method: str, url: str, host: str, *, headers: Mapping[str, str] | None = None, body: bytes | None = None
    ) -> HttpResponse:
        try:
            response = await self.http.request(method, url, headers=headers or self._headers(), body=body)
        except UpstreamError as exc:
            kind = {"dropped": "dropped", "timeout": "dropped", "proxy": "proxy",
                    "proxy_auth": "proxy_auth"}.get(exc.phase, "connect")
            raise TrueApiError(kind, f"{url}: {exc}", host=host, status=exc.status) from exc
        except (ConnectionError, OSError) as exc:
            raise TrueApiError("connect", f"{url}: {exc!r}", host=host) from exc
        if response.status == 429:
            err = TrueApiError("throttled", f"{url} answered 429 Too Many Requests", host=host, status=429)
            err.retry_after = response.headers.get("retry-after")  # type: ignore[attr-defined]
            raise err
        if response.status != 200:
            raise TrueApiError("http", f"{url} answered HTTP {response.status}: {response.body[:120]!r}",
                               host=host, status=response.status)
        return response

    async def aclose(self) -> None:
        """Close this loop's connections and stop its background discovery."""
        loop = asyncio.get_running_loop()
        task = self._discovery.pop(loop, None)
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        await self.http.aclose()


def _retry_after(exc: TrueApiError) -> float:
    value = getattr(exc, "retry_after", None)
    try:
        return max(0.0, float(value)) if value else 0.0
    except ValueError:
        return 0.0


def split(codes: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(codes), size):
        yield codes[start:start + size]
