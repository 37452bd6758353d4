"""The official Local Module's API over a `Blocklist`: one parsed request in, one `Response` out, no I/O.

It has no sockets of its own, so the HTTP stack underneath (`http.py`) is replaceable (docs/service.md measures three).
This file is the dispatcher, status, init and config; the check path both protocols share and protocol 1's check
answer are in `checks.py`, protocol 2's own answers in `v2.py`, the sold register's endpoints in `sold.py`, the
fields the answers hold in `answers.py`, who a request is in `auth.py` (`admit` here adds the route's rule). A
durable write (a sale, `init` with `clearSold` or a round request) answers a `Deferred` that the writer thread
resolves once committed.
"""

from __future__ import annotations

import base64
import dataclasses
import hmac
import ipaddress
import json
import logging
import time
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

from ..receipt import instance_uuid, version_uuid
from ..store import wake
from .config import (
    DEFAULT_PASSWORD,
    ERROR_NOT_READY,
    ERROR_SYNC,
    ServiceConfig,
    Token,
    software_version,
)
from ..store import guard as shrink_guard
from ..store import replication_status
from .auth import Credentials
from .checks import CHECK_SLICE, Checks, query_values
from .answers import Identity, ServiceFacts, config_json, public_url, status_json, sync_kind
from .metrics import Metrics, OncePer
from .page import Activity, PageData, render
from .responses import Deferred, HttpError, Response, Steps, error
from .sold import SoldEndpoints
from .v2 import ProtocolTwo

if TYPE_CHECKING:
    from ..audit import AuditLog
    from ..store import Blocklist, Status

log = logging.getLogger("lmcz_fast.service")

_LM_STATUS = {"ready": "ready", "stale": "ready", "expired": "sync_error", "empty": "not_configured"}
_JSON = json.JSONDecoder(strict=False)
_ENCODE = json.JSONEncoder(check_circular=False, separators=(",", ":")).encode
_STALE_LOG_EVERY = 600.0
__all__ = ["CHECK_SLICE", "LocalModule"]


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


class LocalModule(Checks, ProtocolTwo, SoldEndpoints):
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
        self.credentials = Credentials(self.config.user, self.config.password, self.config.tokens, clock)
        #: Who the request being handled authenticated as ("basic:<user>", "token:<label>"), or None.
        self._auth_label: str | None = None
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
        # The last field: who may call it. "required": valid credentials; "optional": anyone, but credentials
        # sent are checked (a wrong one is a 401, throttled); "": anyone.
        self._routes: dict[bytes, tuple[str, Callable[..., Response | Steps | Deferred], tuple[bytes, ...], str]] = {}
        for prefix, check in ((b"/api/v1", self._handle_check), (b"/api/v2", self._handle_check_v2)):
            self._routes[prefix + b"/status"] = ("status", self._handle_status, (b"GET",), "optional")
            self._routes[prefix + b"/config"] = ("config", self._handle_config, (b"GET",), "required")
            self._routes[prefix + b"/init"] = ("init", self._handle_init, (b"POST",), "required")
            self._routes[prefix + b"/cis/outcheck"] = ("check", check, (b"GET", b"POST"), "required")
            self._routes[prefix + b"/cis/check"] = ("check", check, (b"GET", b"POST"), "required")
            self._routes[prefix + b"/cis/sell"] = ("sell", self._handle_sell, (b"POST",), "required")
            self._routes[prefix + b"/cis/return"] = ("return", self._handle_return, (b"POST",), "required")
            self._routes[prefix + b"/cis/sold"] = ("sold", self._handle_sold, (b"GET",), "required")
        self._routes[b"/api/v2/greylist"] = ("greylist", self._handle_grey_list, (b"POST",), "required")
        self._routes[b"/metrics"] = ("metrics", self._handle_metrics, (b"GET",), "")
        self._routes[b"/"] = ("page", self._handle_page, (b"GET", b"HEAD"), "required")
        self.activity = Activity(clock)
        self.metrics.families.append(self.activity.prometheus_lines)

    def set_password(self, password: str) -> None:
        """Take a new HTTP Basic password from the next request on (serve's SIGHUP); connections stay open."""
        self.config = dataclasses.replace(self.config, password=password)
        self.credentials.set_password(password)

    def set_tokens(self, tokens: tuple[Token, ...]) -> None:
        """Take a new set of `Authorization: Token` tokens from the next request on (serve's SIGHUP)."""
        self.config = dataclasses.replace(self.config, tokens=tuple(tokens))
        self.credentials.set_tokens(self.config.tokens)

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
            endpoint, handler, methods, _ = route
            admitted, self._auth_label = self.admit(path, authorization)
            if not admitted:
                if authorization is not None:      # wrong credentials; none at all is a browser's challenge
                    self.activity.auth_failed(client_id.decode("utf-8", "replace") if client_id else None, peer)
                raise error(401, "unauthorized", "missing or wrong credentials (HTTP Basic"
                            + (", or Authorization: Token)" if self.config.tokens else ")"))
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
        """Whether a request to `path` has its credentials checked (so may fail them): every endpoint but
        /metrics (status and config check credentials a client sends, and answer without any)."""
        route = self._routes.get(path.rstrip(b"/").lower() or b"/")
        return self.config.auth and route is not None and bool(route[3])

    def admit(self, path: bytes, authorization: bytes | None) -> tuple[bool, str | None]:
        """The one authentication decision for a request: whether a request to `path` with this `Authorization`
        header may be answered, and who it is ("basic:<user>", "token:<label>", or None: no credentials needed and
        none sent). `handle` calls it; the HTTP layer may call it before reading a body (a refusal is then a 401).

        Every `/api` path needs valid credentials, but `status`: it answers without any (as the official module's
        does) unless `--status-auth`, and checks the ones a client sends (a wrong one is refused). The status page
        also takes its own read-only login (`set_page_credentials`). /metrics needs none; unknown paths are not
        refused here (they are 404s).
        """
        route = self._routes.get(path.rstrip(b"/").lower() or b"/")
        if route is None or not route[3] or not self.config.auth:
            return True, None
        who = self.authenticate(authorization)
        if who is not None:
            return True, who
        if route[0] == "page" and self._page_authorized(authorization):
            return True, "page"
        optional = route[3] == "optional" and authorization is None and not self.config.status_auth
        return optional, None

    def authenticate(self, header: bytes | None) -> str | None:
        """Who an `Authorization` header is ("basic:<user>", "token:<label>") or None: `auth.Credentials`."""
        return self.credentials.authenticate(header)

    def request_authorised(self, method: bytes, path: bytes, authorization: bytes | None) -> bool:
        """Whether a request may be answered as far as its credentials go (`admit`, the one decision `handle` also
        takes): what the HTTP layer asks on a request's headers, before it reads any of its body."""
        return self.admit(path, authorization)[0]

    def _authorized(self, header: bytes | None) -> bool:
        return self.authenticate(header) is not None

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
            if self.config.tokens:
                headers += b'WWW-Authenticate: Token realm="lmcz-fast"\r\n'
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
        instance_id = str(info.get("instance_id", ""))
        inst = self._instance_uuid(instance_id)
        replication = replication_status(self.blocklist)
        identity = Identity(
            operation_mode=self.config.operation_mode, software_version=self.software_version, inst=inst,
            inn=self.config.inn, name=self.config.name,
            service_url=public_url((replication or {}).get("source") or status.feed_url or ""))
        facts = ServiceFacts(
            lm_status=lm, grey_list=info.get("grey_list_enabled") is True, sold_count=self.blocklist.sold.count(),
            initialized=self.initialized_at is not None, replication=replication,
            version_id=self.version_uuid(instance_id, status.version) if status.version else "")
        payload = status_json(status, info, identity, facts)
        payload["roundRequest"] = self._round_request(info, status)
        # What an operator must fix (the status page says it too): only to a client that authenticated, since
        # status answers anyone and a warning such as "the default password is in use" is a key to the door.
        if self._auth_label is not None or not self.config.auth:
            payload["warnings"] = self.warnings()
        return Response(200, _ENCODE(payload).encode())

    def _round_request(self, info: dict[str, Any], status: Status) -> dict[str, Any]:
        """What `init` asked the store's sync or replication loop to do, and whether a loop took it (status)."""
        requested = info.get(wake.META_REQUESTED)
        taken = info.get(wake.META_TAKEN)
        return {
            "kind": sync_kind(self.blocklist, status) or "none",
            "requestedAt": 0 if requested is None else int(float(requested) * 1000),
            "takenAt": 0 if taken is None else int(float(taken) * 1000),
            "pending": wake.pending(info) is not None,
        }

    def _handle_config(self, method: bytes, query: bytes | None, body: bytes, client_id: bytes | None,
                       content_type: bytes | None) -> Response:
        """`GET /api/v{1,2}/config`: a read-only view of the settings, in the official module's field names where
        one was seen in the field (docs/service.md lists which); ours under `lmczFast`. No secret: no password,
        no token, no URL credentials."""
        status, _ = self.current_status(force=True)
        payload = config_json(self.config, status, self.blocklist.info(), replication_status(self.blocklist),
                              sync_kind(self.blocklist, status), self.blocklist.sold.expire_after(),
                              self.software_version)
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
        # On a store that is not ready, init asks its sync or replication loop for a round now (through the store:
        # the loop runs in its own process; store/wake.py), as the official module re-syncs on init.
        kind = sync_kind(self.blocklist, status) if status.state != "ready" else None
        started = kind is not None
        payload["started"] = kind or "none"
        if started:
            payload["description"] = (f"ok; a {kind} round was asked for now (the running `lmcz-fast "
                                      f"{'sync' if kind == 'sync' else 'replicate'} --every` loop of this store "
                                      f"starts it within {wake.POLL:g} s; status roundRequest says when it did)")
        elif status.state != "ready":
            payload["description"] = ("ok; nothing to start: no sync or replication is configured for this store "
                                      "(load a list, or run `lmcz-fast sync` / `lmcz-fast replicate`)")
        if not clear_sold and grey is None and not started:
            return Response(200, _ENCODE(payload).encode())
        register = self.blocklist.sold
        clear = register.op_clear() if clear_sold else None
        fields: dict[str, Any] = {}
        if grey is not None:
            fields["grey_list_enabled"] = grey
        if started:
            fields.update(wake.request_fields("init", self.clock()))
            log.info("init on a %s store: a %s round was asked for now", status.state, kind)
        meta = self.blocklist.op_set_meta(**fields) if fields else None

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
        if hasattr(self.blocklist, "get_meta"):
            extra.update(shrink_guard.metrics(self.blocklist))      # store/guard.py
        return Response(200, self.metrics.render(status, lm, extra, stale_readers_cleared=cleared,
                                                 replication=replication),
                        content_type=b"text/plain; version=0.0.4")

    def _handle_page(self, method: bytes, query: bytes | None, body: bytes, client_id: bytes | None,
                     content_type: bytes | None) -> Response:
        """The status page for a person (service/page.py): Russian, or English with `?lang=en`."""
        lang = "en" if query_values(query, b"lang")[-1:] == ["en"] else "ru"
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
        if hasattr(self.blocklist, "get_meta"):     # a refused full replacement (store/guard.py)
            out += [f"{text} (список не заменён: он сократился бы слишком сильно)"
                    for text in shrink_guard.warnings(self.blocklist)]
        return out
