"""Replicate the blocklist from a CouchDB-compatible source, the way the official Local Module gets its data.

The official module keeps CRPT's data in its own CouchDB-compatible database ("Yenisei": databases `blocked_cis`,
`blocked_gtin`, `min_price`) and replicates it from CRPT; any server that speaks CouchDB's public replication
protocol can be our upstream. We only read `GET /{db}` and `GET /{db}/_changes` (normal or longpoll feed), parsed
as a stream. Each batch of changes of one source database is one atomic delta of the store, written with that
database's checkpoint in the same LMDB transaction. A first replication, or a source that was recreated or refuses
our checkpoint, is a full re-replication swapped in by one full load. `Mapping` says where the code, the GTIN and
the price sit in a document (docs/replication.md); documents that do not map are counted and reported.

The jobs, one file each: config.py (what to replicate from where, the errors), source.py (the CouchDB HTTP API),
changes.py (the `_changes` stream parser), mapping.py (documents to records), mapping_file.py (the mapping file:
TOML, the built-in mapping is its default content), replicator.py (the store side: full and incremental passes,
reports; a full pass under which a database maps nothing is refused), running.py (`replicate` once, `follow`
continuously), inspection/ (`replicate --inspect`: sample the source, read its fields, propose a mapping).
"""

from __future__ import annotations

# Also reached through this package though not in `__all__` (as before the split): ProxyConfig (a
# ReplicationConfig's `proxy`), KINDS and DEFAULT_BATCH (the CLI's choices and default), DbReport.
from ..store import replication_status
from ..upstream import ProxyConfig
from .config import (
    DEFAULT_BATCH,
    DEFAULT_DATABASES,
    KINDS,
    Mapping,
    MappingError,
    MappingRefused,
    ReplicationConfig,
    ReplicationError,
    SourceAuthError,
    SourceMalformed,
    SourceUnavailable,
    read_credentials,
)
from .inspection import Proposal, inspect_source, mapping_text
from .mapping_file import DEFAULT_MAPPING_TEXT, default_mapping, parse_mapping, read_mapping
from .replicator import DbReport, ReplicationReport
from .running import DEFAULT_SETTLE, follow, replicate

__all__ = [
    "DEFAULT_DATABASES",
    "DEFAULT_MAPPING_TEXT",
    "Mapping",
    "MappingError",
    "MappingRefused",
    "Proposal",
    "ReplicationConfig",
    "ReplicationError",
    "ReplicationReport",
    "SourceAuthError",
    "SourceMalformed",
    "SourceUnavailable",
    "default_mapping",
    "follow",
    "inspect_source",
    "mapping_text",
    "parse_mapping",
    "read_credentials",
    "read_mapping",
    "replicate",
    "replication_status",
]
