"""The sold register over HTTP: `cis/sell`, `cis/return`, `cis/sold` (a part of `LocalModule`).

When several organisations are served (`serve --organisations`), the sale records the organisation of the till's
credentials; a code another organisation sold stays its sale (sold for every till; a sale or a return of it by
another is refused 403 `sold_by_another_organisation`, nothing recorded), and `sold` lists the organisation's own.

A sale is answered 201 only after the write transaction holding it is committed (fsync'd), through the module's
`DurableWriter` (durable.py): many tills selling at once share one commit.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from .._codes import CodeError, MarkingCode, parse_code
from ..store import SOLD_MAX_PAGE as MAX_PAGE
from ..store import SoldOwner
from .checks import query_values
from .config import DEFAULT_MAX_CODE_LENGTH
from .responses import Deferred, Response, encode_json, error
from .v2 import cis_items

if TYPE_CHECKING:
    from ..front.outbox import SaleQueue
    from .durable import DurableWriter
    from .shared import Shared

log = logging.getLogger("lmcz_fast.service")


def _int_param(query: bytes | None, name: bytes, default: int) -> int:
    values = query_values(query, name)
    if not values:
        return default
    text = values[-1].strip()
    if not text.isdigit():
        raise error(400, "bad_request", f"{name.decode()} must be a non-negative integer, not {text!r}")
    return int(text)


class SoldEndpoints:
    """The sold register's endpoints; their writes go through the module's `DurableWriter`."""

    def __init__(self, shared: Shared, writer: DurableWriter) -> None:
        self._shared = shared
        self._writer = writer
        #: In front of the official module: the queue each sale and return also goes to, in the same transaction
        #: (lmcz_fast/front/outbox.py), delivered once committed. None: ours only.
        self.outbox: SaleQueue | None = None

    def metrics(self) -> dict[str, float]:
        """The register's size and its writer's health, for /metrics."""
        out: dict[str, float] = {}
        try:
            out["lmcz_sold_entries"] = self._shared.blocklist.sold.count()
        except Exception:
            log.exception("sold register unavailable for /metrics")
        out.update(self._writer.metrics())
        return out

    def _owner(self) -> SoldOwner | None:
        caller = self._shared.caller
        return None if caller is None else caller.member.owner

    def _refuse_others(self, codes: list[MarkingCode], owner: SoldOwner | None, doing: str) -> None:
        """403 naming the first code another organisation sold (a live entry): nothing is recorded."""
        if owner is None:
            return
        for index, entry in enumerate(self._shared.blocklist.sold.entries(codes)):
            if entry is not None and not owner.owns(entry.organisation):
                raise error(403, "sold_by_another_organisation",
                            f"cis_list[{index}] was sold by another organisation of this store: only it can "
                            f"{doing} it; nothing was recorded", index=index)

    # -- endpoints --------------------------------------------------------------------------------------------

    def _to_official(self, op: Any, build: Any, kind: str, items: list[Any],
                     client_id: bytes | None) -> tuple[Any, Any]:
        """With a front: `op` also queues the request for the official module (one transaction), and `build`
        wakes its deliverer once committed. Without: both unchanged."""
        outbox = self.outbox
        if outbox is None:
            return op, build
        client = client_id.decode("utf-8", "replace") if client_id else None

        def build_and_wake(result: Any) -> Response:
            outbox.wake()
            return build(result)  # type: ignore[no-any-return]

        return outbox.joined(op, kind, items, client), build_and_wake

    def _sale_items(self, body: bytes, content_type: bytes | None) -> tuple[list[MarkingCode], list[Any]]:
        """The codes of a sale or return, and its `cis_list` as the till sent it."""
        data = self._shared.json_body(body, content_type)
        items = data.get("cis_list") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise error(400, "bad_request", 'expected {"cis_list": ["<code>", ...]}')
        if not items:
            raise error(400, "no_codes", "no codes given: {\"cis_list\": [...]}")
        if len(items) > self._shared.config.max_codes:
            raise error(413, "too_many_codes", f"at most {self._shared.config.max_codes} codes per request",
                        limit=self._shared.config.max_codes)
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
        return codes, items

    def handle_sell(self, method: bytes, query: bytes | None, body: bytes, client_id: bytes | None,
                     content_type: bytes | None) -> Response | Deferred:
        """`POST /api/v2/cis/sell`: record sales after the receipt is fiscalised; 201 once durable."""
        codes, items = self._sale_items(body, content_type)
        owner = self._owner()
        self._refuse_others(codes, owner, "sell or return")
        op = self._shared.blocklist.sold.op_record(codes, int(self._shared.clock() * 1000), by_clock=True,
                                                   owner=owner)
        encode = encode_json

        def build(entries: list[Any]) -> Response:
            # success false only for a code another organisation's sale took meanwhile (its record stays).
            results = [{"success": owner is None or owner.owns(entry.organisation), "cis": entry.cis,
                        "soldAt": entry.sold_at_ms} for entry in entries]
            return Response(201, encode({"results": results}).encode())

        return self._writer.write(*self._to_official(op, build, "sell", items, client_id))

    def handle_return(self, method: bytes, query: bytes | None, body: bytes, client_id: bytes | None,
                       content_type: bytes | None) -> Response | Deferred:
        """`POST /api/v2/cis/return`: a refund takes the codes out of the register; 200 once durable."""
        codes, items = self._sale_items(body, content_type)
        owner = self._owner()
        self._refuse_others(codes, owner, "return")
        op = self._shared.blocklist.sold.op_remove(codes, owner)
        encode = encode_json

        def build(found: list[bool | None]) -> Response:
            # None: another organisation's sale took the code meanwhile (left in place): not returned.
            results = [{"success": was is not None, "cis": code.cis, "wasSold": was is not False}
                       for code, was in zip(codes, found)]
            return Response(200, encode({"results": results}).encode())

        return self._writer.write(*self._to_official(op, build, "return", items, client_id))

    def handle_sold(self, method: bytes, query: bytes | None, body: bytes, client_id: bytes | None,
                     content_type: bytes | None) -> Response:
        """`GET /api/v2/cis/sold?skip=&limit=`: the register, oldest sale first, for backups."""
        skip = _int_param(query, b"skip", 0)
        limit = _int_param(query, b"limit", MAX_PAGE)
        if limit > MAX_PAGE:
            raise error(400, "bad_request", f"limit must be at most {MAX_PAGE}", limit=MAX_PAGE)
        total, entries = self._shared.blocklist.sold.page(skip, limit, self._owner())
        payload = {"total_count": total, "cis_list": [entry.cis for entry in entries], "skip": skip,
                   "limit": limit}
        return Response(200, encode_json(payload).encode())
