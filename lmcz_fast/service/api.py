"""The official Local Module's API over a `Blocklist`: one parsed request in, one `Response` out, no I/O.

It has no sockets of its own, so the HTTP stack underneath (`http.py`) is replaceable (docs/service.md measures three).
This file is the dispatcher, who may call what (`admit`; who a request is: `auth.py`), status, init, config, metrics
and the status page. The rest are parts the module holds and hands one `Shared` (shared.py: the store, the settings,
the metrics, the audit log, the clock, the request being handled, the status cache): the check path both protocols
share and protocol 1's check answer (`checks.Checks`), protocol 2's own answers (`v2.ProtocolTwo`), the sold
register's endpoints (`sold.SoldEndpoints`) and the durable writes (`durable.DurableWriter`: a sale, `init` with
`clearSold` or a round request, `greyList` answer a `Deferred` that the writer thread resolves once committed).
The fields the answers hold are in `answers.py`.
"""

from __future__ import annotations

import base64
import dataclasses
import hmac
import ipaddress
import logging
import time
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

from ..store import guard as shrink_guard
from ..store import replication_status, wake
from .answers import Identity, ServiceFacts, config_json, public_url, status_json, sync_kind
from .auth import Credentials
from .checks import CHECK_SLICE, Checks, query_values
from .config import DEFAULT_PASSWORD, ServiceConfig, Token, software_version
from .durable import DurableWriter
from .fronting import FRONTED, Fronting
from .metrics import Metrics
from .organisations import Caller, Member, Organisation, Organisations
from .page import Activity, PageData, TillSeen, render
from .responses import Deferred, HttpError, Response, Steps, encode_json, error
from .shared import Shared, clock_behind_text
from .sold import SoldEndpoints
from .v2 import ProtocolTwo

if TYPE_CHECKING:
    import asyncio

    from ..audit import AuditLog
    from ..front import Front
    from ..front.watch import FrontWatch
    from ..store import Blocklist, GroupCommitter, Status

log = logging.getLogger("lmcz_fast.service")

_ENCODE = encode_json
__all__ = ["CHECK_SLICE", "LocalModule", "clock_behind_text"]


def _loopback(host: str) -> bool:
    """Whether `host` (what `serve --host` was given) is reachable only from this machine."""
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class LocalModule:
    """The official Local Module's API over a `Blocklist`: one request in, one `Response` out, no I/O.

    `blocklist` needs `snapshot() -> Snapshot` (each request answers from one), `status() -> Status`,
    `info() -> dict` and `sold` (the sold register); `audit` (optional) needs `record(...)`. Not thread-safe: one
    event loop owns it. A handler that makes a durable write answers a `Deferred` once `start_writer(loop)` was
    called (the server does), else it commits synchronously.

    Built of parts, each handed the one `Shared` (and the parts it uses): `checks` (the check path, protocol 1's
    answer), `v2` (protocol 2's answers), `sold` (the sold register's endpoints), `writer` (durable writes).
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
        self.shared = shared = Shared(blocklist, config or ServiceConfig(), audit, metrics or Metrics(), clock)
        self.blocklist = blocklist
        self.audit = audit
        self.metrics = shared.metrics
        self.clock = clock
        self.activity: Activity = shared.activity
        self.software_version = software_version()
        self.credentials = Credentials(shared.config.user, shared.config.password, shared.config.tokens, clock)
        self.durable = DurableWriter(shared)
        self.checks = Checks(shared)
        self.v2 = ProtocolTwo(shared, self.checks, self.durable)
        self.sold = SoldEndpoints(shared, self.durable)
        #: The organisations served (`serve --organisations`), or None: one organisation, as the official module.
        self.organisations = shared.organisations = (
            Organisations(blocklist, shared.config.organisations, clock) if shared.config.organisations else None)
        # The last field: who may call it. "required": valid credentials; "optional": anyone, but credentials
        # sent are checked (a wrong one is a 401, throttled); "": anyone.
        self._routes: dict[bytes, tuple[str, Callable[..., Response | Steps | Deferred], tuple[bytes, ...], str]] = {}
        for prefix, check in ((b"/api/v1", self.checks.handle_check), (b"/api/v2", self.v2.handle_check)):
            self._routes[prefix + b"/status"] = ("status", self._handle_status, (b"GET",), "optional")
            self._routes[prefix + b"/config"] = ("config", self._handle_config, (b"GET",), "required")
            self._routes[prefix + b"/init"] = ("init", self._handle_init, (b"POST",), "required")
            self._routes[prefix + b"/cis/outcheck"] = ("check", check, (b"GET", b"POST"), "required")
            self._routes[prefix + b"/cis/check"] = ("check", check, (b"GET", b"POST"), "required")
            self._routes[prefix + b"/cis/sell"] = ("sell", self.sold.handle_sell, (b"POST",), "required")
            self._routes[prefix + b"/cis/return"] = ("return", self.sold.handle_return, (b"POST",), "required")
            self._routes[prefix + b"/cis/sold"] = ("sold", self.sold.handle_sold, (b"GET",), "required")
        self._routes[b"/api/v2/greylist"] = ("greylist", self.v2.handle_grey_list, (b"POST",), "required")
        self._routes[b"/metrics"] = ("metrics", self._handle_metrics, (b"GET",), "")
        self._routes[b"/"] = ("page", self._handle_page, (b"GET", b"HEAD"), "required")
        self.metrics.families.append(self.activity.prometheus_lines)
        if self.organisations is not None:
            self.metrics.families.append(self.organisations.prometheus_lines)
        #: In front of the official module (`serve --front`, fronting.py), or None: the service alone.
        self.fronting: Fronting | None = None
        #: In front of the official module: its cross-check, outbox and watchdog (`attach_front_watch`).
        self.front_watch: FrontWatch | None = None

    def attach_front(self, front: Front) -> Fronting:
        """Put this module in front of the official one (`serve --front`): checks, init, sell and return go
        through `front` from now on (service/fronting.py says what a till gets)."""
        self.fronting = Fronting(self.shared, front)
        return self.fronting

    def attach_front_watch(self, watch: FrontWatch) -> None:
        """Show the front's cross-check, outbox and watchdog on status (`front`), the page and /metrics, and send
        every sale and return to its outbox in the sale's own transaction (lmcz_fast/front/watch.py); the
        forwarder's own figures join the `front` object."""
        self.front_watch = watch
        self.sold.outbox = outbox = watch.outbox
        self.metrics.families.append(watch.prometheus_lines)
        if self.fronting is not None:
            watch.sources.insert(0, self.fronting.front.stats)
            if outbox is not None:      # the sale is in the outbox already: the forwarder only wakes it
                self.fronting.sold_sink = lambda kind, body, client_id: outbox.wake()

    @property
    def config(self) -> ServiceConfig:
        """The settings every part reads (replaced whole by `set_password`/`set_tokens`, or by assignment)."""
        return self.shared.config

    @config.setter
    def config(self, config: ServiceConfig) -> None:
        self.shared.config = config

    @property
    def initialized_at(self) -> float | None:
        """When `init` first came, or None."""
        return self.shared.status.initialized_at

    def set_password(self, password: str) -> None:
        """Take a new HTTP Basic password from the next request on (serve's SIGHUP); connections stay open."""
        self.config = dataclasses.replace(self.config, password=password)
        self.credentials.set_password(password)

    def set_tokens(self, tokens: tuple[Token, ...]) -> None:
        """Take a new set of `Authorization: Token` tokens from the next request on (serve's SIGHUP)."""
        self.config = dataclasses.replace(self.config, tokens=tuple(tokens))
        self.credentials.set_tokens(self.config.tokens)

    def set_organisations(self, organisations: tuple[Organisation, ...]) -> str:
        """Serve this set of organisations from the next request on (serve's SIGHUP re-reads the file); open
        connections stay, an organisation that stays keeps its counters and `init` state. Returns what changed."""
        if self.organisations is None:
            raise ValueError("this module was started without organisations (serve --organisations)")
        summary = self.organisations.configure(tuple(organisations))
        self.config = dataclasses.replace(self.config, organisations=tuple(organisations))
        return summary

    # -- the parts' faces the server and the CLI use ----------------------------------------------------------

    def version_uuid(self, instance_id: str, db_version: int) -> str:
        """The UUID sent as `version` (and `Ver=` of tag 1265) for one database version of one instance
        (`Shared.version_uuid`)."""
        return self.shared.version_uuid(instance_id, db_version)

    def version_uuid_for(self, instance_id: str, db_version: int, caller: Caller | None) -> str:
        """`version_uuid`, or the organisation's own for a request of one (`caller`)."""
        return self.shared.version_uuid(instance_id, db_version, caller)

    def current_status(self, force: bool = False) -> tuple[Status, str]:
        """The store's `Status` and the LM status it maps to, re-read at most every `status_cache` seconds."""
        return self.shared.status.current(force)

    def grey_list_enabled(self) -> bool:
        """Whether `isGreyGtin` answers from the grey-GTIN list (`StatusView.grey_list_enabled`)."""
        return self.shared.status.grey_list_enabled()

    def start_writer(self, loop: asyncio.AbstractEventLoop) -> None:
        """Commit durable writes on a writer thread, in batches, answering through `loop` (the server calls
        this when it starts)."""
        self.durable.start(loop)

    def stop_writer(self) -> None:
        """Commit what is queued and stop the writer thread (the server calls this when it closes)."""
        self.durable.stop()

    @property
    def writer(self) -> GroupCommitter | None:
        """The group committer while a server runs one, else None."""
        return self.durable.committer

    def sold_metrics(self) -> dict[str, float]:
        """The sold register's size and its writer's health, for /metrics."""
        return self.sold.metrics()

    def error_response(self, exc: HttpError) -> Response:
        """The JSON answer of an `HttpError` (`Shared.error_response`): what the HTTP layer sends for its own."""
        return self.shared.error_response(exc)

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
        shared = self.shared
        shared.peer = peer
        try:
            key = path.rstrip(b"/").lower() or b"/"
            route = self._routes.get(key)
            if route is None:
                raise error(404, "not_found", "no such endpoint")
            endpoint, handler, methods, _ = route
            admitted, shared.auth_label, shared.caller = self._admitted(route, authorization)
            if not admitted:
                if authorization is not None:      # wrong credentials; none at all is a browser's challenge
                    self.activity.auth_failed(client_id.decode("utf-8", "replace") if client_id else None, peer)
                    if self.organisations is not None:
                        self.organisations.auth_failed(authorization)
                raise error(401, "unauthorized", "missing or wrong credentials (HTTP Basic"
                            + (", or Authorization: Token)" if self.config.tokens else ")"))
            if method not in methods:
                raise error(405, "method_not_allowed", f"use {' or '.join(m.decode() for m in methods)}",
                             allow=b", ".join(methods).decode())
            shared.endpoint, shared.started = endpoint, started
            if self.fronting is not None and endpoint in FRONTED:
                response = self.fronting.handle(endpoint, handler, method, path, query, body, client_id,
                                                content_type)
            else:
                response = handler(method, query, body, client_id, content_type)
            if isinstance(response, Steps):
                return Steps(self._observed(response, endpoint, started))
            if endpoint in ("status", "init", "sell", "return"):
                self.activity.request(client_id.decode("utf-8", "replace") if client_id else None, peer)
                if shared.caller is not None:
                    shared.caller.member.saw(client_id.decode("utf-8", "replace") if client_id else None, peer,
                                             self.clock())
            if isinstance(response, Deferred):
                return response        # observed when resolved, after its commit
            outcome = "ok"
        except HttpError as exc:
            response = self.shared.error_response(exc)
            outcome = exc.error
        except Exception:
            log.exception("internal error on %s %s", method.decode("latin-1"), endpoint)
            response = self.shared.error_response(error(500, "internal_error", "internal error; see the service log"))
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
        return self.shared.config.auth and route is not None and bool(route[3])

    def admit(self, path: bytes, authorization: bytes | None) -> tuple[bool, str | None]:
        """The one authentication decision for a request: whether a request to `path` with this `Authorization`
        header may be answered, and who it is ("basic:<user>", "token:<label>", or None: no credentials needed and
        none sent). `handle` calls it; the HTTP layer may call it before reading a body (a refusal is then a 401).

        Every `/api` path needs valid credentials, but `status`: it answers without any (as the official module's
        does) unless `--status-auth`, and checks the ones a client sends (a wrong one is refused). The status page
        also takes its own read-only login (`set_page_credentials`). /metrics needs none; unknown paths are not
        refused here (they are 404s).
        """
        return self._admitted(self._routes.get(path.rstrip(b"/").lower() or b"/"), authorization)[:2]

    def _admitted(self, route: Any, authorization: bytes | None) -> tuple[bool, str | None, Caller | None]:
        """`admit` and, when several organisations are served, the organisation's `Caller` (None: none)."""
        config = self.shared.config       # (not the `config` property: a call fewer per request)
        if route is None or not route[3] or not config.auth:
            return True, None, None
        organisations = self.organisations
        if organisations is not None:
            caller = organisations.authenticate(authorization)
            if caller is not None:
                return True, caller.auth_label, caller
            member = organisations.page_login(authorization) if route[0] == "page" else None
            if member is not None:
                return True, "page", Caller(member, None, "page")
        else:
            who = self.credentials.authenticate(authorization)
            if who is not None:
                return True, who, None
        if route[0] == "page" and self._page_authorized(authorization):
            return True, "page", None
        optional = route[3] == "optional" and authorization is None and not config.status_auth
        return optional, None, None

    def authenticate(self, header: bytes | None) -> str | None:
        """Who an `Authorization` header is ("basic:<user>", "token:<label>") or None: `auth.Credentials`, or the
        organisations' credentials when several are served."""
        if self.organisations is not None:
            caller = self.organisations.authenticate(header)
            return None if caller is None else caller.auth_label
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
            response = self.shared.error_response(exc)
            outcome = exc.error
        except Exception:
            log.exception("internal error on %s", endpoint)
            response = self.shared.error_response(error(500, "internal_error", "internal error; see the service log"))
            outcome = "internal_error"
        self.metrics.observe(endpoint, outcome, time.perf_counter() - started)
        return response

    # -- endpoints --------------------------------------------------------------------------------------------

    def _handle_status(self, method: bytes, query: bytes | None, body: bytes, client_id: bytes | None,
                       content_type: bytes | None) -> Response:
        status, lm = self.current_status(force=True)
        info = self.blocklist.info()
        instance_id = str(info.get("instance_id", ""))
        caller = self.shared.caller
        member = caller.member if caller is not None else None
        inst = self.shared.instance_uuid(instance_id, caller)
        replication = replication_status(self.blocklist)
        inn, name = (self.config.inn, self.config.name) if member is None else (member.organisation.inn,
                                                                               member.organisation.name)
        initialized_at = self.initialized_at if member is None else member.initialized_at
        if member is not None and lm in ("not_configured", "initialization"):
            lm = "not_configured" if initialized_at is None else "initialization"
        identity = Identity(
            operation_mode=self.config.operation_mode, software_version=self.software_version, inst=inst,
            inn=inn, name=name, service_url=public_url((replication or {}).get("source") or status.feed_url or ""))
        facts = ServiceFacts(
            lm_status=lm, grey_list=info.get("grey_list_enabled") is True, sold_count=self.blocklist.sold.count(),
            initialized=initialized_at is not None, replication=replication,
            version_id=self.version_uuid_for(instance_id, status.version, caller) if status.version else "")
        payload = status_json(status, info, identity, facts)
        payload["roundRequest"] = self._round_request(info, status)
        if self.front_watch is not None:
            payload["front"] = self.front_watch.status()
        # What an operator must fix (the status page says it too): only to a client that authenticated, since
        # status answers anyone and a warning such as "the default password is in use" is a key to the door.
        if self.shared.auth_label is not None or not self.config.auth:
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
        config = self.config
        caller = self.shared.caller
        if caller is not None:      # an organisation sees its own login, tokens and name, nobody else's
            org = caller.member.organisation
            config = dataclasses.replace(config, user=org.user, tokens=org.tokens, name=org.name)
        payload = config_json(config, status, self.blocklist.info(), replication_status(self.blocklist),
                              sync_kind(self.blocklist, status), self.blocklist.sold.expire_after(),
                              self.software_version)
        return Response(200, _ENCODE(payload).encode())

    def _handle_init(self, method: bytes, query: bytes | None, body: bytes, client_id: bytes | None,
                     content_type: bytes | None) -> Response | Deferred:
        data = self.shared.json_body(body, content_type)
        token = data.get("token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token.strip():
            raise error(400, "bad_request", 'expected {"token": "<participant token>"}')
        clear_sold = data.get("clearSold", False)
        grey = data.get("enableGreyList")
        if not isinstance(clear_sold, bool) or not (grey is None or isinstance(grey, bool)):
            raise error(400, "bad_request", "clearSold and enableGreyList must be true or false")
        caller = self.shared.caller
        member = caller.member if caller is not None else None
        first = (self.initialized_at if member is None else member.initialized_at) is None
        if member is None:
            self.shared.status.initialized_at = self.clock()
        else:
            member.initialized_at = self.clock()
        if first and self.fronting is None:
            log.info("init received%s (token not stored; the database comes from `lmcz-fast sync`)",
                     "" if member is None else f" for inn {member.organisation.inn}")
        status, lm = self.current_status(force=True)
        if member is not None and lm == "not_configured":
            lm = "initialization"
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
        clear = register.op_clear(None if member is None else member.owner) if clear_sold else None
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
                log.info("init with clearSold%s: %d sold codes forgotten",
                         "" if member is None else f" of inn {member.organisation.inn}", cleared)
                payload["soldCleared"] = cleared
            if grey is not None:
                payload["enableGreyList"] = grey
            return Response(200, _ENCODE(payload).encode())

        return self.durable.write(op, build)

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
        caller = self.shared.caller
        if caller is not None:
            return self._organisation_page(caller.member, lang)
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
            organisations=self.organisations.rows() if self.organisations is not None else [],
            front=self.front_watch.status() if self.front_watch is not None else None,
        )
        return Response(200, render(page, lang), content_type=b"text/html; charset=utf-8")

    def _organisation_page(self, member: Member, lang: str) -> Response:
        """The status page as one organisation sees it (its tills' or its manager's login): the store's state (the
        lists are national), its own row, its own tills; nothing of the other organisations."""
        status, lm = self.current_status(force=True)
        info = self.blocklist.info()
        now = self.clock()
        counts = {"blocked_codes": status.codes, "blocked_gtins": status.gtins,
                  "min_prices": int(info.get("min_prices") or 0) + int(info.get("group_min_prices") or 0),
                  "grey_gtins": int(info.get("grey_gtins") or 0)}
        tills = [TillSeen(name=key, by="client-id", last_request=at) for key, at in reversed(member.tills.items())]
        page = PageData(
            state=status.state, lm_status=lm, now=now, version=status.version, age=status.age,
            last_sync_at=status.last_sync_at, next_sync_at=status.next_sync_at, expires_at=status.expires_at,
            source=None, counts=counts, tills=tills, name=member.organisation.name,
            software_version=self.software_version, organisations=self.organisations.rows(member)
            if self.organisations is not None else [])
        return Response(200, render(page, lang), content_type=b"text/html; charset=utf-8")

    def warnings(self) -> list[str]:
        """What an operator must fix, said on the status page and at start."""
        out = []
        if (self.config.auth and self.organisations is None and self.config.password == DEFAULT_PASSWORD
                and not _loopback(self.config.host)):
            out.append(f"the default password admin:admin is in use while the service listens on "
                       f"{self.config.host}, reachable from the network: set one with `serve --password-file` "
                       f"(пароль по умолчанию при доступе из сети: задайте свой)")
        elif not self.config.auth and not _loopback(self.config.host):
            out.append(f"authentication is off while the service listens on {self.config.host} "
                       f"(проверка пароля отключена при доступе из сети)")
        status = self.shared.status.last
        if status is not None and status.clock_behind is not None:
            out.append(f"{clock_behind_text(status.clock_behind)}: checks are refused until the clock is right "
                       f"(часы отстают от времени последней синхронизации базы: проверьте время и NTP)")
        if hasattr(self.blocklist, "get_meta"):     # a refused full replacement (store/guard.py)
            out += [f"{text} (список не заменён: он сократился бы слишком сильно)"
                    for text in shrink_guard.warnings(self.blocklist)]
        if self.fronting is not None:
            out += self.fronting.warnings()
        if self.front_watch is not None:
            out += self.front_watch.warnings()
        return out
