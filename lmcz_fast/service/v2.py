"""Protocol 2 of the official Local Module (LM 2.x, `/api/v2/...`): its check answer and its grey-list switch.

What differs from protocol 1 (docs/protocol.md, "Protocol 2"):

- `cis_list` items are strings or `{"cis": "<code>", "pg": <product group id>}` objects (`pg` optional);
- the answer is `{"results": [envelope, ...]}`: one envelope per code, each with its own `reqId` (so each code of a
  receipt carries its own tag 1265, and the audit log maps each `reqId` to its one code); a one-code client
  reads `results[0]` either way (docs/service.md says why one per code);
- `POST /api/v2/greyList {"enableGreyList": bool}` switches the grey-GTIN answer on or off (durable, like init).

Status and init are shared with protocol 1 (`api/`): the same fields, the same types on both.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from .answers import PRODUCT_GROUPS
from .._answer import request_id
from .responses import Deferred, Response, encode_json, error

if TYPE_CHECKING:
    from ..store import Status
    from .checks import Checked, Checks, Who
    from .durable import DurableWriter
    from .shared import Shared

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


class ProtocolTwo:
    """The `/api/v2` check answer and `greyList`: a part of `LocalModule`, over the shared check path (`Checks`)
    and the module's `DurableWriter`."""

    def __init__(self, shared: Shared, checks: Checks, writer: DurableWriter) -> None:
        self._shared = shared
        self._checks = checks
        self._writer = writer

    def handle_check(self, method: bytes, query: bytes | None, body: bytes, client_id: bytes | None,
                     content_type: bytes | None) -> Response:
        shared = self._shared
        items, plain = self._checks.plain_items(method, query, body, content_type)
        groups: list[int | None] | None = None     # None: a plain list of strings, no product group named
        if plain:           # every item a str: no object to read, no product group named
            raws, pgs = items, [None] * len(items)
        else:
            pairs = cis_items(items)
            raws = [raw for raw, _ in pairs]
            pgs = groups = [pg for _, pg in pairs]
        req_ms = int(shared.clock() * 1000)
        # The request's id and one per code after the first, in one system call (what `uuid.uuid4()` per id drew)
        ids = os.urandom(16 * len(pgs))
        req_id = request_id(ids[:16])
        client = client_id.decode("utf-8", "replace") if client_id else None
        who = shared.audit_who()
        status = self._checks.ready_for(req_id, req_ms, client, raws, who)
        checked = self._checks.check_all(raws, req_id, req_ms, client, status, groups, who)
        return Response(200, self._encode(checked, pgs, ids, req_id, req_ms, status, client, who))

    def _encode(self, checked: Checked, pgs: list[int | None], ids: bytes, req_id: str, req_ms: int,
                status: Status, client: str | None, who: Who) -> bytes:
        """The answer's body, in one compiled pass (lmcz_fast/_answer.pyx) that also writes the audit lines (one
        per code) and counts the codes checked and blocked. One envelope per code, each with its own reqId (a UUID
        version 4 of 16 random bytes, as `uuid.uuid4()`; the first code's is the request's); an unreadable code's
        says what went wrong, its version the one that answered the others."""
        shared = self._shared
        body, lines, checked_codes, blocked = self._checks.answers.v2_batches(
            checked.batches, checked.unreadable, pgs, ids[16:],
            self._checks.envelope(req_id, req_ms, checked, status, client, who), checked.db_version,
            lambda instance_id, version: (shared.instance_uuid(instance_id, who),
                                          shared.version_uuid(instance_id, version, who)))
        if lines:
            shared.audit.record_lines(req_ms, lines, len(pgs))  # type: ignore[union-attr]
        shared.metrics.codes_checked += checked_codes
        shared.metrics.codes_blocked += blocked
        return body  # type: ignore[no-any-return]

    def handle_grey_list(self, method: bytes, query: bytes | None, body: bytes, client_id: bytes | None,
                         content_type: bytes | None) -> Response | Deferred:
        """`POST /api/v2/greyList {"enableGreyList": bool}`: answer `isGreyGtin` from the grey-GTIN list or not
        (the store's switch; for a request of an organisation, that organisation's own)."""
        shared = self._shared
        data = shared.json_body(body, content_type)
        enable = data.get("enableGreyList") if isinstance(data, dict) else None
        if not isinstance(enable, bool):
            raise error(400, "bad_request", 'expected {"enableGreyList": true or false}')
        member = None if shared.caller is None else shared.caller.member
        op = shared.blocklist.op_set_meta(**{shared.grey_field(member): enable})
        req_ms = int(shared.clock() * 1000)

        def build(_: Any) -> Response:
            if member is not None:
                member.grey_list = enable
            payload = {"code": 0, "description": "ok", "enableGreyList": enable, "reqTimestamp": req_ms}
            return Response(200, encode_json(payload).encode())

        return self._writer.write(op, build)
