"""A request for a sync or replication round now, kept in the store so that any process can make it and the running
loop (`lmcz-fast sync --every`, `lmcz-fast replicate --every`, another process) sees it.

The service's `init` on a store that is not ready writes `round_requested_at` (the official module re-syncs on
`init`; integrators call it again on `sync_error` and wait). The loop polls the field while it waits for its next
round (every `POLL` seconds), starts a round when it finds a request newer than the last one it took, and records
`round_request_taken_at`; status reports both, so "what init started" is visible until it happened.
"""

from __future__ import annotations

import time
from typing import Any

#: Meta field: Unix seconds of the last request for a round now.
META_REQUESTED = "round_requested_at"
#: Meta field: Unix seconds at which a running loop took the last request (started its round).
META_TAKEN = "round_request_taken_at"
#: Meta field: who asked ("init").
META_BY = "round_requested_by"
#: Seconds between two looks of a waiting loop at the request field.
POLL = 1.0


def request_fields(by: str, now: float | None = None) -> dict[str, Any]:
    """The metadata fields that ask for a round now (written in one transaction by the asker)."""
    return {META_REQUESTED: time.time() if now is None else now, META_BY: by}


def pending(meta: Any) -> float | None:
    """The time of a request no loop has taken yet, or None. `meta`: anything with `.get` (a meta dict, or a
    `Blocklist` through `get_meta`)."""
    get = getattr(meta, "get_meta", None) or meta.get
    requested = get(META_REQUESTED)
    if requested is None:
        return None
    taken = get(META_TAKEN)
    return float(requested) if taken is None or float(taken) < float(requested) else None
