"""The check answers as the service built them before the compiled encoder (issue 24): one `Verdict` per scan
from `Snapshot.check`, a dict per code, an envelope, `json.JSONEncoder.encode`, audit records as tuples. Installed
on a `LocalModule` (`install`), it answers as the service did: the oracle tests/test_answer_encoder.py compares the
compiled answers with, byte for byte.
"""

from __future__ import annotations

import uuid
from collections.abc import Generator
from typing import Any

from lmcz_fast._codes import CodeError
from lmcz_fast.service import LocalModule
from lmcz_fast.service.answers import Unreadable, reference_v1, reference_v2
from lmcz_fast.service.checks import Checks
from lmcz_fast.service.config import DEFAULT_MAX_CODE_LENGTH, ERROR_NOT_READY
from lmcz_fast.service.responses import Response, error
from lmcz_fast.service.v2 import ProtocolTwo, cis_items
from lmcz_fast.store import NoListError

#: Answers the oracle built, by protocol: a test sees that the reference answered, not the compiled encoder twice.
CALLS = {"v1": 0, "v2": 0}


def verdict_steps(checks: Checks, raws: list[Any], req_id: str, req_ms: int, client: str | None,
                  pgs: list[int | None] | None, who: Any) -> Generator[None, None, tuple[list[Any], int]]:
    """One `Verdict` per scan (or an `Unreadable`), all from one version, pausing every 64 codes."""
    shared = checks._shared
    max_len = DEFAULT_MAX_CODE_LENGTH
    answers: list[Any] = []
    unreadable = 0
    with shared.blocklist.snapshot() as view:
        db_version = view.db_version
        for index, raw in enumerate(raws):
            if index and not index % 64:
                yield
            try:
                if not isinstance(raw, str):
                    raise CodeError(f"item {index} is {type(raw).__name__}, not a string")
                if len(raw) > max_len:
                    raise CodeError(f"longer than {max_len} characters")
                answers.append(view.check(raw, pgs[index] if pgs is not None else None, tail_cut=True))
            except CodeError as exc:
                text = raw[:max_len] if isinstance(raw, str) else str(raw)[:64]
                shared.activity.refused(text[:64], f"invalid_code: {exc}")
                answers.append(Unreadable(index, text, getattr(exc, "reason", None) or "invalid",
                                          f"cis_list[{index}] is not a marking code: {exc}"))
                unreadable += 1
            except NoListError:
                raise error(400, "not_configured", "the local module is not configured: no list loaded",
                            errorCode=ERROR_NOT_READY, status="not_configured", reqId=req_id) from None
    if unreadable == len(answers):
        first = answers[0]
        if shared.audit is not None:
            shared.audit.record(req_id, req_ms, client, db_version, "invalid_code",
                                [(str(r)[:64], None) for r in raws], who)
        raise error(400, "invalid_code", first.message if len(answers) == 1 else
                    f"no code of the request can be read; {first.message}",
                    index=first.index, reason=first.reason, reqId=req_id)
    if unreadable:
        shared.metrics.codes_unreadable += unreadable
    refused = unreadable
    for v in answers:
        if isinstance(v, Unreadable):
            continue
        block = v.block
        if block is not None:
            shared.activity.refused(v.cis, "blocked" + "".join(f"; {x}" for x in (block.reason, block.authority)
                                                               if x))
            refused += 1
        elif v.sold:
            shared.activity.refused(v.cis, "sold")
            refused += 1
    if refused and who is not None:
        shared.organisation_saw(who, client, 0, refused)
    return answers, db_version


def _grey(shared: Any, who: Any) -> bool:
    """The grey switch a request answers by: the store's, or an organisation's own (its `Caller.member`)."""
    return shared.status.grey_list if who is None or isinstance(who, str) else who.member.grey_list  # type: ignore[no-any-return]


def _check_steps_v1(checks: Checks, raws: list[Any], req_id: str, req_ms: int, client: str | None, status: Any,
                    who: str | None = None) -> Generator[None, None, Response]:
    CALLS["v1"] += 1
    shared = checks._shared
    answers, _ = yield from verdict_steps(checks, raws, req_id, req_ms, client, None, who)
    first = next(v for v in answers if not isinstance(v, Unreadable))
    inst = shared.instance_uuid(first.instance_id, who)
    version = shared.version_uuid(first.instance_id, first.db_version, who)
    body, codes = reference_v1(answers, req_id, req_ms, inst, version, _grey(shared, who), status.state)
    checked = [v for v in answers if not isinstance(v, Unreadable)]
    shared.metrics.codes_checked += len(checked)
    shared.metrics.codes_blocked += sum(v.blocked for v in checked)
    if shared.audit is not None:
        shared.audit.record(req_id, req_ms, client, first.db_version,
                            "partial" if len(checked) < len(answers) else "ok", codes, who)
    return Response(200, body)


def _handle_check_v2(two: ProtocolTwo, method: bytes, query: bytes | None, body: bytes, client_id: bytes | None,
                     content_type: bytes | None) -> Response:
    CALLS["v2"] += 1
    shared = two._shared
    pairs = cis_items(two._checks.items(method, query, body, content_type))
    raws = [raw for raw, _ in pairs]
    pgs = [pg for _, pg in pairs]
    req_ms = int(shared.clock() * 1000)
    req_id = str(uuid.uuid4())
    client = client_id.decode("utf-8", "replace") if client_id else None
    who = shared.audit_who()
    status = two._checks.ready_for(req_id, req_ms, client, raws, who)
    steps = verdict_steps(two._checks, raws, req_id, req_ms, client, pgs, who)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            answers, db_version = done.value
            break
    req_ids = [req_id if index == 0 else str(uuid.uuid4()) for index in range(len(answers))]
    out, records = reference_v2(answers, pgs, req_ids, req_ms,
                                lambda i, v: (shared.instance_uuid(i, who), shared.version_uuid(i, v, who)),
                                _grey(shared, who), status.state)
    for verdict, (rid, outcome, codes) in zip(answers, records):
        if shared.audit is not None:
            shared.audit.record(rid, req_ms, client, db_version if outcome == "invalid_code" else
                                verdict.db_version, outcome, codes, who)
    checked = [v for v in answers if not isinstance(v, Unreadable)]
    shared.metrics.codes_checked += len(checked)
    shared.metrics.codes_blocked += sum(v.blocked for v in checked)
    return Response(200, out)


def install(module: LocalModule) -> None:
    """Make `module` answer checks as the service did before the compiled encoder (both protocols' routes)."""
    checks = module.checks
    checks._check_steps = _check_steps_v1.__get__(checks)  # type: ignore[method-assign]
    v2_check = _handle_check_v2.__get__(module.v2)
    for key, route in list(module._routes.items()):
        if route[1] == module.v2.handle_check:
            module._routes[key] = (route[0], v2_check, route[2], route[3])
