"""Where a store keeps its replication state: per source database, the checkpoint and the figures of the last batch.

The replicator (`lmcz_fast.replicate`) writes these metadata fields in the same transaction as the records each
batch changes; everything that reports on a store (`lmcz-fast status`, the service's `/metrics` and `dbState`, the
status page) reads them here, so it need not know the replicator.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .blocklist import Blocklist

#: Meta field of the store holding the checkpoint and figures of one source database: `replication:<name>`.
META_PREFIX = "replication:"
#: Meta field naming the source (URL, the databases by kind, the document mapping).
META_SOURCE = "replication_source"


def checkpoint(bl: Blocklist, db: str) -> dict[str, Any] | None:
    """The checkpoint of one source database, or None."""
    value = bl.get_meta(META_PREFIX + db)
    return value if isinstance(value, dict) else None


def replication_status(bl: Blocklist, now: float | None = None) -> dict[str, Any] | None:
    """Per source database: our document count, the source's, the seq lag and the time of the last batch —
    the shape of the official module's replication status. None when the store is not replicated."""
    source = bl.get_meta(META_SOURCE)
    if not source:
        return None
    now = time.time() if now is None else now
    out: dict[str, Any] = {"source": source.get("url"), "databases": {}}
    for name in sorted(source.get("databases", {}).values()):
        cp = checkpoint(bl, name) or {}
        last = cp.get("last_batch_at")
        out["databases"][name] = {
            "kind": cp.get("kind"),
            "localDocCount": cp.get("docs", 0),
            "serverDocCount": cp.get("source_docs"),
            "seqLag": cp.get("seq_lag"),
            "lastSeq": cp.get("last_seq"),
            "unmapped": cp.get("unmapped", 0),
            "lastBatchAt": last,
            "timeLag": None if last is None else round(max(0.0, now - last), 3),
        }
    return out
