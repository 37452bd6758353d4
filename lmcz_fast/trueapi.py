"""Online client for CRPT's True API permissive-mode check, and the small HTTP/1.1 client it runs on.

Why an own HTTP/1.1 client over asyncio streams rather than aiohttp or httpx: the till's rule is a *hard* 1.5 s over
DNS, connect, TLS and read, and that is enforced by the caller (`Checker`) waiting on an asyncio task with a
deadline, which works the same whatever the client is; what the client must add is (a) no runtime dependency
beyond the standard library (aiohttp/httpx are not project dependencies), (b) keep-alive connections reused across
checks and closed — never returned to the pool — when a request is cancelled half-way, (c) a DNS answer cache so a
stalling resolver costs the till at most one check, and (d) no thread or socket per call. httpx's sync client only
offers per-phase timeouts (not one deadline over the whole exchange); aiohttp would do, at the cost of a dependency
and of ~2.5x the client time per keep-alive round trip on loopback (42 vs 111 us, benches/bench_checker.py
`test_http_client_vs_aiohttp`).

Protocol facts (CRPT's methodological recommendations as integrators quote them, see ../shared/domain.md):
`GET {cdn}/api/v4/true-api/cdn/info` (X-API-KEY) -> `{code, description, hosts: [{host}]}`;
`GET {host}/api/v4/true-api/cdn/health/check` -> `{code, avgTimeMs}`; hosts ranked by `avgTimeMs`, a failing host
set aside for 15 minutes, the list refreshed every 6 hours; `POST {host}/api/v4/true-api/codes/check` with
`{"codes": [...], "fiscalDriveNumber": ...}` -> `{code, description, reqId, reqTimestamp, codes: [...]}`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import socket
import ssl
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "CDN_URL",
    "CheckResponse",
    "HostState",
    "HttpClient",
    "HttpResponse",
    "TrueApiClient",
    "TrueApiError",
]

log = logging.getLogger("lmcz_fast.trueapi")

CDN_URL = "https://cdn.crpt.ru"
INFO_PATH = "/api/v4/true-api/cdn/info"
HEALTH_PATH = "/api/v4/true-api/cdn/health/check"
CHECK_PATH = "/api/v4/true-api/codes/check"

_USER_AGENT = "lmcz-fast/0.1"


class TrueApiError(Exception):
    """The online check gave no usable answer.

    `kind` says why, in a word a log or metric can group on: "connect" (DNS, TCP or TLS failed), "dropped" (the
    connection closed before a full response), "http" (an HTTP status other than 200; `status` holds it),
    "throttled" (429), "bad_response" (not JSON, or not the True API's shape), "api" (the envelope's `code` is not 0),
    "no_hosts" (discovery found no host to ask), "timeout" (a standalone call ran out of time).
    """

    def __init__(self, kind: str, message: str, *, host: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.host = host
        self.status = status


# --------------------------------------------------------------------------------------------------------------------
# HTTP/1.1 over asyncio streams


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class _Dropped(ConnectionError):
    """The peer closed the connection before a complete response; `started` says whether any byte arrived."""

    def __init__(self, message: str, *, started: bool) -> None:
        super().__init__(message)
        self.started = started


class _Conn:
    __slots__ = ("reader", "writer", "idle_since", "loop")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0
        self.loop = asyncio.get_running_loop()

    def usable(self, now: float, idle_timeout: float) -> bool:
        return (
            not self.writer.is_closing()
            and not self.reader.at_eof()
            and now - self.idle_since < idle_timeout
        )

    def close(self) -> None:
        if not self.loop.is_closed():  # a closed loop can no longer run the transport's close callbacks
            self.writer.close()


_PoolKey = tuple[asyncio.AbstractEventLoop, str, str, int]


class HttpClient:
    """A keep-alive HTTP/1.1 client for a handful of hosts, usable from several event loops at once.

    Connections belong to the loop that opened them (asyncio transports cannot move between loops), so the idle
    pool is keyed by loop. A request that fails or is cancelled part-way closes its connection instead of returning
    it: a half-read response must never be mistaken for the next request's answer.
    """

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None = None,
        idle_timeout: float = 30.0,
        max_idle_per_host: int = 4,
        dns_ttl: float = 300.0,
        max_body: int = 8 << 20,
    ) -> None:
        self._ssl = ssl_context
        self.idle_timeout = idle_timeout
        self.max_idle_per_host = max_idle_per_host
        self.dns_ttl = dns_ttl
        self.max_body = max_body
        self._idle: dict[_PoolKey, list[_Conn]] = {}
        self._busy: set[_Conn] = set()
        self._dns: dict[tuple[str, int], tuple[float, list[tuple[Any, ...]]]] = {}
        self.connects = 0

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
    ) -> HttpResponse:
        """Send one request and read the whole response. Raises `ConnectionError` or `OSError` on transport trouble.

        A request that fails on a *reused* connection before any byte of the response arrived is retried once on a
        fresh connection: the server may have closed an idle keep-alive connection just as we sent on it.
        """
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        host = parts.hostname
        port = parts.port or (443 if scheme == "https" else 80)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host_header = host if parts.port is None else f"{host}:{port}"
        if ":" in host and not host.startswith("["):
            host_header = f"[{host}]" if parts.port is None else f"[{host}]:{port}"
        lines = [f"{method} {target} HTTP/1.1", f"Host: {host_header}", f"User-Agent: {_USER_AGENT}"]
        for name, value in (headers or {}).items():
            if "\r" in name or "\n" in name or "\r" in value or "\n" in value:
                raise ValueError(f"header {name!r} holds a line break")
            lines.append(f"{name}: {value}")
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        payload = head + body if body is not None else head

        loop = asyncio.get_running_loop()
        key: _PoolKey = (loop, scheme, host, port)
        conn = self._take_idle(key, loop.time())
        reused = conn is not None
        while True:
            if conn is None:
                conn = await self._connect(scheme, host, port)
                reused = False
            self._busy.add(conn)
            keep = False
            retry = False
            try:
                conn.writer.write(payload)
                await conn.writer.drain()
                response, keep = await self._read_response(conn.reader, method)
            except (ConnectionError, OSError) as exc:
                if not reused or (isinstance(exc, _Dropped) and exc.started):
                    raise
                retry = True
            finally:
                self._busy.discard(conn)
                if not keep:
                    conn.close()
            if retry:
                conn = None
                continue
            conn.idle_since = loop.time()
            self._give_back(key, conn)
            return response

    def _take_idle(self, key: _PoolKey, now: float) -> _Conn | None:
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if conn.usable(now, self.idle_timeout):
                return conn
            conn.close()
        return None

    def _give_back(self, key: _PoolKey, conn: _Conn) -> None:
        idle = self._idle.setdefault(key, [])
        if len(idle) >= self.max_idle_per_host:
            conn.close()
        else:
            idle.append(conn)

    async def _resolve(self, host: str, port: int) -> list[tuple[Any, ...]]:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            return [(None, host, port)]
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
        addrs = [(family, sockaddr[0], sockaddr[1]) for family, _t, _p, _c, sockaddr in infos]
        self._dns[(host, port)] = (now + self.dns_ttl, addrs)
        return addrs

    async def _connect(self, scheme: str, host: str, port: int) -> _Conn:
        addrs = await self._resolve(host, port)
        tls = self._ssl_context() if scheme == "https" else None
        error: OSError | None = None
        for family, address, addr_port in addrs:
            try:
                reader, writer = await asyncio.open_connection(
                    address,
                    addr_port,
                    ssl=tls,
                    server_hostname=host if tls is not None else None,
                    family=family or 0,
                )
            except OSError as exc:
                error = exc
                continue
            self.connects += 1
            return _Conn(reader, writer)
        assert error is not None
        raise error

    async def _read_response(self, reader: asyncio.StreamReader, method: str) -> tuple[HttpResponse, bool]:
        started = False
        try:
            while True:
                status_line = await reader.readuntil(b"\r\n")
                started = True
                parts = status_line.split(None, 2)
                if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
                    raise _Dropped(f"not an HTTP/1.x status line: {status_line[:80]!r}", started=True)
                status = int(parts[1])
                http10 = parts[0] == b"HTTP/1.0"
                headers: dict[str, str] = {}
                while True:
                    line = await reader.readuntil(b"\r\n")
                    if line == b"\r\n":
                        break
                    name, sep, value = line.decode("latin-1").partition(":")
                    if not sep:
                        raise _Dropped(f"malformed header line {line[:80]!r}", started=True)
                    headers[name.strip().lower()] = value.strip()
                if 100 <= status < 200:
                    continue
                break
            connection = headers.get("connection", "").lower()
            keep = not http10 and "close" not in connection or http10 and "keep-alive" in connection
            if method == "HEAD" or status in (204, 304):
                return HttpResponse(status, headers, b""), keep
            if "chunked" in headers.get("transfer-encoding", "").lower():
                body = await self._read_chunked(reader)
            elif "content-length" in headers:
                length = int(headers["content-length"])
                if length < 0 or length > self.max_body:
                    raise _Dropped(f"Content-Length {length} out of bounds", started=True)
                body = await reader.readexactly(length)
            else:
                body = await reader.read(self.max_body + 1)
                rest = body
                while rest and len(body) <= self.max_body:
                    rest = await reader.read(self.max_body + 1 - len(body))
                    body += rest
                if len(body) > self.max_body:
                    raise _Dropped("response body too large", started=True)
                keep = False
            return HttpResponse(status, headers, body), keep
        except asyncio.IncompleteReadError as exc:
            raise _Dropped("connection closed before the response was complete", started=started) from exc
        except asyncio.LimitOverrunError as exc:
            raise _Dropped("response header line too long", started=True) from exc
        except ValueError as exc:
            raise _Dropped(f"malformed response: {exc}", started=True) from exc

    async def _read_chunked(self, reader: asyncio.StreamReader) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":
                    pass
                return b"".join(chunks)
            total += size
            if total > self.max_body:
                raise _Dropped("response body too large", started=True)
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)

    async def aclose(self) -> None:
        """Close this loop's idle connections (and forget those of loops already closed)."""
        loop = asyncio.get_running_loop()
        writers = []
        for key in list(self._idle):
            if key[0] is loop or key[0].is_closed():
                for conn in self._idle.pop(key):
                    if key[0] is loop:
                        writers.append(conn.writer)
                    conn.close()
        for conn in [c for c in self._busy if c.loop is loop]:
            conn.close()
        for writer in writers:
            try:
                await writer.wait_closed()
            except (OSError, ConnectionError):
                pass

    def idle_connections(self) -> int:
        return sum(len(v) for v in self._idle.values())


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


class TrueApiClient:
    """Asks CRPT's True API whether marking codes may be sold.

    Hosts come from CDN discovery (or `hosts=[...]`, which skips it), ranked by the `avgTimeMs` their health check
    reports; a host that fails, throttles or answers slower than `slow_after` seconds is set aside for `set_aside`
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
        set_aside: float = 900.0,
        slow_after: float = 1.5,
        refresh_every: float = 6 * 3600.0,
        health_timeout: float = 1.0,
        max_codes_per_request: int = 100,
        retry_discovery: float = 30.0,
        http: HttpClient | None = None,
    ) -> None:
        if not api_key:
            raise ValueError("the True API needs an API key (X-API-KEY)")
        self.api_key = api_key
        self.cdn_url = cdn_url.rstrip("/")
        self.fiscal_drive_number = fiscal_drive_number
        self.set_aside = set_aside
        self.slow_after = slow_after
        self.refresh_every = refresh_every
        self.health_timeout = health_timeout
        self.max_codes_per_request = max_codes_per_request
        self.http = http or HttpClient()
        self._static = hosts is not None
        self._hosts: list[HostState] = [HostState(h.rstrip("/")) for h in (hosts or ())]
        self._discovered_at: float | None = time.monotonic() if self._static else None
        self._discovery_failed_at: float | None = None
        self.retry_discovery = retry_discovery
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
                if exc.kind == "api":
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
        except (ConnectionError, OSError) as exc:
            kind = "dropped" if isinstance(exc, _Dropped) else "connect"
            raise TrueApiError(kind, f"{url}: {exc!r}", host=host) from exc
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
