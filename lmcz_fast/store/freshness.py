"""When a store's offline answers stop: the one computation every surface reports (status, info, the service's
/status, refusals and metrics, the checker's reasons).

The offline limit (`expire_after`, default 72 h) counts from the store's last successful sync, or, for a store
that was never synced, from its last full load (a list loaded from a file). A store that never held a list
(version 0) has no offline answers at all: its state is `empty` and it has no expiry time, because it never
started. The same holds for a store that only ever received side tables (minimum prices, grey GTINs: `prices load`
on a path with no store) and blocks nothing: its list has not arrived yet.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .environment import DEFAULT_EXPIRE_AFTER, DEFAULT_REFRESH_WINDOW
from .records import Status


def holds_list(version: int) -> bool:
    """Whether a store at `version` has ever held a list: version 0 is a store created and never loaded."""
    return version != 0


def reference_time(meta: Mapping[str, Any]) -> float | None:
    """What the freshness clocks count from: the last successful sync, else the last full load; None if neither."""
    last = meta.get("last_sync_at") or meta.get("loaded_at")
    return None if last is None else float(last)


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
        if now > expires_at:
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
    )
