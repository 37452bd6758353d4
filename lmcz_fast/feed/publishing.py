"""`publish`: build or extend a feed directory (snapshot, delta from the previous version, signed manifest)."""

from __future__ import annotations

import hashlib
import itertools
import os
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .._codes import CodeError
from ..progress import Progress, announce_after, estimate_lines, line_counter
from ..store import (
    PRICE_KINDS,
    RECORD_KINDS,
    Blocklist,
    LoadError,
    RecordError,
    StoreError,
    digest_after,
    parse_record,
    read_grey_file,
    read_price_file,
    set_digest_of,
)
from .defaults import DEFAULT_KEEP_DELTAS, DEFAULT_VALID_FOR
from .directory import _atomic_write, _file_matches, _prune
from .errors import PublishError, SignatureError, UnsupportedFeedError
from .files import (
    _PROGRESS_LINES,
    Delta,
    Snapshot,
    _delta_bytes,
    _digest_after,
    _snapshot_bytes,
    read_delta,
    read_snapshot,
)
from .keys import key_id, load_private_key
from .manifest import (
    _NAME,
    FORMAT_1,
    FORMAT_2,
    MANIFEST_NAME,
    DeltaEntry,
    Manifest,
    SnapshotEntry,
    _current,
    _entry_body,
    _manifest_from_body,
    _sign_envelope,
)



@dataclass(frozen=True)
class PublishReport:
    """What a publish wrote. `action`: `created` (first version), `updated` (new version) or `refreshed`
    (same version re-signed with new timestamps: the heartbeat)."""

    feed_dir: str
    action: str
    version: int
    previous_version: int | None
    codes: int
    gtins: int
    added: int
    removed: int
    gtins_added: int
    gtins_removed: int
    set_digest: str
    written: tuple[str, ...]
    pruned: tuple[str, ...]
    published_at: int
    expires_at: int
    seconds: float
    records: int = 0
    records_added: int = 0
    records_removed: int = 0
    format: str = FORMAT_1

    def summary(self) -> str:
        if self.action == "refreshed":
            return f"version {self.version} re-signed, valid until {readable_time(self.expires_at)}"
        change = f"+{self.added} -{self.removed} codes, +{self.gtins_added} -{self.gtins_removed} GTINs"
        tables = ""
        if self.format != FORMAT_1:
            change += f", +{self.records_added} -{self.records_removed} table records"
            tables = f", {self.records} table records"
        return (f"version {self.version} ({self.action}): {self.codes} codes, {self.gtins} GTINs{tables} ({change}), "
                f"{len(self.written)} file(s) written, {len(self.pruned)} pruned, in {self.seconds:.2f} s "
                f"[{self.format}]")


def readable_time(unix: float) -> str:
    """A Unix time as people read it: `2026-12-09 13:35:00 UTC`."""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(unix))


def _scratch_set(path: Path, sources: Any,
                 progress: Progress | None = None) -> tuple[list[str], list[str], str, list[str]]:
    """Let a throwaway store at `path` parse, validate and canonicalize input (anything `Blocklist.load` reads,
    with its reading of a line as a CIS, and its `@` record lines); return its sorted GTINs, sorted identities,
    set digest and table records."""
    counter = None
    if progress is not None:
        if isinstance(sources, (str, os.PathLike)):
            sources = [sources]
        sources = list(sources)
        counter = line_counter(progress, "reading input", estimate_lines(sources))
        sources = announce_after(sources, progress, "checking and sorting")
    with Blocklist.create(path) as scratch:
        try:
            scratch.load(sources, replace=True, strict=True, progress=counter)
        except (LoadError, CodeError, StoreError) as exc:
            raise PublishError(f"bad input, nothing published: {exc}") from exc
        gtins = list(scratch.iter_gtins())
        identities: list[str] = []
        if progress is None:
            identities.extend(scratch.iter_identities())
        else:
            total = scratch.info()["codes"]
            codes = scratch.iter_identities()
            while piece := list(itertools.islice(codes, _PROGRESS_LINES)):
                identities.extend(piece)
                progress("collecting the new list", len(identities), total, "codes")
        return gtins, identities, scratch.info()["set_digest"], list(scratch.iter_records())


def _record_key(text: str) -> tuple[str, str]:
    """A record's key in its table: its kind and its GTIN or group (the value is what a key holds)."""
    kind, key = text.split()[:2]
    return kind, key


def _apply_records(records: set[str], add: Iterable[str], remove: Iterable[str]) -> set[str]:
    """The record set after a change, as the store applies it: a removal deletes a key holding exactly that
    record, an addition sets its key's value."""
    by_key = {_record_key(text): text for text in records}
    for text in remove:
        if by_key.get(_record_key(text)) == text:
            del by_key[_record_key(text)]
    for text in add:
        by_key[_record_key(text)] = text
    return set(by_key.values())


def _table_input(kind: str, sources: Any) -> list[str]:
    """The records of a publisher's price or grey-list input (files as `Blocklist.load_prices` / `load_grey`
    read them), refused whole on any bad line."""
    reader = read_price_file if kind == "prices" else read_grey_file
    try:
        records, report = reader(sources)
    except StoreError as exc:
        raise PublishError(f"bad {kind} input, nothing published: {exc}") from exc
    if report.rejected:
        first = report.errors[0]
        raise PublishError(f"bad {kind} input, nothing published: {report.rejected} bad lines (first: line "
                           f"{first.line} of {first.source}: {first.message})")
    return [record.text for record in records]


def _record_order(text: str) -> tuple[int, int, str]:
    """Snapshot order of records, the store's key order: by kind (RECORD_KINDS' order), then GTIN or group."""
    kind, key = _record_key(text)
    return RECORD_KINDS.index(kind), int(key) if kind == "group_min_price" else 0, key


def _exact(old: Snapshot, change: Delta) -> Delta:
    """`change` (canonical) cut down to what really changes `old`: adds absent from it, removes present in it.

    An entry both added and removed ends up added, as the store applies removes before adds."""
    have, have_gtins = set(old.identities), set(old.gtins)
    add, add_gtins = set(change.add), set(change.add_gtins)
    return Delta(
        old.version, None,
        add=sorted(add - have), remove=sorted((set(change.remove) - add) & have),
        add_gtins=sorted(add_gtins - have_gtins),
        remove_gtins=sorted((set(change.remove_gtins) - add_gtins) & have_gtins),
    )


class _Inputs(NamedTuple):
    """What one `publish` was given to build the next version from (at most one of snapshot and delta)."""

    snapshot: Iterable[Any] | str | os.PathLike[str] | None
    delta: Delta | str | os.PathLike[str] | None
    prices: Iterable[Any] | str | os.PathLike[str] | None
    grey: Iterable[Any] | str | os.PathLike[str] | None


def _next_set(old: Snapshot, previous: Manifest | None, inputs: _Inputs,
              progress: Progress | None) -> tuple[Delta, list[str], list[str], set[str], str]:
    """The next version's set from the previous one (`old`, published in `previous`) and the inputs:
    `(diff from old, identities, gtins, table records, set digest)`."""
    snapshot, delta, prices, grey = inputs
    records = set(old.records)
    snapshot_records: list[str] = []
    change: Delta | None = None
    with tempfile.TemporaryDirectory(prefix="lmcz-publish-") as work:
        if snapshot is not None:
            gtins, identities, digest, snapshot_records = _scratch_set(Path(work) / "new", snapshot, progress)
            if snapshot_records:
                records = set(snapshot_records)
        elif delta is not None:
            try:
                change = delta if isinstance(delta, Delta) else read_delta(delta)
            except UnsupportedFeedError as exc:
                raise PublishError(f"bad delta input, nothing published: {exc}") from exc
            add_gtins, add, _, _ = _scratch_set(Path(work) / "add", [change.add + change.add_gtins])
            remove_gtins, remove, _, _ = _scratch_set(Path(work) / "remove", [change.remove + change.remove_gtins])
    if prices is not None:
        records = {t for t in records if _record_key(t)[0] not in PRICE_KINDS} | set(_table_input("prices", prices))
    if grey is not None:
        records = {t for t in records if _record_key(t)[0] in PRICE_KINDS} | set(_table_input("grey", grey))
    if change is not None:
        try:
            records = _apply_records(records, [parse_record(t).text for t in change.add_records],
                                     [parse_record(t).text for t in change.remove_records])
        except RecordError as exc:
            raise PublishError(f"bad delta input, nothing published: {exc}") from exc
    old_records = set(old.records)
    add_records, remove_records = sorted(records - old_records), sorted(old_records - records)
    if snapshot is not None:
        old_ids, new_ids = set(old.identities), set(identities)
        old_gtins, new_gtins = set(old.gtins), set(gtins)
        diff = Delta(old.version, None, add=sorted(new_ids - old_ids), remove=sorted(old_ids - new_ids),
                     add_gtins=sorted(new_gtins - old_gtins), remove_gtins=sorted(old_gtins - new_gtins),
                     add_records=add_records, remove_records=remove_records)
        del old_ids, new_ids
        # The scratch digest covers the input's own records; the published set holds `records`.
        scratch_records = set(snapshot_records)
        digest = digest_after(digest, add_records=records - scratch_records, remove_records=scratch_records - records)
    else:
        diff = Delta(old.version, None)
        if delta is not None:
            diff = _exact(old, Delta(None, None, add, remove, add_gtins, remove_gtins))
        diff.add_records, diff.remove_records = add_records, remove_records
        identities = sorted(set(old.identities).difference(diff.remove).union(diff.add))
        gtins = sorted(set(old.gtins).difference(diff.remove_gtins).union(diff.add_gtins))
        digest = _digest_after(previous.set_digest if previous else set_digest_of((), ()), diff)
    return diff, identities, gtins, records, digest


def _write_delta(feed_path: Path, previous: Manifest, new_version: int, diff: Delta, digest_and_format: tuple[str, str],
                 written: list[str]) -> DeltaEntry:
    """Write the delta file from the previous version to `new_version` (its name goes into `written`)."""
    digest, fmt = digest_and_format
    data = _delta_bytes(previous.version, new_version, diff, fmt)
    name = f"delta-{previous.version:08d}-{new_version:08d}.txt.gz"
    _atomic_write(feed_path / name, data)
    written.append(name)
    return DeltaEntry(
        path=name, size=len(data), sha256=hashlib.sha256(data).hexdigest(),
        from_version=previous.version, to_version=new_version, from_digest=previous.set_digest,
        to_digest=digest, added=len(diff.add), removed=len(diff.remove),
        gtins_added=len(diff.add_gtins), gtins_removed=len(diff.remove_gtins),
        records_added=len(diff.add_records), records_removed=len(diff.remove_records),
    )


def _previous_of(feed_path: Path, key: Ed25519PrivateKey, feed_id: str | None,
                 now: float | None) -> tuple[Manifest | None, str, int]:
    """The feed's current manifest (None for a new feed), its id and the signing clock, each checked: the same key,
    the same feed. (A clock before the current manifest's is refused by `publish` only for a re-signed version:
    stores order manifests by version first.)"""
    try:
        previous = _current(feed_path, key.public_key())
    except SignatureError as exc:
        raise PublishError(f"{feed_path / MANIFEST_NAME} was signed by another key; refusing to extend it") from exc
    if previous is not None and feed_id is not None and feed_id != previous.feed_id:
        raise PublishError(f"{feed_path} holds feed {previous.feed_id!r}, not {feed_id!r}")
    feed_id = feed_id or (previous.feed_id if previous else "lmcz")
    if _NAME.fullmatch(feed_id) is None:
        raise PublishError(f"a feed id is letters, digits, '.', '_' and '-': {feed_id!r}")
    clock = int(time.time() if now is None else now)
    return previous, feed_id, clock


def _next_version(previous: Manifest | None, differs: bool, version: int | None) -> tuple[bool, int]:
    """Whether publishing makes a new version (a first one, a changed list, or `version` asked for) and its number,
    checked: versions only move forward and start at 1."""
    changed = previous is None or differs or (version is not None and version != previous.version)
    new_version = previous.version if previous else 0
    if changed:
        new_version = version if version is not None else new_version + 1
        if previous is not None and new_version <= previous.version:
            raise PublishError(f"versions only move forward: the feed is at {previous.version}, asked {new_version}")
        if new_version < 1:
            raise PublishError("the first version of a feed is at least 1")
    return changed, new_version


def publish(
    feed_dir: str | os.PathLike[str],
    private_key: Ed25519PrivateKey | bytes | str | os.PathLike[str],
    *,
    snapshot: Iterable[Any] | str | os.PathLike[str] | None = None,
    delta: Delta | str | os.PathLike[str] | None = None,
    prices: Iterable[Any] | str | os.PathLike[str] | None = None,
    grey: Iterable[Any] | str | os.PathLike[str] | None = None,
    version: int | None = None,
    feed_id: str | None = None,
    keep_deltas: int = DEFAULT_KEEP_DELTAS,
    valid_for: int = DEFAULT_VALID_FOR,
    now: float | None = None,
    progress: Progress | None = None,
) -> PublishReport:
    """Build or extend the feed in `feed_dir` and sign its manifest with `private_key`.

    `snapshot` is the complete new list: anything `Blocklist.load` reads (paths of text/CSV/gzip files with
    scans, CIS or 14-digit GTIN lines, or iterables of lines). `delta` is a change to the current list: a
    `Delta` or a delta file (`+CODE`/`-CODE`/`+GTIN`/`-GTIN` lines). The delta from the previous version is
    computed and published alongside the new snapshot; the last `keep_deltas` deltas stay listed. With neither
    input (or no change), the current version is re-signed with fresh timestamps: run that well within
    `valid_for` seconds so stores never see an expired manifest. Files are written atomically, the manifest last;
    files that neither the new nor the previous manifest names are then deleted. `progress` (see
    `lmcz_fast.progress`) hears about each step: reading the input, sorting, comparing, compressing, writing.

    The tables: `prices` (CSV files `gtin,price` / `pg,price`, kopecks) replaces the whole minimum-price table,
    `grey` (files of GTINs) the grey list; a snapshot input's `@` record lines replace both; a delta's `+@`/`-@`
    lines change them. Otherwise they stay as published. The feed is written in format 1 until it first holds a
    table record, then in format 2 for good (older stores refuse format 2 by name instead of dropping the tables).
    """
    if snapshot is not None and delta is not None:
        raise PublishError("give either a snapshot (the whole new list) or a delta, not both")
    if keep_deltas < 0 or valid_for <= 0:
        raise PublishError("keep_deltas must be >= 0 and valid_for > 0")
    started = time.perf_counter()
    key = load_private_key(private_key)
    feed_path = Path(feed_dir)
    feed_path.mkdir(parents=True, exist_ok=True)
    previous, feed_id, clock = _previous_of(feed_path, key, feed_id, now)

    def step(stage: str) -> None:
        if progress is not None:
            progress(stage, 0, None, "")

    old = Snapshot(0, [], [], [])
    if previous is not None:
        step(f"reading version {previous.version}")
        snap_path = feed_path / previous.snapshot.path
        if not _file_matches(snap_path, previous.snapshot.size, previous.snapshot.sha256):
            raise PublishError(f"{snap_path} does not match the feed's manifest; the feed directory is damaged")
        old = read_snapshot(snap_path)
    new = _next_set(old, previous, _Inputs(snapshot, delta, prices, grey), progress)
    step("comparing with the previous version" if previous is not None else "preparing the first version")
    diff, identities, gtins, records, digest = new
    record_list = sorted(records, key=_record_order)
    fmt = FORMAT_2 if records or (previous is not None and previous.format != FORMAT_1) else FORMAT_1
    changed, new_version = _next_version(previous, len(diff) > 0, version)

    if previous is not None and clock < previous.published_at and not changed:
        # Stores order manifests by version first, then (same version) by signing time: a re-signed version
        # dated before the current signature would be refused as a replay. A new version is accepted whatever
        # the current signature's date, which is the way out of a manifest signed by a clock running ahead.
        raise PublishError(f"the clock reads {clock}, before the current manifest's signing time "
                           f"{readable_time(previous.published_at)}: stores would refuse a re-signed version "
                           f"{previous.version} as a replay. If the clock is right (the current manifest was "
                           f"signed by a clock running ahead), publish a new version: --version "
                           f"{previous.version + 1}")
    written: list[str] = []
    deltas = list(previous.deltas) if previous else []
    snap_entry = previous.snapshot if previous else None
    if changed:
        if previous is not None:
            step(f"writing the delta {previous.version} -> {new_version}")
            deltas.append(_write_delta(feed_path, previous, new_version, diff, (digest, fmt), written))
        data = _snapshot_bytes(new_version, gtins, identities, record_list, fmt, progress)
        name = f"snapshot-{new_version:08d}.txt.gz"
        step("writing and signing")
        _atomic_write(feed_path / name, data)
        written.append(name)
        snap_entry = SnapshotEntry(name, len(data), hashlib.sha256(data).hexdigest(), new_version,
                                   len(identities), len(gtins), len(record_list))
    elif previous is not None and fmt != previous.format:
        raise PublishError("internal error: the feed's format changes without a new version")
    deltas = deltas[-keep_deltas:] if keep_deltas else []
    assert snap_entry is not None
    body: dict[str, Any] = {
        "feed": fmt,
        "feed_id": feed_id,
        "version": new_version,
        "published_at": clock,
        "expires_at": clock + int(valid_for),
        "set_digest": digest,
        "codes": len(identities),
        "gtins": len(gtins),
        "snapshot": _entry_body(snap_entry, fmt),
        "deltas": [_entry_body(entry, fmt) for entry in deltas],
    }
    if fmt != FORMAT_1:
        body["records"] = len(record_list)
    raw = _sign_envelope(body, key)
    manifest = _manifest_from_body(body, key_id(key), raw)
    _atomic_write(feed_path / MANIFEST_NAME, raw)
    written.append(MANIFEST_NAME)
    keep = {entry.path for entry in manifest.files()}
    if previous is not None:
        keep |= {entry.path for entry in previous.files()}
    pruned = _prune(feed_path, keep, clock)
    return PublishReport(
        feed_dir=str(feed_path), action="created" if previous is None else ("updated" if changed else "refreshed"),
        version=new_version, previous_version=previous.version if previous else None,
        codes=len(identities), gtins=len(gtins), added=len(diff.add), removed=len(diff.remove),
        gtins_added=len(diff.add_gtins), gtins_removed=len(diff.remove_gtins), set_digest=digest,
        written=tuple(written), pruned=tuple(pruned), published_at=clock, expires_at=clock + int(valid_for),
        seconds=time.perf_counter() - started, records=len(record_list), records_added=len(diff.add_records),
        records_removed=len(diff.remove_records), format=fmt,
    )
