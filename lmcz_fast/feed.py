"""A signed static update feed: the central side publishes it, stores (and chain mirrors) sync from it.

A feed is a directory of plain files that any HTTP server, object store or CDN can serve unchanged:

- `snapshot-<version>.txt.gz`: the whole list (gzip text: `#` header lines, then blocked GTINs, then canonical
  identities, sorted), loadable as is by `Blocklist.load` and `lmcz-fast load`;
- `delta-<from>-<to>.txt.gz`: the change between two consecutive versions (`+CODE`, `-CODE`, `+GTIN`, `-GTIN`
  lines), applicable as is by `lmcz-fast delta`;
- `manifest.json`: one signed envelope naming the current version, the digest of the whole set, the snapshot and
  the last deltas with their sizes and SHA-256. It is written last, so a reader never sees a manifest naming a
  file that is not there yet, and it is one file, so a cache can never pair a manifest with the wrong signature.

Every file name except the manifest's is immutable (it carries its versions), so caches may keep them forever.
`sync` trusts nothing it downloads until the manifest's Ed25519 signature, then each file's size and SHA-256,
then the digest arithmetic all check out; only then does it change the store, in one LMDB transaction.
The format is described in docs/feed.md.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import errno
import gzip
import hashlib
import http.client
import io
import itertools
import json
import logging
import os
import random
import re
import tempfile
import time
import zlib
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ._codes import CodeError
from .store import (
    Blocklist,
    DigestMismatchError,
    LoadError,
    StoreError,
    VersionError,
    digest_after,
    set_digest_of,
)
from .store.environment import disk_full, free_bytes
from .progress import Progress, announce_after, estimate_lines, line_counter
from .upstream import ProxyAuthError, ProxyConfig, SyncHttpClient, UpstreamError

__all__ = [
    "DEFAULT_KEEP_DELTAS",
    "DEFAULT_VALID_FOR",
    "MANIFEST_NAME",
    "Delta",
    "DeltaEntry",
    "ExpiredManifestError",
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

log = logging.getLogger("lmcz_fast.feed")

FORMAT = "lmcz-feed/1"
MANIFEST_NAME = "manifest.json"
#: Signed bytes are this prefix plus the canonical JSON of the manifest body, so a signature made by the feed
#: key for anything else can never pass for a manifest.
SIGNING_CONTEXT = b"lmcz-feed/1 manifest\n"
DEFAULT_KEEP_DELTAS = 48
#: A manifest stops being acceptable this long after it was signed. The publisher re-signs (a "heartbeat"
#: `publish` without input) well within it; a mirror or attacker replaying the last manifest forever can therefore
#: keep a store "ready" for at most this long.
DEFAULT_VALID_FOR = 24 * 3600
MAX_MANIFEST_BYTES = 4 << 20
_CHUNK = 1 << 20
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX32 = re.compile(r"[0-9a-f]{32}")
_FEED_FILE = re.compile(r"(snapshot|delta)-[0-9-]+\.txt\.gz")
_STALE_TEMP_SECONDS = 3600


class FeedError(Exception):
    """Base of every error the feed raises on purpose. The store is unchanged whenever one is raised by `sync`."""


class FeedUnavailable(FeedError):
    """The feed could not be fetched (network down, HTTP error, file missing) even after the retries."""


class SignatureError(FeedError):
    """The manifest's signature does not verify with the configured public key."""


class ManifestError(FeedError):
    """The manifest is signed but not a valid lmcz feed manifest (shape, chain, feed id), or not JSON at all."""


class IntegrityError(FeedError):
    """A downloaded file does not match the signed manifest (size, SHA-256, header, digest)."""


class ReplayError(FeedError):
    """The manifest is older than the one already applied (lower version, older signature, or a different list
    under the same version)."""


class ExpiredManifestError(FeedError):
    """The manifest's validity ended: the publisher (or the mirror in between) has stopped refreshing it."""


class PublishError(FeedError):
    """The publisher refused its input (bad lines, versions that do not move forward, a foreign feed)."""


# -- keys ---------------------------------------------------------------------------------------------------


def _raw_public(key: Ed25519PublicKey | Ed25519PrivateKey) -> bytes:
    if isinstance(key, Ed25519PrivateKey):
        key = key.public_key()
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_key_text(key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    """The public key as the one-line text stores are configured with: base64 of its 32 raw bytes."""
    return base64.b64encode(_raw_public(key)).decode("ascii")


def key_id(key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    """A short name for a key (first 16 hex digits of SHA-256 of the raw public key), for logs and manifests."""
    return hashlib.sha256(_raw_public(key)).hexdigest()[:16]


def write_keypair(private_path: str | os.PathLike[str], public_path: str | os.PathLike[str] | None = None,
                  *, overwrite: bool = False) -> tuple[Path, Path]:
    """Make a new signing key: PKCS#8 PEM private key (mode 0600) and the public key text next to it."""
    private_path = Path(private_path)
    public_path = Path(public_path) if public_path is not None else private_path.with_suffix(".pub")
    for path in (private_path, public_path):
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; refusing to overwrite a key")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    _atomic_write(private_path, pem, mode=0o600)
    _atomic_write(public_path, (public_key_text(key) + "\n").encode("ascii"), mode=0o644)
    return private_path, public_path


def load_private_key(source: Ed25519PrivateKey | bytes | str | os.PathLike[str]) -> Ed25519PrivateKey:
    """A private key from a key object, PEM bytes, or a path to a PEM file."""
    if isinstance(source, Ed25519PrivateKey):
        return source
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise FeedError(f"not an unencrypted PEM private key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise FeedError("the feed is signed with Ed25519; this private key is of another kind")
    return key


def load_public_key(source: Ed25519PublicKey | bytes | str | os.PathLike[str]) -> Ed25519PublicKey:
    """A public key from a key object, 32 raw bytes, base64 text, PEM, or a path to a file holding either."""
    if isinstance(source, Ed25519PublicKey):
        return source
    if isinstance(source, os.PathLike) or (isinstance(source, str) and os.path.isfile(source)):
        return load_public_key(Path(source).read_bytes())
    if isinstance(source, bytes) and len(source) == 32:
        return Ed25519PublicKey.from_public_bytes(source)
    text = (source.encode("ascii", "replace") if isinstance(source, str) else source).strip()
    if text.startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(text)
        except ValueError as exc:
            raise FeedError(f"not a PEM public key: {exc}") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise FeedError("the feed is signed with Ed25519; this public key is of another kind")
        return key
    try:
        raw = base64.b64decode(text, validate=True)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise FeedError("a public key is 32 bytes in base64 (what `lmcz-fast keygen` writes), PEM, or a file")
    return Ed25519PublicKey.from_public_bytes(raw)


# -- manifest -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SnapshotEntry:
    path: str
    size: int
    sha256: str
    version: int
    codes: int
    gtins: int


@dataclass(frozen=True)
class DeltaEntry:
    path: str
    size: int
    sha256: str
    from_version: int
    to_version: int
    from_digest: str
    to_digest: str
    added: int
    removed: int
    gtins_added: int
    gtins_removed: int


@dataclass(frozen=True)
class Manifest:
    """A verified manifest. `raw` is the envelope exactly as fetched, which is what a mirror re-serves."""

    feed_id: str
    version: int
    published_at: int
    expires_at: int
    set_digest: str
    codes: int
    gtins: int
    snapshot: SnapshotEntry
    deltas: tuple[DeltaEntry, ...]
    key_id: str
    raw: bytes = field(repr=False)

    def files(self) -> list[SnapshotEntry | DeltaEntry]:
        return [self.snapshot, *self.deltas]

    def chain_from(self, version: int) -> list[DeltaEntry] | None:
        """The deltas leading from `version` to the current one, or None if the manifest has no such chain."""
        for index, entry in enumerate(self.deltas):
            if entry.from_version == version:
                return list(self.deltas[index:])
        return None


def _canonical(body: dict[str, Any]) -> bytes:
    """RFC 8785 (JCS) form of a body made only of objects, arrays, strings and integers (no floats)."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, value in pairs:
        if name in result:
            raise ManifestError(f"the manifest names {name!r} twice")
        result[name] = value
    return result


def _no_float(text: str) -> Any:
    raise ManifestError(f"the manifest holds a non-integer number ({text}); only integers are allowed")


def _sign_envelope(body: dict[str, Any], key: Ed25519PrivateKey) -> bytes:
    signature = key.sign(SIGNING_CONTEXT + _canonical(body))
    envelope = {
        "format": FORMAT,
        "key_id": key_id(key),
        "signature": base64.b64encode(signature).decode("ascii"),
        "signed": body,
    }
    return (json.dumps(envelope, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def parse_manifest(raw: bytes, public_key: Ed25519PublicKey | bytes | str | os.PathLike[str]) -> Manifest:
    """Verify the envelope's signature with `public_key`, then check the body's shape and delta chain."""
    key = load_public_key(public_key)
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ManifestError(f"the manifest is {len(raw)} bytes, more than the {MAX_MANIFEST_BYTES} allowed")
    try:
        envelope = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_float=_no_float,
                              parse_constant=_no_float)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"the manifest is not JSON: {exc}") from exc
    if not isinstance(envelope, dict) or envelope.get("format") != FORMAT:
        raise ManifestError(f"not an {FORMAT} manifest envelope")
    body = envelope.get("signed")
    signature = envelope.get("signature")
    if not isinstance(body, dict) or not isinstance(signature, str):
        raise ManifestError("the envelope needs a 'signed' object and a 'signature' string")
    try:
        key.verify(base64.b64decode(signature, validate=True), SIGNING_CONTEXT + _canonical(body))
    except (InvalidSignature, ValueError) as exc:
        raise SignatureError(
            f"the manifest's signature does not verify with key {key_id(key)} "
            f"(the envelope says it was signed by {envelope.get('key_id')!r})"
        ) from exc
    return _manifest_from_body(body, key_id(key), raw)


def _field(obj: dict[str, Any], name: str, kind: str, where: str) -> Any:
    value = obj.get(name)
    if kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 63
    elif kind == "name":
        ok = isinstance(value, str) and _NAME.fullmatch(value) is not None
    elif kind == "sha256":
        ok = isinstance(value, str) and _HEX64.fullmatch(value) is not None
    elif kind == "digest":
        ok = isinstance(value, str) and _HEX32.fullmatch(value) is not None
    else:
        ok = isinstance(value, str) and 0 < len(value) <= 200
    if not ok:
        raise ManifestError(f"{where}: field {name!r} is missing or not a valid {kind}: {value!r}")
    return value


#: The kind of each manifest field that is not an integer.
_KINDS = {"path": "name", "feed_id": "name", "sha256": "sha256", "set_digest": "digest", "from_digest": "digest",
          "to_digest": "digest"}


def _entry(cls: Any, obj: dict[str, Any], where: str) -> Any:
    return cls(**{f.name: _field(obj, f.name, _KINDS.get(f.name, "int"), where) for f in dataclasses.fields(cls)})


def _manifest_from_body(body: dict[str, Any], signer: str, raw: bytes) -> Manifest:
    if body.get("feed") != FORMAT:
        raise ManifestError(f"the signed body is not an {FORMAT} manifest")
    snap = body.get("snapshot")
    deltas = body.get("deltas")
    if not isinstance(snap, dict) or not isinstance(deltas, list):
        raise ManifestError("the manifest needs a 'snapshot' object and a 'deltas' list")
    snapshot = _entry(SnapshotEntry, snap, "snapshot")
    entries = []
    for number, item in enumerate(deltas):
        if not isinstance(item, dict):
            raise ManifestError(f"deltas[{number}] is not an object")
        entries.append(_entry(DeltaEntry, item, f"deltas[{number}]"))
    manifest = Manifest(
        **{name: _field(body, name, _KINDS.get(name, "int"), "manifest")
           for name in ("feed_id", "version", "published_at", "expires_at", "set_digest", "codes", "gtins")},
        snapshot=snapshot,
        deltas=tuple(entries),
        key_id=signer,
        raw=raw,
    )
    if snapshot.version != manifest.version or (snapshot.codes, snapshot.gtins) != (manifest.codes, manifest.gtins):
        raise ManifestError("the snapshot entry does not describe the manifest's version")
    names = [entry.path for entry in manifest.files()]
    if len(set(names)) != len(names) or MANIFEST_NAME in names:
        raise ManifestError("the manifest names one file twice")
    for previous, entry in zip(entries, entries[1:]):
        if previous.to_version != entry.from_version or previous.to_digest != entry.from_digest:
            raise ManifestError(
                f"the deltas are out of order: {previous.from_version}->{previous.to_version} is followed by "
                f"{entry.from_version}->{entry.to_version}"
            )
    for entry in entries:
        if entry.from_version >= entry.to_version:
            raise ManifestError(f"delta {entry.path} does not move the version forward")
    if entries and (entries[-1].to_version != manifest.version or entries[-1].to_digest != manifest.set_digest):
        raise ManifestError("the last delta does not lead to the manifest's version and digest")
    return manifest


# -- files --------------------------------------------------------------------------------------------------


@dataclass
class Snapshot:
    """A parsed snapshot: sorted canonical identities and blocked GTINs at `version`."""

    version: int
    gtins: list[str]
    identities: list[str]

    def lines(self) -> list[str]:
        return self.gtins + self.identities


@dataclass
class Delta:
    """A parsed delta. Within one delta, adds and removes are disjoint; the store applies removes first."""

    from_version: int | None
    to_version: int | None
    add: list[str] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)
    add_gtins: list[str] = field(default_factory=list)
    remove_gtins: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.add) + len(self.remove) + len(self.add_gtins) + len(self.remove_gtins)


def _is_gtin(text: str) -> bool:
    return len(text) == 14 and text.isascii() and text.isdigit()


def _read_text(source: str | os.PathLike[str] | bytes) -> str:
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    try:
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        return data.decode("utf-8")
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise IntegrityError(f"not gzip text: {exc}") from exc


def _header(lines: list[str], kind: str) -> tuple[dict[str, int] | None, int]:
    """The `# name value` lines after a `# lmcz-feed <kind> 1` first line, and where the data starts.
    None when the first line is not that (a hand-written file)."""
    if not lines or lines[0].strip() != f"# lmcz-feed {kind} 1":
        return None, 0
    fields: dict[str, int] = {}
    start = 1
    while start < len(lines) and lines[start].startswith("#"):
        parts = lines[start][1:].split()
        if len(parts) == 2 and parts[1].isdigit():
            fields[parts[0]] = int(parts[1])
        start += 1
    return fields, start


def read_snapshot(source: str | os.PathLike[str] | bytes) -> Snapshot:
    """Parse a feed snapshot (path or bytes, gzip or plain) and check its header against its contents.

    The body is the GTIN lines, then the identity lines (what `publish` writes); anything else there shows up
    as a count mismatch here or as a bad identity when the digest is computed.
    """
    lines = _read_text(source).split("\n")
    if lines and not lines[-1]:
        lines.pop()
    fields, start = _header(lines, "snapshot")
    if fields is None or "version" not in fields:
        raise IntegrityError("not an lmcz-feed snapshot (missing '# lmcz-feed snapshot 1' / '# version' header)")
    body = lines[start:]
    split = fields.get("gtins", -1)
    if not 0 <= split <= len(body) or not all(map(_is_gtin, body[:split])) or fields.get("codes") != len(body) - split:
        raise IntegrityError(
            f"the snapshot's header says {fields.get('codes')} codes and {fields.get('gtins')} GTINs; "
            f"its {len(body)} lines do not match"
        )
    return Snapshot(fields["version"], body[:split], body[split:])


def read_delta(source: str | os.PathLike[str] | bytes) -> Delta:
    """Parse a delta file (`+CODE`, `-CODE`, `+GTIN`, `-GTIN` per line, `#` comments; gzip or plain).

    Feed deltas carry `# from N` / `# to N` headers; a hand-written delta has none (versions are then None).
    A line that both adds and removes the same entry is refused, since the order would be ambiguous.
    """
    lines = _read_text(source).splitlines()
    fields = _header(lines, "delta")[0] or {}
    delta = Delta(fields.get("from"), fields.get("to"))
    for number, line in enumerate(lines, 1):
        text = line.rstrip("\r")
        if not text.strip() or text.startswith("#"):
            continue
        sign, body = text[0], text[1:]
        if sign not in "+-" or not body:
            raise IntegrityError(f"delta line {number}: expected '+CODE' or '-CODE', got {text[:60]!r}")
        if _is_gtin(body):
            (delta.add_gtins if sign == "+" else delta.remove_gtins).append(body)
        else:
            (delta.add if sign == "+" else delta.remove).append(body)
    for adds, removes, what in ((delta.add, delta.remove, "code"), (delta.add_gtins, delta.remove_gtins, "GTIN")):
        both = set(adds) & set(removes)
        if both:
            raise IntegrityError(f"the delta both adds and removes {what} {min(both)!r}")
    return delta


_PROGRESS_LINES = 1 << 16


def _snapshot_bytes(version: int, gtins: Sequence[str], identities: Sequence[str],
                    progress: Progress | None = None) -> bytes:
    """The gzip snapshot file. Compressed in slices of 64k lines (the bytes are exactly those of one
    `gzip.compress(..., mtime=0)` over the whole text), reporting each slice to `progress`."""
    head = f"# lmcz-feed snapshot 1\n# version {version}\n# codes {len(identities)}\n# gtins {len(gtins)}\n"
    packer = zlib.compressobj(6, zlib.DEFLATED, 31)  # what gzip.compress(data, 6, mtime=0) uses, incrementally
    out = [packer.compress(head.encode("ascii"))]
    total = len(gtins) + len(identities)
    done = 0
    for lines in (gtins, identities):
        for start in range(0, len(lines), _PROGRESS_LINES):
            piece = lines[start:start + _PROGRESS_LINES]
            out.append(packer.compress("".join(f"{line}\n" for line in piece).encode("ascii")))
            done += len(piece)
            if progress is not None:
                progress("compressing the snapshot", done, total, "lines")
    out.append(packer.flush())
    return b"".join(out)


def _delta_bytes(from_version: int, to_version: int, delta: Delta) -> bytes:
    out = io.StringIO()
    out.write(f"# lmcz-feed delta 1\n# from {from_version}\n# to {to_version}\n")
    for sign, items in (("-", delta.remove_gtins), ("+", delta.add_gtins), ("-", delta.remove), ("+", delta.add)):
        for item in items:
            out.write(f"{sign}{item}\n")
    return gzip.compress(out.getvalue().encode("ascii"), compresslevel=6, mtime=0)


def _compose(deltas: Sequence[Delta]) -> Delta:
    """One delta with the effect of `deltas` applied in order, exact relative to the first one's start.

    For each entry only its first and last operation matter: removed then re-added (or added then removed)
    cancels out, otherwise the last operation wins. Applying the result is one transaction instead of several.
    """
    first: dict[tuple[bool, str], str] = {}
    last: dict[tuple[bool, str], str] = {}
    for delta in deltas:
        for sign, is_gtin, items in (("-", False, delta.remove), ("-", True, delta.remove_gtins),
                                     ("+", False, delta.add), ("+", True, delta.add_gtins)):
            for item in items:
                first.setdefault((is_gtin, item), sign)
                last[(is_gtin, item)] = sign
    result = Delta(deltas[0].from_version if deltas else None, deltas[-1].to_version if deltas else None)
    for entry, sign in last.items():
        if first[entry] != sign:
            continue
        is_gtin, item = entry
        if is_gtin:
            (result.add_gtins if sign == "+" else result.remove_gtins).append(item)
        else:
            (result.add if sign == "+" else result.remove).append(item)
    return result


def _digest_after(digest: str, delta: Delta) -> str:
    """The set digest after an exact delta, by the store's own arithmetic (`store.digest_after`), so the feed
    can never drift from what `Blocklist.info()["set_digest"]` reports."""
    return digest_after(digest, add=delta.add, remove=delta.remove, add_gtins=delta.add_gtins,
                        remove_gtins=delta.remove_gtins)


# -- atomic files -------------------------------------------------------------------------------------------


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write `data` to `path` so that readers see the old file or the whole new one: temp file, fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    _fsync_dir(path.parent)


def _file_matches(path: Path, size: int, sha256: str) -> bool:
    try:
        if path.stat().st_size != size:
            return False
        digest = hashlib.sha256()
        with open(path, "rb") as stream:
            for chunk in iter(lambda: stream.read(_CHUNK), b""):
                digest.update(chunk)
        return digest.hexdigest() == sha256
    except OSError:
        return False


def _prune(directory: Path, keep: set[str], now: float) -> list[str]:
    """Delete feed files (by their naming pattern only) that no kept manifest names, and our stale temp files."""
    removed = []
    for entry in directory.iterdir():
        name = entry.name
        stale_temp = (name.startswith(".") and name.endswith(".tmp")
                      and now - entry.stat().st_mtime > _STALE_TEMP_SECONDS)
        if (_FEED_FILE.fullmatch(name) and name not in keep) or stale_temp:
            with contextlib.suppress(OSError):
                entry.unlink()
                removed.append(name)
    return sorted(removed)


# -- fetching -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of one fetch: exponential backoff (base * 2**n, capped) with jitter over its upper half."""

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    timeout: float = 30.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        ceiling = min(self.max_delay, self.base_delay * (2 ** attempt))
        return ceiling / 2 + rng.uniform(0, ceiling / 2)


class _Transient(Exception):
    """A failure worth retrying: connection trouble, timeouts, 5xx, 429, a transfer cut short."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class _NotFound(FeedUnavailable):
    """A named file is not on the server (yet, or any more): the caller re-reads the manifest."""


def _feed_base(feed_url: str) -> str:
    """The URL of the feed directory, from a directory URL, a manifest URL, or a local path."""
    if "://" not in feed_url:
        feed_url = Path(feed_url).resolve().as_uri()
    if feed_url.endswith("/" + MANIFEST_NAME):
        feed_url = feed_url[: -len(MANIFEST_NAME)]
    return feed_url if feed_url.endswith("/") else feed_url + "/"


class _Fetcher:
    """GETs files below one feed URL (http, https or file) with retries; streams them through size and hash.

    http(s) goes through `lmcz_fast.upstream` (httpx), with the proxy `proxy` says (default: the environment's).
    Use as a context manager: it keeps its connections open between the files of one sync."""

    def __init__(self, feed_url: str, retry: RetryPolicy, sleep: Callable[[float], Any], rng: random.Random,
                 proxy: ProxyConfig | None = None) -> None:
        self.base = _feed_base(feed_url)
        self.retry = retry
        self.sleep = sleep
        self.rng = rng
        self.proxy = proxy
        self.requests = 0
        self.bytes = 0
        self._http: SyncHttpClient | None = None

    def __enter__(self) -> _Fetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def url(self, name: str) -> str:
        return urllib.parse.urljoin(self.base, urllib.parse.quote(name))

    @contextlib.contextmanager
    def _open(self, url: str, fresh: bool, what: str) -> Iterator[tuple[Iterator[bytes], int | None]]:
        """Yield the body as chunks of at most `_CHUNK` bytes, and its length when the server said it."""
        self.requests += 1
        if url.startswith("file:"):
            path = urllib.request.url2pathname(urllib.parse.urlparse(url).path)
            try:
                stream = open(path, "rb")
            except FileNotFoundError as exc:
                raise _NotFound(f"{url}: no such file") from exc
            except OSError as exc:
                raise FeedUnavailable(f"{url}: {exc.strerror or exc}") from exc
            with stream:
                yield iter(lambda: stream.read(_CHUNK), b""), os.fstat(stream.fileno()).st_size
            return
        headers = {"Accept-Encoding": "identity"}
        if fresh:
            headers["Cache-Control"] = "no-cache"
        if self._http is None:
            self._http = SyncHttpClient(self.proxy, timeout=self.retry.timeout, user_agent="lmcz-fast-feed/1")
        try:
            with self._http.get(url, headers) as response:
                status = response.status
                if not 200 <= status < 300:
                    if status in (404, 410):
                        raise _NotFound(f"{url}: HTTP {status}")
                    if status >= 500 or status in (408, 429):
                        raise _Transient(f"HTTP {status}", _retry_after(response.headers.get("retry-after")))
                    raise FeedUnavailable(f"{url}: HTTP {status} {http.client.responses.get(status, '')}".rstrip())
                length = response.headers.get("content-length")
                yield _reading(response.iter_raw(_CHUNK), what), int(length) if length and length.isdigit() else None
        except ProxyAuthError as exc:
            raise FeedUnavailable(str(exc)) from exc
        except UpstreamError as exc:
            if exc.phase == "proxy" and exc.status is not None and 400 <= exc.status < 500 and exc.status != 408:
                raise FeedUnavailable(str(exc)) from exc  # the proxy refuses this tunnel: retrying will not help
            raise _Transient(str(exc)) from exc

    def _with_retries(self, what: str, operation: Callable[[], Any]) -> Any:
        last: _Transient | None = None
        for attempt in range(self.retry.attempts):
            try:
                return operation()
            except _Transient as exc:
                last = exc
                if attempt + 1 >= self.retry.attempts:
                    break
                delay = self.retry.delay(attempt, self.rng)
                if exc.retry_after is not None:
                    delay = max(delay, min(exc.retry_after, self.retry.max_delay))
                log.warning("fetching %s failed (%s); retry %d/%d in %.1f s", what, exc, attempt + 1,
                            self.retry.attempts - 1, delay)
                self.sleep(delay)
        raise FeedUnavailable(f"{what}: {last} (gave up after {self.retry.attempts} attempts)")

    def get_manifest(self) -> bytes:
        url = self.url(MANIFEST_NAME)

        def once() -> bytes:
            data = bytearray()
            with self._open(url, fresh=True, what="the manifest") as (chunks, length):
                for chunk in chunks:
                    data += chunk
                    if len(data) > MAX_MANIFEST_BYTES:
                        break
            if length is not None and len(data) < length:
                raise _Transient(f"the manifest transfer stopped after {len(data)} of {length} bytes")
            self.bytes += len(data)
            return bytes(data)

        return self._with_retries(url, once)

    def download(self, name: str, size: int, sha256: str, dest: Path,
                 progress: Callable[[int], Any] | None = None) -> None:
        """Fetch `name` into `dest` (a temp path the caller owns); raise unless exactly `size` bytes of `sha256`.

        `progress(n)` is called with each chunk's byte count (a retry starts the count again from zero: it is
        called with minus what the failed attempt had counted)."""
        url = self.url(name)

        def once() -> None:
            digest = hashlib.sha256()
            received = 0
            try:
                with self._open(url, fresh=False, what=name) as (chunks, length), open(dest, "wb") as out:
                    for chunk in chunks:
                        received += len(chunk)
                        if received > size:
                            raise IntegrityError(f"{name} is longer than the {size} bytes the manifest says")
                        digest.update(chunk)
                        out.write(chunk)
                        if progress is not None:
                            progress(len(chunk))
            except _Transient:
                if progress is not None and received:
                    progress(-received)
                raise
            self.bytes += received
            if length is not None and received < length:
                if progress is not None and received:
                    progress(-received)
                raise _Transient(f"the transfer of {name} stopped after {received} of {length} bytes")
            if received != size:
                raise IntegrityError(f"{name} is {received} bytes; the manifest says {size}")
            if digest.hexdigest() != sha256:
                raise IntegrityError(f"{name}: SHA-256 {digest.hexdigest()} differs from the manifest's {sha256}")

        self._with_retries(url, once)


def _reading(chunks: Iterator[bytes], what: str) -> Iterator[bytes]:
    """A transfer cut or stalled part-way is worth another try."""
    try:
        yield from chunks
    except (UpstreamError, OSError) as exc:
        raise _Transient(f"reading {what}: {exc}") from exc


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


# -- sync ---------------------------------------------------------------------------------------------------


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

    def summary(self) -> str:
        total = self.seconds.get("total", 0.0)
        if self.action == "up-to-date":
            return f"up to date at version {self.to_version} ({total:.2f} s)"
        how = f"{len(self.files)} file(s), {self.downloaded_bytes / 1024:.0f} KiB"
        if self.action == "delta":
            change = f"+{self.added} -{self.removed} codes, +{self.gtins_added} -{self.gtins_removed} GTINs"
        else:
            change = f"{self.added} codes, {self.gtins_added} GTINs"
        why = f" [{self.reason}]" if self.reason else ""
        return (f"version {self.from_version} -> {self.to_version} by {self.action}: {change}, {how}, "
                f"in {total:.2f} s{why}")




def _check_replay(manifest: Manifest, version: int, digest: str, published_at: int | None, where: str) -> None:
    if manifest.version < version:
        raise ReplayError(f"the feed offers version {manifest.version}; {where} already holds {version}")
    if manifest.version == version and manifest.set_digest != digest:
        raise ReplayError(
            f"the feed's version {version} has digest {manifest.set_digest}, {where} holds {digest} under that version"
        )
    if published_at is not None and manifest.published_at < published_at:
        raise ReplayError(
            f"the manifest was signed at {manifest.published_at}, before the one {where} last applied "
            f"({published_at})"
        )


def _check_fresh(manifest: Manifest, now: float) -> None:
    if now > manifest.expires_at:
        raise ExpiredManifestError(
            f"the manifest for version {manifest.version} expired {now - manifest.expires_at:.0f} s ago "
            f"(signed at {manifest.published_at}); the publisher or mirror has stopped refreshing it"
        )


def sync(
    db: Blocklist | str | os.PathLike[str],
    feed_url: str,
    public_key: Ed25519PublicKey | bytes | str | os.PathLike[str] | None = None,
    *,
    now: float | None = None,
    retry: RetryPolicy = RetryPolicy(),
    sleep: Callable[[float], Any] = time.sleep,
    rng: random.Random | None = None,
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
    rng = rng or random.Random()
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


def _fetch_to(fetcher: _Fetcher, entry: SnapshotEntry | DeltaEntry, dest: Path, progress: Progress | None) -> None:
    counted = None
    if progress is not None:
        stage, done = f"downloading {entry.path}", [0]
        progress(stage, 0, entry.size, "bytes")

        def counted(n: int) -> None:
            done[0] += n
            progress(stage, done[0], entry.size, "bytes")

    fetcher.download(entry.path, entry.size, entry.sha256, dest, counted)


def _apply_deltas(bl: Blocklist, manifest: Manifest, chain: list[DeltaEntry], fetcher: _Fetcher, work: Path,
                  version: int, digest: str, timings: dict[str, float], record: dict[str, Any],
                  progress: Progress | None = None) -> _Outcome | None:
    """Apply the chain as one composed delta; None (nothing changed) if the store's digest afterwards would not
    be the manifest's."""
    mark = time.perf_counter()
    deltas = []
    for entry in chain:
        delta = read_delta(_fetch(fetcher, entry, work, progress))
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
        bl.apply_delta(combined.add, combined.remove, add_gtins=combined.add_gtins,
                       remove_gtins=combined.remove_gtins, from_version=version, to_version=manifest.version,
                       expect_digest=manifest.set_digest, meta=record, advance_empty=True)
    except DigestMismatchError:
        return None
    except CodeError as exc:
        raise IntegrityError(f"a signed delta holds a bad entry: {exc}") from exc
    except VersionError as exc:
        raise FeedError(f"another writer changed the store while the feed was being fetched: {exc}") from exc
    timings["apply"] = time.perf_counter() - mark
    return _Outcome("delta", tuple(entry.path for entry in chain), len(combined.add), len(combined.remove), None,
                    len(combined.add_gtins), len(combined.remove_gtins))


def _apply_snapshot(bl: Blocklist, manifest: Manifest, fetcher: _Fetcher, work: Path, timings: dict[str, float],
                    reason: str | None, record: dict[str, Any], progress: Progress | None = None) -> _Outcome:
    mark = time.perf_counter()
    path = _fetch(fetcher, manifest.snapshot, work, progress)
    timings["fetch"] = timings.get("fetch", 0.0) + time.perf_counter() - mark
    mark = time.perf_counter()
    if progress is not None:
        progress("checking the snapshot", 0, None, "")
    snapshot = read_snapshot(path)
    if snapshot.version != manifest.version:
        raise IntegrityError(f"{manifest.snapshot.path}'s header says version {snapshot.version}")
    try:
        digest = set_digest_of(snapshot.identities, snapshot.gtins)
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
        bl.load(sources, replace=True, strict=True, version=manifest.version,
                expect_digest=manifest.set_digest, meta=record, progress=counter)
    except DigestMismatchError as exc:
        raise IntegrityError(f"the signed snapshot does not load to the manifest's digest: {exc}") from exc
    except LoadError as exc:
        raise IntegrityError(f"the signed snapshot holds bad lines: {exc}") from exc
    except VersionError as exc:
        raise FeedError(f"another writer changed the store while the feed was being fetched: {exc}") from exc
    timings["apply"] = timings.get("apply", 0.0) + time.perf_counter() - mark
    return _Outcome("snapshot", (manifest.snapshot.path,), len(snapshot.identities), 0, reason, len(snapshot.gtins))


# -- publish ------------------------------------------------------------------------------------------------


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

    def summary(self) -> str:
        if self.action == "refreshed":
            return f"version {self.version} re-signed, valid until {self.expires_at}"
        change = f"+{self.added} -{self.removed} codes, +{self.gtins_added} -{self.gtins_removed} GTINs"
        return (f"version {self.version} ({self.action}): {self.codes} codes, {self.gtins} GTINs ({change}), "
                f"{len(self.written)} file(s) written, {len(self.pruned)} pruned, in {self.seconds:.2f} s")


def _current(feed_dir: Path, key: Ed25519PublicKey) -> Manifest | None:
    path = feed_dir / MANIFEST_NAME
    if not path.exists():
        return None
    return parse_manifest(path.read_bytes(), key)


def _scratch_set(path: Path, sources: Any, progress: Progress | None = None) -> tuple[list[str], list[str], str]:
    """Let a throwaway store at `path` parse, validate and canonicalize input (anything `Blocklist.load` reads,
    with its reading of a line as a CIS); return its sorted GTINs, sorted identities and set digest."""
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
        return gtins, identities, scratch.info()["set_digest"]


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


def publish(
    feed_dir: str | os.PathLike[str],
    private_key: Ed25519PrivateKey | bytes | str | os.PathLike[str],
    *,
    snapshot: Iterable[Any] | str | os.PathLike[str] | None = None,
    delta: Delta | str | os.PathLike[str] | None = None,
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
    """
    if snapshot is not None and delta is not None:
        raise PublishError("give either a snapshot (the whole new list) or a delta, not both")
    if keep_deltas < 0 or valid_for <= 0:
        raise PublishError("keep_deltas must be >= 0 and valid_for > 0")
    started = time.perf_counter()
    key = load_private_key(private_key)
    feed_path = Path(feed_dir)
    feed_path.mkdir(parents=True, exist_ok=True)
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
    if previous is not None and clock < previous.published_at:
        raise PublishError(f"the clock reads {clock}, before the current manifest's signing time "
                           f"{previous.published_at}: stores would refuse the new manifest as a replay")

    def step(stage: str) -> None:
        if progress is not None:
            progress(stage, 0, None, "")

    old = Snapshot(0, [], [])
    if previous is not None:
        step(f"reading version {previous.version}")
        snap_path = feed_path / previous.snapshot.path
        if not _file_matches(snap_path, previous.snapshot.size, previous.snapshot.sha256):
            raise PublishError(f"{snap_path} does not match the feed's manifest; the feed directory is damaged")
        old = read_snapshot(snap_path)

    with tempfile.TemporaryDirectory(prefix="lmcz-publish-") as work:
        if snapshot is not None:
            gtins, identities, digest = _scratch_set(Path(work) / "new", snapshot, progress)
        elif delta is not None:
            change = delta if isinstance(delta, Delta) else read_delta(delta)
            add_gtins, add, _ = _scratch_set(Path(work) / "add", [change.add + change.add_gtins])
            remove_gtins, remove, _ = _scratch_set(Path(work) / "remove", [change.remove + change.remove_gtins])
    step("comparing with the previous version" if previous is not None else "preparing the first version")
    if snapshot is not None:
        old_ids, new_ids = set(old.identities), set(identities)
        old_gtins, new_gtins = set(old.gtins), set(gtins)
        diff = Delta(old.version, None, add=sorted(new_ids - old_ids), remove=sorted(old_ids - new_ids),
                     add_gtins=sorted(new_gtins - old_gtins), remove_gtins=sorted(old_gtins - new_gtins))
        del old_ids, new_ids
    else:
        diff = Delta(old.version, None)
        if delta is not None:
            diff = _exact(old, Delta(None, None, add, remove, add_gtins, remove_gtins))
        identities = sorted(set(old.identities).difference(diff.remove).union(diff.add))
        gtins = sorted(set(old.gtins).difference(diff.remove_gtins).union(diff.add_gtins))
        digest = _digest_after(previous.set_digest if previous else set_digest_of((), ()), diff)
    changed = previous is None or len(diff) > 0 or (version is not None and version != previous.version)
    new_version = previous.version if previous else 0
    if changed:
        new_version = version if version is not None else new_version + 1
        if previous is not None and new_version <= previous.version:
            raise PublishError(f"versions only move forward: the feed is at {previous.version}, asked {new_version}")
        if new_version < 1:
            raise PublishError("the first version of a feed is at least 1")

    written: list[str] = []
    deltas = list(previous.deltas) if previous else []
    snap_entry = previous.snapshot if previous else None
    if changed:
        if previous is not None:
            step(f"writing the delta {previous.version} -> {new_version}")
            data = _delta_bytes(previous.version, new_version, diff)
            name = f"delta-{previous.version:08d}-{new_version:08d}.txt.gz"
            _atomic_write(feed_path / name, data)
            written.append(name)
            deltas.append(DeltaEntry(
                path=name, size=len(data), sha256=hashlib.sha256(data).hexdigest(),
                from_version=previous.version, to_version=new_version, from_digest=previous.set_digest,
                to_digest=digest, added=len(diff.add), removed=len(diff.remove),
                gtins_added=len(diff.add_gtins), gtins_removed=len(diff.remove_gtins),
            ))
        data = _snapshot_bytes(new_version, gtins, identities, progress)
        name = f"snapshot-{new_version:08d}.txt.gz"
        step("writing and signing")
        _atomic_write(feed_path / name, data)
        written.append(name)
        snap_entry = SnapshotEntry(name, len(data), hashlib.sha256(data).hexdigest(), new_version,
                                   len(identities), len(gtins))
    deltas = deltas[-keep_deltas:] if keep_deltas else []
    assert snap_entry is not None
    body = {
        "feed": FORMAT,
        "feed_id": feed_id,
        "version": new_version,
        "published_at": clock,
        "expires_at": clock + int(valid_for),
        "set_digest": digest,
        "codes": len(identities),
        "gtins": len(gtins),
        "snapshot": dataclasses.asdict(snap_entry),
        "deltas": [dataclasses.asdict(entry) for entry in deltas],
    }
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
        seconds=time.perf_counter() - started,
    )


# -- mirror -------------------------------------------------------------------------------------------------


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
    sleep: Callable[[float], Any] = time.sleep,
    rng: random.Random | None = None,
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
    with _Fetcher(feed_url, retry, sleep, rng or random.Random(), proxy) as fetcher:
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
