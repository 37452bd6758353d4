"""`serve --front URL`: the service in front of the official module (docs/front.md). What a till gets:

- a check (v1/v2, GET/POST, `check` and `outCheck`) is forwarded (`front.Front.check`); the module's answer in time
  (HTTP 200, a check answer of the documented shape) goes to the till byte for byte, with one added header
  `X-Lmcz-Answered-By: front`;
- no usable answer in time (timeout, refused, reset, 5xx, malformed JSON, any other status): our own answer from
  the local store, as without the front, but carrying the module's last-known `inst` (ours is kept in `localInst`;
  `version` stays the version of our database that answered), with `X-Lmcz-Answered-By: local; reason=<why>`.
  An empty or expired store refuses 4045/4050 as always: never "may be sold" from nothing;
- the module's own refusal (4045/4050) while our store can answer: answered from ours (counted, said on the status
  page); when ours cannot either, its refusal passes through;
- `init` is forwarded (10 s), its participant token kept (front/state.py, mode 0600) and our own `init` run as
  well (it asks this store's sync or replication loop for a round); the module's answer goes to the till, ours when
  it gave none;
- `sell`/`return` commit locally first (as always), then go to the module: through `Front.sold_sink` when one is
  set (a durable outbox), else once, in the background.

The audit log records who answered: outcome `front` for the module's answers (its `reqId`, its codes), and
`local:<reason>` (or `<outcome> local:<reason>`) for ours. Without `--front` none of this exists: a `LocalModule`
without a `Fronting` answers byte for byte as before.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..front import Forwarded, Front, Outcome
from ..receipt import tag_1265
from .responses import Deferred, HttpError, Response, Steps, encode_json

if TYPE_CHECKING:
    from .shared import Shared

log = logging.getLogger("lmcz_fast.service")

#: Endpoints the front takes over (the rest are answered by the service alone).
FRONTED = frozenset({"check", "init", "sell", "return"})
FRONT_HEADER = b"X-Lmcz-Answered-By: front\r\n"
#: `init` may take the module a while (HonestFlow gives it 10 s).
INIT_DEADLINE = 10.0
SOLD_DEADLINE = 10.0
#: How long after the module's last 4045/4050 the status page still says it refused.
REFUSAL_SHOWN = 600.0

Handler = Callable[..., "Response | Steps | Deferred"]


def local_header(reason: str) -> bytes:
    return b"X-Lmcz-Answered-By: local; reason=" + reason.encode("ascii", "replace") + b"\r\n"


class _TaggedAudit:
    """The audit log as the local answer of a fronted check sees it: each record's outcome says which side
    answered and why (`local:timeout`, `partial local:reset`). The lines the compiled answer writes carry the tag
    from the start (`Shared.audit_tag`, the encoder's `Envelope.audit_tag`) and pass through as they are."""

    __slots__ = ("_audit", "_tag")

    def __init__(self, audit: Any, reason: str) -> None:
        self._audit = audit
        self._tag = f"local:{reason}"

    def record(self, req_id: str, ts_ms: int, client: str | None, db_version: int | None, outcome: str,
               codes: list[tuple[str, bool | None]], who: Any = None) -> None:
        tagged = self._tag if outcome == "ok" else f"{outcome} {self._tag}"
        self._audit.record(req_id, ts_ms, client, db_version, tagged, codes, who)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._audit, name)


def _with_inst(body: bytes, inst: str) -> bytes:
    """Our check answer with the official module's `inst` (and tag 1265 to match); ours kept as `localInst`."""
    try:
        payload = json.loads(body)
    except ValueError:
        return body
    envelopes = payload.get("results") if isinstance(payload, dict) and "results" in payload else [payload]
    for entry in envelopes if isinstance(envelopes, list) else ():
        if not isinstance(entry, dict) or "inst" not in entry:
            continue
        entry["localInst"] = entry["inst"]
        entry["inst"] = inst
        if "tag1265" in entry:
            entry["tag1265"] = tag_1265(entry["reqId"], entry["reqTimestamp"], inst, entry["version"])
    return encode_json(payload).encode()


class Fronting:
    """The front's side of a `LocalModule` (see the module's docstring): built by `LocalModule.attach_front`."""

    def __init__(self, shared: Shared, front: Front) -> None:
        self.shared = shared
        self.front = front
        #: Where a committed sale or return goes for the module (`front-watch`'s durable outbox sets it):
        #: `sink(kind, body, client_id)`, kind "sell" or "return". None: sent once, in the background.
        self.sold_sink: Callable[[str, bytes, bytes | None], None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        #: The module's answers given to tills and not yet recorded (`_record_answered`).
        self._answered: list[tuple[Any, ...]] = []

    # -- dispatch -----------------------------------------------------------------------------------------------

    def handle(self, endpoint: str, handler: Handler, method: bytes, path: bytes, query: bytes | None, body: bytes,
               client_id: bytes | None, content_type: bytes | None) -> Response | Steps | Deferred:
        """Answer a fronted request (`FRONTED`). Checks and init answer a `Deferred` resolved on the event loop;
        a sale is committed locally first (the handler's own answer), then handed to the module."""
        if endpoint in ("sell", "return"):
            return self._sold(endpoint, handler(method, query, body, client_id, content_type), body, client_id)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:          # called outside a server (a test calling `handle`): no front, ours alone
            return handler(method, query, body, client_id, content_type)
        shared = self.shared
        deferred = Deferred(endpoint, shared.started)
        # Who is asking, as `LocalModule.handle` set it: restored around our own answer, which comes later.
        request = (shared.peer, shared.auth_label, endpoint, shared.started, shared.caller, shared.audit_who())
        if endpoint == "check":
            # No task per check: the pool calls back with the module's answer, which goes on to the till in the
            # same turn of the loop (`Front.check_soon`).
            protocol = 1 if path[:8].lower() == b"/api/v1/" else 2

            def checked(outcome: Outcome) -> None:
                self._checked(deferred, request, handler, protocol, outcome, method, query, body, client_id,
                              content_type)

            try:
                self.front.check_soon(protocol, Forwarded(method, path, query, body, content_type, client_id),
                                      request[3] or None, checked)
            except Exception:
                log.exception("the front failed on a check: answering from the local store")
                self._resolve(deferred, self._local(request, handler, "internal", method, query, body, client_id,
                                                    content_type), "ok")
            return deferred
        task = loop.create_task(self._init(deferred, request, handler, method, path, query, body, client_id,
                                           content_type))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return deferred

    # -- checks ---------------------------------------------------------------------------------------------------

    def _checked(self, deferred: Deferred, request: tuple[Any, ...], handler: Handler, protocol: int,
                 outcome: Outcome, method: bytes, query: bytes | None, body: bytes, client_id: bytes | None,
                 content_type: bytes | None) -> None:
        """The module's answer to a check was judged (`outcome`): the till gets it, or ours."""
        if deferred.response is not None:
            return
        try:
            if outcome.ok:
                self._official(deferred, request, protocol, outcome, client_id)
                return
            reason = outcome.reason
            if outcome.answer is not None and reason.startswith("official_"):
                _, lm = self.shared.status.current()
                if lm != "ready":                       # ours cannot answer either: its refusal as it is
                    self.front.count("front:refused")
                    self._resolve(deferred, Response(outcome.answer.status, outcome.answer.body,
                                                     FRONT_HEADER, outcome.answer.content_type), "refused")
                    return
                self.front.overridden += 1
            self._resolve(deferred, self._local(request, handler, reason, method, query, body, client_id,
                                                content_type), "ok")
        except Exception:
            if deferred.response is not None:       # the till has its answer: what failed came after it
                log.exception("the front failed after answering a check")
                return
            log.exception("the front failed on a check: answering from the local store")
            self._resolve(deferred, self._local(request, handler, "internal", method, query, body, client_id,
                                                content_type), "ok")

    def _official(self, deferred: Deferred, request: tuple[Any, ...], protocol: int, outcome: Outcome,
                  client_id: bytes | None) -> None:
        """The module answered in time: its answer to the till as it came. What the answer teaches the rest (the
        audit log, the counters, the till's activity, the observers: the cross-check) is recorded after, for all
        the answers of one turn of the loop at once (`_record_answered`), off the path of the tills whose events
        came in the same turn."""
        answer = outcome.answer
        assert answer is not None
        self.front.count("front")
        self._resolve(deferred, Response(200, answer.body, FRONT_HEADER, answer.content_type), "ok")
        last = self.shared.status.last
        pending = self._answered
        pending.append((protocol, outcome.payload, outcome.codes, client_id, request[0], request[5],
                        None if last is None else last.version))
        if len(pending) == 1:
            asyncio.get_running_loop().call_soon(self._record_answered)

    def _record_answered(self) -> None:
        """Record the module's answers given since the last call (see `_official`): one audit record per envelope
        (outcome `front`, the module's `reqId` and codes), its blocked codes on the status page, the till's and
        its organisation's counts, the metrics, then the observers. Runs in the next turn of the loop, before any
        later request is read, so that a till that asks /metrics or the status page next sees its check there."""
        items, self._answered = self._answered, []
        shared = self.shared
        audit = shared.audit
        activity = shared.activity
        metrics = shared.metrics
        front = self.front
        for protocol, payload, codes, client_id, peer, who, version in items:
            try:
                client = client_id.decode("utf-8", "replace") if client_id else None
                envelopes = payload["results"] if protocol == 2 else (payload,)
                blocked = checked = 0
                for entry in envelopes:
                    ids = [(str(c.get("cis", ""))[:64], c.get("isBlocked") is True) for c in entry.get("codes") or ()
                           if isinstance(c, dict)]
                    checked += len(ids)
                    for cis, is_blocked in ids:
                        if is_blocked:
                            blocked += 1
                            activity.refused(cis, "blocked (official module)")
                    if audit is not None:
                        stamp = entry.get("reqTimestamp")
                        audit.record(str(entry.get("reqId", "")), stamp if isinstance(stamp, int) else
                                     int(shared.clock() * 1000), client, None, "front", ids, who)
                activity.request(client, peer, checked)
                shared.organisation_saw(who, client, checked, blocked, peer)
                metrics.codes_checked += checked
                metrics.codes_blocked += blocked
                front.observe(protocol, payload, version, codes)
            except Exception:
                log.exception("the front failed recording an answer of the official module")

    def _local(self, request: tuple[Any, ...], handler: Handler, reason: str, method: bytes, query: bytes | None,
               body: bytes, client_id: bytes | None, content_type: bytes | None) -> Response:
        """Our own answer, as the request would have had it without the front (its audit records tagged with the
        reason), carrying the module's last-known `inst`."""
        shared = self.shared
        saved = (shared.peer, shared.auth_label, shared.endpoint, shared.started, shared.caller, shared.audit)
        shared.peer, shared.auth_label, shared.endpoint, shared.started, shared.caller = request[:5]
        if shared.audit is not None:
            shared.audit = _TaggedAudit(shared.audit, reason)  # type: ignore[assignment]
            shared.audit_tag = f"local:{reason}"
        try:
            answer = handler(method, query, body, client_id, content_type)
            response = answer.run() if isinstance(answer, Steps) else answer
        except HttpError as exc:
            response = shared.error_response(exc)
        finally:
            shared.peer, shared.auth_label, shared.endpoint, shared.started, shared.caller, shared.audit = saved
            shared.audit_tag = None
        assert isinstance(response, Response)
        self.front.count(f"local:{reason}")
        inst = self.front.inst
        if response.status == 200 and inst:
            response.body = _with_inst(response.body, inst)
        response.headers += local_header(reason)
        return response

    def _resolve(self, deferred: Deferred, response: Response, outcome: str) -> None:
        self.shared.metrics.observe(deferred.endpoint, outcome, time.perf_counter() - deferred.started)
        deferred.resolve(response)

    # -- init -----------------------------------------------------------------------------------------------------

    async def _init(self, deferred: Deferred, request: tuple[Any, ...], handler: Handler, method: bytes,
                    path: bytes, query: bytes | None, body: bytes, client_id: bytes | None,
                    content_type: bytes | None) -> None:
        token = _token_of(body)
        try:
            answer = await self.front.forward(method, path, query, body, content_type, client_id,
                                              deadline=max(INIT_DEADLINE, self.front.config.deadline))
            reason = "ok" if answer.status < 300 else f"http_{answer.status}"
        except Exception as exc:           # TimeoutError, PoolError: the module cannot take it now
            answer, reason = None, getattr(exc, "reason", None) or "timeout"
        if token is not None and (answer is None or answer.status < 300 or answer.status >= 500):
            try:
                self.front.state.save_token(token)      # for a re-init when the module is back (the watchdog)
            except OSError as exc:
                log.error("cannot keep the participant token in %s: %s", self.front.state.directory, exc)
        local = self._run_local_init(request, handler, method, query, body, client_id, content_type)
        if answer is not None and answer.status < 500:
            self.front.count("front")
            self._resolve(deferred, Response(answer.status, answer.body, FRONT_HEADER, answer.content_type),
                          "ok" if answer.status < 300 else "refused")
            return
        self.front.count(f"local:{reason}")
        if isinstance(local, Deferred):
            local.on_resolved(lambda: self._resolve_local_init(deferred, local, reason))
        else:
            local.headers += local_header(reason)
            self._resolve(deferred, local, "ok")

    def _resolve_local_init(self, deferred: Deferred, local: Deferred, reason: str) -> None:
        response = local.response
        assert response is not None
        response.headers += local_header(reason)
        self._resolve(deferred, response, "ok")

    def _run_local_init(self, request: tuple[Any, ...], handler: Handler, method: bytes, query: bytes | None,
                        body: bytes, client_id: bytes | None, content_type: bytes | None) -> Response | Deferred:
        shared = self.shared
        saved = (shared.peer, shared.auth_label, shared.endpoint, shared.started, shared.caller)
        shared.peer, shared.auth_label, shared.endpoint, shared.started, shared.caller = request[:5]
        try:
            answer = handler(method, query, body, client_id, content_type)
        except HttpError as exc:
            answer = shared.error_response(exc)
        finally:
            shared.peer, shared.auth_label, shared.endpoint, shared.started, shared.caller = saved
        assert not isinstance(answer, Steps)
        return answer

    # -- sell / return --------------------------------------------------------------------------------------------

    def _sold(self, kind: str, answer: Response | Steps | Deferred, body: bytes,
              client_id: bytes | None) -> Response | Steps | Deferred:
        """Hand a sale or return to the module once our own commit answered it 2xx."""
        if isinstance(answer, Deferred) and answer.response is None:
            outer = Deferred(answer.endpoint, answer.started)

            def committed() -> None:
                response = answer.response
                assert response is not None
                if response.status < 300:
                    self._to_module(kind, body, client_id)
                outer.resolve(response)

            answer.on_resolved(committed)
            return outer
        response = answer.response if isinstance(answer, Deferred) else answer
        if isinstance(response, Response) and response.status < 300:
            self._to_module(kind, body, client_id)
        return answer

    def _to_module(self, kind: str, body: bytes, client_id: bytes | None) -> None:
        if self.sold_sink is not None:
            self.sold_sink(kind, body, client_id)
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = loop.create_task(self._send_sold(kind, body, client_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_sold(self, kind: str, body: bytes, client_id: bytes | None) -> None:
        try:
            answer = await self.front.forward(b"POST", b"/api/v2/cis/" + kind.encode(), None, body,
                                              b"application/json", client_id, deadline=SOLD_DEADLINE)
        except Exception as exc:
            log.warning("a %s was committed here but not delivered to the official module (%s); it is not "
                        "retried (no outbox)", kind, getattr(exc, "reason", None) or "timeout")
            return
        if answer.status >= 300:
            log.warning("the official module refused a %s (HTTP %d)", kind, answer.status)

    # -- what the status page says ------------------------------------------------------------------------------

    def warnings(self) -> list[str]:
        front = self.front
        out = []
        refusal = front.last_refusal
        if refusal is not None and front.clock() - refusal[0] < REFUSAL_SHOWN:
            out.append(f"the official module at {front.config.target.url} refuses checks ({refusal[1]}, "
                       f"{'sync_error' if refusal[1] == 4050 else 'not ready'}): checks are answered from this "
                       f"store while it is fresh ({front.overridden} so far) "
                       f"(официальный модуль отказывает в проверках: отвечает локальная база)")
        failure = front.last_failure
        if failure is not None and (front.last_official_at is None or failure[0] > front.last_official_at):
            hint = ("; it refuses lmcz-fast's login: check --front-credentials-file" if failure[1] in
                    ("http_401", "http_403") else "")
            out.append(f"the official module at {front.config.target.url} does not answer usably "
                       f"({failure[1]}{hint}): checks are answered from this store "
                       f"(официальный модуль не отвечает: отвечает локальная база)")
        return out

    async def close(self) -> None:
        if self._answered:
            self._record_answered()
        for task in list(self._tasks):
            task.cancel()
        self.front.close()


def _token_of(body: bytes) -> str | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    token = data.get("token") if isinstance(data, dict) else None
    return token.strip() if isinstance(token, str) and token.strip() else None
