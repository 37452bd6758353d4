"""The official Local Module's API over a `Blocklist`: one parsed request in, one `Response` out, no I/O.

It has no sockets of its own, so the HTTP stack underneath (`http.py`) is replaceable (docs/service.md measures three).
This file is the dispatcher and protocol 1 (`/api/v1`); protocol 2's own answers are in `v2.py`, the sold register's
endpoints in `sold.py`, the fields both protocols answer in `answers.py`. A durable write (a sale, `init` with
`clearSold`) answers a `Deferred` that the writer thread resolves once committed.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hmac
import ipaddress
import json
import logging
import time
import uuid
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from .._codes import CodeError
from ..receipt import instance_uuid, version_uuid
from ..store import NoListError
from .config import (
    DEFAULT_MAX_CODE_LENGTH,
    DEFAULT_PASSWORD,
    ERROR_NOT_READY,
    ERROR_SYNC,
    ServiceConfig,
    software_version,
)
from ..store import replication_status
from .answers import code_json, envelope, status_json
from .metrics import Metrics, OncePer
from .page import Activity, PageData, render
from .responses import Deferred, HttpError, Response, Steps, error
from .sold import SoldEndpoints
from .v2 import ProtocolTwo

if TYPE_CHECKING:
    from ..audit import AuditLog
    from ..store import Blocklist, Status, Verdict
    from ..store import Snapshot

log = logging.getLogger("lmcz_fast.service")

_LM_STATUS = {"ready": "ready", "stale": "ready", "expired": "sync_error", "empty": "not_configured"}
_JSON = json.JSONDecoder(strict=False)
_ENCODE = json.JSONEncoder(check_circular=False, separators=(",", ":")).encode
_STALE_LOG_EVERY = 600.0
#: Codes checked between two turns of the event loop: a big request never holds it for long (see http.py).
CHECK_SLICE = 64


def _json_media_type(content_type: bytes | None) -> bool:
    if content_type is None:
        return True
    media = content_type.split(b";", 1)[0].strip().lower()
    return media in (b"application/json", b"text/json") or media.endswith(b"+json")


def clock_behind_text(seconds: float) -> str:
    """The one sentence every surface says about a clock behind the store's own records."""
    return (f"this machine's clock reads {_span(seconds)} before the store's last sync or load: the clock is "
            f"behind (a dead CMOS battery, NTP not running?), and the store's age cannot be measured by it")


def _loopback(host: str) -> bool:
    """Whether `host` (what `serve --host` was given) is reachable only from this machine."""
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _ms(moment: float | None) -> int | None:
    return None if moment is None else int(moment * 1000)


def _utc(moment: float | None) -> str:
    return "-" if moment is None else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(moment))


def _span(seconds: float) -> str:
    """An offline limit in words: '72 h', '90 min', '45 s'."""
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:.0f} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:g} s"


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


class LocalModule(ProtocolTwo, SoldEndpoints):
    """The official Local Module's API over a `Blocklist`: one request in, one `Response` out, no I/O.

    `blocklist` needs `snapshot() -> Snapshot` (each request answers from one), `status() -> Status`,
    `info() -> dict` and `sold` (the sold register); `audit` (optional) needs `record(...)`. Not thread-safe: one
    event loop owns it. A handler that makes a durable write answers a `Deferred` once `start_writer(loop)` was
    called (the server does), else it commits synchronously.
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
        self._nested_json_log = OncePer(log, 60.0)
        self.initialized_at: float | None = None
        self._auth_expected = b""
        self.set_password(self.config.password)
        self._status: Status | None = None
        self._lm_status = "not_configured"
        self._status_until = 0.0
        self._grey_list = False
        self._last_state: str | None = None
        self._stale_logged_at = 0.0
        self._inst = ""
        self._inst_source: str | None = None
        self._version_uuids: dict[int, str] = {}
        self._peer: str | None = None   # the address of the request being handled (for the status page)
        self._routes: dict[bytes, tuple[str, Callable[..., Response | Steps | Deferred], tuple[bytes, ...], bool]] = {}
        for prefix, check in ((b"/api/v1", self._handle_check), (b"/api/v2", self._handle_check_v2)):
            self._routes[prefix + b"/status"] = ("status", self._handle_status, (b"GET",), True)
            self._routes[prefix + b"/init"] = ("init", self._handle_init, (b"POST",), True)
            self._routes[prefix + b"/cis/outcheck"] = ("check", check, (b"GET", b"POST"), True)
            self._routes[prefix + b"/cis/check"] = ("check", check, (b"GET", b"POST"), True)
            self._routes[prefix + b"/cis/sell"] = ("sell", self._handle_sell, (b"POST",), True)
            self._routes[prefix + b"/cis/return"] = ("return", self._handle_return, (b"POST",), True)
            self._routes[prefix + b"/cis/sold"] = ("sold", self._handle_sold, (b"GET",), True)
        self._routes[b"/api/v2/greylist"] = ("greylist", self._handle_grey_list, (b"POST",), True)
        self._routes[b"/metrics"] = ("metrics", self._handle_metrics, (b"GET",), False)
        self._routes[b"/"] = ("page", self._handle_page, (b"GET", b"HEAD"), True)
        self.activity = Activity(clock)
        self.metrics.families.append(self.activity.prometheus_lines)

    def set_password(self, password: str) -> None:
        """Take a new HTTP Basic password from the next request on (serve's SIGHUP); connections stay open."""
        self.config = dataclasses.replace(self.config, password=password)
        self._auth_expected = b"Basic " + base64.b64encode(f"{self.config.user}:{password}".encode())

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
        self._instance_uuid(instance_id)          # a new instance id clears the cache below
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
            self._grey_list = self.blocklist.get_meta("grey_list_enabled", False) is True
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
        if status.clock_behind is not None:
            age = clock_behind_text(status.clock_behind)
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

    def grey_list_enabled(self) -> bool:
        """Whether `isGreyGtin` answers from the grey-GTIN list (`init`/`greyList` `enableGreyList`; a meta field),
        read with the status (at most every `status_cache` seconds; at once after this module changed it)."""
        self.current_status()
        return self._grey_list

    def _require_ready(self) -> Status:
        status, lm = self.current_status()
        if lm == "ready":
            return status
        if lm == "sync_error" and status.clock_behind is not None:
            raise error(400, "sync_error", f"{clock_behind_text(status.clock_behind)}: checks are refused until "
                        "the clock is right", errorCode=ERROR_SYNC, status=lm, offlineLimit=status.expire_after,
                        expiresAt=_ms(status.expires_at), clockBehind=round(status.clock_behind, 3))
        if lm == "sync_error":
            raise error(400, "sync_error",
                        f"no successful sync within the offline limit ({_span(status.expire_after)}): checks are "
                        f"refused since {_utc(status.expires_at)}",
                        errorCode=ERROR_SYNC, status=lm, offlineLimit=status.expire_after,
                        expiresAt=_ms(status.expires_at))
        raise error(400, lm, "the local module is not configured or still initialising: no database loaded",
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
        *,
        peer: str | None = None,
    ) -> Response | Steps | Deferred:
        """Answer one request. Never raises for anything a client can send.

        `peer` is the client's address (the status page names a till by it when it sends no X-ClientId).
        """
        started = time.perf_counter() if started is None else started
        endpoint = "other"
        self._peer = peer
        try:
            key = path.rstrip(b"/").lower() or b"/"
            route = self._routes.get(key)
            if route is None:
                raise error(404, "not_found", "no such endpoint")
            endpoint, handler, methods, needs_auth = route
            if (needs_auth and self.config.auth and not self._authorized(authorization)
                    and not (endpoint == "page" and self._page_authorized(authorization))):
                if authorization is not None:      # wrong credentials; none at all is a browser's challenge
                    self.activity.auth_failed(client_id.decode("utf-8", "replace") if client_id else None, peer)
                raise error(401, "unauthorized", "missing or wrong credentials (HTTP Basic)")
            if method not in methods:
                raise error(405, "method_not_allowed", f"use {' or '.join(m.decode() for m in methods)}",
                             allow=b", ".join(methods).decode())
            self._request_endpoint, self._request_started = endpoint, started
            response = handler(method, query, body, client_id, content_type)
            if isinstance(response, Steps):
                return Steps(self._observed(response, endpoint, started))
            if endpoint in ("status", "init", "sell", "return"):
                self.activity.request(client_id.decode("utf-8", "replace") if client_id else None, peer)
            if isinstance(response, Deferred):
                return response        # observed when resolved, after its commit
            outcome = "ok"
        except HttpError as exc:
            response = self._error_response(exc)
            outcome = exc.error
        except Exception:
            log.exception("internal error on %s %s", method.decode("latin-1"), endpoint)
            response = self._error_response(error(500, "internal_error", "internal error; see the service log"))
            outcome = "internal_error"
        self.metrics.observe(endpoint, outcome, time.perf_counter() - started)
        return response

    def set_page_credentials(self, user: str, password: str) -> None:
        """A read-only login for the status page (GET /) only: a manager reads it without the tills' password."""
        self._page_auth = b"Basic " + base64.b64encode(f"{user}:{password}".encode())

    def _page_authorized(self, header: bytes | None) -> bool:
        expected = getattr(self, "_page_auth", None)
        return header is not None and expected is not None and hmac.compare_digest(header.strip(), expected)

    def needs_auth(self, path: bytes) -> bool:
        """Whether a request to `path` is answered only with valid credentials (so may fail them)."""
        route = self._routes.get(path.rstrip(b"/").lower() or b"/")
        return self.config.auth and route is not None and route[3]

    def request_authorised(self, method: bytes, path: bytes, authorization: bytes | None) -> bool:
        """Whether a request may be answered as far as its credentials go: the one hook the HTTP layer asks on a
        request's headers, before it reads any of its body (`handle` refuses the same requests 401)."""
        return not self.needs_auth(path) or self._authorized(authorization)

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

    def _observed(self, steps: Steps, endpoint: str, started: float) -> Generator[None, None, Response]:
        """An answer worked out in slices, with what `handle` does for a whole one: errors as responses, metrics."""
        try:
            response = yield from steps.slices
            outcome = "ok"
        except HttpError as exc:
            response = self._error_response(exc)
            outcome = exc.error
        except Exception:
            log.exception("internal error on %s", endpoint)
            response = self._error_response(error(500, "internal_error", "internal error; see the service log"))
            outcome = "internal_error"
        self.metrics.observe(endpoint, outcome, time.perf_counter() - started)
        return response

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
            raise error(415, "unsupported_media_type", "send the body as application/json")
        if not body:
            raise error(400, "empty_body", "the request has no JSON body")
        try:
            return _JSON.decode(body.decode("utf-8-sig"))
        except UnicodeDecodeError as exc:
            raise error(400, "bad_encoding", f"the body is not UTF-8 (byte {exc.start})") from None
        except ValueError as exc:
            raise error(400, "bad_json", f"malformed JSON: {exc}") from None
        except RecursionError:
            self._nested_json_log.warning("refused a JSON body of %d bytes nested too deeply (400 bad_json)", len(body))
            raise error(400, "bad_json", "malformed JSON: nested too deeply") from None

    # -- endpoints --------------------------------------------------------------------------------------------

    def _handle_status(self, method: bytes, query: bytes | None, body: bytes, client_id: bytes | None,
                       content_type: bytes | None) -> Response:
        status, lm = self.current_status(force=True)
        info = self.blocklist.info()
        inst = self._instance_uuid(str(info.get("instance_id", "")))
        payload = status_json(
            lm_status=lm, operation_mode=self.config.operation_mode, software_version=self.software_version,
            status=status, info=info, inst=inst, inn=self.config.inn, name=self.config.name,
            grey_list=info.get("grey_list_enabled") is True, sold_count=self.blocklist.sold.count(),
            initialized=self.initialized_at is not None, replication=replication_status(self.blocklist),
        )
        payload["warnings"] = self.warnings()     # what an operator must fix (the status page says it too)
        return Response(200, _ENCODE(payload).encode())

    def _handle_init(self, method: bytes, query: bytes | None, body: bytes, client_id: bytes | None,
                     content_type: bytes | None) -> Response | Deferred:
        data = self._json_body(body, content_type)
        token = data.get("token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token.strip():
            raise error(400, "bad_request", 'expected {"token": "<participant token>"}')
        clear_sold = data.get("clearSold", False)
        grey = data.get("enableGreyList")
        if not isinstance(clear_sold, bool) or not (grey is None or isinstance(grey, bool)):
            raise error(400, "bad_request", "clearSold and enableGreyList must be true or false")
        first = self.initialized_at is None
        self.initialized_at = self.clock()
        if first:
            log.info("init received (token not stored; the database comes from `lmcz-fast sync`)")
        status, lm = self.current_status(force=True)
        payload: dict[str, Any] = {"code": 0, "description": "ok", "status": lm,
                                   "reqTimestamp": int(self.clock() * 1000)}
        if not clear_sold and grey is None:
            return Response(200, _ENCODE(payload).encode())
        register = self.blocklist.sold
        clear = register.op_clear() if clear_sold else None
        meta = register.op_set_meta(grey_list_enabled=grey) if grey is not None else None

        def op(txn: Any) -> int:
            cleared = clear(txn) if clear is not None else 0
            if meta is not None:
                meta(txn)
            return cleared

        def build(cleared: int) -> Response:
            if clear_sold:
                log.info("init with clearSold: %d sold codes forgotten", cleared)
                payload["soldCleared"] = cleared
            if grey is not None:
                payload["enableGreyList"] = grey
            return Response(200, _ENCODE(payload).encode())

        return self._durable(op, build)

    def _handle_metrics(self, method: bytes, query: bytes | None, body: bytes, client_id: bytes | None,
                        content_type: bytes | None) -> Response:
        try:
            status, lm = self.current_status(force=True)
        except Exception:
            log.exception("status unavailable for /metrics")
            status, lm = None, "sync_error"
        extra = dict(self.audit.metrics()) if self.audit is not None else {}
        extra.update(self.sold_metrics())
        cleared = getattr(self.blocklist, "stale_readers_cleared", None)
        replication = replication_status(self.blocklist) if hasattr(self.blocklist, "get_meta") else None
        return Response(200, self.metrics.render(status, lm, extra, stale_readers_cleared=cleared,
                                                 replication=replication),
                        content_type=b"text/plain; version=0.0.4")

    def _handle_page(self, method: bytes, query: bytes | None, body: bytes, client_id: bytes | None,
                     content_type: bytes | None) -> Response:
        """The status page for a person (service/page.py): Russian, or English with `?lang=en`."""
        lang = "en" if _query_values(query, b"lang")[-1:] == ["en"] else "ru"
        status, lm = self.current_status(force=True)
        info = self.blocklist.info()
        now = self.clock()
        counts = {"blocked_codes": status.codes, "blocked_gtins": status.gtins,
                  "min_prices": int(info.get("min_prices") or 0) + int(info.get("group_min_prices") or 0),
                  "grey_gtins": int(info.get("grey_gtins") or 0), "sold": self.blocklist.sold.count()}
        page = PageData(
            state=status.state,
            lm_status=lm,
            now=now,
            version=status.version,
            age=status.age,
            last_sync_at=status.last_sync_at,
            next_sync_at=status.next_sync_at,
            expires_at=status.expires_at,
            source=status.feed_url or (", ".join(info.get("source") or []) or None),
            counts=counts,
            tills=sorted(self.activity.tills.values(), key=lambda t: t.last_request, reverse=True),
            refusals=list(self.activity.refusals),
            rate=self.activity.rate(),
            name=self.config.name,
            software_version=self.software_version,
            warnings=self.warnings(),
            failing=sorted(self.activity.failing.values(), key=lambda t: t.last_failure, reverse=True),
            last_error=self.blocklist.get_meta("sync_last_error"),
            last_error_at=self.blocklist.get_meta("sync_last_error_at"),
        )
        return Response(200, render(page, lang), content_type=b"text/html; charset=utf-8")

    def warnings(self) -> list[str]:
        """What an operator must fix, said on the status page and at start."""
        out = []
        if self.config.auth and self.config.password == DEFAULT_PASSWORD and not _loopback(self.config.host):
            out.append(f"the default password admin:admin is in use while the service listens on "
                       f"{self.config.host}, reachable from the network: set one with `serve --password-file` "
                       f"(пароль по умолчанию при доступе из сети: задайте свой)")
        elif not self.config.auth and not _loopback(self.config.host):
            out.append(f"authentication is off while the service listens on {self.config.host} "
                       f"(проверка пароля отключена при доступе из сети)")
        status = self._status
        if status is not None and status.clock_behind is not None:
            out.append(f"{clock_behind_text(status.clock_behind)}: checks are refused until the clock is right "
                       f"(часы отстают от времени последней синхронизации базы: проверьте время и NTP)")
        return out

    def _check_items(self, method: bytes, query: bytes | None, body: bytes, content_type: bytes | None) -> list[Any]:
        """The `cis_list` of a POST body, or the `cis` parameters of a query; refuses none or too many."""
        if method == b"POST" and (body or content_type is not None):
            data = self._json_body(body, content_type)
            raws = data.get("cis_list") if isinstance(data, dict) else None
            if not isinstance(raws, list):
                raise error(400, "bad_request", 'expected {"cis_list": ["<code>", ...]}')
        else:
            try:
                raws = _query_values(query, b"cis")
            except UnicodeDecodeError:
                raise error(400, "bad_encoding", "a cis parameter is not percent-encoded UTF-8") from None
        if not raws:
            raise error(400, "no_codes", "no codes given: POST {\"cis_list\": [...]} or GET ?cis=...")
        if len(raws) > self.config.max_codes:
            raise error(413, "too_many_codes", f"at most {self.config.max_codes} codes per request",
                         limit=self.config.max_codes)
        return raws

    def _ready_for(self, req_id: str, req_ms: int, client: str | None, raws: list[Any]) -> Status:
        """The store's status if checks may be answered; else the LM's 4045/4050 refusal, audited."""
        self.activity.request(client, self._peer, len(raws))
        try:
            return self._require_ready()
        except HttpError as exc:
            self.activity.refused(str(raws[0]), f"{exc.extra.get('errorCode', exc.status)} {exc.error}: "
                                                f"{exc.description}")
            if self.audit is not None:
                self.audit.record(req_id, req_ms, client, None, exc.error, [(str(r)[:64], None) for r in raws])
            exc.extra["reqId"] = req_id
            raise

    def _pin_version(self) -> Snapshot:
        """The one place a request takes the database version it answers from: a snapshot of the store, which
        checks every code of the request (across the slices of a big one) and names the version sent."""
        return self.blocklist.snapshot()

    def _verdict_steps(self, raws: list[Any], req_id: str, req_ms: int, client: str | None,
                       status: Status, pgs: list[int | None] | None = None) -> Generator[None, None, list[Verdict]]:
        """One `Verdict` per scan, all from one database version, pausing every CHECK_SLICE codes; any scan that
        is not a marking code refuses the whole request (audited). `pgs`: the product group each till sent, or
        None (a group's minimum price applies to its codes)."""
        max_len = DEFAULT_MAX_CODE_LENGTH
        verdicts: list[Verdict] = []
        # One request, one version: every code is answered from one snapshot, which names the version sent. A
        # request dropped between two slices (its client hung up) closes it on the way out.
        with self._pin_version() as view:
            check = view.check
            for index, raw in enumerate(raws):
                if index and not index % CHECK_SLICE:
                    yield
                try:
                    if not isinstance(raw, str):
                        raise CodeError(f"item {index} is {type(raw).__name__}, not a string")
                    if len(raw) > max_len:
                        raise CodeError(f"longer than {max_len} characters")
                    verdicts.append(check(raw, pgs[index] if pgs is not None else None))
                except CodeError as exc:
                    self.activity.refused(str(raw), f"invalid_code: {exc}")
                    if self.audit is not None:
                        self.audit.record(req_id, req_ms, client, view.db_version, "invalid_code",
                                          [(str(r)[:64], None) for r in raws])
                    raise error(400, "invalid_code", f"cis_list[{index}] is not a marking code: {exc}",
                                 index=index, reason=getattr(exc, "reason", "invalid"), reqId=req_id) from None
                except NoListError:
                    raise error(400, "not_configured", "the local module is not configured: no list loaded",
                                errorCode=ERROR_NOT_READY, status="not_configured", reqId=req_id) from None
        for v in verdicts:
            block = v.block
            if block is not None:
                self.activity.refused(v.cis, "blocked" + "".join(f"; {x}" for x in (block.reason, block.authority)
                                                                 if x))
            elif v.sold:
                self.activity.refused(v.cis, "sold")
        return verdicts

    def _verdicts(self, raws: list[Any], req_id: str, req_ms: int, client: str | None,
                  status: Status, pgs: list[int | None] | None = None) -> list[Verdict]:
        """`_verdict_steps` worked at once (protocol 2's envelopes are built per code from the whole list)."""
        steps = self._verdict_steps(raws, req_id, req_ms, client, status, pgs)
        while True:
            try:
                next(steps)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]

    def _handle_check(self, method: bytes, query: bytes | None, body: bytes, client_id: bytes | None,
                      content_type: bytes | None) -> Response | Steps:
        raws = self._check_items(method, query, body, content_type)
        now = self.clock()
        req_ms = int(now * 1000)
        req_id = str(uuid.uuid4())
        client = client_id.decode("utf-8", "replace") if client_id else None
        status = self._ready_for(req_id, req_ms, client, raws)
        steps = self._check_steps(raws, req_id, req_ms, client, status)
        if len(raws) <= CHECK_SLICE:
            return Steps(steps).run()
        return Steps(steps)

    def _check_steps(self, raws: list[Any], req_id: str, req_ms: int, client: str | None,
                     status: Status) -> Generator[None, None, Response]:
        verdicts = yield from self._verdict_steps(raws, req_id, req_ms, client, status)
        first = verdicts[0]
        inst = self._instance_uuid(first.instance_id)
        version = self.version_uuid(first.instance_id, first.db_version)
        grey = self._grey_list          # read with the status `_ready_for` just refreshed
        codes = []
        blocked = 0
        for index, v in enumerate(verdicts):
            if index and not index % CHECK_SLICE:
                yield
            codes.append(code_json(v, None, grey))
            blocked += v.blocked
        self.metrics.codes_checked += len(verdicts)
        self.metrics.codes_blocked += blocked
        if self.audit is not None:
            self.audit.record(req_id, req_ms, client, first.db_version, "ok",
                              [(v.cis, v.blocked) for v in verdicts])
        payload = envelope(req_id, req_ms, inst, version, codes, first, status.state)
        return Response(200, _ENCODE(payload).encode())
