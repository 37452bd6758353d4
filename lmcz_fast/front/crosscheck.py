"""The cross-check: every code the official module answered is checked here too, after the till has its answer,
and the two answers are compared field by field (docs/front.md, "The cross-check").

The official module's database layout is not public, so the replica's mapping (`replicate --mapping`) is a guess;
the cross-check turns it into a measured fact in every store that runs the front. Per field (`isBlocked`, `sold`,
`mrp`, `smp`, `isGreyGtin`) it counts agreements and disagreements (`lmcz_front_agree_total{field}`,
`lmcz_front_disagree_total{field}` on /metrics), logs each disagreement with the code's identity (GTIN + serial:
never the crypto tail) and both versions (the official `version`/`inst`, our database version), and keeps the last
ones for the status page. A disagreement on `isBlocked` is an alarm (the alert `LmczFrontBlockedDisagrees`, a
warning on the status page): the replica or its mapping is wrong.

Off the till's path: `observe` only appends the official answer to a bounded queue (no parsing, no lookup) and
asks for a drain `BATCH_DELAY` (5 ms) later on the event loop, after the till's answer was written (without a loop,
the caller drains with `drain()`). A drain takes one snapshot of the store for all the answers queued meanwhile,
compares at most `slice_codes` codes, then yields the loop again.
When the queue is full, answers are dropped and counted (`lmcz_front_crosscheck_dropped_total`), never waited for.

What is compared, per code the official module answered (both protocols: v1's flat `codes[]`, v2's `results[]`
of one-code envelopes): each of the five fields that its answer holds, with ours for the same scan and `pg` from one
version of the store (`Snapshot.check`, as the service answers): `isBlocked` with `blocked`, `sold` with `sold`,
`mrp`/`smp` (kopecks or null) with ours, `isGreyGtin` with ours as the service answers it (the grey GTIN while the
grey list is switched on). A field its answer leaves out is not counted. A code we cannot read, or a store that
holds no list, is counted as skipped, by reason.
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

from .._codes import CodeError, parse_code
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
#: Seconds a drain waits after the first answer queued, so that one drain (one snapshot) takes many answers.
BATCH_DELAY = 0.005
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


def _codes_of(protocol: int, payload: Any) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """`(code, envelope)` per code of an official check answer (v1: one envelope, `codes[]`; v2: `results[]`)."""
    if not isinstance(payload, dict):
        return []
    envelopes = payload.get("results") if protocol == 2 or "results" in payload else [payload]
    out = []
    for envelope in envelopes if isinstance(envelopes, list) else []:
        if not isinstance(envelope, dict) or not isinstance(envelope.get("codes"), list):
            continue
        out += [(code, envelope) for code in envelope["codes"] if isinstance(code, dict)]
    return out


def _first_group(code: dict[str, Any]) -> int | None:
    groups = code.get("groupIds")
    first = groups[0] if isinstance(groups, list) and groups else None
    return first if isinstance(first, int) and not isinstance(first, bool) else None


def _price(value: Any) -> Any:
    """A price as compared: an int (kopecks) or None; anything else stays itself (and so disagrees)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def ours_of(verdict: Verdict, grey_enabled: bool) -> dict[str, Any]:
    """Our answer's five fields for a verdict, as the service answers them (service/answers.py `code_json`)."""
    return {"isBlocked": verdict.blocked, "sold": verdict.sold, "mrp": verdict.mrp, "smp": verdict.smp,
            "isGreyGtin": grey_enabled and verdict.grey_gtin}


class CrossCheck:
    """Compares the official module's answers with the local store's, off the till's path; see the module doc."""

    def __init__(self, blocklist: Blocklist, *, queue_codes: int = DEFAULT_QUEUE_CODES,
                 slice_codes: int = DEFAULT_SLICE, clock: Callable[[], float] = time.time) -> None:
        self._blocklist = blocklist
        self.queue_codes = queue_codes
        self.slice_codes = slice_codes
        self._clock = clock
        self._queue: collections.deque[tuple[int, list[tuple[Any, int | None]] | None, Any, int]] = \
            collections.deque()
        self._queued_codes = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scheduled = False
        self.enabled = True
        self.agree = dict.fromkeys(FIELDS, 0)
        self.disagree = dict.fromkeys(FIELDS, 0)
        self.codes = 0
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

    def observe(self, protocol: int, items: list[tuple[Any, int | None]], answer: bytes) -> None:
        """An official check answer (`protocol` 1 or 2; the body as received) to the `items` (scan, pg) a till
        asked: queued for comparison. Costs an append; never blocks, never raises."""
        if not self.enabled:
            return
        self._enqueue(protocol, items, answer, len(items))

    def observe_official(self, protocol: int, codes: list[dict[str, Any]], payload: dict[str, Any],
                         local_version: int | None = None) -> None:
        """The forwarder's observer (`front.Front.observers`): a check the module answered, already decoded, after
        the till has it. Our side checks each code by the `cis` (and `groupIds`) the module answered for it."""
        if not self.enabled:
            return
        self._enqueue(protocol, None, payload, len(codes))

    def _enqueue(self, protocol: int, items: list[tuple[Any, int | None]] | None, answer: Any, n: int) -> None:
        with self._lock:
            if self._queued_codes + n > self.queue_codes:
                self.dropped += n
                return
            self._queue.append((protocol, items, answer, n))
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
        done = 0
        try:
            with self._blocklist.snapshot() as view:
                grey = self._blocklist.get_meta("grey_list_enabled", False) is True
                while max_codes is None or done < max_codes:
                    with self._lock:
                        if not self._queue:
                            return False
                        protocol, items, answer, n = self._queue.popleft()
                        self._queued_codes -= n
                    done += self._compare(view, grey, protocol, items, answer)
        except NoListError:
            with self._lock:
                dropped = self._queued_codes
                self._queue.clear()
                self._queued_codes = 0
            self._skip("local_no_list", dropped)
            return False
        with self._lock:
            return bool(self._queue)

    def _skip(self, reason: str, n: int = 1) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + n

    def _compare(self, view: Any, grey: bool, protocol: int, items: list[tuple[Any, int | None]] | None,
                 answer: Any) -> int:
        """Compare one official answer (bytes as received, or decoded) with ours; `items` the till's (scan, pg),
        or None: each code's `cis` and first `groupIds` as the module answered them."""
        if isinstance(answer, (bytes, bytearray)):
            try:
                answer = json.loads(answer)
            except ValueError:
                self._skip("official_not_json", len(items or ()))
                return len(items or ())
        pairs = _codes_of(protocol, answer)
        if not pairs:
            self._skip("official_no_codes", len(items or ()))
            return len(items or ())
        by_identity: dict[str, tuple[Any, int | None]] | None = None
        if items is None:                   # the module's own `cis` per code: in place, nothing to match
            items = [(code.get("cis"), _first_group(code)) for code, _ in pairs]
        else:
            by_identity = {}
            for raw, pg in items:
                try:
                    by_identity.setdefault(parse_code(raw).identity, (raw, pg))
                except (CodeError, TypeError):
                    continue
        for index, (code, envelope) in enumerate(pairs):
            self._one(view, grey, index, code, envelope, items, by_identity)
        return len(pairs)

    def _one(self, view: Any, grey: bool, index: int, code: dict[str, Any], envelope: dict[str, Any],
             items: list[tuple[Any, int | None]], by_identity: dict[str, tuple[Any, int | None]] | None) -> None:
        """Compare one official code answer with ours for the same scan (found by its `cis`, else its place)."""
        raw, pg = None, None
        cis = code.get("cis")
        if by_identity is not None and isinstance(cis, str):
            try:
                raw, pg = by_identity.get(parse_code(cis).identity, (None, None))
            except CodeError:
                pass
        if raw is None and index < len(items):
            raw, pg = items[index]
        if not isinstance(raw, str):
            self._skip("unreadable")
            return
        if code.get("errorCode") not in (None, 0):
            self._skip("official_code_error")
            return
        try:
            verdict = view.check(raw, pg, tail_cut=True)
        except CodeError:
            self._skip("unreadable")
            return
        self.codes += 1
        ours = ours_of(verdict, grey)
        for field in FIELDS:
            if field not in code:
                continue
            official = code[field]
            mine = ours[field]
            if field in ("mrp", "smp"):
                official, mine = _price(official), _price(mine)
            if official == mine and type(official) is type(mine):
                self.agree[field] += 1
                continue
            self.disagree[field] += 1
            found = Disagreement(self._clock(), field, verdict.identity, official, mine,
                                 str(envelope.get("version", "")), str(envelope.get("inst", "")), verdict.db_version)
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
