"""The memory request bodies may hold in the whole server: one budget, reserved on a request's headers and given back
when its body is answered or its client goes; the C allocator's free memory returned to the system after a peak.

See http/ (who reserves and when) and docs/service.md, "Request bodies".
"""

from __future__ import annotations

import ctypes
from typing import Any

#: Bytes of bodies given back, with none held any more, before the allocator's free memory is returned.
TRIM_AFTER = 16 << 20


def _load_malloc_trim() -> Any:
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):   # not glibc: nothing to ask
        return None


_MALLOC_TRIM = _load_malloc_trim()


def malloc_trim() -> None:
    """Ask glibc to return the free memory of its heaps to the system (it keeps freed buffers otherwise, so a
    process's RSS would stay at its peak)."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


class BodyBudget:
    """Bytes of request bodies held by all connections (being read, reserved at their declared length, or read and
    queued), at most `limit`. Runs on the event loop's thread."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self.peak = 0
        self.refused_total = 0     # 503: the budget was spent
        self.unread_total = 0      # refused on their headers' credentials, body unread
        self._released_since_trim = 0

    def reserve(self, size: int) -> bool:
        """Take `size` bytes if there is room (always, for 0)."""
        if size and self.held + size > self.limit:
            return False
        self.held += size
        self.peak = max(self.peak, self.held)
        return True

    def add(self, size: int) -> None:
        """Count `size` bytes already read (a request queued with its body), room or not."""
        self.held += size
        self.peak = max(self.peak, self.held)

    def done(self, size: int) -> None:
        """Give back `size` bytes (a body answered, refused, or its client gone). When nothing is held any more
        after at least `TRIM_AFTER` bytes were given back, the allocator is trimmed."""
        self.held = max(0, self.held - size)
        self._released_since_trim += size
        if not self.held and self._released_since_trim >= TRIM_AFTER:
            self._released_since_trim = 0
            malloc_trim()

    def metrics(self) -> dict[str, float]:
        return {
            "lmcz_pending_body_bytes": self.held,
            "lmcz_pending_body_peak_bytes": self.peak,
            "lmcz_bodies_refused_busy_total": self.refused_total,
            "lmcz_bodies_unread_unauthorised_total": self.unread_total,
        }
