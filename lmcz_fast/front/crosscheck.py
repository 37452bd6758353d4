"""The cross-check: every code the official module answered is checked here too, after the till has its answer,
and the two answers are compared field by field (docs/front.md, "The cross-check").

The official module's database layout is not public, so the replica's mapping (`replicate --mapping`) is a guess;
the cross-check turns it into a measured fact in every store that runs the front. Per field (`isBlocked`, `sold`,
`mrp`, `smp`, `isGreyGtin`) it counts agreements and disagreements (`lmcz_front_agree_total{field}`,
`lmcz_front_disagree_total{field}` on /metrics), logs each disagreement with the code's identity (GTIN + serial:
never the crypto tail) and both versions (the official `version`/`inst`, our database version), and keeps the last
ones for the status page. A disagreement on `isBlocked` is an alarm (the alert `LmczFrontBlockedDisagrees`, a
warning on the status page): the replica or its mapping is wrong.

Off the till's path: the forwarder calls `observe_official` after the till's answer was written; it keeps each
code of the answer as a flat row (its `cis`, group and five fields, the envelope's `version`/`inst`) in a bounded
queue and asks for a drain `BATCH_DELAY` (50 ms) later on the event loop (without a loop, the caller drains with
`drain()`; `observe` takes an answer's body as received). A drain takes one snapshot of the store for all the
answers queued meanwhile, compares at most `slice_codes` codes, then yields the loop again. When the queue is
full, answers are dropped and counted (`lmcz_front_crosscheck_dropped_total`), never waited for.

What is compared, per code the official module answered (both protocols: v1's flat `codes[]`, v2's `results[]`
of one-code envelopes): each of the five fields that its answer holds, with ours for the module's `cis` and first
`groupIds` entry from one version of the store (`Snapshot.check`, the service's check path): `isBlocked` with
`blocked`, `sold` with `sold`, `mrp`/`smp` (kopecks or null; 100.0 is 100) with ours, `isGreyGtin` with ours as the
service answers it (the grey GTIN while the grey list is switched on). A field its answer leaves out is not
counted. A code we cannot read, a code the module answered with an error, or a store that holds no list, is
counted as skipped, by reason.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._codes import CodeError
from ..store import NoListError

if TYPE_CHECKING:
    from ..store import Blocklist, Verdict

log = logging.getLogger("lmcz_fast.front")

#: The fields compared, in the official module's names.
FIELDS = ("isBlocked", "sold", "mrp", "smp", "isGreyGtin")
#: Codes waiting to be compared at most; past it answers are dropped (and counted).
DEFAULT_QUEUE_CODES = 20_000
#: Codes compared per turn of the event loop.
DEFAULT_SLICE = 64
_ABSENT = object()
#: Seconds a drain waits after the first answer queued, so that one drain (one snapshot, one turn of the loop, one
#: timer) takes many answers: 25 at 500 checks/s. At 5 ms a drain took 2-3 answers, and the cross-check cost ~30 us of
#: the front's ~230 us of CPU per forwarded check at 500 checks/s from 200 tills; at 50 ms, ~11 us (issue 21). An
#: alarm 50 ms later changes nothing for whoever reads it.
BATCH_DELAY = 0.05
#: Disagreements kept for the status page.
MAX_RECENT = 20
#: Disagreement log lines per second at most (the rest are counted and the count logged with the next line).
LOG_PER_SECOND = 20


@dataclass(frozen=True, slots=True)
class Disagreement:
    """One field on which the official module and the local store answered one code differently."""

    at: float
    field: str
    identity: str
    official: Any
    ours: Any
    official_version: str
    official_inst: str
    our_version: int


#: One code of an official answer as the queue keeps it: `(cis, pg, errorCode, isBlocked, sold, mrp, smp,
#: isGreyGtin, version, inst)`, a field it left out as `_ABSENT`. Flat and immutable, so the queue holds no
#: decoded answer (nothing for the garbage collector to walk while it waits).
Row = tuple[Any, ...]


def rows_of(protocol: int, payload: Any) -> list[Row]:
    """The rows of an official check answer (v1: one envelope's `codes[]`; v2: `results[]`)."""
    if not isinstance(payload, dict):
        return []
    envelopes = payload.get("results") if protocol == 2 or "results" in payload else (payload,)
    rows: list[Row] = []
    absent = _ABSENT
    for envelope in envelopes if isinstance(envelopes, (list, tuple)) else ():
        if type(envelope) is not dict or type(envelope.get("codes")) is not list:
            continue
        version, inst = envelope.get("version", ""), envelope.get("inst", "")
        for code in envelope["codes"]:
            if type(code) is dict:
                get = code.get
                rows.append((get("cis"), _pg(code), get("errorCode"), get("isBlocked", absent), get("sold", absent),
                             get("mrp", absent), get("smp", absent), get("isGreyGtin", absent), version, inst))
    return rows


def _pg(code: dict[str, Any]) -> int | None:
    groups = code.get("groupIds")
    first = groups[0] if type(groups) is list and groups else None
    return first if type(first) is int else None


def _same(official: Any, ours: Any) -> bool:
    """Whether two field values agree: equal and of one JSON type (a price 100.0 is 100; true is never 1)."""
    if official is ours:
        return True
    if type(official) is float and official.is_integer() and type(ours) is int:
        return int(official) == ours
    return type(official) is type(ours) and official == ours


class CrossCheck:
    """Compares the official module's answers with the local store's, off the till's path; see the module doc."""

    def __init__(self, blocklist: Blocklist, *, queue_codes: int = DEFAULT_QUEUE_CODES,
                 slice_codes: int = DEFAULT_SLICE, clock: Callable[[], float] = time.time) -> None:
        self._blocklist = blocklist
        self.queue_codes = queue_codes
        self.slice_codes = slice_codes
        self._clock = clock
        self._queue: collections.deque[tuple[list[Row] | None, Any, int]] = collections.deque()
        self._queued_codes = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scheduled = False
        self.enabled = True
        self.agree = dict.fromkeys(FIELDS, 0)
        self.disagree = dict.fromkeys(FIELDS, 0)
        self.codes = 0
        #: CPU time spent comparing (s) and drains made: the cross-check's own cost, on /metrics.
        self.seconds = 0.0
        self.drains = 0
        self.dropped = 0
        self.skipped: dict[str, int] = {}
        self.recent: collections.deque[Disagreement] = collections.deque(maxlen=MAX_RECENT)
        self.last_blocked_disagreement: Disagreement | None = None
        self._log_second = 0
        self._logged = 0
        self._held = 0

    # -- the till's side: enqueue only --------------------------------------------------------------------------

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Drain on `loop`, after the turn that answered (the server calls this when it starts)."""
        self._loop = loop

    def observe(self, protocol: int, answer: bytes) -> None:
        """An official check answer (`protocol` 1 or 2; the body as received): queued for comparison. Costs an
        append; never blocks, never raises."""
        if self.enabled:
            self._enqueue(None, (protocol, answer), 1)

    def observe_official(self, protocol: int, codes: list[dict[str, Any]], payload: dict[str, Any],
                         local_version: int | None = None) -> None:
        """The forwarder's observer (`front.Front.observers`): a check the module answered, already decoded, after
        the till has it. Our side checks each code by the `cis` (and `groupIds`) the module answered for it."""
        if self.enabled:
            self._enqueue(rows_of(protocol, payload), None, len(codes))

    def _enqueue(self, rows: list[Row] | None, body: Any, n: int) -> None:
        with self._lock:
            if self._queued_codes + n > self.queue_codes:
                self.dropped += n
                return
            self._queue.append((rows, body, n))
            self._queued_codes += n
            schedule = not self._scheduled and self._loop is not None
            if schedule:
                self._scheduled = True
        if schedule:
            loop = self._loop
            assert loop is not None
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            try:
                if running is loop:         # the forwarder's observer: no wake-up of the loop needed
                    loop.call_later(BATCH_DELAY, self._drain_turn)
                else:
                    loop.call_soon_threadsafe(loop.call_later, BATCH_DELAY, self._drain_turn)
            except RuntimeError:            # the loop closed: drained by nobody
                pass

    @property
    def pending(self) -> int:
        """Codes waiting to be compared."""
        return self._queued_codes

    # -- the comparing side -------------------------------------------------------------------------------------

    def _drain_turn(self) -> None:
        more = self.drain(self.slice_codes)
        with self._lock:
            self._scheduled = more and self._loop is not None
        if self._scheduled:
            assert self._loop is not None
            self._loop.call_soon(self._drain_turn)

    def drain(self, max_codes: int | None = None) -> bool:
        """Compare queued answers, about `max_codes` codes (None: all), all from one version of the store.
        Returns whether more are queued."""
        with self._lock:
            batch = []
            taken = 0
            while self._queue and (max_codes is None or taken < max_codes):
                item = self._queue.popleft()
                batch.append(item)
                taken += item[2]
            self._queued_codes -= taken
            more = bool(self._queue)
        if not batch:
            return more
        started = time.thread_time()
        try:
            with self._blocklist.snapshot() as view:
                grey = self._blocklist.get_meta("grey_list_enabled", False) is True
                for rows, body, _ in batch:
                    if rows is None:            # `observe`: the body as received
                        try:
                            rows = rows_of(body[0], json.loads(body[1]))
                        except ValueError:
                            self._skip("official_not_json")
                            continue
                        if not rows:
                            self._skip("official_no_codes")
                            continue
                    self._compare(view, grey, rows)
        except NoListError:
            self._skip("local_no_list", taken)
        self.seconds += time.thread_time() - started
        self.drains += 1
        return more

    def _skip(self, reason: str, n: int = 1) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + n

    def _compare(self, view: Any, grey: bool, rows: list[Row]) -> None:
        """Compare each official code answer with ours for the same `cis` and product group, field by field.
        The hot loop of the cross-check: plain lookups, no objects made unless a field disagrees."""
        check = view.check
        agree = self.agree
        absent = _ABSENT
        for row in rows:
            cis, pg, error_code = row[0], row[1], row[2]
            if type(cis) is not str:
                self._skip("unreadable")
                continue
            if error_code is not None and error_code != 0:
                self._skip("official_code_error")
                continue
            try:
                try:
                    verdict = check(cis, pg, tail_cut=True)
                except CodeError:
                    raise
                except ValueError:          # a product group we do not know: its code without it
                    verdict = check(cis, None, tail_cut=True)
            except CodeError:
                self._skip("unreadable")
                continue
            self.codes += 1
            ours = (verdict.blocked, verdict.sold, verdict.mrp, verdict.smp, grey and verdict.grey_gtin)
            for index, field in enumerate(FIELDS):
                official = row[3 + index]
                if official is absent:
                    continue
                if _same(official, ours[index]):
                    agree[field] += 1
                else:
                    self._differ(field, verdict, official, ours[index], row[8], row[9])

    def _differ(self, field: str, verdict: Verdict, official: Any, ours: Any, version: Any, inst: Any) -> None:
        self.disagree[field] += 1
        found = Disagreement(self._clock(), field, verdict.identity, official, ours, str(version or ""),
                             str(inst or ""), verdict.db_version)
        self.recent.append(found)
        if field == "isBlocked":
            self.last_blocked_disagreement = found
        self._log(found)

    def _log(self, found: Disagreement) -> None:
        second = int(time.monotonic())
        if second != self._log_second:
            self._log_second, self._logged = second, 0
        if self._logged >= LOG_PER_SECOND:
            self._held += 1
            return
        self._logged += 1
        held, self._held = self._held, 0
        level = logging.ERROR if found.field == "isBlocked" else logging.WARNING
        log.log(level, "cross-check: %s disagrees for %s: official %s (version %s, inst %s), ours %s (database "
                "version %d)%s", found.field, found.identity, json.dumps(found.official), found.official_version
                or "-", found.official_inst or "-", json.dumps(found.ours), found.our_version,
                f" ({held} more disagreements not logged in the last second)" if held else "")

    # -- what the surfaces show ---------------------------------------------------------------------------------

    def warning(self) -> str | None:
        """The status page's warning while `isBlocked` has ever disagreed (since start), else None."""
        last = self.last_blocked_disagreement
        if last is None:
            return None
        return (f"the official module and this store disagree on isBlocked for {self.disagree['isBlocked']} code(s) "
                f"(last: {last.identity}, official {json.dumps(last.official)}, ours {json.dumps(last.ours)}): "
                "the replica or its mapping is wrong; see docs/front.md "
                "(официальный модуль и эта база расходятся в isBlocked: реплика или её сопоставление неверны)")

    def status(self) -> dict[str, Any]:
        """The `crossCheck` part of status's `front` object."""
        recent = [{"at": int(d.at * 1000), "field": d.field, "identity": d.identity, "official": d.official,
                   "ours": d.ours, "officialVersion": d.official_version, "officialInst": d.official_inst,
                   "ourVersion": d.our_version} for d in reversed(self.recent)]
        return {"enabled": self.enabled, "codes": self.codes, "pending": self.pending, "dropped": self.dropped,
                "agree": dict(self.agree), "disagree": dict(self.disagree), "skipped": dict(self.skipped),
                "recent": recent}

    def prometheus_lines(self) -> list[str]:
        out = ["# HELP lmcz_front_agree_total Codes on which the official module's answer and ours agree, by field.",
               "# TYPE lmcz_front_agree_total counter"]
        out += [f'lmcz_front_agree_total{{field="{f}"}} {self.agree[f]}' for f in FIELDS]
        out += ["# HELP lmcz_front_disagree_total Codes on which the official module's answer and ours disagree, by "
                "field (isBlocked: the replica or its mapping is wrong).",
                "# TYPE lmcz_front_disagree_total counter"]
        out += [f'lmcz_front_disagree_total{{field="{f}"}} {self.disagree[f]}' for f in FIELDS]
        out += ["# HELP lmcz_front_crosscheck_codes_total Codes the cross-check compared.",
                "# TYPE lmcz_front_crosscheck_codes_total counter",
                f"lmcz_front_crosscheck_codes_total {self.codes}",
                "# HELP lmcz_front_crosscheck_seconds_total CPU time spent comparing answers (off the tills' path).",
                "# TYPE lmcz_front_crosscheck_seconds_total counter",
                f"lmcz_front_crosscheck_seconds_total {self.seconds:.6f}",
                "# HELP lmcz_front_crosscheck_drains_total Drains of the cross-check's queue (one store snapshot each).",
                "# TYPE lmcz_front_crosscheck_drains_total counter",
                f"lmcz_front_crosscheck_drains_total {self.drains}",
                "# HELP lmcz_front_crosscheck_dropped_total Codes not compared because the cross-check queue was "
                "full.",
                "# TYPE lmcz_front_crosscheck_dropped_total counter",
                f"lmcz_front_crosscheck_dropped_total {self.dropped}",
                "# HELP lmcz_front_crosscheck_pending Codes waiting to be compared.",
                "# TYPE lmcz_front_crosscheck_pending gauge",
                f"lmcz_front_crosscheck_pending {self.pending}",
                "# HELP lmcz_front_crosscheck_skipped_total Codes not compared, by reason.",
                "# TYPE lmcz_front_crosscheck_skipped_total counter"]
        out += [f'lmcz_front_crosscheck_skipped_total{{reason="{r}"}} {n}' for r, n in sorted(self.skipped.items())]
        return out
