"""`Blocklist`: the blocked marking codes of one store, in one LMDB environment.

LMDB is the single source of truth. The blocked identities, blocked GTINs, block details, metadata, feed state
and the serialized Roaring prefilter all live in one environment and change in one write transaction, so a
reader in any process sees the old state or the new one, never a mix.

The package's files say their jobs: `blocklist.py` (the read side and the hot path's Python half), `writing.py`
(loads and deltas), `sources.py` (reading blocklist files), `environment.py` (the LMDB environment and its
tables), `keys.py` (row keys), `digest.py` (the set digest), `snapshot.py` (one version as calls answer from it), `freshness.py` (when offline
answers stop), `records.py` and `errors.py` (what it answers), `tables.py` (the minimum-price and grey-GTIN
record kinds) and `prices.py` (loading and asking them),
`sold.py` (the sold register: codes this store
sold) and `group_commit.py` (batching many durable writes into one transaction).
"""

from .blocklist import Blocklist
from .change import Change
from .digest import digest_after, set_digest_of
from .errors import (
    DigestMismatchError,
    DiskFullError,
    LoadError,
    MapFullError,
    NoListError,
    StoreError,
    VersionError,
)
from .freshness import freshness
from .prices import TablesReport, product_group_of, read_grey_file, read_price_file
from .records import Block, DeltaReport, LineError, LoadReport, Status, Verdict
from .snapshot import Snapshot
from .sources import CutCodes
from .tables import PRODUCT_GROUPS, RECORD_KINDS, RecordError, parse_record
from .group_commit import GroupCommitter
from .sold import SoldEntry, SoldRegister, SoldRegisterError

__all__ = [
    "Block",
    "Blocklist",
    "Change",
    "CutCodes",
    "DeltaReport",
    "DigestMismatchError",
    "DiskFullError",
    "GroupCommitter",
    "LineError",
    "LoadError",
    "LoadReport",
    "MapFullError",
    "NoListError",
    "PRODUCT_GROUPS",
    "RECORD_KINDS",
    "RecordError",
    "Snapshot",
    "SoldEntry",
    "SoldRegister",
    "SoldRegisterError",
    "Status",
    "StoreError",
    "TablesReport",
    "Verdict",
    "VersionError",
    "digest_after",
    "freshness",
    "parse_record",
    "product_group_of",
    "read_grey_file",
    "read_price_file",
    "set_digest_of",
]
