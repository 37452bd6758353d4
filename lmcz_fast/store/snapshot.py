"""`Snapshot`: one version of a store (a `reading.Reading`) held for several calls.

A `Snapshot` is that for several calls that must agree: a till's receipt, a service request. Every answer it
gives comes from the version it was taken at, and names it.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from .._codes import CodeError, MarkingCode
from .._probe import CheckBatch, NotAttachedError, ProbeBase
from .errors import StoreError
from .reading import Reading, no_list_error
from .records import Verdict
from .tables import check_group

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence


def checked_groups(pgs: Iterable[int | None] | None) -> list[int | None] | None:
    """`pgs` as a list, every group checked (`RecordError` for one that is not a product group id)."""
    if pgs is None:
        return None
    groups = list(pgs)
    for pg in groups:
        if pg is not None:
            check_group(pg)
    return groups


class Snapshot(ProbeBase):
    """One version of a store, for several calls that must agree: take it with `Blocklist.snapshot()`.

    `is_blocked`, `is_blocked_many`, `check` (compiled, `ProbeBase.check`, with `tail_cut` for the service's
    checks), `check_many` and `check_batch` answer exactly as the blocklist's own methods do,
    but every answer comes from the version the snapshot was taken at (`db_version`), however many commits land
    meanwhile: a receipt or a service request answers from one version and names it. It never renews: take a
    new one for the next receipt. Close it (or leave its `with` block) promptly; until then it pins that version's
    pages. Closing the blocklist closes its snapshots. A store that never held a list raises `NoListError` from
    every check, as the blocklist does.
    """

    _reading: Reading | None
    _lock: threading.RLock
    _path: str

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("take a snapshot with Blocklist.snapshot()")

    @classmethod
    def taken(cls, probe: ProbeBase, reading: Reading) -> Snapshot:
        """A snapshot of the version `probe` (a blocklist) is attached to, whose read transaction is `reading` (lock
        held)."""
        self = cls.__new__(cls)
        self._adopt(probe)
        self._reading = reading
        self._lock = reading.lock
        self._path = reading.path
        return self

    def __enter__(self) -> Snapshot:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Let go of the version (idempotent). Checks on a closed snapshot raise `NotAttachedError`."""
        self._detach()
        self._reading = None

    def _renew(self) -> None:
        raise StoreError("a snapshot answers from one version and never renews")

    def _refuse_empty(self) -> None:
        raise no_list_error(self._path)

    def _live(self) -> Reading:
        reading = self._reading
        if reading is None:
            raise StoreError("this snapshot is closed (or its blocklist was)")
        if reading.empty:
            raise no_list_error(self._path)
        return reading

    @property
    def db_version(self) -> int:
        """The store's version every answer of this snapshot comes from."""
        reading = self._reading
        if reading is None:
            raise StoreError("this snapshot is closed (or its blocklist was)")
        return reading.version

    def meta(self) -> dict[str, Any]:
        """The metadata of the snapshot's version (a copy)."""
        with self._lock:
            reading = self._reading
            if reading is None:
                raise StoreError("this snapshot is closed (or its blocklist was)")
            return dict(reading.meta())

    def _check_detached(self) -> None:
        """`check` on a closed snapshot: the snapshot's own error (`ProbeBase.check` is the compiled `check`)."""
        self._live()
        raise NotAttachedError("this snapshot answers from no version")

    def check_many(self, raws: Iterable[str | bytes], pgs: Iterable[int | None] | None = None) -> list[Verdict]:
        """`[check(r) for r in raws]`, all from this version (`pgs`: one product group or None per scan). A bad
        scan raises `CodeError` naming its index (also `.index`), as `is_blocked_many` does. One compiled pass
        (`ProbeBase._check_many`): `check_batch(raws, pgs, strict=True).verdict_list()` without the arrays."""
        groups = checked_groups(pgs)
        try:
            return self._check_many(raws, groups)  # type: ignore[no-any-return]
        except NotAttachedError:
            self._live()
            raise

    def check_batch(self, raws: Iterable[Any], pgs: Iterable[int | None] | None = None, *,
                    tail_cut: bool = False, strict: bool = False) -> CheckBatch:
        """The full verdicts of `raws`, from this version, in compact arrays (`_probe.CheckBatch`): per code a
        flags byte (`CHECK_BLOCKED`, `CHECK_SOLD`, `CHECK_GREY`, `CHECK_HAS_MRP`, `CHECK_HAS_SMP`,
        `CHECK_UNREADABLE`, `CHECK_EXACT`), `mrp`/`smp` (int64 kopecks), the CIS, identity and GTIN bytes; a
        `CodeError` per unreadable scan in `.errors` (or, with `strict`, the first one raised), and a `Verdict`
        in `.verdicts` for each code the exact Python path answered (blocked, in the sold register, several
        readings). No Python object per free code: what a service encodes straight from. `pgs`: one product group
        id or None per scan (`RecordError` for a bad one). `tail_cut` as `check`'s."""
        groups = checked_groups(pgs)
        try:
            return self._check_batch(raws, groups, tail_cut, strict)
        except NotAttachedError:
            self._live()
            raise

    def _verdicts(self, parsed: Sequence[list[MarkingCode]],
                  pgs: Sequence[int | None] | None = None) -> list[Verdict]:
        now = time.time()
        groups = pgs if pgs is not None else [None] * len(parsed)
        with self._lock:
            reading = self._live()
            return [reading.verdict(self, readings, now, pg) for readings, pg in zip(parsed, groups)]

    def min_price(self, gtin: str, pg: int | None = None) -> int | None:
        """`Blocklist.min_price`, from this snapshot's version."""
        with self._lock:
            return self._live().min_price(gtin, pg)

    def is_grey_gtin(self, gtin: str) -> bool:
        """`Blocklist.is_grey_gtin`, from this snapshot's version."""
        with self._lock:
            return self._live().is_grey(gtin)
