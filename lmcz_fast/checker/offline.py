"""The checker's offline side: the in-process store (one snapshot per receipt, its freshness, its sold register)
or a Local Module's answer, through the offline refusal table."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from .._codes import CodeError, readings_of
from .._probe import SlotMaker, TillScan
from ..receipt import instance_uuid, request_id, tag_1265, version_uuid
from ..store import DEFAULT_EXPIRE_AFTER, NoListError, product_group_of
from .local_module import LocalModuleClient, LocalModuleError
from .reasons import REASONS, Reason, offline_expired_reason, offline_sync_error_reason
from .rules import _decided, offline_reasons, offline_table
from .verdicts import TAG_1262, TAG_1263, TAG_1264, CodeVerdict, Decision, Mode, TillVerdict, _Item

# The offline-only scan's two verdict objects, made slot by slot in compiled code (`_till_scan`): every field, in
# the order TillScan fills them (it refuses makers of other fields: a field added here must be filled there too).
_CODE_FIELDS = tuple(f.name for f in dataclasses.fields(CodeVerdict))
_TILL_FIELDS = tuple(f.name for f in dataclasses.fields(TillVerdict))


def _is_sold(bl: Any, cis: str) -> bool:
    """The store's sold register asked directly (`Blocklist.is_sold`, the register engineer lm2 adds for LM 2.x
    parity), for a verdict that does not say (see `_sold_of`). A store object without one (older lmcz-fast,
    another `check()` provider) has no sales to report, so nothing is answered sold."""
    is_sold = getattr(bl, "is_sold", None)
    return bool(is_sold(cis)) if is_sold is not None else False


def _sold_of(bl: Any, verdict: Any) -> bool:
    """THE ONE PLACE the in-process checker learns whether a code was sold here. The store's `Verdict` says it
    (`sold`, read in the same compiled pass and from the same version as `blocked`); a verdict that carries no
    bool `sold` (another `check()` provider) is asked of the store's register (`_is_sold`)."""
    sold = getattr(verdict, "sold", None)
    if sold is True or sold is False:
        return sold
    return _is_sold(bl, verdict.cis)


class _BlocklistLike(Protocol):
    """What the checker needs of an in-process store: `check(raw)`; `check(raw, pg=...)` is used only when a
    product group is given, and `is_sold(cis)` only if present (see `_is_sold`)."""

    def check(self, raw: str | bytes, pg: int | None = ...) -> Any: ...


@dataclass(slots=True)
class _Offline:
    """What the offline side said for a whole receipt."""

    req_id: str
    req_timestamp: int
    inst: str
    version: str
    notes: tuple[Reason, ...] = ()
    failure: Reason | None = None
    error: str | None = None
    _tag: str | None = None

    def tag_1265(self) -> str:
        if self._tag is None:
            self._tag = tag_1265(self.req_id, self.req_timestamp, self.inst, self.version)
        return self._tag


class _OfflineSide:
    """The offline half of a `Checker` (a mixin: `Checker.__init__` sets these attributes)."""

    _blocklist: Any
    _lm: LocalModuleClient | None
    _status: tuple[float, _Offline | None] | None
    _version_tail: tuple[tuple[Any, Any], str] | None
    status_every: float

    def _till_scan(self) -> TillScan:
        """The offline-only check of one scan by the in-process store, whole in compiled code (`_probe.TillScan`):
        what `check_receipt((raw,))` answers for a readable scan of a usable store, with tag 1265's version part
        cached per database version, the status as cached for `status_every`, and no Python work on the refusal
        table for a scan without a price (its eight rows are made here, by `offline_table`, once). What it does not
        answer itself goes to `check_receipt` (an unreadable scan, an empty or expired store) or to this class's
        Python pieces (the status re-read, a new version's tail, a price that earns a reason). It holds the checker
        weakly (no reference cycle: a checker nobody holds goes at once, with its store)."""
        table = []
        for row in range(8):
            reasons = offline_table(sold=bool(row & 4), blocked=bool(row & 2), grey=bool(row & 1))
            table.append((reasons, _decided(reasons)))
        return TillScan(
            self, self._blocklist,
            SlotMaker(CodeVerdict, _CODE_FIELDS), SlotMaker(TillVerdict, _TILL_FIELDS),
            tuple(table), Mode.OFFLINE, Decision.SELL,
            {1262: TAG_1262, 1263: TAG_1263, 1264: TAG_1264, 1265: None}, "no online check configured",
            (CodeError, NoListError), _decided, _sold_of,
        )

    def _verdict_reasons(self, bl: Any, verdict: Any, raw: str | bytes, price: int | None,
                         pg: int | None, sold: bool | None = None) -> tuple[Reason, ...]:
        """An in-process `Verdict` through the offline refusal table (the sold register, blocked, grey, price);
        `sold`: what `_sold_of` said, when the caller asked already."""
        if sold is None:
            sold = _sold_of(bl, verdict)
        grey = getattr(verdict, "grey_gtin", False) is True
        if not sold and not verdict.blocked and price is None:
            return ()
        if price is not None and pg is None:
            try:
                pg = product_group_of(readings_of(raw)[0])
            except CodeError:
                pg = None
        return offline_table(sold=sold, blocked=verdict.blocked, grey=grey, price=price, pg=pg,
                             mrp=getattr(verdict, "mrp", None), smp=getattr(verdict, "smp", None))

    def _version_part(self, verdict: Any) -> str:
        """The `&Inst=...&Ver=...` end of tag 1265 for the database version a verdict names, made once per version
        (the UUIDs are derived, `receipt.instance_uuid` / `version_uuid`; only the request id and time change per
        check)."""
        key = (verdict.instance_id, verdict.db_version)
        cached = self._version_tail
        if cached is not None and cached[0] == key:
            return cached[1]
        tail = f"&Inst={instance_uuid(key[0])}&Ver={version_uuid(key[0], key[1])}"
        self._version_tail = (key, tail)
        return tail

    def _offline_status(self) -> _Offline | None:
        """The Blocklist's freshness, re-read at most every `status_every` seconds (a meta read is not free)."""
        now = time.monotonic()
        if self._status is not None and now - self._status[0] < self.status_every:
            return self._status[1]
        status_of = getattr(self._blocklist, "status", None)
        note: _Offline | None = None
        if status_of is not None:
            status = status_of()
            state = status.state
            if state == "expired" and getattr(status, "clock_behind", None) is not None:
                note = self._offline_failure(REASONS["offline_clock_behind"],
                                             f"the clock reads {status.clock_behind:.0f} s before the offline "
                                             "database's last sync or load: nothing is aged by it")
            elif state == "expired":
                limit = getattr(status, "expire_after", DEFAULT_EXPIRE_AFTER)
                note = self._offline_failure(offline_expired_reason(limit),
                                             f"offline database expired (offline limit {limit:g} s)")
            elif state == "empty":
                note = self._offline_failure(REASONS["offline_empty"], "offline database never loaded")
            elif state == "stale":
                note = _Offline("", 0, "", "", notes=(REASONS["offline_stale"],))
        self._status = (now, note)
        return note

    def _offline_failure(self, reason: Reason, error: str) -> _Offline:
        return _Offline("", 0, "", "", failure=reason, error=error)

    def _in_process(self, items: list[_Item]) -> _Offline:
        assert self._blocklist is not None
        status = self._offline_status()
        if status is not None and status.failure is not None:
            return status
        bl = self._blocklist
        inst = version = ""
        # One receipt, one version: every code from one snapshot (a duck-typed offline without `snapshot` can
        # promise no such thing and is asked code by code).
        take = getattr(bl, "snapshot", None)
        with take() if take is not None else contextlib.nullcontext(bl) as view:
            for item in items:
                if item.unreadable is not None:
                    continue
                try:
                    verdict = view.check(item.raw) if item.pg is None else view.check(item.raw, pg=item.pg)
                except CodeError as exc:
                    item.unreadable = str(exc)
                    continue
                except NoListError:
                    return self._offline_failure(REASONS["offline_empty"], "offline database never loaded")
                item.offline = verdict
                item.offline_reasons = self._verdict_reasons(bl, verdict, item.raw, item.price, item.pg)
                if item.cis is None:
                    item.cis, item.gtin = verdict.cis, verdict.gtin
                inst = instance_uuid(verdict.instance_id)
                version = version_uuid(verdict.instance_id, verdict.db_version)
        return _Offline(
            req_id=request_id(),
            req_timestamp=int(time.time() * 1000),
            inst=inst,
            version=version,
            notes=status.notes if status is not None else (),
        )

    async def _local_module(self, items: list[_Item]) -> dict[str, Any]:
        """Ask the Local Module about every reading of every readable scan, in order (see `_from_local_module`),
        each with its scan's product group (protocol 2 sends it as `pg`)."""
        assert self._lm is not None
        sent = [i for i in items if i.code is not None]
        return await self._lm.check_codes([c for i in sent for c in (i.code, *i.alts)],
                                          [i.pg for i in sent for _ in (i.code, *i.alts)])

    def _from_local_module(self, items: list[_Item], outcome: Any) -> _Offline:
        if isinstance(outcome, LocalModuleError):
            if outcome.kind == "sync_error":
                return self._offline_failure(offline_sync_error_reason(outcome.offline_limit),
                                             f"{outcome.kind}: {outcome}")
            reason = {"not_ready": "offline_not_ready", "auth": "offline_auth"}.get(outcome.kind, "offline_failed")
            return self._offline_failure(REASONS[reason], f"{outcome.kind}: {outcome}")
        if isinstance(outcome, BaseException):
            return self._offline_failure(REASONS["offline_failed"], repr(outcome))
        entries = outcome.get("codes") or []
        sent = [i for i in items if i.code is not None]
        if len(entries) == sum(1 + len(i.alts) for i in sent):
            at = 0
            for item in sent:
                mine = entries[at:at + 1 + len(item.alts)]
                at += len(mine)
                if all(isinstance(e, Mapping) for e in mine):
                    # One entry per reading: refused if any reading is (a blocked code is blocked under either).
                    said = [offline_reasons(e, item.price, item.pg, item.mrp) for e in mine]
                    item.offline = next((e for e, r in zip(mine, said) if r), mine[0])
                    item.offline_reasons = tuple(dict.fromkeys(r for rs in said for r in rs))
        return _Offline(
            req_id=str(outcome.get("reqId") or ""),
            req_timestamp=int(outcome.get("reqTimestamp") or 0),
            inst=str(outcome.get("inst") or ""),
            version=str(outcome.get("version") or ""),
        )
