"""lmcz-fast: offline blocklist checks for Chestny Znak marking codes.

The compiled core (`_codes`, `_probe`) parses scans and probes the prefilter without calling back into Python;
`Blocklist` keeps everything in one LMDB environment.
"""

from ._codes import CodeError, MarkingCode, identity_of, parse_code
from ._probe import NotAttachedError
from .store import (
    Block,
    Blocklist,
    DeltaReport,
    DigestMismatchError,
    DiskFullError,
    LoadError,
    LoadReport,
    MapFullError,
    NoListError,
    Snapshot,
    Status,
    StoreError,
    Verdict,
    VersionError,
    digest_after,
    set_digest_of,
)

__all__ = [
    "Block",
    "Blocklist",
    "CodeError",
    "DeltaReport",
    "DigestMismatchError",
    "DiskFullError",
    "LoadError",
    "LoadReport",
    "MapFullError",
    "MarkingCode",
    "NoListError",
    "NotAttachedError",
    "Snapshot",
    "Status",
    "StoreError",
    "Verdict",
    "VersionError",
    "digest_after",
    "identity_of",
    "parse_code",
    "set_digest_of",
]
