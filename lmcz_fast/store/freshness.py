"""When a store's offline answers stop: the one computation every surface reports (status, info, the service's
/status, refusals and metrics, the checker's reasons).

The offline limit (`expire_after`, default 72 h) counts from the store's last successful sync, or, for a store
that was never synced, from its last full load (a list loaded from a file). A store that never held a list
(version 0) has no offline answers at all: its state is `empty` and it has no expiry time, because it never
started. The same holds for a store that only ever received side tables (minimum prices, grey GTINs: `prices load`
on a path with no store) and blocks nothing: its list has not arrived yet.

**A clock behind the store's own records.** The age is measured by this machine's clock, so a clock that reads
earlier than the moment the store itself recorded as the start of that age (its last sync, else its last load:
`reference_time`, written by the same kind of clock) cannot measure it: a dead CMOS battery setting the
clock a year back used to give "age 0, ready" for a year. When the clock reads more than `CLOCK_TOLERANCE` before
it, nothing is aged by it: the state is `expired` (checks refused, as after the offline limit: the store cannot
show it is within it) and
`clock_behind` says by how much, on every surface (status, info, the service's /status, page, /metrics and log).
It clears by itself when the clock is right again, or when a sync or load records a new time by the clock as it
is now (a clock that is behind but runs at the right pace then ages the store correctly from there).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .environment import DEFAULT_EXPIRE_AFTER, DEFAULT_REFRESH_WINDOW
from .records import Status

#: How far the clock may read before the store's newest own timestamp without being called behind (seconds): NTP
#: steps and a process's clock read a moment before another one's commit stay well within it.
CLOCK_TOLERANCE = 300.0


def holds_list(version: int) -> bool:
    """Whether a store at `version` has ever held a list: version 0 is a store created and never loaded."""
    return version != 0


def reference_time(meta: Mapping[str, Any]) -> float | None:
    """What the freshness clocks count from: the last successful sync, else the last full load; None if neither."""
    last = meta.get("last_sync_at") or meta.get("loaded_at")
    return None if last is None else float(last)


def clock_behind(meta: Mapping[str, Any], now: float) -> float | None:
    """Seconds by which `now` is behind the moment the store's age counts from (`reference_time`: its last sync,
    else its last load, recorded by this kind of clock), when that is more than `CLOCK_TOLERANCE`; else None."""
    last = reference_time(meta)
    if last is None or now >= last - CLOCK_TOLERANCE:
        return None
    return last - now


def freshness(meta: Mapping[str, Any], now: float) -> Status:
    """The store's `Status` at `now` from its metadata: state, age, when a refresh is due, when checks stop.

    `expires_at` is the moment offline answers stop (the service refuses checks with 4050 after it, the checker
    refuses offline). It is None only for an `empty` store. A store holding a list with no sync or load recorded
    (only deltas applied by hand) has had no fresh moment: it is `expired`, since its creation.
    """
    window = float(meta.get("refresh_window") or DEFAULT_REFRESH_WINDOW)
    expire = float(meta.get("expire_after") or DEFAULT_EXPIRE_AFTER)
    version = int(meta.get("version") or 0)
    last = reference_time(meta)
    age = None if last is None else max(0.0, now - last)
    expires_at: float | None
    if not holds_list(version) or (last is None and not meta.get("codes") and not meta.get("gtins")):
        # never loaded nor synced and nothing blocked: only side tables (`prices load`, `grey load` on a new
        # store) or nothing at all. No list has arrived yet: empty (4045), not expired (4050).
        state, expires_at = "empty", None
    elif last is None:
        state, expires_at = "expired", float(meta.get("created_at") or 0.0)
    else:
        expires_at = last + expire
        if clock_behind(meta, now) is not None:
            # refuse to age anything by a clock behind the store's own records: offline answers stop now
            state, expires_at = "expired", now
        elif now > expires_at:
            state = "expired"
        elif now > last + window:
            state = "stale"
        else:
            state = "ready"
    return Status(
        state=state,
        version=version,
        last_sync_at=meta.get("last_sync_at"),
        next_sync_at=None if last is None else last + window,
        age=age,
        feed_url=meta.get("feed_url"),
        codes=meta.get("codes", 0),
        gtins=meta.get("gtins", 0),
        refresh_window=window,
        expire_after=expire,
        expires_at=expires_at,
        loaded_at=meta.get("loaded_at"),
        clock_behind=None if not holds_list(version) else clock_behind(meta, now),
    )
