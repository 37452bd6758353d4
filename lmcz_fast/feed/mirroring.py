"""`mirror`: copy an upstream feed into a directory, verified and never re-signed, for other stores to sync from."""

from __future__ import annotations

import contextlib
import logging
import os
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ..progress import Progress
from ..store import Blocklist
from ..upstream import ProxyConfig
from .directory import _atomic_write, _file_matches, _fsync_dir, _prune
from .errors import FeedError, ManifestError
from .fetching import RetryPolicy, _Fetcher, _fetch_to, _NotFound
from .keys import load_public_key
from .manifest import MANIFEST_NAME, _check_fresh, _check_replay, _current, parse_manifest
from .syncing import SyncReport, sync

log = logging.getLogger("lmcz_fast.feed")  # the feed's one logger, whichever file logs


@dataclass(frozen=True)
class MirrorReport:
    """What a mirror run did: the upstream version it now re-serves, the files it fetched, reused and pruned,
    and the sync of the mirror's own store from its directory (if it has one)."""

    feed_url: str
    mirror_dir: str
    action: str
    version: int
    fetched: tuple[str, ...]
    reused: tuple[str, ...]
    pruned: tuple[str, ...]
    downloaded_bytes: int
    requests: int
    seconds: float
    store: SyncReport | None

    def summary(self) -> str:
        text = (f"mirror at version {self.version} ({self.action}): {len(self.fetched)} file(s) fetched "
                f"({self.downloaded_bytes / 1024:.0f} KiB), {len(self.reused)} reused, {len(self.pruned)} pruned, "
                f"in {self.seconds:.2f} s")
        if self.store is not None:
            text += f"; store: {self.store.summary()}"
        return text


def mirror(
    feed_url: str,
    mirror_dir: str | os.PathLike[str],
    public_key: Ed25519PublicKey | bytes | str | os.PathLike[str],
    *,
    db: Blocklist | str | os.PathLike[str] | None = None,
    now: float | None = None,
    retry: RetryPolicy = RetryPolicy(),
    proxy: ProxyConfig | None = None,
    progress: Progress | None = None,
) -> MirrorReport:
    """Copy the upstream feed into `mirror_dir`, verified, for other stores to sync from; never re-signs.

    Every file the upstream manifest names is downloaded (unless the mirror already holds it byte for byte),
    checked against the signed size and SHA-256, and renamed into place; the manifest goes last, exactly as
    signed upstream. A manifest older than the mirror's own is refused (`ReplayError`), as in `sync`. With `db`,
    the mirror's store is then synced from the mirror directory itself, so the upstream is read once. `proxy` and
    `progress` work as in `sync`.
    """
    started = time.perf_counter()
    key = load_public_key(public_key)
    target = Path(mirror_dir)
    target.mkdir(parents=True, exist_ok=True)
    with _Fetcher(feed_url, retry, retry.sleep, retry.rng or random.Random(), proxy) as fetcher:
        return _mirror_with(fetcher, target, key, db, now, started, progress)


def _mirror_with(fetcher: _Fetcher, target: Path, key: Ed25519PublicKey, db: Any, now: float | None, started: float,
                 progress: Progress | None) -> MirrorReport:
    clock = time.time() if now is None else now
    try:
        local = _current(target, key)
    except FeedError as exc:
        log.warning("the mirror's own manifest is unusable (%s); replacing it", exc)
        local = None
    fetched: list[str] = []
    reused: list[str] = []
    for attempt in range(3):
        manifest = parse_manifest(fetcher.get_manifest(), key)
        _check_fresh(manifest, clock)
        if local is not None:
            if local.feed_id != manifest.feed_id:
                raise ManifestError(f"the mirror holds feed {local.feed_id!r}; upstream is {manifest.feed_id!r}")
            _check_replay(manifest, local.version, local.set_digest, local.published_at, "the mirror")
        try:
            for entry in manifest.files():
                dest = target / entry.path
                if _file_matches(dest, entry.size, entry.sha256):
                    reused.append(entry.path)
                    continue
                fd, temp = tempfile.mkstemp(dir=target, prefix=f".{entry.path}.", suffix=".tmp")
                os.close(fd)
                try:
                    _fetch_to(fetcher, entry, Path(temp), progress)
                    with open(temp, "rb") as stream:
                        os.fsync(stream.fileno())
                    os.chmod(temp, 0o644)
                    os.replace(temp, dest)
                finally:
                    with contextlib.suppress(OSError):
                        os.unlink(temp)
                fetched.append(entry.path)
            break
        except _NotFound as exc:
            if attempt == 2:
                raise
            log.info("%s; upstream moved on meanwhile, re-reading its manifest", exc)
    unchanged = local is not None and local.raw == manifest.raw
    if not unchanged:
        _fsync_dir(target)
        _atomic_write(target / MANIFEST_NAME, manifest.raw)
    keep = {entry.path for entry in manifest.files()}
    if local is not None:
        keep |= {entry.path for entry in local.files()}
    pruned = _prune(target, keep, clock)
    store_report = None
    if db is not None:
        store_report = sync(db, str(target), key, now=clock, progress=progress)
    return MirrorReport(
        feed_url=fetcher.base, mirror_dir=str(target), action="up-to-date" if unchanged else "updated",
        version=manifest.version, fetched=tuple(fetched), reused=tuple(reused), pruned=tuple(pruned),
        downloaded_bytes=fetcher.bytes, requests=fetcher.requests, seconds=time.perf_counter() - started,
        store=store_report,
    )
