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

import importlib
from typing import TYPE_CHECKING, Any

# The names below are loaded on first use (PEP 562), each from its file: the CLI's choices and defaults (KINDS,
# DEFAULT_BATCH, DEFAULT_SETTLE, in config.py) do not load the HTTP client (source.py loads httpx) at start-up.
# `from lmcz_fast.replicate import replicate` and `repl.replicate` work as before; the type checker reads the imports below.
# Also reached through this package though not in `__all__` (as before the split): ProxyConfig (a
# ReplicationConfig's `proxy`), KINDS and DEFAULT_BATCH (the CLI's choices and default), DbReport.
if TYPE_CHECKING:
    from ..store import replication_status
    from ..upstream import ProxyConfig
    from .config import (
        DEFAULT_BATCH,
        DEFAULT_SETTLE,
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
    from .running import follow, replicate

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


#: Where each name lives: a file of this package, or another package.
_HOMES = {
    "replication_status": "..store",
    "ProxyConfig": "..upstream",
    **dict.fromkeys(("DEFAULT_BATCH", "DEFAULT_DATABASES", "DEFAULT_SETTLE", "KINDS", "Mapping", "MappingError",
                     "MappingRefused", "ReplicationConfig", "ReplicationError", "SourceAuthError", "SourceMalformed",
                     "SourceUnavailable", "read_credentials"), ".config"),
    **dict.fromkeys(("Proposal", "inspect_source", "mapping_text"), ".inspection"),
    **dict.fromkeys(("DEFAULT_MAPPING_TEXT", "default_mapping", "parse_mapping", "read_mapping"), ".mapping_file"),
    **dict.fromkeys(("DbReport", "ReplicationReport"), ".replicator"),
    **dict.fromkeys(("follow", "replicate"), ".running"),
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})
