"""Protocol 2 of the official Local Module (LM 2.x, `/api/v2/...`): its check answer and its grey-list switch.

What differs from protocol 1 (docs/protocol.md, "Protocol 2"):

- `cis_list` items are strings or `{"cis": "<code>", "pg": <product group id>}` objects (`pg` optional);
- the answer is `{"results": [envelope, ...]}`: one envelope per code, each with its own `reqId` (so each code of a
  receipt carries its own tag 1265, and the audit log maps each `reqId` to its one code); a one-code client
  reads `results[0]` either way (docs/service.md says why one per code);
- `POST /api/v2/greyList {"enableGreyList": bool}` switches the grey-GTIN answer on or off (durable, like init).

Status and init are shared with protocol 1 (`api.py`): the same fields, the same types on both.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from .answers import PRODUCT_GROUPS, code_json, envelope
from .responses import Deferred, Response, encode_json, error

if TYPE_CHECKING:
    from ..audit import AuditLog
    from ..store import Blocklist, Status, Verdict, WriteOp
    from .metrics import Metrics

_PG_LIST = ", ".join(str(pg) for pg in sorted(PRODUCT_GROUPS))


def cis_items(items: list[Any]) -> list[tuple[Any, int | None]]:
    """`(code, pg)` per `cis_list` item: a string, or an object with a string `cis` and an optional int `pg`.

    Anything else is refused with HTTP 400 naming the item. A non-string `code` is passed on for the caller to
    refuse as `invalid_code` (protocol 1 did so before objects existed).
    """
    out: list[tuple[Any, int | None]] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            out.append((item, None))
            continue
        cis = item.get("cis")
        if not isinstance(cis, str):
            raise error(400, "bad_item", f'cis_list[{index}] is an object without a string "cis"', index=index)
        pg = item.get("pg")
        if pg is not None:
            if not isinstance(pg, int) or isinstance(pg, bool):
                raise error(400, "bad_item", f"cis_list[{index}].pg must be an integer product group id, "
                            f"not {type(pg).__name__}", index=index)
            if pg not in PRODUCT_GROUPS:
                raise error(400, "unknown_pg", f"cis_list[{index}].pg = {pg} is not a known product group id "
                            f"(known: {_PG_LIST})", index=index, pg=pg)
        out.append((cis, pg))
    return out


class CheckHost(Protocol):
    """What protocol 2 asks of the `LocalModule` that holds it: its public methods, nothing private."""

    blocklist: Blocklist
    metrics: Metrics
    audit: AuditLog | None
    clock: Callable[[], float]

    @property
    def grey_list(self) -> bool: ...
    def json_body(self, body: bytes, content_type: bytes | None) -> Any: ...
    def check_items(self, method: bytes, query: bytes | None, body: bytes,
                    content_type: bytes | None) -> list[Any]: ...
    def ready_for(self, req_id: str, req_ms: int, client: str | None, raws: list[Any]) -> Status: ...
    def verdicts(self, raws: list[Any], req_id: str, req_ms: int, client: str | None,
                 status: Status, pgs: list[int | None] | None = None) -> list[Verdict]: ...
    def instance_uuid(self, instance_id: str) -> str: ...
    def version_uuid(self, instance_id: str, db_version: int) -> str: ...
    def durable(self, op: WriteOp, build: Callable[[Any], Response]) -> Response | Deferred: ...


class ProtocolTwo:
    """The `/api/v2` check answer and `greyList` of a `LocalModule` (`module.v2`)."""

    def __init__(self, host: CheckHost) -> None:
        self._host = host

    def handle_check(self, method: bytes, query: bytes | None, body: bytes, client_id: bytes | None,
                     content_type: bytes | None) -> Response:
        host = self._host
        pairs = cis_items(host.check_items(method, query, body, content_type))
        raws = [raw for raw, _ in pairs]
        req_ms = int(host.clock() * 1000)
        req_id = str(uuid.uuid4())
        client = client_id.decode("utf-8", "replace") if client_id else None
        status = host.ready_for(req_id, req_ms, client, raws)
        verdicts = host.verdicts(raws, req_id, req_ms, client, status, [pg for _, pg in pairs])
        grey = host.grey_list          # read with the status `ready_for` just refreshed
        audit = host.audit
        results = []
        blocked = 0
        for index, (verdict, (_, pg)) in enumerate(zip(verdicts, pairs)):
            rid = req_id if index == 0 else str(uuid.uuid4())
            inst = host.instance_uuid(verdict.instance_id)
            version = host.version_uuid(verdict.instance_id, verdict.db_version)
            code = code_json(verdict, pg, grey)
            results.append(envelope(rid, req_ms, inst, version, [code], verdict, status.state))
            blocked += verdict.blocked
            if audit is not None:
                audit.record(rid, req_ms, client, verdict.db_version, "ok", [(verdict.cis, verdict.blocked)])
        host.metrics.codes_checked += len(verdicts)
        host.metrics.codes_blocked += blocked
        return Response(200, encode_json({"results": results}).encode())

    def handle_grey_list(self, method: bytes, query: bytes | None, body: bytes, client_id: bytes | None,
                         content_type: bytes | None) -> Response | Deferred:
        """`POST /api/v2/greyList {"enableGreyList": bool}`: answer `isGreyGtin` from the grey-GTIN list or not."""
        host = self._host
        data = host.json_body(body, content_type)
        enable = data.get("enableGreyList") if isinstance(data, dict) else None
        if not isinstance(enable, bool):
            raise error(400, "bad_request", 'expected {"enableGreyList": true or false}')
        op = host.blocklist.op_set_meta(grey_list_enabled=enable)
        req_ms = int(host.clock() * 1000)

        def build(_: Any) -> Response:
            payload = {"code": 0, "description": "ok", "enableGreyList": enable, "reqTimestamp": req_ms}
            return Response(200, encode_json(payload).encode())

        return host.durable(op, build)
