"""The check path both protocols share: the codes of a request, readiness, one verdict (or one refusal) per code
from one database version, in slices; and protocol 1's check answer (one flat envelope).

A scan that is not a marking code is answered in its own entry (an `Unreadable`), the other codes of the request
as usual; only a request of which no code can be read is refused whole (docs/service.md, "One unreadable code").
Scans whose end cut a tail AI short after a GS are read for their identity (`tail_cut`, docs/codes.md).
"""

from __future__ import annotations

import uuid
from collections.abc import Generator
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from .._codes import CodeError
from ..store import NoListError
from .answers import ERROR_UNREADABLE, Unreadable, code_json, envelope, unreadable_json
from .config import DEFAULT_MAX_CODE_LENGTH, ERROR_NOT_READY
from .responses import HttpError, Response, Steps, encode_json, error

if TYPE_CHECKING:
    from ..store import Snapshot, Status, Verdict
    from .shared import Shared

#: Codes checked between two turns of the event loop: a big request never holds it for long (see http.py).
CHECK_SLICE = 64
_ENCODE = encode_json


def query_values(query: bytes | None, name: bytes) -> list[str]:
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


class Checks:
    """The check path (items, readiness, verdicts) both protocols share, and protocol 1's check answer: a part of
    `LocalModule`, reading what it needs from the module's `Shared`."""

    def __init__(self, shared: Shared) -> None:
        self._shared = shared

    def items(self, method: bytes, query: bytes | None, body: bytes, content_type: bytes | None) -> list[Any]:
        """The `cis_list` of a POST body, or the `cis` parameters of a query; refuses none or too many."""
        if method == b"POST" and (body or content_type is not None):
            data = self._shared.json_body(body, content_type)
            raws = data.get("cis_list") if isinstance(data, dict) else None
            if not isinstance(raws, list):
                raise error(400, "bad_request", 'expected {"cis_list": ["<code>", ...]}')
        else:
            try:
                raws = query_values(query, b"cis")
            except UnicodeDecodeError:
                raise error(400, "bad_encoding", "a cis parameter is not percent-encoded UTF-8") from None
        if not raws:
            raise error(400, "no_codes", "no codes given: POST {\"cis_list\": [...]} or GET ?cis=...")
        if len(raws) > self._shared.config.max_codes:
            raise error(413, "too_many_codes", f"at most {self._shared.config.max_codes} codes per request",
                         limit=self._shared.config.max_codes)
        return raws

    def ready_for(self, req_id: str, req_ms: int, client: str | None, raws: list[Any],
                  who: str | None = None) -> Status:
        """The store's status if checks may be answered; else the LM's 4045/4050 refusal, audited."""
        shared = self._shared
        shared.activity.request(client, shared.peer, len(raws))
        shared.organisation_saw(who, client, len(raws))
        try:
            return shared.status.require_ready()
        except HttpError as exc:
            shared.organisation_saw(who, client, 0, len(raws))
            shared.activity.refused(str(raws[0]), f"{exc.extra.get('errorCode', exc.status)} {exc.error}: "
                                                  f"{exc.description}")
            if shared.audit is not None:
                shared.audit.record(req_id, req_ms, client, None, exc.error, [(str(r)[:64], None) for r in raws],
                                    who)
            exc.extra["reqId"] = req_id
            raise

    def _pin_version(self) -> Snapshot:
        """The one place a request takes the database version it answers from: a snapshot of the store, which
        checks every code of the request (across the slices of a big one) and names the version sent."""
        return self._shared.blocklist.snapshot()

    def verdict_steps(self, raws: list[Any], req_id: str, req_ms: int, client: str | None,
                      status: Status, pgs: list[int | None] | None = None, who: str | None = None,
                      ) -> Generator[None, None, tuple[list[Verdict | Unreadable], int]]:
        """One `Verdict` per scan, all from one database version, pausing every CHECK_SLICE codes, and the version.

        A scan that is not a marking code (or not a string) is an `Unreadable` in its place: the request's other
        codes are still answered (docs/service.md, "One unreadable code"). A request of which no code at all can
        be read is refused whole (400 `invalid_code`, audited). A scan whose end cut a tail AI short after its GS
        is answered for its identity (`tail_cut`, docs/codes.md). `pgs`: the product group each till sent, or None
        (a group's minimum price applies to its codes)."""
        max_len = DEFAULT_MAX_CODE_LENGTH
        activity = self._shared.activity
        audit = self._shared.audit
        answers: list[Verdict | Unreadable] = []
        unreadable = 0
        # One request, one version: every code is answered from one snapshot, which names the version sent. A
        # request dropped between two slices (its client hung up) closes it on the way out.
        with self._pin_version() as view:
            check = view.check
            db_version = view.db_version
            for index, raw in enumerate(raws):
                if index and not index % CHECK_SLICE:
                    yield
                try:
                    if not isinstance(raw, str):
                        raise CodeError(f"item {index} is {type(raw).__name__}, not a string")
                    if len(raw) > max_len:
                        raise CodeError(f"longer than {max_len} characters")
                    answers.append(check(raw, pgs[index] if pgs is not None else None, tail_cut=True))
                except CodeError as exc:
                    text = raw[:max_len] if isinstance(raw, str) else str(raw)[:64]
                    activity.refused(text[:64], f"invalid_code: {exc}")
                    answers.append(Unreadable(index, text, getattr(exc, "reason", None) or "invalid",
                                              f"cis_list[{index}] is not a marking code: {exc}"))
                    unreadable += 1
                except NoListError:
                    raise error(400, "not_configured", "the local module is not configured: no list loaded",
                                errorCode=ERROR_NOT_READY, status="not_configured", reqId=req_id) from None
        if unreadable == len(answers):
            first = answers[0]
            assert isinstance(first, Unreadable)
            if audit is not None:
                audit.record(req_id, req_ms, client, db_version, "invalid_code",
                                  [(str(r)[:64], None) for r in raws], who)
            raise error(400, "invalid_code", first.message if len(answers) == 1 else
                        f"no code of the request can be read; {first.message}",
                        index=first.index, reason=first.reason, reqId=req_id)
        if unreadable:
            self._shared.metrics.codes_unreadable += unreadable
        refused = unreadable
        for v in answers:
            if isinstance(v, Unreadable):
                continue
            block = v.block
            if block is not None:
                activity.refused(v.cis, "blocked" + "".join(f"; {x}" for x in (block.reason, block.authority)
                                                                 if x))
                refused += 1
            elif v.sold:
                activity.refused(v.cis, "sold")
                refused += 1
        if refused and who is not None:
            self._shared.organisation_saw(who, client, 0, refused)
        return answers, db_version

    def verdicts(self, raws: list[Any], req_id: str, req_ms: int, client: str | None,
                 status: Status, pgs: list[int | None] | None = None,
                 who: str | None = None) -> tuple[list[Verdict | Unreadable], int]:
        """`verdict_steps` worked at once (protocol 2's envelopes are built per code from the whole list)."""
        steps = self.verdict_steps(raws, req_id, req_ms, client, status, pgs, who)
        while True:
            try:
                next(steps)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]

    def handle_check(self, method: bytes, query: bytes | None, body: bytes, client_id: bytes | None,
                     content_type: bytes | None) -> Response | Steps:
        raws = self.items(method, query, body, content_type)
        now = self._shared.clock()
        req_ms = int(now * 1000)
        req_id = str(uuid.uuid4())
        client = client_id.decode("utf-8", "replace") if client_id else None
        who = self._shared.audit_who()
        status = self.ready_for(req_id, req_ms, client, raws, who)
        steps = self._check_steps(raws, req_id, req_ms, client, status, who)
        if len(raws) <= CHECK_SLICE:
            return Steps(steps).run()
        return Steps(steps)

    def _check_steps(self, raws: list[Any], req_id: str, req_ms: int, client: str | None,
                     status: Status, who: str | None = None) -> Generator[None, None, Response]:
        answers, db_version = yield from self.verdict_steps(raws, req_id, req_ms, client, status, None, who)
        first = next(v for v in answers if not isinstance(v, Unreadable))
        inst = self._shared.instance_uuid(first.instance_id, who)
        version = self._shared.version_uuid(first.instance_id, first.db_version, who)
        grey = self._shared.status.grey_list          # read with the status `ready_for` just refreshed
        codes = []
        blocked = 0
        checked = 0
        for index, v in enumerate(answers):
            if index and not index % CHECK_SLICE:
                yield
            if isinstance(v, Unreadable):
                codes.append(unreadable_json(v, None))
                continue
            codes.append(code_json(v, None, grey))
            blocked += v.blocked
            checked += 1
        self._shared.metrics.codes_checked += checked
        self._shared.metrics.codes_blocked += blocked
        unread = len(answers) - checked
        if self._shared.audit is not None:
            self._shared.audit.record(req_id, req_ms, client, first.db_version, "partial" if unread else "ok",
                              [(v.raw[:64], None) if isinstance(v, Unreadable) else (v.cis, v.blocked)
                               for v in answers], who)
        payload = envelope(req_id, req_ms, inst, version, codes, first, status.state)
        if unread:
            payload["description"] = (f"ok; {unread} of {len(answers)} codes could not be read (their entries: "
                                      f"errorCode {ERROR_UNREADABLE}, isBlocked true)")
            payload["unreadable"] = unread
        return Response(200, _ENCODE(payload).encode())
