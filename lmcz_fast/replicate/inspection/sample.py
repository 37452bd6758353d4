"""Sampling a source: its databases (`GET /_all_dbs`, or the names given), and a bounded spread of each one's
documents (`GET /{db}/_all_docs?include_docs=true&limit=N&skip=K` at evenly spaced places)."""

from __future__ import annotations

from typing import Any

from ..config import ReplicationError, SourceAuthError, SourceMalformed, SourceUnavailable
from ..source import CouchSource
from .classify import Sample

#: Documents sampled per database by default, and the places they are read from (share of the database).
DEFAULT_SAMPLE = 200
_PLACES = (0.0, 0.25, 0.5, 0.75)
#: The largest `_all_docs` answer read while sampling.
_CAP = 16 << 20


def list_databases(source: CouchSource, names: tuple[str, ...] = ()) -> list[str]:
    """The databases to inspect: `names` when given, else the source's `_all_dbs` without CouchDB's own
    (`_users`, `_replicator`, ...). A source that refuses `_all_dbs` is told to the user with the way out."""
    if names:
        return list(dict.fromkeys(names))
    url = source.config.base + "/_all_dbs"
    try:
        found = source.get_json(url)
    except SourceAuthError as exc:
        raise ReplicationError(f"{exc}; or, if only the list of databases is closed to us, name the databases "
                               f"with --db NAME (one per database)") from None
    except SourceMalformed:
        raise
    except SourceUnavailable as exc:
        if "HTTP " not in str(exc):
            raise
        raise ReplicationError(f"{url}: the source does not list its databases ({exc}); name them with --db NAME "
                               f"(one per database)") from None
    if not isinstance(found, list) or not all(isinstance(n, str) for n in found):
        raise SourceMalformed(f"{url}: not a list of database names")
    return [n for n in found if not n.startswith("_")]


def sample_database(source: CouchSource, name: str, size: int = DEFAULT_SAMPLE) -> Sample:
    """Up to `size` documents of one database, from evenly spaced places (design documents left out)."""
    info = source.info(name)
    count = info.get("doc_count")
    count = count if isinstance(count, int) and not isinstance(count, bool) and count >= 0 else None
    sample = Sample(name, count)
    if count is not None and count <= size:
        places = [0]
        per = size
    else:
        total = count or size
        places = sorted({int(total * p) for p in _PLACES})
        per = max(1, -(-size // len(places)))
    seen: set[str] = set()
    for skip in places:
        url = source.url(name, "/_all_docs", include_docs="true", limit=per, skip=skip)
        found = source.get_json(url, cap=_CAP)
        rows = found.get("rows") if isinstance(found, dict) else None
        if not isinstance(rows, list):
            raise SourceMalformed(f"{url}: the answer has no `rows` list")
        for row in rows:
            doc: Any = row.get("doc") if isinstance(row, dict) else None
            doc_id = doc.get("_id") if isinstance(doc, dict) else None
            if not isinstance(doc_id, str) or doc_id.startswith("_design/") or doc_id in seen:
                continue
            seen.add(doc_id)
            sample.add(doc)
            if len(sample.docs) >= size:
                return sample
    return sample
