"""The checker's online side: the True API request of a receipt (chunked, bounded by the deadline and the late
grace), its answer through the refusal rules, and the logging of an answer that came too late."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from ..trueapi import CheckResponse, TrueApiClient, TrueApiError, split
from .reasons import Reason
from .rules import _decided, _int_field, _online_groups, online_reasons, price_reasons
from .verdicts import _Item

log = logging.getLogger("lmcz_fast.checker")  # the checker's one logger, whichever file logs


class _OnlineSide:
    """The online half of a `Checker` (a mixin: `Checker.__init__` sets these attributes)."""

    online: TrueApiClient | None
    deadline: float
    late_grace: float
    max_late: int
    fiscal_drive_number: str | None
    _late: int
    _late_lock: threading.Lock

    async def _online(self, codes: list[str], until: float) -> list[tuple[int, CheckResponse | BaseException]]:
        """All chunks of the receipt, each its own codes/check request, concurrently; runs at most to
        deadline + late_grace, then gives up (the caller stopped waiting at the deadline)."""
        assert self.online is not None
        client = self.online
        limit = max(0.001, until + self.late_grace - time.monotonic())
        chunks = list(split(codes, client.max_codes_per_request))

        async def one(chunk: Sequence[str]) -> CheckResponse:
            return await client.check_codes(
                chunk, fiscal_drive_number=self.fiscal_drive_number, try_until=until, slow_after=self.deadline)

        loop = asyncio.get_running_loop()
        tasks = [loop.create_task(one(c)) for c in chunks]
        for task in tasks:
            task.add_done_callback(_retrieve)
        try:
            _done, pending = await asyncio.wait(tasks, timeout=limit)
        finally:
            for task in tasks:
                task.cancel()
        if pending:
            raise TrueApiError("timeout", f"no online answer within {self.deadline} + {self.late_grace} s")
        return [(len(chunk), _outcome(task)) for chunk, task in zip(chunks, tasks)]

    def _all_online(self, items: list[_Item], online: Any) -> bool:
        """Whether the online answer decides every code sent (then the Local Module's answer is not needed)."""
        if not isinstance(online, list):
            return False
        now = time.time()
        return all(r is not None and online_reasons(e, now) is not None for e, r in _online_entries(online))

    @staticmethod
    def _online_price_reasons(item: _Item, entry: Mapping[str, Any]) -> tuple[Reason, ...]:
        """The price rules on an online answer: the code's own mrp (else the answer's), the answer's smp; the
        group as given, else the answer's single `groupIds` entry, else the code's form."""
        pg = item.pg if item.pg is not None else _online_groups(entry)
        mrp = item.mrp if item.mrp is not None else _int_field(entry, "mrp")
        return price_reasons(item.price, pg, mrp, _int_field(entry, "smp"))

    def _leave_late(self, fut: Any, started: float, items: list[_Item]) -> None:
        """The deadline passed: stop waiting, but let the request run on (up to `late_grace`) to log its answer."""
        with self._late_lock:
            if self._late >= self.max_late:
                fut.cancel()
                return
            self._late += 1

        def done(f: Any) -> None:
            with self._late_lock:
                self._late -= 1
            if f.cancelled():
                return
            outcome = _outcome(f)
            after = time.monotonic() - started
            if isinstance(outcome, list):
                now = time.time()
                said = [
                    (_decided(r).value if (r := online_reasons(e, now)) is not None else "malformed")
                    for e, _resp in _online_entries(outcome)
                ]
                sent = [i for i in items if i.code is not None]
                used = [_decided(i.offline_reasons).value if i.offline_reasons is not None else "unchecked"
                        for i in sent]
                log.warning("late online answer after %.3f s (deadline %.3f s), not used: online said %s, "
                            "offline said %s, for %s", after, self.deadline, said, used, [i.cis for i in sent])
            else:
                log.warning("online attempt ended after %.3f s (deadline %.3f s) without an answer: %s",
                            after, self.deadline, outcome)

        fut.add_done_callback(done)


def _online_entries(results: list[tuple[int, Any]]) -> list[tuple[Any, CheckResponse | None]]:
    """Flatten the chunked answers to one (entry, response) per code sent, in order. A failed chunk, or one whose
    answer does not hold exactly one entry per code sent, yields (None, None) for each of its codes."""
    out: list[tuple[Any, CheckResponse | None]] = []
    for count, result in results:
        if isinstance(result, CheckResponse) and len(result.codes) == count:
            out.extend((entry, result) for entry in result.codes)
        else:
            out.extend((None, None) for _ in range(count))
    return out


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Mark a finished task's exception as seen: the outcome is read through `_outcome`, or deliberately not."""
    if not task.cancelled():
        task.exception()


def _outcome(fut: Any) -> Any:
    """A finished future's result, or its exception as a value."""
    if fut.cancelled():
        return asyncio.CancelledError()
    exc = fut.exception()
    return exc if exc is not None else fut.result()
