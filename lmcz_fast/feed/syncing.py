"""`sync`: bring a store to the feed's version, by its deltas or its snapshot, verified before anything is written."""

from __future__ import annotations

import errno
import logging
import os
import random
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .._codes import CodeError
from ..progress import Progress, announce_after, line_counter
from ..store import Blocklist, Change, DigestMismatchError, LoadError, RecordError, VersionError, set_digest_of
from ..store import disk_full, free_bytes
from ..upstream import ProxyConfig
from .errors import FeedError, IntegrityError, ManifestError
from .fetching import RetryPolicy, _Fetcher, _fetch_to, _NotFound
from .files import _compose, _digest_after, read_delta, read_snapshot, text_limit
from .keys import key_id, load_public_key, public_key_text
from .manifest import DeltaEntry, Manifest, SnapshotEntry, _check_fresh, _check_replay, parse_manifest

log = logging.getLogger("lmcz_fast.feed")  # the feed's one logger, whichever file logs


@dataclass(frozen=True)
class SyncReport:
    """What one sync did. `action` is `up-to-date`, `delta` or `snapshot`; `reason` says why a snapshot."""

    feed_url: str
    action: str
    from_version: int
    to_version: int
    set_digest: str
    files: tuple[str, ...]
    downloaded_bytes: int
    requests: int
    added: int
    removed: int
    reason: str | None
    seconds: dict[str, float]
    gtins_added: int = 0
    gtins_removed: int = 0
    records_added: int = 0
    records_removed: int = 0

    def summary(self) -> str:
        total = self.seconds.get("total", 0.0)
        if self.action == "up-to-date":
            return f"up to date at version {self.to_version} ({total:.2f} s)"
        how = f"{len(self.files)} file(s), {self.downloaded_bytes / 1024:.0f} KiB"
        if self.action == "delta":
            change = f"+{self.added} -{self.removed} codes, +{self.gtins_added} -{self.gtins_removed} GTINs"
        else:
            change = f"{self.added} codes, {self.gtins_added} GTINs"
        if self.records_added or self.records_removed:
            change += (f", +{self.records_added} -{self.records_removed} table records" if self.action == "delta"
                       else f", {self.records_added} table records")
        why = f" [{self.reason}]" if self.reason else ""
        return (f"version {self.from_version} -> {self.to_version} by {self.action}: {change}, {how}, "
                f"in {total:.2f} s{why}")


def sync(
    db: Blocklist | str | os.PathLike[str],
    feed_url: str,
    public_key: Ed25519PublicKey | bytes | str | os.PathLike[str] | None = None,
    *,
    now: float | None = None,
    retry: RetryPolicy = RetryPolicy(),
    temp_dir: str | os.PathLike[str] | None = None,
    proxy: ProxyConfig | None = None,
    progress: Progress | None = None,
) -> SyncReport:
    """Bring the store `db` (a `Blocklist` opened writable, or a path) to the feed's version.

    A path without a database gets one only if this first sync succeeds (it is built beside the path and moved
    in); after a failed first sync nothing is left there.

    Fetches and verifies the manifest, then downloads either the deltas from the store's version (when the
    chain is there, starts at the store's digest and is smaller than the snapshot) or the snapshot, verifies size
    and SHA-256 of every file and the digest the result must have, and only then changes the store, in one
    transaction. Afterwards the store's own digest must equal the manifest's (a delta that somehow misses falls
    back to the snapshot). Records the sync (`mark_synced`) only when all of that held.

    `public_key` defaults to the one recorded in the store by an earlier sync; a key given here is recorded.
    `now` (Unix seconds) is the clock used for the manifest's validity and the sync time. `proxy` says how to reach
    an http(s) feed (default: the proxy environment variables). `progress` (see `lmcz_fast.progress`) hears about
    each download and, for a snapshot, its reading, checking and loading.
    Raises a `FeedError` subclass on failure; every check runs before the store is written, so a refused feed
    leaves the store as it was.
    """
    sleep, rng = retry.sleep, retry.rng or random.Random()
    if isinstance(db, Blocklist):
        return _sync(db, feed_url, public_key, now, retry, sleep, rng, temp_dir, proxy, progress)
    if os.path.exists(os.path.join(os.fspath(db), "data.mdb")):
        with Blocklist.open(db, readonly=False) as bl:
            return _sync(bl, feed_url, public_key, now, retry, sleep, rng, temp_dir, proxy, progress)
    # A first sync builds the store beside `db` and moves it in only when the sync succeeded.
    with Blocklist.building(db) as bl:
        return _sync(bl, feed_url, public_key, now, retry, sleep, rng, temp_dir, proxy, progress)


def _sync(bl: Blocklist, feed_url: str, public_key: Any, now: float | None, retry: RetryPolicy,
          sleep: Callable[[float], Any], rng: random.Random, temp_dir: Any, proxy: ProxyConfig | None,
          progress: Progress | None) -> SyncReport:
    started = time.perf_counter()
    if public_key is None:
        public_key = bl.get_meta("feed_public_key")
        if public_key is None:
            raise FeedError("no feed public key: give one (--public-key) on the first sync of this store")
    key = load_public_key(public_key)
    with _Fetcher(feed_url, retry, sleep, rng, proxy) as fetcher:
        return _sync_with(bl, fetcher, key, now, temp_dir, progress, started)


def _sync_with(bl: Blocklist, fetcher: _Fetcher, key: Ed25519PublicKey, now: float | None, temp_dir: Any,
               progress: Progress | None, started: float) -> SyncReport:
    timings: dict[str, float] = {}
    for attempt in range(3):
        mark = time.perf_counter()
        manifest = parse_manifest(fetcher.get_manifest(), key)
        timings["manifest"] = time.perf_counter() - mark
        clock = time.time() if now is None else now
        _check_fresh(manifest, clock)
        info = bl.info()
        stored_feed = bl.get_meta("feed_id")
        if stored_feed is not None and stored_feed != manifest.feed_id:
            raise ManifestError(f"this store follows feed {stored_feed!r}; the manifest is for {manifest.feed_id!r}")
        version, digest = info["version"], info["set_digest"]
        _check_replay(manifest, version, digest, bl.get_meta("feed_published_at"), "the store")
        record = _sync_fields(manifest, key, fetcher.base, clock)
        try:
            with tempfile.TemporaryDirectory(prefix="lmcz-feed-", dir=temp_dir) as work:
                try:
                    outcome = _bring_up(bl, manifest, fetcher, Path(work), version, digest, timings, record,
                                        progress)
                except OSError as exc:
                    if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                        raise
                    # the downloads' directory is full: a StoreError (local trouble, exit 4), not the feed's fault
                    raise disk_full(work, free_bytes(work), "the update could not be downloaded; "
                                                            "nothing was changed") from exc
            break
        except _NotFound as exc:
            if attempt == 2:
                raise
            log.info("%s; the feed moved on meanwhile, re-reading the manifest", exc)
    if outcome.action == "up-to-date":
        bl.mark_synced(**record)
    timings["total"] = time.perf_counter() - started
    return SyncReport(
        feed_url=fetcher.base, action=outcome.action, from_version=version, to_version=manifest.version,
        set_digest=manifest.set_digest, files=outcome.files, downloaded_bytes=fetcher.bytes,
        requests=fetcher.requests, added=outcome.added, removed=outcome.removed, reason=outcome.reason,
        seconds=timings, gtins_added=outcome.gtins_added, gtins_removed=outcome.gtins_removed,
        records_added=outcome.records_added, records_removed=outcome.records_removed,
    )


def _sync_fields(manifest: Manifest, key: Ed25519PublicKey, base: str, clock: float) -> dict[str, Any]:
    """What a successful sync records, written in the same transaction as the change it applies."""
    return {"feed_id": manifest.feed_id, "feed_published_at": manifest.published_at,
            "feed_expires_at": manifest.expires_at, "feed_public_key": public_key_text(key),
            "feed_key_id": key_id(key), "feed_url": base, "last_sync_at": clock}


class _Outcome(NamedTuple):
    action: str
    files: tuple[str, ...]
    added: int
    removed: int
    reason: str | None
    gtins_added: int = 0
    gtins_removed: int = 0
    records_added: int = 0
    records_removed: int = 0


def _bring_up(bl: Blocklist, manifest: Manifest, fetcher: _Fetcher, work: Path, version: int, digest: str,
              timings: dict[str, float], record: dict[str, Any], progress: Progress | None = None) -> _Outcome:
    """Download, verify and apply the deltas or the snapshot."""
    if manifest.version == version:
        return _Outcome("up-to-date", (), 0, 0, None)
    chain = manifest.chain_from(version)
    reason = None
    if chain is None:
        reason = f"no delta chain from version {version}"
    elif chain[0].from_digest != digest:
        reason = f"the store's digest at version {version} differs from the publisher's"
    elif sum(entry.size for entry in chain) > manifest.snapshot.size:
        reason = "the deltas are larger than the snapshot"
    if chain is not None and reason is None:
        applied = _apply_deltas(bl, manifest, chain, fetcher, work, version, digest, timings, record, progress)
        if applied is not None:
            return applied
        reason = "the store's digest after the deltas differs from the publisher's"
        log.warning("%s; loading the snapshot instead", reason)
    return _apply_snapshot(bl, manifest, fetcher, work, timings, reason, record, progress)


def _fetch(fetcher: _Fetcher, entry: SnapshotEntry | DeltaEntry, work: Path, progress: Progress | None = None) -> Path:
    dest = work / entry.path
    _fetch_to(fetcher, entry, dest, progress)
    return dest


def _apply_deltas(bl: Blocklist, manifest: Manifest, chain: list[DeltaEntry], fetcher: _Fetcher, work: Path,
                  version: int, digest: str, timings: dict[str, float], record: dict[str, Any],
                  progress: Progress | None = None) -> _Outcome | None:
    """Apply the chain as one composed delta; None (nothing changed) if the store's digest afterwards would not
    be the manifest's."""
    mark = time.perf_counter()
    deltas = []
    for entry in chain:
        # The signed counts bound the text the file may expand to (its gzip trailer's length is not trusted).
        lines = (entry.added + entry.removed + entry.gtins_added + entry.gtins_removed + entry.records_added
                 + entry.records_removed)
        delta = read_delta(_fetch(fetcher, entry, work, progress), max_bytes=text_limit(lines))
        if (delta.from_version, delta.to_version) != (entry.from_version, entry.to_version):
            raise IntegrityError(f"{entry.path}'s header says {delta.from_version}->{delta.to_version}")
        deltas.append(delta)
    timings["fetch"] = time.perf_counter() - mark
    mark = time.perf_counter()
    combined = _compose(deltas)
    try:
        expected = _digest_after(digest, combined)
    except (CodeError, ValueError) as exc:
        raise IntegrityError(f"a signed delta holds a bad entry: {exc}") from exc
    if expected != manifest.set_digest:
        raise IntegrityError(
            f"the deltas {version}->{manifest.version} lead to digest {expected}, the manifest says "
            f"{manifest.set_digest}"
        )
    timings["verify"] = time.perf_counter() - mark
    mark = time.perf_counter()
    if progress is not None:
        progress("applying the change", 0, None, "")
    try:
        bl.apply(Change(add=combined.add, remove=combined.remove, add_gtins=combined.add_gtins,
                        remove_gtins=combined.remove_gtins, add_records=combined.add_records,
                        remove_records=combined.remove_records, from_version=version, to_version=manifest.version,
                        expect_digest=manifest.set_digest, meta=record, advance_empty=True))
    except DigestMismatchError:
        return None
    except (CodeError, RecordError) as exc:
        raise IntegrityError(f"a signed delta holds a bad entry: {exc}") from exc
    except VersionError as exc:
        raise FeedError(f"another writer changed the store while the feed was being fetched: {exc}") from exc
    timings["apply"] = time.perf_counter() - mark
    return _Outcome("delta", tuple(entry.path for entry in chain), len(combined.add), len(combined.remove), None,
                    len(combined.add_gtins), len(combined.remove_gtins), records_added=len(combined.add_records),
                    records_removed=len(combined.remove_records))


def _apply_snapshot(bl: Blocklist, manifest: Manifest, fetcher: _Fetcher, work: Path, timings: dict[str, float],
                    reason: str | None, record: dict[str, Any], progress: Progress | None = None) -> _Outcome:
    mark = time.perf_counter()
    path = _fetch(fetcher, manifest.snapshot, work, progress)
    timings["fetch"] = timings.get("fetch", 0.0) + time.perf_counter() - mark
    mark = time.perf_counter()
    if progress is not None:
        progress("checking the snapshot", 0, None, "")
    snapshot = read_snapshot(path, max_bytes=text_limit(manifest.snapshot.codes + manifest.snapshot.gtins
                                                        + manifest.snapshot.records))
    if snapshot.version != manifest.version:
        raise IntegrityError(f"{manifest.snapshot.path}'s header says version {snapshot.version}")
    if len(snapshot.records) != manifest.records:
        raise IntegrityError(f"{manifest.snapshot.path} holds {len(snapshot.records)} table records, the manifest "
                             f"says {manifest.records}")
    try:
        digest = set_digest_of(snapshot.identities, snapshot.gtins, snapshot.records)
    except (CodeError, ValueError) as exc:
        raise IntegrityError(f"the signed snapshot holds a bad entry: {exc}") from exc
    if digest != manifest.set_digest:
        raise IntegrityError(f"the snapshot's digest is {digest}, the manifest says {manifest.set_digest}")
    timings["verify"] = timings.get("verify", 0.0) + time.perf_counter() - mark
    mark = time.perf_counter()
    counter = None
    sources: Iterable[Any] = [snapshot.lines()]
    if progress is not None:
        counter = line_counter(progress, "loading into the store", len(snapshot.gtins) + len(snapshot.identities))
        sources = announce_after(sources, progress, "writing the database")
    try:
        # records= (even an empty list) replaces the tables too: the store then holds exactly the publisher's set.
        bl.load(sources, replace=True, strict=True, version=manifest.version,
                expect_digest=manifest.set_digest, meta=record, progress=counter, records=snapshot.records)
    except DigestMismatchError as exc:
        raise IntegrityError(f"the signed snapshot does not load to the manifest's digest: {exc}") from exc
    except LoadError as exc:
        raise IntegrityError(f"the signed snapshot holds bad lines: {exc}") from exc
    except VersionError as exc:
        raise FeedError(f"another writer changed the store while the feed was being fetched: {exc}") from exc
    timings["apply"] = timings.get("apply", 0.0) + time.perf_counter() - mark
    return _Outcome("snapshot", (manifest.snapshot.path,), len(snapshot.identities), 0, reason, len(snapshot.gtins),
                    records_added=len(snapshot.records))
