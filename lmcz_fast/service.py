"""Local-Module-compatible HTTP service: the official module's API, served from an lmcz-fast database.

Till software already speaks to the official Local Module (LM) on 127.0.0.1:5995; this module answers the same
requests under the same names (see docs/service.md for every deviation and guess) and adds the ready-made value of
fiscal tag 1265, the database's age, Prometheus metrics and an audit log of every check.

Two layers:

- `LocalModule` is the protocol: it turns one parsed request (method, path, query, body, three headers) into one
  response. It has no I/O of its own, so the HTTP stack underneath is replaceable (docs/service.md measures three).
- `Server` is the HTTP/1.1 stack that won that measurement: asyncio protocols over `httptools` (the llhttp parser),
  with uvloop when installed. Handling is synchronous — a check is a few microseconds of compiled probe plus an
  LMDB read — so responses are written from the parser callback, in order, and pipelining needs nothing more.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import bisect
import hmac
import json
import logging
import os
import signal
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import httptools

from lmcz_fast._codes import CodeError
from lmcz_fast.receipt import instance_uuid, tag_1265, version_uuid

if TYPE_CHECKING:
    from lmcz_fast.audit import AuditLog
    from lmcz_fast.store import Blocklist, Status

log = logging.getLogger("lmcz_fast.service")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5995
DEFAULT_USER = "admin"
DEFAULT_PASSWORD = "admin"
DEFAULT_MAX_BODY = 1 << 20
DEFAULT_MAX_CODES = 1000
DEFAULT_MAX_CODE_LENGTH = 512
DEFAULT_KEEPALIVE_TIMEOUT = 120.0
DEFAULT_REQUEST_TIMEOUT = 30.0
MAX_HEAD_BYTES = 64 * 1024

ERROR_NOT_READY = 4045
ERROR_SYNC = 4050

_LM_STATUS = {"ready": "ready", "stale": "ready", "expired": "sync_error", "empty": "not_configured"}
_JSON = json.JSONDecoder(strict=False)
_ENCODE = json.JSONEncoder(check_circular=False, separators=(",", ":")).encode
_STALE_LOG_EVERY = 600.0


def software_version() -> str:
    """The installed package's version (the LM's `version` field in /status)."""
    try:
        from importlib.metadata import version

        return version("lmcz-fast")
    except Exception:  # not installed: running from the source tree
        return "0.1.0"


@dataclass(frozen=True)
class ServiceConfig:
    """Everything an operator sets for `serve`. Credentials stay here and are never logged."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    user: str = DEFAULT_USER
    password: str = DEFAULT_PASSWORD
    auth: bool = True
    max_body: int = DEFAULT_MAX_BODY
    max_codes: int = DEFAULT_MAX_CODES
    keepalive_timeout: float = DEFAULT_KEEPALIVE_TIMEOUT
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    status_cache: float = 0.25
    name: str = "lmcz-fast"
    inn: str = ""
    operation_mode: str = "active"

    def __repr__(self) -> str:
        return f"ServiceConfig(host={self.host!r}, port={self.port}, user={self.user!r}, password=<hidden>)"


class HttpError(Exception):
    """A request the service refuses: HTTP status, a stable slug, a sentence, and extra JSON fields."""

    def __init__(self, status: int, error: str, description: str, /, **extra: Any) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description
        self.extra = extra


@dataclass(slots=True)
class Response:
    status: int
    body: bytes
    headers: bytes = b""
    content_type: bytes = b"application/json; charset=utf-8"
    close: bool = False


# -- metrics --------------------------------------------------------------------------------------------------

LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class Metrics:
    """Counters and a latency histogram, rendered in the Prometheus text format on scrape.

    Updating costs a dict increment and a bisect per request; everything else is computed when scraped.
    """

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str], int] = {}
        self.latency_counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0
        self.codes_checked = 0
        self.codes_blocked = 0
        self.connections_total = 0
        self.started = time.time()

    def observe(self, endpoint: str, outcome: str, seconds: float) -> None:
        key = (endpoint, outcome)
        self.requests[key] = self.requests.get(key, 0) + 1
        self.latency_counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.latency_sum += seconds

    def render(self, status: Status | None, lm_status: str, extra: dict[str, float] | None = None) -> bytes:
        out = [
            "# HELP lmcz_requests_total HTTP requests by endpoint and outcome.",
            "# TYPE lmcz_requests_total counter",
        ]
        for (endpoint, outcome), count in sorted(self.requests.items()):
            out.append(f'lmcz_requests_total{{endpoint="{endpoint}",outcome="{outcome}"}} {count}')
        out += [
            "# HELP lmcz_request_duration_seconds Time from the request's first byte to its response built.",
            "# TYPE lmcz_request_duration_seconds histogram",
        ]
        running = 0
        for bound, count in zip(LATENCY_BUCKETS, self.latency_counts):
            running += count
            out.append(f'lmcz_request_duration_seconds_bucket{{le="{bound}"}} {running}')
        running += self.latency_counts[-1]
        out.append(f'lmcz_request_duration_seconds_bucket{{le="+Inf"}} {running}')
        out.append(f"lmcz_request_duration_seconds_sum {self.latency_sum:.6f}")
        out.append(f"lmcz_request_duration_seconds_count {running}")
        out += [
            "# HELP lmcz_codes_checked_total Marking codes checked.",
            "# TYPE lmcz_codes_checked_total counter",
            f"lmcz_codes_checked_total {self.codes_checked}",
            "# HELP lmcz_codes_blocked_total Marking codes found blocked.",
            "# TYPE lmcz_codes_blocked_total counter",
            f"lmcz_codes_blocked_total {self.codes_blocked}",
            "# HELP lmcz_connections_total TCP connections accepted.",
            "# TYPE lmcz_connections_total counter",
            f"lmcz_connections_total {self.connections_total}",
        ]
        if status is not None:
            out += [
                "# HELP lmcz_db_version Version of the database being served.",
                "# TYPE lmcz_db_version gauge",
                f"lmcz_db_version {status.version}",
                "# HELP lmcz_db_age_seconds Seconds since the last successful sync or load (-1: never).",
                "# TYPE lmcz_db_age_seconds gauge",
                f"lmcz_db_age_seconds {-1 if status.age is None else round(status.age, 3)}",
                "# HELP lmcz_db_codes Blocked codes in the database.",
                "# TYPE lmcz_db_codes gauge",
                f"lmcz_db_codes {status.codes}",
                "# HELP lmcz_db_gtins Wholly blocked GTINs in the database.",
                "# TYPE lmcz_db_gtins gauge",
                f"lmcz_db_gtins {status.gtins}",
                "# HELP lmcz_db_state Freshness of the database (1 for the current state).",
                "# TYPE lmcz_db_state gauge",
            ]
            for state in ("ready", "stale", "expired", "empty"):
                out.append(f'lmcz_db_state{{state="{state}"}} {int(status.state == state)}')
        out += [
            "# HELP lmcz_lm_status Status as the Local Module API reports it (1 for the current one).",
            "# TYPE lmcz_lm_status gauge",
        ]
        for name in ("ready", "initialization", "sync_error", "not_configured"):
            out.append(f'lmcz_lm_status{{status="{name}"}} {int(lm_status == name)}')
        for name, value in sorted((extra or {}).items()):
            out.append(f"# TYPE {name} {'counter' if name.endswith('_total') else 'gauge'}")
            out.append(f"{name} {value}")
        out.append(f"lmcz_uptime_seconds {time.time() - self.started:.1f}")
        return ("\n".join(out) + "\n").encode()


# -- the protocol ---------------------------------------------------------------------------------------------


def _error(status: int, error: str, description: str, /, **extra: Any) -> HttpError:
    return HttpError(status, error, description, **extra)


def _json_media_type(content_type: bytes | None) -> bool:
    if content_type is None:
        return True
    media = content_type.split(b";", 1)[0].strip().lower()
    return media in (b"application/json", b"text/json") or media.endswith(b"+json")


def _query_values(query: bytes | None, name: bytes) -> list[str]:
    """Values of one query parameter, percent-decoded without turning '+' into a space.

    GS1's character set has '+' and no space, so a '+' in a scan is the scan's own character.
    """
    if not query:
        return []
    values = []
    for part in query.split(b"&"):
        key, sep, value = part.partition(b"=")
        if key == name and sep:
            values.append(unquote(value.decode("latin-1"), encoding="utf-8", errors="strict"))
    return values


class LocalModule:
    """The official Local Module's API over a `Blocklist`: one request in, one `Response` out, no I/O.

    `blocklist` needs `check(raw) -> Verdict`, `status() -> Status` and `info() -> dict`; `audit` (optional)
    needs `record(...)`. Not thread-safe: one event loop owns it.
    """

    def __init__(
        self,
        blocklist: Blocklist,
        config: ServiceConfig | None = None,
        *,
        audit: AuditLog | None = None,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.blocklist = blocklist
        self.config = config or ServiceConfig()
        self.audit = audit
        self.metrics = metrics or Metrics()
        self.clock = clock
        self.software_version = software_version()
        self.initialized_at: float | None = None
        self._auth_expected = b"Basic " + base64.b64encode(f"{self.config.user}:{self.config.password}".encode())
        self._status: Status | None = None
        self._lm_status = "not_configured"
        self._status_until = 0.0
        self._last_state: str | None = None
        self._stale_logged_at = 0.0
        self._inst = ""
        self._inst_source: str | None = None
        self._version_uuids: dict[int, str] = {}
        self._routes: dict[bytes, tuple[str, Callable[..., Response], tuple[bytes, ...], bool]] = {}
        for prefix in (b"/api/v1", b"/api/v2"):
            self._routes[prefix + b"/status"] = ("status", self._handle_status, (b"GET",), True)
            self._routes[prefix + b"/init"] = ("init", self._handle_init, (b"POST",), True)
            self._routes[prefix + b"/cis/outcheck"] = ("check", self._handle_check, (b"GET", b"POST"), True)
            self._routes[prefix + b"/cis/check"] = ("check", self._handle_check, (b"GET", b"POST"), True)
        self._routes[b"/metrics"] = ("metrics", self._handle_metrics, (b"GET",), False)

    # -- identity of the instance and the database version (fiscal tag 1265) ----------------------------------

    def _instance_uuid(self, instance_id: str) -> str:
        if instance_id != self._inst_source:
            self._inst = instance_uuid(instance_id)
            self._inst_source = instance_id
            self._version_uuids.clear()
        return self._inst

    def version_uuid(self, instance_id: str, db_version: int) -> str:
        """The UUID sent as `version` (and `Ver=` of tag 1265) for one database version of one instance.

        The official module sends a UUID there; ours is derived (UUIDv5) from the instance and the integer
        version, so it is stable, the same in every process serving that version, and mappable back.
        """
        inst = self._instance_uuid(instance_id)
        found = self._version_uuids.get(db_version)
        if found is None:
            found = version_uuid(instance_id, db_version)
            self._version_uuids[db_version] = found
        return found

    # -- status ---------------------------------------------------------------------------------------------

    def current_status(self, force: bool = False) -> tuple[Status, str]:
        """The store's `Status` and the LM status it maps to, re-read at most every `status_cache` seconds."""
        now = time.monotonic()
        if force or self._status is None or now >= self._status_until:
            status = self.blocklist.status()
            lm = _LM_STATUS.get(status.state, "sync_error")
            if lm == "not_configured" and self.initialized_at is not None:
                lm = "initialization"
            self._status, self._lm_status = status, lm
            self._status_until = now + self.config.status_cache
            self._log_transition(status, now)
        assert self._status is not None
        return self._status, self._lm_status

    def _log_transition(self, status: Status, now: float) -> None:
        age = "never synced" if status.age is None else f"last sync {status.age / 3600:.1f} h ago"
        if status.state != self._last_state:
            level = logging.INFO if status.state == "ready" else logging.WARNING
            log.log(level, "database state %s -> %s (version %d, %s)", self._last_state, status.state,
                    status.version, age)
            self._last_state = status.state
            self._stale_logged_at = now
        elif status.state in ("stale", "expired") and now - self._stale_logged_at >= _STALE_LOG_EVERY:
            log.warning("database is %s: version %d, %s; checks %s", status.state, status.version, age,
                        "still served" if status.state == "stale" else "refused (4050)")
            self._stale_logged_at = now

    def _require_ready(self) -> Status:
        status, lm = self.current_status()
        if lm == "ready":
            return status
        if lm == "sync_error":
            raise _error(400, "sync_error", "no successful sync within the offline limit: checks are refused",
                         errorCode=ERROR_SYNC, status=lm)
        raise _error(400, lm, "the local module is not configured or still initialising: no database loaded",
                     errorCode=ERROR_NOT_READY, status=lm)

    # -- dispatch ---------------------------------------------------------------------------------------------

    def handle(
        self,
        method: bytes,
        path: bytes,
        query: bytes | None,
        body: bytes,
        authorization: bytes | None,
        client_id: bytes | None,
        content_type: bytes | None,
        started: float | None = None,
    ) -> Response:
        """Answer one request. Never raises for anything a client can send."""
        started = time.perf_counter() if started is None else started
        endpoint = "other"
        try:
            key = path.rstrip(b"/").lower() or b"/"
            route = self._routes.get(key)
            if route is None:
                raise _error(404, "not_found", "no such endpoint")
            endpoint, handler, methods, needs_auth = route
            if needs_auth and self.config.auth and not self._authorized(authorization):
                raise _error(401, "unauthorized", "missing or wrong credentials (HTTP Basic)")
            if method not in methods:
                raise _error(405, "method_not_allowed", f"use {' or '.join(m.decode() for m in methods)}",
                             allow=b", ".join(methods).decode())
            response = handler(method, query, body, client_id, content_type)
            outcome = "ok"
        except HttpError as exc:
            response = self._error_response(exc)
            outcome = exc.error
        except Exception:
            log.exception("internal error on %s %s", method.decode("latin-1"), endpoint)
            response = self._error_response(_error(500, "internal_error", "internal error; see the service log"))
            outcome = "internal_error"
        self.metrics.observe(endpoint, outcome, time.perf_counter() - started)
        return response

    def _authorized(self, header: bytes | None) -> bool:
        if header is None:
            return False
        if hmac.compare_digest(header, self._auth_expected):
            return True
        scheme, _, token = header.strip().partition(b" ")
        if scheme.lower() != b"basic":
            return False
        try:
            user, sep, password = base64.b64decode(token.strip(), validate=True).partition(b":")
        except (binascii.Error, ValueError):
            return False
        ok_user = hmac.compare_digest(user, self.config.user.encode())
        ok_password = hmac.compare_digest(password, self.config.password.encode())
        return bool(sep) and ok_user and ok_password

    def _error_response(self, exc: HttpError) -> Response:
        body: dict[str, Any] = {"code": exc.extra.get("errorCode", exc.status), "error": exc.error,
                                "description": exc.description}
        headers = b""
        for name, value in exc.extra.items():
            if name == "allow":
                headers += b"Allow: " + value.encode() + b"\r\n"
            else:
                body[name] = value
        if exc.status == 401:
            headers += b'WWW-Authenticate: Basic realm="lmcz-fast", charset="UTF-8"\r\n'
        body["reqTimestamp"] = int(self.clock() * 1000)
        return Response(exc.status, _ENCODE(body).encode(), headers,
                        close=exc.status in (413, 431))

    def _json_body(self, body: bytes, content_type: bytes | None) -> Any:
        if not _json_media_type(content_type):
            raise _error(415, "unsupported_media_type", "send the body as application/json")
        if not body:
            raise _error(400, "empty_body", "the request has no JSON body")
        try:
            return _JSON.decode(body.decode("utf-8-sig"))
        except UnicodeDecodeError as exc:
            raise _error(400, "bad_encoding", f"the body is not UTF-8 (byte {exc.start})") from None
        except ValueError as exc:
            raise _error(400, "bad_json", f"malformed JSON: {exc}") from None

    # -- endpoints --------------------------------------------------------------------------------------------

    def _handle_status(self, method: bytes, query: bytes | None, body: bytes, client_id: bytes | None,
                       content_type: bytes | None) -> Response:
        status, lm = self.current_status(force=True)
        info = self.blocklist.info()
        inst = self._instance_uuid(str(info.get("instance_id", "")))
        updated = info.get("updated_at")
        payload = {
            "status": lm,
            "operationMode": self.config.operation_mode,
            "version": self.software_version,
            "dbVersion": status.version,
            "lastSync": None if status.last_sync_at is None else int(status.last_sync_at * 1000),
            "lastUpdate": None if updated is None else int(updated * 1000),
            "inst": inst,
            "inn": self.config.inn,
            "name": self.config.name,
            "serviceUrl": status.feed_url or "",
            "requiresDownload": status.state == "empty",
            "dbState": status.state,
            "dbAge": None if status.age is None else round(status.age, 3),
            "nextSync": None if status.next_sync_at is None else int(status.next_sync_at * 1000),
            "codes": status.codes,
            "gtins": status.gtins,
            "initialized": self.initialized_at is not None,
        }
        return Response(200, _ENCODE(payload).encode())

    def _handle_init(self, method: bytes, query: bytes | None, body: bytes, client_id: bytes | None,
                     content_type: bytes | None) -> Response:
        data = self._json_body(body, content_type)
        token = data.get("token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token.strip():
            raise _error(400, "bad_request", 'expected {"token": "<participant token>"}')
        first = self.initialized_at is None
        self.initialized_at = self.clock()
        if first:
            log.info("init received (token not stored; the database comes from `lmcz-fast sync`)")
        status, lm = self.current_status(force=True)
        payload = {"code": 0, "description": "ok", "status": lm, "reqTimestamp": int(self.clock() * 1000)}
        return Response(200, _ENCODE(payload).encode())

    def _handle_metrics(self, method: bytes, query: bytes | None, body: bytes, client_id: bytes | None,
                        content_type: bytes | None) -> Response:
        try:
            status, lm = self.current_status(force=True)
        except Exception:
            log.exception("status unavailable for /metrics")
            status, lm = None, "sync_error"
        extra = self.audit.metrics() if self.audit is not None else None
        return Response(200, self.metrics.render(status, lm, extra), content_type=b"text/plain; version=0.0.4")

    def _raw_codes(self, method: bytes, query: bytes | None, body: bytes, content_type: bytes | None) -> list[Any]:
        if method == b"POST" and (body or content_type is not None):
            data = self._json_body(body, content_type)
            raws = data.get("cis_list") if isinstance(data, dict) else None
            if not isinstance(raws, list):
                raise _error(400, "bad_request", 'expected {"cis_list": ["<code>", ...]}')
        else:
            try:
                raws = _query_values(query, b"cis")
            except UnicodeDecodeError:
                raise _error(400, "bad_encoding", "a cis parameter is not percent-encoded UTF-8") from None
        if not raws:
            raise _error(400, "no_codes", "no codes given: POST {\"cis_list\": [...]} or GET ?cis=...")
        if len(raws) > self.config.max_codes:
            raise _error(413, "too_many_codes", f"at most {self.config.max_codes} codes per request",
                         limit=self.config.max_codes)
        return raws

    def _handle_check(self, method: bytes, query: bytes | None, body: bytes, client_id: bytes | None,
                      content_type: bytes | None) -> Response:
        raws = self._raw_codes(method, query, body, content_type)
        now = self.clock()
        req_ms = int(now * 1000)
        req_id = str(uuid.uuid4())
        client = client_id.decode("utf-8", "replace") if client_id else None
        audit = self.audit
        try:
            status = self._require_ready()
        except HttpError as exc:
            if audit is not None:
                audit.record(req_id, req_ms, client, None, exc.error, [(str(r)[:64], None) for r in raws])
            exc.extra["reqId"] = req_id
            raise
        check = self.blocklist.check
        max_len = DEFAULT_MAX_CODE_LENGTH
        verdicts = []
        for index, raw in enumerate(raws):
            try:
                if not isinstance(raw, str):
                    raise CodeError(f"item {index} is {type(raw).__name__}, not a string")
                if len(raw) > max_len:
                    raise CodeError(f"longer than {max_len} characters")
                verdicts.append(check(raw))
            except CodeError as exc:
                if audit is not None:
                    audit.record(req_id, req_ms, client, status.version, "invalid_code",
                                 [(str(r)[:64], None) for r in raws])
                raise _error(400, "invalid_code", f"cis_list[{index}] is not a marking code: {exc}",
                             index=index, reason=getattr(exc, "reason", "invalid"), reqId=req_id) from None
        first = verdicts[0]
        inst = self._instance_uuid(first.instance_id)
        version = self.version_uuid(first.instance_id, first.db_version)
        blocked = 0
        codes = []
        for v in verdicts:
            block = v.block
            if block is not None:
                blocked += 1
                block_json: Any = {"authority": block.authority, "reason": block.reason, "since": block.since,
                                   "scope": block.scope}
                ogvs = [block.authority] if block.authority else []
            else:
                block_json = None
                ogvs = []
            codes.append({
                "cis": v.cis, "printView": v.cis, "gtin": v.gtin, "groupIds": [],
                "found": True, "valid": True, "verified": True, "realizable": True, "utilised": True,
                "sold": False, "isBlocked": v.blocked, "ogvs": ogvs, "isGreyGtin": False, "block": block_json,
            })
        self.metrics.codes_checked += len(verdicts)
        self.metrics.codes_blocked += blocked
        if audit is not None:
            audit.record(req_id, req_ms, client, first.db_version, "ok", [(v.cis, v.blocked) for v in verdicts])
        payload = {
            "code": 0,
            "description": "ok",
            "reqId": req_id,
            "reqTimestamp": req_ms,
            "inst": inst,
            "version": version,
            "isCheckedOffline": True,
            "codes": codes,
            "tag1265": tag_1265(req_id, req_ms, inst, version),
            "dbVersion": first.db_version,
            "dbAge": None if first.db_age is None else round(first.db_age, 3),
            "dbState": status.state,
        }
        return Response(200, _ENCODE(payload).encode())


# -- the HTTP/1.1 server --------------------------------------------------------------------------------------

_REASONS = {200: b"OK", 400: b"Bad Request", 401: b"Unauthorized", 404: b"Not Found", 405: b"Method Not Allowed",
            408: b"Request Timeout", 413: b"Content Too Large", 415: b"Unsupported Media Type",
            431: b"Request Header Fields Too Large", 500: b"Internal Server Error", 503: b"Service Unavailable"}


class _Clock:
    """The Date header, formatted once a second rather than per response."""

    __slots__ = ("second", "header")

    def __init__(self) -> None:
        self.second = -1
        self.header = b""

    def date(self) -> bytes:
        now = int(time.time())
        if now != self.second:
            self.second = now
            self.header = b"Date: " + formatdate(now, usegmt=True).encode() + b"\r\n"
        return self.header


class _Connection(asyncio.Protocol):
    """One client connection: feeds bytes to llhttp, answers each complete request at once, in order."""

    __slots__ = ("server", "app", "parser", "transport", "url", "headers_size", "authorization", "client_id",
                 "content_type", "expect", "body", "body_size", "reject", "started", "in_message",
                 "last_activity", "closing")

    def __init__(self, server: Server) -> None:
        self.server = server
        self.app = server.app
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.in_message = False
        self.closing = False
        self.last_activity = time.monotonic()
        self._reset()

    def _reset(self) -> None:
        self.url = b""
        self.headers_size = 0
        self.authorization: bytes | None = None
        self.client_id: bytes | None = None
        self.content_type: bytes | None = None
        self.expect = False
        self.body: list[bytes] = []
        self.body_size = 0
        self.reject: HttpError | None = None
        self.started = 0.0

    # asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server.connections.add(self)
        self.app.metrics.connections_total += 1
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.transport = None

    def pause_writing(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self.closing:
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        self.last_activity = time.monotonic()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(_error(400, "bad_http", "protocol upgrades are not supported"))
        except httptools.HttpParserError as exc:
            self._fail(_error(400, "bad_http", f"malformed HTTP request: {exc}"))
            return
        if self.reject is not None and self.in_message and not self.closing:
            self._fail(self.reject)

    def timed_out(self, now: float) -> bool:
        """Idle keep-alive connections, and requests not complete `request_timeout` after their first byte
        (however slowly they trickle in), are closed."""
        if self.in_message:
            if time.perf_counter() - self.started > self.server.config.request_timeout:
                self._fail(_error(408, "request_timeout", "the request did not arrive in time"))
                return True
        elif now - self.last_activity > self.server.config.keepalive_timeout:
            if self.transport is not None:
                self.transport.close()
            return True
        return False

    # httptools callbacks

    def on_message_begin(self) -> None:
        self._reset()
        self.in_message = True
        self.started = time.perf_counter()

    def on_url(self, url: bytes) -> None:
        self.url += url
        self.headers_size += len(url)
        if self.headers_size > MAX_HEAD_BYTES and self.reject is None:
            self.reject = _error(431, "head_too_large", f"request line and headers exceed {MAX_HEAD_BYTES} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers_size += len(name) + len(value) + 4
        if self.headers_size > MAX_HEAD_BYTES:
            if self.reject is None:
                self.reject = _error(431, "head_too_large",
                                     f"request line and headers exceed {MAX_HEAD_BYTES} bytes")
            return
        lname = name.lower()
        if lname == b"authorization":
            self.authorization = value
        elif lname == b"x-clientid":
            self.client_id = value[:64]
        elif lname == b"content-type":
            self.content_type = value
        elif lname == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                declared = 0
            if declared > self.server.config.max_body and self.reject is None:
                self.reject = _error(413, "body_too_large",
                                     f"the body exceeds {self.server.config.max_body} bytes",
                                     limit=self.server.config.max_body)
        elif lname == b"expect" and value.lower() == b"100-continue":
            self.expect = True

    def on_headers_complete(self) -> None:
        if self.expect and self.reject is None and self.transport is not None:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, data: bytes) -> None:
        self.body_size += len(data)
        if self.body_size > self.server.config.max_body:
            if self.reject is None:
                self.reject = _error(413, "body_too_large", f"the body exceeds {self.server.config.max_body} bytes",
                                     limit=self.server.config.max_body)
            self.body = []
            return
        self.body.append(data)

    def on_message_complete(self) -> None:
        self.in_message = False
        if self.closing or self.transport is None:
            return
        if self.reject is not None:
            self._fail(self.reject)
            return
        parsed = httptools.parse_url(self.url)
        body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
        response = self.app.handle(self.parser.get_method(), parsed.path, parsed.query, body, self.authorization,
                                   self.client_id, self.content_type, self.started)
        keep_alive = self.parser.should_keep_alive() and not response.close and not self.server.draining
        self._write(response, keep_alive)
        self.body = []
        self.authorization = None

    # writing

    def _write(self, response: Response, keep_alive: bool) -> None:
        transport = self.transport
        if transport is None:
            return
        head = [
            b"HTTP/1.1 ", str(response.status).encode(), b" ", _REASONS.get(response.status, b"Error"),
            b"\r\nServer: lmcz-fast\r\nContent-Type: ", response.content_type,
            b"\r\nContent-Length: ", str(len(response.body)).encode(), b"\r\n",
            self.server.clock.date(), response.headers,
        ]
        if not keep_alive:
            head.append(b"Connection: close\r\n")
        elif self.parser.get_http_version() == "1.0":
            head.append(b"Connection: keep-alive\r\n")
        head.append(b"\r\n")
        head.append(response.body)
        transport.write(b"".join(head))
        if not keep_alive:
            self.closing = True
            transport.close()

    def _fail(self, exc: HttpError) -> None:
        """Answer a request the parser or the limits refused, then close: the stream is out of step."""
        if self.closing or self.transport is None:
            return
        self.app.metrics.observe("http", exc.error, time.perf_counter() - self.started if self.started else 0.0)
        self._write(self.app._error_response(exc), keep_alive=False)


class Server:
    """The HTTP/1.1 server around a `LocalModule`. `start()` binds; `close()` drains and stops."""

    def __init__(self, app: LocalModule, config: ServiceConfig | None = None, *, backlog: int = 4096) -> None:
        self.app = app
        self.config = config or app.config
        self.backlog = backlog
        self.connections: set[_Connection] = set()
        self.clock = _Clock()
        self.draining = False
        self._server: asyncio.base_events.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self.port: int | None = None

    async def start(self, sock: socket.socket | None = None) -> None:
        loop = asyncio.get_running_loop()
        if sock is not None:
            self._server = await loop.create_server(lambda: _Connection(self), sock=sock, backlog=self.backlog)
        else:
            self._server = await loop.create_server(lambda: _Connection(self), self.config.host, self.config.port,
                                                    backlog=self.backlog, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]
        self._sweeper = loop.create_task(self._sweep())

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for conn in list(self.connections):
                conn.timed_out(now)

    async def close(self, grace: float = 2.0) -> None:
        """Stop accepting, let connections finish the request they are in, then close them all."""
        self.draining = True
        if self._server is not None:
            self._server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        deadline = time.monotonic() + grace
        while any(c.in_message for c in self.connections) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.close()
        if self._server is not None:
            await self._server.wait_closed()


def install_uvloop() -> bool:
    """Use uvloop's event loop when it is installed (measured faster; see docs/service.md)."""
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


def run(
    db_path: str | os.PathLike[str],
    config: ServiceConfig,
    *,
    audit_dir: str | os.PathLike[str] | None = None,
    retention_days: int = 100,
    flush_interval: float = 0.5,
    use_uvloop: bool = True,
    ready: Callable[[int], None] | None = None,
) -> None:
    """Serve in the foreground until SIGTERM or SIGINT, then drain connections and flush the audit log."""
    from lmcz_fast.audit import AuditLog
    from lmcz_fast.store import Blocklist

    if use_uvloop:
        install_uvloop()
    blocklist = Blocklist.open(db_path)
    audit = AuditLog(audit_dir, retention_days=retention_days, flush_interval=flush_interval) if audit_dir else None
    app = LocalModule(blocklist, config, audit=audit)
    server = Server(app)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await server.start()
        status, lm = app.current_status()
        log.info("serving %s on http://%s:%d (status %s, version %d, %d codes, %d gtins; auth %s; audit %s)",
                 db_path, config.host, server.port, lm, status.version, status.codes, status.gtins,
                 f"user {config.user!r}" if config.auth else "OFF", audit_dir or "OFF")
        if config.auth and config.password == DEFAULT_PASSWORD:
            log.warning("using the default password; set one with --password-file")
        if ready is not None:
            ready(server.port or 0)
        await stop.wait()
        log.info("shutting down: draining %d connections", len(server.connections))
        await server.close()

    try:
        asyncio.run(main())
    finally:
        if audit is not None:
            audit.close()
            log.info("audit log flushed and closed")
        blocklist.close()
