"""The official Local Module's API over a `Blocklist`: one parsed request in, one `Response` out, no I/O.

It has no sockets of its own, so the HTTP stack underneath (`http/`) is replaceable (docs/service.md measures three).
This file is the dispatcher and who may call what (`admit`; who a request is: `auth.py`); its own endpoints (status,
init, config, metrics, the status page) are a part of it (`endpoints.Endpoints`). The rest are parts the module
holds and hands one `Shared` (shared.py: the store, the settings, the metrics, the audit log, the clock, the request
being handled, the status cache): the check path both protocols share and protocol 1's check answer
(`checks.Checks`), protocol 2's own answers (`v2.ProtocolTwo`), the sold register's endpoints (`sold.SoldEndpoints`)
and the durable writes (`durable.DurableWriter`: a sale, `init` with `clearSold` or a round request, `greyList`
answer a `Deferred` that the writer thread resolves once committed). The fields the answers hold are in
`answers.py`.
"""

from __future__ import annotations

import base64
import dataclasses
import hmac
import logging
import time
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

from ..auth import Credentials
from ..checks import CHECK_SLICE, Checks
from ..config import ServiceConfig, Token, software_version
from ..durable import DurableWriter
from ..fronting import FRONTED, Fronting
from ..metrics import Metrics
from ..organisations import Caller, Organisation, Organisations
from ..page import Activity
from ..responses import Deferred, HttpError, Response, Steps, error
from ..shared import Shared, clock_behind_text
from ..sold import SoldEndpoints
from ..v2 import ProtocolTwo
from .endpoints import Endpoints

if TYPE_CHECKING:
    import asyncio

    from ...audit import AuditLog
    from ...front import Front
    from ...front.watch import FrontWatch
    from ...store import Blocklist, GroupCommitter, Status

log = logging.getLogger("lmcz_fast.service")

__all__ = ["CHECK_SLICE", "LocalModule", "clock_behind_text"]


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
        #: The module's own endpoints (status, config, init, metrics, the status page) and its warnings.
        self.endpoints = Endpoints(self)
        #: The organisations served (`serve --organisations`), or None: one organisation, as the official module.
        self.organisations = shared.organisations = shared.status.organisations = (
            Organisations(blocklist, shared.config.organisations, clock) if shared.config.organisations else None)
        # The last field: who may call it. "required": valid credentials; "optional": anyone, but credentials
        # sent are checked (a wrong one is a 401, throttled); "": anyone.
        self._routes: dict[bytes, tuple[str, Callable[..., Response | Steps | Deferred], tuple[bytes, ...], str]] = {}
        for prefix, check in ((b"/api/v1", self.checks.handle_check), (b"/api/v2", self.v2.handle_check)):
            self._routes[prefix + b"/status"] = ("status", self.endpoints.handle_status, (b"GET",), "optional")
            self._routes[prefix + b"/config"] = ("config", self.endpoints.handle_config, (b"GET",), "required")
            self._routes[prefix + b"/init"] = ("init", self.endpoints.handle_init, (b"POST",), "required")
            self._routes[prefix + b"/cis/outcheck"] = ("check", check, (b"GET", b"POST"), "required")
            self._routes[prefix + b"/cis/check"] = ("check", check, (b"GET", b"POST"), "required")
            self._routes[prefix + b"/cis/sell"] = ("sell", self.sold.handle_sell, (b"POST",), "required")
            self._routes[prefix + b"/cis/return"] = ("return", self.sold.handle_return, (b"POST",), "required")
            self._routes[prefix + b"/cis/sold"] = ("sold", self.sold.handle_sold, (b"GET",), "required")
        self._routes[b"/api/v2/greylist"] = ("greylist", self.v2.handle_grey_list, (b"POST",), "required")
        self._routes[b"/metrics"] = ("metrics", self.endpoints.handle_metrics, (b"GET",), "")
        self._routes[b"/"] = ("page", self.endpoints.handle_page, (b"GET", b"HEAD"), "required")
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

    def warnings(self) -> list[str]:
        """What an operator must fix, said on the status page and at start (`Endpoints.warnings`)."""
        return self.endpoints.warnings()
