"""A signed static update feed: the central side publishes it, stores (and chain mirrors) sync from it.

A feed is a directory of plain files that any HTTP server, object store or CDN can serve unchanged:

- `snapshot-<version>.txt.gz`: the whole list (gzip text: `#` header lines, then blocked GTINs, then canonical
  identities, sorted, then the table records: `@min_price ...`, `@group_min_price ...`, `@grey_gtin ...`),
  loadable as is by `Blocklist.load` and `lmcz-fast load`;
- `delta-<from>-<to>.txt.gz`: the change between two consecutive versions (`+CODE`, `-CODE`, `+GTIN`, `-GTIN`,
  `+@record`, `-@record` lines), applicable as is by `lmcz-fast delta`;
- `manifest.json`: one signed envelope naming the current version, the digest of the whole set, the snapshot and
  the last deltas with their sizes and SHA-256. It is written last, so a reader never sees a manifest naming a
  file that is not there yet, and it is one file, so a cache can never pair a manifest with the wrong signature.

Every file name except the manifest's is immutable (it carries its versions), so caches may keep them forever.
`sync` trusts nothing it downloads until the manifest's Ed25519 signature, then each file's size and SHA-256,
then the digest arithmetic all check out; only then does it change the store, in one LMDB transaction.
The format is described in docs/feed.md. Format 2 (`lmcz-feed/2`) added the table records; a publisher keeps
writing format 1 until its feed first carries a record, so stores of older versions keep syncing until then and
refuse the new format by name (never applying the codes without the tables).

The package's files, one job each: `errors.py` (what it raises), `keys.py` (Ed25519 signing keys),
`manifest.py` (the signed manifest: formats, entries, signing, verifying, freshness and replay checks),
`files.py` (snapshot and delta files: reading, writing, composing), `directory.py` (a feed directory on disk:
atomic writes, pruning), `fetching.py` (downloads with retries), `syncing.py` (`sync`), `publishing.py`
(`publish`) and `mirroring.py` (`mirror`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# The names below are loaded on first use (PEP 562), each from its file: `lmcz-fast --help` and the commands that
# never touch a feed do not pay for the cryptography and the HTTP client (fetching.py loads httpx) at start-up.
# `from lmcz_fast.feed import sync` and `feed.sync` work as before. The type checker reads the imports here.
if TYPE_CHECKING:
    from .errors import (
        ExpiredManifestError,
        FeedError,
        FeedUnavailable,
        FutureManifestError,
        IntegrityError,
        ManifestError,
        PublishError,
        ReplayError,
        SignatureError,
        UnsupportedFeedError,
    )
    from .fetching import RetryPolicy
    from .files import Delta, Snapshot, read_delta, read_snapshot
    from .keys import key_id, load_private_key, load_public_key, public_key_text, write_keypair
    from .manifest import (  # the format names too, as `lmcz_fast.feed.FORMAT` was before the split
        FORMAT,
        FORMAT_1,
        FORMAT_2,
        FORMATS,
        MANIFEST_NAME,
        MAX_AHEAD,
        MAX_MANIFEST_BYTES,
        SIGNING_CONTEXT,
        DeltaEntry,
        Manifest,
        SnapshotEntry,
        parse_manifest,
    )
    from .mirroring import MirrorReport, mirror
    from .defaults import DEFAULT_KEEP_DELTAS, DEFAULT_VALID_FOR
    from .publishing import PublishReport, publish
    from .syncing import SyncReport, sync

__all__ = [
    "DEFAULT_KEEP_DELTAS",
    "DEFAULT_VALID_FOR",
    "MANIFEST_NAME",
    "MAX_AHEAD",
    "Delta",
    "DeltaEntry",
    "ExpiredManifestError",
    "FutureManifestError",
    "FeedError",
    "FeedUnavailable",
    "IntegrityError",
    "Manifest",
    "ManifestError",
    "MirrorReport",
    "PublishError",
    "PublishReport",
    "ReplayError",
    "RetryPolicy",
    "SignatureError",
    "Snapshot",
    "SnapshotEntry",
    "SyncReport",
    "UnsupportedFeedError",
    "key_id",
    "load_private_key",
    "load_public_key",
    "mirror",
    "parse_manifest",
    "public_key_text",
    "publish",
    "read_delta",
    "read_snapshot",
    "sync",
    "write_keypair",
]


#: Where each public name lives (a file of this package).
_HOMES = {
    **dict.fromkeys(("ExpiredManifestError", "FeedError", "FeedUnavailable", "FutureManifestError", "IntegrityError",
                     "ManifestError", "PublishError", "ReplayError", "SignatureError", "UnsupportedFeedError"),
                    "errors"),
    "RetryPolicy": "fetching",
    **dict.fromkeys(("Delta", "Snapshot", "read_delta", "read_snapshot"), "files"),
    **dict.fromkeys(("key_id", "load_private_key", "load_public_key", "public_key_text", "write_keypair"), "keys"),
    **dict.fromkeys(("FORMAT", "FORMAT_1", "FORMAT_2", "FORMATS", "MANIFEST_NAME", "MAX_AHEAD", "MAX_MANIFEST_BYTES",
                     "SIGNING_CONTEXT", "DeltaEntry", "Manifest", "SnapshotEntry", "parse_manifest"), "manifest"),
    **dict.fromkeys(("MirrorReport", "mirror"), "mirroring"),
    **dict.fromkeys(("DEFAULT_KEEP_DELTAS", "DEFAULT_VALID_FOR"), "defaults"),
    **dict.fromkeys(("PublishReport", "publish"), "publishing"),
    **dict.fromkeys(("SyncReport", "sync"), "syncing"),
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})
