"""lmcz-fast: offline blocklist checks for Chestny Znak marking codes.

The compiled core (`_codes`, `_probe`) parses scans and probes the prefilter without calling back into Python;
`Blocklist` keeps everything in one LMDB environment.
"""

from ._codes import CodeError, MarkingCode, parse_code
from .store import (
    Block,
    Blocklist,
    DeltaReport,
    LoadError,
    LoadReport,
    Status,
    StoreError,
    Verdict,
    VersionError,
    set_digest_of,
)

__all__ = [
    "Block",
    "Blocklist",
    "CodeError",
    "DeltaReport",
    "LoadError",
    "LoadReport",
    "MarkingCode",
    "Status",
    "StoreError",
    "Verdict",
    "VersionError",
    "parse_code",
    "set_digest_of",
]
