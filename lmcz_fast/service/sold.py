"""The sold register over HTTP: `cis/sell`, `cis/return`, `cis/sold`, and the writer that makes them durable.

A sale is answered 201 only after the write transaction holding it is committed (fsync'd): the handler queues
the write on the register's `GroupCommitter` and answers a `Deferred`, which the writer thread resolves through
the event loop once its batch is on disk. Many tills selling at once share one commit. Without an event loop
(`LocalModule.handle` called directly, as in some tests) the write is committed synchronously instead.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._codes import CodeError, MarkingCode, parse_code
from ..store import StoreError
from ..store import SOLD_MAX_PAGE as MAX_PAGE
from ..store import GroupCommitter, Job, WriteOp
from .checks import query_values
from .config import DEFAULT_MAX_CODE_LENGTH
from .responses import Deferred, Response, encode_json, error
from .v2 import cis_items

if TYPE_CHECKING:
    from ..store import Blocklist
    from .config import ServiceConfig
    from .metrics import Metrics

log = logging.getLogger("lmcz_fast.service")

Op = WriteOp
Build = Callable[[Any], Response]


def _int_param(query: bytes | None, name: bytes, default: int) -> int:
    values = query_values(query, name)
    if not values:
        return default
    text = values[-1].strip()
    if not text.isdigit():
        raise error(400, "bad_request", f"{name.decode()} must be a non-negative integer, not {text!r}")
    return int(text)


class SoldEndpoints:
    """Mixin of `LocalModule`: the sold register's endpoints and durable writes through one group committer."""

    blocklist: Blocklist
    config: ServiceConfig
    metrics: Metrics
    clock: Callable[[], float]
    _committer: GroupCommitter | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _request_endpoint: str = "other"
    _request_started: float = 0.0
    _status_until: float

    if TYPE_CHECKING:
        def _json_body(self, body: bytes, content_type: bytes | None) -> Any: ...
        def _error_response(self, exc: Any) -> Response: ...

    # -- the writer -------------------------------------------------------------------------------------------

    def start_writer(self, loop: asyncio.AbstractEventLoop) -> None:
        """Commit durable writes on a writer thread, in batches, answering through `loop` (the server calls
        this when it starts)."""
        if self._committer is not None:
            return
        self._loop = loop
        self._committer = self.blocklist.sold.committer(notify=self._notify_batch,
                                                        max_batch=self.config.sold_max_batch)

    def stop_writer(self) -> None:
        """Commit what is queued and stop the writer thread (the server calls this when it closes)."""
        committer, self._committer = self._committer, None
        if committer is not None:
            committer.close()

    @property
    def writer(self) -> GroupCommitter | None:
        return self._committer

    def sold_metrics(self) -> dict[str, float]:
        """The register's size and its writer's health, for /metrics."""
        out: dict[str, float] = {}
        try:
            out["lmcz_sold_entries"] = self.blocklist.sold.count()
        except Exception:
            log.exception("sold register unavailable for /metrics")
        committer = self._committer
        if committer is not None:
            out.update({
                "lmcz_sold_writes_total": committer.jobs_done,
                "lmcz_sold_commits_total": committer.commits,
                "lmcz_sold_commit_seconds_total": round(committer.commit_seconds, 6),
                "lmcz_sold_write_failures_total": committer.failures,
                "lmcz_sold_writes_pending": committer.pending,
            })
        return out

    def _notify_batch(self, batch: list[Job]) -> None:
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(self._finish_batch, batch)
        except RuntimeError:  # the loop is closed: nobody is left to answer
            pass

    def _finish_batch(self, batch: list[Job]) -> None:
        self._status_until = 0.0        # the batch may have changed metadata (greyList): re-read with the status
        now = time.perf_counter()
        for job in batch:
            deferred, build = job.context
            if job.error is None:
                response = build(job.result)
                outcome = "ok"
            else:
                response = self._error_response(self._write_failed(job.error))
                outcome = "write_failed"
            self.metrics.observe(deferred.endpoint, outcome, now - deferred.started)
            deferred.resolve(response)

    def _write_failed(self, exc: BaseException) -> Any:
        return error(503, "write_failed", f"the sale register could not be written: {exc}; nothing was recorded, "
                     "send it again")

    def _durable(self, op: Op, build: Build) -> Response | Deferred:
        """Run `op` in a durable write transaction, then answer `build(result)`: later through the group
        committer when a server runs one, else now."""
        committer = self._committer
        if committer is None:
            try:
                result = self.blocklist.commit(op)
            except StoreError as exc:
                raise self._write_failed(exc) from None
            self._status_until = 0.0
            return build(result)
        deferred = Deferred(self._request_endpoint, self._request_started)
        try:
            committer.submit(op, context=(deferred, build))
        except StoreError as exc:       # the writer is closing (the server is shutting down)
            raise self._write_failed(exc) from None
        return deferred

    # -- endpoints --------------------------------------------------------------------------------------------

    def _sale_codes(self, body: bytes, content_type: bytes | None) -> list[MarkingCode]:
        data = self._json_body(body, content_type)
        items = data.get("cis_list") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise error(400, "bad_request", 'expected {"cis_list": ["<code>", ...]}')
        if not items:
            raise error(400, "no_codes", "no codes given: {\"cis_list\": [...]}")
        if len(items) > self.config.max_codes:
            raise error(413, "too_many_codes", f"at most {self.config.max_codes} codes per request",
                        limit=self.config.max_codes)
        codes = []
        for index, (raw, _pg) in enumerate(cis_items(items)):
            try:
                if not isinstance(raw, str):
                    raise CodeError("not_a_string", None, f"item {index} is {type(raw).__name__}, not a string")
                if len(raw) > DEFAULT_MAX_CODE_LENGTH:
                    raise CodeError("too_long", None, f"longer than {DEFAULT_MAX_CODE_LENGTH} characters")
                codes.append(parse_code(raw))
            except CodeError as exc:
                raise error(400, "invalid_code", f"cis_list[{index}] is not a marking code: {exc}; nothing was "
                            "recorded", index=index, reason=exc.reason) from None
        return codes

    def _handle_sell(self, method: bytes, query: bytes | None, body: bytes, client_id: bytes | None,
                     content_type: bytes | None) -> Response | Deferred:
        """`POST /api/v2/cis/sell`: record sales after the receipt is fiscalised; 201 once durable."""
        codes = self._sale_codes(body, content_type)
        op = self.blocklist.sold.op_record(codes, int(self.clock() * 1000), by_clock=True)
        encode = encode_json

        def build(entries: list[Any]) -> Response:
            results = [{"success": True, "cis": entry.cis, "soldAt": entry.sold_at_ms} for entry in entries]
            return Response(201, encode({"results": results}).encode())

        return self._durable(op, build)

    def _handle_return(self, method: bytes, query: bytes | None, body: bytes, client_id: bytes | None,
                       content_type: bytes | None) -> Response | Deferred:
        """`POST /api/v2/cis/return`: a refund takes the codes out of the register; 200 once durable."""
        codes = self._sale_codes(body, content_type)
        op = self.blocklist.sold.op_remove(codes)
        encode = encode_json

        def build(found: list[bool]) -> Response:
            results = [{"success": True, "cis": code.cis, "wasSold": was} for code, was in zip(codes, found)]
            return Response(200, encode({"results": results}).encode())

        return self._durable(op, build)

    def _handle_sold(self, method: bytes, query: bytes | None, body: bytes, client_id: bytes | None,
                     content_type: bytes | None) -> Response:
        """`GET /api/v2/cis/sold?skip=&limit=`: the register, oldest sale first, for backups."""
        skip = _int_param(query, b"skip", 0)
        limit = _int_param(query, b"limit", MAX_PAGE)
        if limit > MAX_PAGE:
            raise error(400, "bad_request", f"limit must be at most {MAX_PAGE}", limit=MAX_PAGE)
        total, entries = self.blocklist.sold.page(skip, limit)
        payload = {"total_count": total, "cis_list": [entry.cis for entry in entries], "skip": skip,
                   "limit": limit}
        return Response(200, encode_json(payload).encode())
