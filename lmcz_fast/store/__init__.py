"""`Blocklist`: the blocked marking codes of one store, in one LMDB environment.

LMDB is the single source of truth. The blocked identities, blocked GTINs, block details, metadata, feed state
and the serialized Roaring prefilter all live in one environment and change in one write transaction, so a
reader in any process sees the old state or the new one, never a mix.

The package's files say their jobs. A `Blocklist` (`blocklist/`: the hot path's Python half and the public
calls) is made of parts sharing one environment handle (`handle.py`): the reading side (`reading.py`: the version
calls answer from; `snapshot.py`: one version held for several calls), the writer (`writing.py`: every change is
a `Change`, `change.py`, applied in one write transaction by the appliers of `appliers/`, each owning one part
of the database), the tables (`tables.py`: the minimum-price and grey-GTIN record kinds; `prices.py`: loading and
asking them) and the sold register (`sold/`: codes this store sold; `group_commit.py`: batching many durable
writes into one transaction). Below them: `environment.py` (the LMDB environment and its tables), `sources.py`
(reading blocklist files), `keys.py` (row keys), `digest.py` (the set digest), `freshness.py` (when offline
answers stop), `records.py` and `errors.py` (what it answers), `replication.py` (where a replicated store keeps
its checkpoints), `compaction.py` (the file back to the pages in use, with the store alone), `wake.py` (a
request for a sync or replication round now, which serve's `init` makes), `guard.py` (the shrink guard: a full
replacement that shrinks the list too much is refused in its transaction) and `leftovers.py` (directories of killed
first builds, removed once their builder is gone).
"""

from .blocklist import Blocklist
from .change import Change
from .compaction import CompactReport, StoreBusyError, compact, compact_if_worth, exclusive, invalidate_lock, space
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
from .environment import DEFAULT_EXPIRE_AFTER, disk_full, free_bytes
from .freshness import freshness, reference_time
from .group_commit import Job
from . import guard, leftovers
from .guard import ShrinkRefusedError
from .prices import TablesReport, product_group_of, read_grey_file, read_price_file
from .replication import META_PREFIX as REPLICATION_META_PREFIX
from .replication import META_SOURCE as REPLICATION_META_SOURCE
from .replication import checkpoint as replication_checkpoint
from .replication import replication_status
from .records import Block, DeltaReport, LineError, LoadReport, Status, Verdict
from .snapshot import Snapshot
from .sources import CutCodes
from .tables import PG_TOBACCO, PRICE_KINDS, PRODUCT_GROUPS, RECORD_KINDS, RecordError, parse_record
from .group_commit import GroupCommitter, WriteOp
from .sold import MAX_PAGE as SOLD_MAX_PAGE
from .sold import Owner as SoldOwner
from .sold import SoldEntry, SoldRegister, SoldRegisterError
from . import wake

__all__ = [
    "Block",
    "Blocklist",
    "Change",
    "CompactReport",
    "CutCodes",
    "DEFAULT_EXPIRE_AFTER",
    "DeltaReport",
    "DigestMismatchError",
    "DiskFullError",
    "GroupCommitter",
    "Job",
    "LineError",
    "LoadError",
    "LoadReport",
    "MapFullError",
    "NoListError",
    "PG_TOBACCO",
    "PRICE_KINDS",
    "PRODUCT_GROUPS",
    "RECORD_KINDS",
    "REPLICATION_META_PREFIX",
    "REPLICATION_META_SOURCE",
    "RecordError",
    "SOLD_MAX_PAGE",
    "ShrinkRefusedError",
    "Snapshot",
    "SoldEntry",
    "SoldOwner",
    "SoldRegister",
    "SoldRegisterError",
    "Status",
    "StoreBusyError",
    "StoreError",
    "TablesReport",
    "Verdict",
    "VersionError",
    "WriteOp",
    "compact",
    "compact_if_worth",
    "digest_after",
    "disk_full",
    "exclusive",
    "free_bytes",
    "freshness",
    "guard",
    "invalidate_lock",
    "leftovers",
    "reference_time",
    "parse_record",
    "product_group_of",
    "read_grey_file",
    "read_price_file",
    "replication_checkpoint",
    "replication_status",
    "set_digest_of",
    "space",
    "wake",
]
