"""The front's bookkeeping of the module's answers (`Fronting._record_answered`): deferred to the next turn of the
loop, it still records every answer given, in order, once — also those still pending when the service closes, and
the others when recording one of them fails. In process, with stand-ins for the service's shared state and the front
(milliseconds)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from lmcz_fast.front.forwarder import Outcome
from lmcz_fast.front.pool import Answer
from lmcz_fast.service.fronting import Fronting
from lmcz_fast.service.responses import Deferred


class _Recorder:
    """What `_record_answered` tells the shared state and the front, in order."""

    def __init__(self) -> None:
        self.seen: list[tuple[Any, ...]] = []
        self.fail_for: str | None = None

    def record(self, req_id: str, stamp: int, client: Any, version: Any, outcome: str, codes: Any, who: Any) -> None:
        if req_id == self.fail_for:
            raise OSError("the audit log's disk is full")
        self.seen.append(("audit", req_id, stamp, client, outcome, tuple(codes)))

    def observe(self, protocol: int, payload: Any, version: Any, codes: Any) -> None:
        self.seen.append(("observe", payload.get("reqId"), version))


def _fronting(rec: _Recorder) -> Fronting:
    metrics = SimpleNamespace(codes_checked=0, codes_blocked=0, observe=lambda *a: None)
    shared = SimpleNamespace(
        audit=rec, metrics=metrics, clock=lambda: 1.0, status=SimpleNamespace(last=SimpleNamespace(version=7)),
        activity=SimpleNamespace(refused=lambda cis, why: rec.seen.append(("refused", cis)),
                                 request=lambda client, peer, n: None),
        organisation_saw=lambda *a: None)
    front = SimpleNamespace(count=lambda kind: None, observe=rec.observe, close=lambda: None)
    return Fronting(shared, front)  # type: ignore[arg-type]


def _answer(fronting: Fronting, req_id: str, blocked: bool) -> None:
    payload = {"code": 0, "reqId": req_id, "reqTimestamp": 5, "codes": [{"cis": "c-" + req_id, "isBlocked": blocked}]}
    outcome = Outcome(Answer(200, b"{}", b"application/json"), "ok", payload, 0.0, payload["codes"])
    fronting._official(Deferred("check"), ("peer", None, "check", 0.0, None, None), 1, outcome, b"till-1")


def test_answers_are_recorded_in_the_next_turn_and_on_close() -> None:
    rec = _Recorder()

    async def main() -> None:
        fronting = _fronting(rec)
        _answer(fronting, "a", False)
        _answer(fronting, "b", True)
        assert rec.seen == []                                  # the tills' answers first, the bookkeeping after
        await asyncio.sleep(0)
        assert [s[:2] for s in rec.seen] == [("audit", "a"), ("observe", "a"), ("refused", "c-b"), ("audit", "b"),
                                             ("observe", "b")]
        assert fronting.shared.metrics.codes_checked == 2 and fronting.shared.metrics.codes_blocked == 1
        rec.seen.clear()
        rec.fail_for = "c"
        _answer(fronting, "c", False)                          # its audit record fails: logged, the next one kept
        _answer(fronting, "d", False)
        await fronting.close()                                 # before the loop turns again: nothing is lost
        assert [s[:2] for s in rec.seen] == [("audit", "d"), ("observe", "d")]
        await asyncio.sleep(0)                                 # the turn's own call finds nothing left to record
        assert [s[:2] for s in rec.seen] == [("audit", "d"), ("observe", "d")]

    asyncio.run(main())
