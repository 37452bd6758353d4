"""The check path both protocols share: the codes of a request, readiness, one verdict (or one refusal) per code
from one database version, in slices; and protocol 1's check answer (one flat envelope).

A scan that is not a marking code is answered in its own entry (an `Unreadable`), the other codes of the request
as usual; only a request of which no code can be read is refused whole (docs/service.md, "One unreadable code").
Scans whose end cut a tail AI short after a GS are read for their identity (`tail_cut`, docs/codes.md).
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import TYPE_CHECKING, Any, TypeAlias
from urllib.parse import unquote

from .._answer import Answers, Envelope, cis_list, request_id, too_long
from .._codes import CodeError
from .._probe import NotAttachedError
from ..audit import line_ends
from ..store import NoListError
from .answers import ERROR_UNREADABLE, Unreadable
from .config import DEFAULT_MAX_CODE_LENGTH, ERROR_NOT_READY
from .responses import HttpError, Response, Steps, error

if TYPE_CHECKING:
    from .._probe import CheckBatch
    from .organisations import Caller
    from ..store import Blocklist, Snapshot, Status
    from .shared import Shared

#: Who asked, as the audit log records it (`Shared.audit_who`): a token's label, an organisation's `Caller`, or None.
Who: TypeAlias = "str | Caller | None"
#: Codes checked between two turns of the event loop: a big request never holds it for long (see http/).
CHECK_SLICE = 64


def new_request_id() -> str:
    """A request's `reqId`: what `str(uuid.uuid4())` is (a UUID version 4 of 16 bytes of `os.urandom`), made in
    compiled code."""
    return request_id(os.urandom(16))  # type: ignore[no-any-return]


class RequestIds:
    """`new_request_id`, from random bytes taken of `os.urandom` 4 KiB at a time: one system call per 256
    requests instead of one per request. Each id takes 16 bytes of the pool never used before."""

    __slots__ = ("_pool", "_at")

    def __init__(self) -> None:
        self._pool = b""
        self._at = 0

    def __call__(self) -> str:
        at = self._at
        if at + 16 > len(self._pool):
            self._pool, at = os.urandom(4096), 0
        self._at = at + 16
        return request_id(self._pool[at:at + 16])  # type: ignore[no-any-return]


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


class Checked:
    """The compiled verdicts of a request's scans: `_probe.CheckBatch`es in order, all from one database version
    (`db_version`), and the `Unreadable` of each scan they flag as unreadable, by its index in the request."""

    __slots__ = ("batches", "unreadable", "db_version")

    def __init__(self) -> None:
        self.batches: list[CheckBatch] = []
        self.unreadable: dict[int, Unreadable] = {}
        self.db_version = 0


_new_tuple = tuple.__new__


def _unreadable(raw: Any, index: int, refused: CodeError) -> tuple[Unreadable, str]:
    """The `Unreadable` of scan `index` of a request, which the compiled check refused with `refused` (the batch's
    `CodeError`), and the error's text for the status page's refusals: the error `check` gives for the scan alone
    (not a string, longer than DEFAULT_MAX_CODE_LENGTH, or the parser's reason, which the batch kept as
    `refused.alone`: the scan is not parsed again)."""
    max_len = DEFAULT_MAX_CODE_LENGTH
    exc: Exception
    if type(raw) is str and len(raw) <= max_len:       # the usual case (a JSON string), in the fewest steps
        exc = refused.alone
        why = str(exc)
        return _new_tuple(Unreadable, (index, raw, exc.reason or "invalid",   # Unreadable(...), in C
                                       f"cis_list[{index}] is not a marking code: {why}")), why
    if not isinstance(raw, str):
        exc = CodeError(f"item {index} is {type(raw).__name__}, not a string")
    elif len(raw) > max_len:
        exc = CodeError(f"longer than {max_len} characters")
    else:
        exc = getattr(refused, "alone", refused)
    text = raw[:max_len] if isinstance(raw, str) else str(raw)[:64]
    why = str(exc)
    return Unreadable(index, text, getattr(exc, "reason", None) or "invalid",
                      f"cis_list[{index}] is not a marking code: {why}"), why


class Checks:
    """The check path (items, readiness, verdicts) both protocols share, and protocol 1's check answer: a part of
    `LocalModule`, reading what it needs from the module's `Shared`."""

    def __init__(self, shared: Shared) -> None:
        self._shared = shared
        #: The compiled encoder of both protocols' check answers (and their audit lines), one pass per request.
        self.answers = Answers(Unreadable, ERROR_UNREADABLE)
        #: Protocol 1's request ids (protocol 2 draws a request's ids in one `os.urandom` call of its own).
        self.request_id = RequestIds()
        self._ends: tuple[str | None, Who, tuple[str, str]] = (None, None, line_ends(None, None))
        #: The instance's and the version's UUIDs of the last request of no organisation: `(instance_id,
        #: db_version, inst, version)` (`Shared.instance_uuid` and `version_uuid` are functions of the two).
        self._ids: tuple[Any, ...] = (None, None, "", "")

    def items(self, method: bytes, query: bytes | None, body: bytes, content_type: bytes | None) -> list[Any]:
        """The `cis_list` of a POST body, or the `cis` parameters of a query; refuses none or too many."""
        return self.plain_items(method, query, body, content_type)[0]

    def plain_items(self, method: bytes, query: bytes | None, body: bytes,
                    content_type: bytes | None) -> tuple[list[Any], bool]:
        """`items`, and whether every item is known to be a str (so protocol 2 has no object among them to read).

        A body that is exactly `{"cis_list": ["<code>", ...]}` in ASCII is read in compiled code
        (`_answer.cis_list`: the same list of str `json` gives); any other goes through `Shared.json_body` as
        before, with its errors."""
        plain = False
        if method == b"POST" and (body or content_type is not None):
            raws = None
            if body and (content_type == b"application/json" or content_type is None):
                raws = cis_list(body)
            if raws is not None:
                plain = True
            else:
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
        return raws, plain

    def ready_for(self, req_id: str, req_ms: int, client: str | None, raws: list[Any],
                  who: Who = None) -> Status:
        """The store's status if checks may be answered; else the LM's 4045/4050 refusal, audited."""
        shared = self._shared
        shared.activity.request(client, shared.peer, len(raws))
        if who is not None:
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
        """The version a request of several slices answers from: a snapshot of the store, which checks every code
        of the request (across its slices) and names the version sent. A request of one slice is one compiled
        call on the blocklist (`Blocklist.check_batch`), which takes one version itself."""
        return self._shared.blocklist.snapshot()

    def check_steps(self, raws: list[Any], req_id: str, req_ms: int, client: str | None,
                    status: Status, pgs: list[int | None] | None = None, who: Who = None,
                    ) -> Generator[None, None, Checked]:
        """The compiled verdicts of the scans (`Checked`: `_probe.CheckBatch`es of CHECK_SLICE codes, all from one
        database version, pausing between two), with an `Unreadable` for each scan that is not a marking code.

        A scan that is not a marking code (or not a string, or longer than DEFAULT_MAX_CODE_LENGTH) is answered
        in its own entry: the request's other codes are still answered (docs/service.md, "One unreadable code").
        A request of which no code at all can be read is refused whole (400 `invalid_code`, audited). A scan
        whose end cut a tail AI short after its GS is answered for its identity (`tail_cut`, docs/codes.md).
        `pgs`: the product group each till sent, or None (a group's minimum price applies to its codes). No
        Python object is made for a free code: the answer is written from the batches' arrays."""
        checked = Checked()
        # One request, one version: every code is answered from one snapshot, which names the version sent. A
        # request dropped between two slices (its client hung up) closes it on the way out.
        with self._pin_version() as view:
            checked.db_version = view.db_version
            for start in range(0, len(raws), CHECK_SLICE):
                if start:
                    yield
                self._check_slice(view, checked, raws, start, pgs, req_id)
        return self._checked(checked, raws, req_id, req_ms, client, who)

    def check_all(self, raws: list[Any], req_id: str, req_ms: int, client: str | None,
                  status: Status, pgs: list[int | None] | None = None, who: Who = None) -> Checked:
        """`check_steps` worked at once, without a pause (a request of one slice; protocol 2's envelopes are all
        written in one pass)."""
        checked = Checked()
        if len(raws) <= CHECK_SLICE:
            # One batch, one compiled call: it takes one version and names it, with no snapshot to take.
            checked.db_version = self._check_slice(self._shared.blocklist, checked, raws, 0, pgs, req_id)
            return self._checked(checked, raws, req_id, req_ms, client, who)
        view = self._pin_version()
        try:
            checked.db_version = view.db_version
            for start in range(0, len(raws), CHECK_SLICE):
                self._check_slice(view, checked, raws, start, pgs, req_id)
        finally:
            view.close()
        return self._checked(checked, raws, req_id, req_ms, client, who)

    def _check_slice(self, view: Snapshot | Blocklist, checked: Checked, raws: list[Any], start: int,
                     pgs: list[int | None] | None, req_id: str) -> Any:
        """The compiled verdicts of `raws[start:start + CHECK_SLICE]` into `checked` (one `CheckBatch`), from
        `view`: the request's snapshot, or for a request of one slice the blocklist itself (`Blocklist.check_batch`:
        one call, one version). Returns the batch's `db_version`."""
        if start == 0 and len(raws) <= CHECK_SLICE:        # the whole request: no copy of it
            chunk, groups = raws, pgs
        else:
            chunk = raws[start:start + CHECK_SLICE]
            groups = None if pgs is None else pgs[start:start + CHECK_SLICE]
        long = too_long(chunk, DEFAULT_MAX_CODE_LENGTH)
        if long:
            chunk = [None if index in long else raw for index, raw in enumerate(chunk)]
        try:
            if groups is None:
                try:        # the compiled pass itself (`check_batch` without its groups' check)
                    batch = view._check_batch(chunk, None, True, False)
                except NotAttachedError:        # closed: the store's own error; else attached again
                    batch = view.check_batch(chunk, None, tail_cut=True)
            else:
                batch = view.check_batch(chunk, groups, tail_cut=True)
        except NoListError:
            raise error(400, "not_configured", "the local module is not configured: no list loaded",
                        errorCode=ERROR_NOT_READY, status="not_configured", reqId=req_id) from None
        errors = batch.errors
        if errors:
            refused = self._shared.activity.refused
            for index, err in errors.items():
                item, why = _unreadable(raws[start + index], start + index, err)
                refused(item.raw, "invalid_code: " + why)
                checked.unreadable[start + index] = item
        checked.batches.append(batch)
        return batch.db_version

    def _checked(self, checked: Checked, raws: list[Any], req_id: str, req_ms: int, client: str | None,
                 who: Who) -> Checked:
        """A request's verdicts, all taken: refused whole when none of its codes can be read (audited); the
        unreadable counted, the blocked and sold ones on the status page's refusals."""
        if len(checked.unreadable) == len(raws):
            first = checked.unreadable[0]
            if self._shared.audit is not None:
                self._shared.audit.record(req_id, req_ms, client, checked.db_version, "invalid_code",
                                          [(str(r)[:64], None) for r in raws], who)
            raise error(400, "invalid_code", first.message if len(raws) == 1 else
                        f"no code of the request can be read; {first.message}",
                        index=first.index, reason=first.reason, reqId=req_id)
        if checked.unreadable:
            self._shared.metrics.codes_unreadable += len(checked.unreadable)
        elif len(checked.batches) == 1 and not checked.batches[0].verdicts:
            return checked          # free codes only: nothing refused to count
        activity = self._shared.activity
        refused = len(checked.unreadable)
        for batch in checked.batches:
            for v in batch.verdicts.values():       # the exact path's: every blocked or sold code, in order
                block = v.block
                if block is not None:
                    reason, authority = block.reason, block.authority
                    if reason and authority:
                        activity.refused(v.cis, f"blocked; {reason}; {authority}")
                    elif reason or authority:
                        activity.refused(v.cis, f"blocked; {reason or authority}")
                    else:
                        activity.refused(v.cis, "blocked")
                    refused += 1
                elif v.sold:
                    activity.refused(v.cis, "sold")
                    refused += 1
        if refused and who is not None:
            self._shared.organisation_saw(who, client, 0, refused)
        return checked

    def handle_check(self, method: bytes, query: bytes | None, body: bytes, client_id: bytes | None,
                     content_type: bytes | None) -> Response | Steps:
        raws = self.plain_items(method, query, body, content_type)[0]
        req_ms = int(self._shared.clock() * 1000)
        req_id = self.request_id()
        client = client_id.decode("utf-8", "replace") if client_id else None
        who = self._shared.audit_who()
        status = self.ready_for(req_id, req_ms, client, raws, who)
        if len(raws) <= CHECK_SLICE:        # one slice: answered at once, without the slices' generator
            return Response(200, self._one_slice_v1(raws, req_id, req_ms, client, status, who))
        return Steps(self._check_steps(raws, req_id, req_ms, client, status, who))

    def _one_slice_v1(self, raws: list[Any], req_id: str, req_ms: int, client: str | None, status: Status,
                      who: Who) -> bytes:
        """Protocol 1's answer to a request of one slice (CHECK_SLICE codes at most: a till's scan is one code),
        checked and encoded in one go: `check_all`, `_checked` and `_encode_v1` with no call between them but the
        compiled check's (one call on the blocklist, one version: no snapshot) and the encoder's (`_checked` only
        when something was refused)."""
        shared = self._shared
        checked = Checked()
        checked.db_version = self._check_slice(shared.blocklist, checked, raws, 0, None, req_id)
        if checked.unreadable or checked.batches[0].verdicts:
            self._checked(checked, raws, req_id, req_ms, client, who)
        body, line, checked_codes, blocked = self.answers.v1_batches(
            checked.batches, checked.unreadable, self.envelope(req_id, req_ms, checked, status, client, who))
        metrics = shared.metrics
        metrics.codes_checked += checked_codes
        metrics.codes_blocked += blocked
        if line is not None:
            shared.audit.record_lines(req_ms, line, 1)  # type: ignore[union-attr]
        return body  # type: ignore[no-any-return]

    def _check_steps(self, raws: list[Any], req_id: str, req_ms: int, client: str | None,
                     status: Status, who: Who = None) -> Generator[None, None, Response]:
        checked = yield from self.check_steps(raws, req_id, req_ms, client, status, None, who)
        return Response(200, self._encode_v1(checked, req_id, req_ms, status, client, who))

    def _encode_v1(self, checked: Checked, req_id: str, req_ms: int, status: Status, client: str | None,
                   who: Who) -> bytes:
        """Protocol 1's answer body, in one compiled pass (lmcz_fast/_answer.pyx) that also writes the request's
        audit line and counts the codes checked and blocked."""
        body, line, checked_codes, blocked = self.answers.v1_batches(
            checked.batches, checked.unreadable, self.envelope(req_id, req_ms, checked, status, client, who))
        self._shared.metrics.codes_checked += checked_codes
        self._shared.metrics.codes_blocked += blocked
        if line is not None:
            self._shared.audit.record_lines(req_ms, line, 1)  # type: ignore[union-attr]
        return body  # type: ignore[no-any-return]

    def envelope(self, req_id: str, req_ms: int, checked: Checked, status: Status, client: str | None,
                 who: Who) -> Envelope:
        """What a check answer says around its codes (the compiled encoder's `Envelope`): the UUIDs of the
        instance and the version that checked them, the grey-list switch as read with the status `ready_for` just
        refreshed (the organisation's own for a request of one: `Member.grey_list`), and what the audit lines name (no audit log: none written)."""
        shared = self._shared
        batch = checked.batches[0]
        ids = self._ids
        plain = who is None or who.__class__ is str         # not an organisation's request
        grey = shared.status.grey_list if plain else who.member.grey_list    # type: ignore[union-attr]
        if plain and ids[0] is not None and ids[0] == batch.instance_id and ids[1] == batch.db_version:
            inst, version = ids[2], ids[3]
        else:
            inst = shared.instance_uuid(batch.instance_id, who)
            version = shared.version_uuid(batch.instance_id, batch.db_version, who)
            if plain:
                self._ids = (batch.instance_id, batch.db_version, inst, version)
        if shared.audit is not None:        # `audit.line_ends(client, who)`, remembered (a till sends one client id)
            ends = self._ends
            if ends[0] != client or ends[1] != who:
                ends = self._ends = (client, who, line_ends(client, who))
            audit_client, audit_tail = ends[2]
        else:
            audit_client, audit_tail = None, ""
        return Envelope(req_id, req_ms, inst, version, status.state, grey, audit_client,
                        audit_tail, shared.audit_tag or "")
