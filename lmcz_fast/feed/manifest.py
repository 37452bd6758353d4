"""The signed manifest: format names, the entries it lists, signing and verifying its envelope, and the checks a
reader makes before trusting it (validity, replay)."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .errors import (
    ExpiredManifestError,
    FutureManifestError,
    ManifestError,
    ReplayError,
    SignatureError,
    UnsupportedFeedError,
)
from .keys import key_id, load_public_key

FORMAT_1 = "lmcz-feed/1"
#: Format 2: snapshots and deltas may carry table records (minimum prices, grey GTINs); the manifest counts them.
FORMAT_2 = "lmcz-feed/2"
#: The newest format this version reads and writes; it reads every format in FORMATS.
FORMAT = FORMAT_2
FORMATS = (FORMAT_1, FORMAT_2)
_FORMAT_NAME = re.compile(r"lmcz-feed/(\d{1,6})")
MANIFEST_NAME = "manifest.json"
#: Signed bytes are this prefix plus the canonical JSON of the manifest body, so a signature made by the feed
#: key for anything else can never pass for a manifest. Each format has its own (`lmcz-feed/2 manifest\n`).
SIGNING_CONTEXT = b"lmcz-feed/1 manifest\n"


def _signing_context(fmt: str) -> bytes:
    return f"{fmt} manifest\n".encode("ascii")


MAX_MANIFEST_BYTES = 4 << 20
#: How far ahead of this machine's clock a manifest's `published_at` may be (seconds): a day, so that a clock set
#: to local time as if it were UTC (up to 12 h off in Russia's time zones) or a few minutes' drift never stops a
#: sync, while a publisher's clock years ahead is refused before its time is recorded anywhere.
MAX_AHEAD = 86400
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX32 = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class SnapshotEntry:
    path: str
    size: int
    sha256: str
    version: int
    codes: int
    gtins: int
    records: int = 0          # format 2: table records (minimum prices, grey GTINs)


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
    records_added: int = 0    # format 2
    records_removed: int = 0  # format 2


#: Fields a format-2 manifest has that a format-1 one has not (and must not have).
_V2_FIELDS = frozenset({"records", "records_added", "records_removed"})


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
    format: str = FORMAT_1
    records: int = 0

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
    fmt = body["feed"]
    signature = key.sign(_signing_context(fmt) + _canonical(body))
    envelope = {
        "format": fmt,
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
    fmt = envelope.get("format") if isinstance(envelope, dict) else None
    _check_format(fmt, "manifest")
    assert isinstance(envelope, dict) and isinstance(fmt, str)
    body = envelope.get("signed")
    signature = envelope.get("signature")
    if not isinstance(body, dict) or not isinstance(signature, str):
        raise ManifestError("the envelope needs a 'signed' object and a 'signature' string")
    try:
        key.verify(base64.b64decode(signature, validate=True), _signing_context(fmt) + _canonical(body))
    except (InvalidSignature, ValueError) as exc:
        raise SignatureError(
            f"the manifest's signature does not verify with key {key_id(key)} "
            f"(the envelope says it was signed by {envelope.get('key_id')!r})"
        ) from exc
    return _manifest_from_body(body, key_id(key), raw)


def _check_format(fmt: Any, what: str) -> None:
    """Refuse, by name, a format this version does not read: a newer one with `UnsupportedFeedError` (upgrade),
    anything else with `ManifestError`."""
    if fmt in FORMATS:
        return
    newer = _FORMAT_NAME.fullmatch(fmt) if isinstance(fmt, str) else None
    if newer is not None and int(newer.group(1)) > int(FORMAT.split("/")[1]):
        raise UnsupportedFeedError(
            f"the feed's {what} is in format {fmt}, newer than this version of lmcz-fast reads "
            f"({', '.join(FORMATS)}): upgrade lmcz-fast on this machine; nothing was changed"
        )
    raise ManifestError(f"not an lmcz-feed manifest envelope (format {fmt!r}; this version reads "
                        f"{', '.join(FORMATS)})")


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


def _entry(cls: Any, obj: dict[str, Any], where: str, fmt: str) -> Any:
    fields = [f.name for f in dataclasses.fields(cls)]
    if fmt == FORMAT_1:
        extra = _V2_FIELDS & obj.keys()
        if extra:
            raise ManifestError(f"{where}: a {FORMAT_1} manifest cannot have {sorted(extra)}")
        fields = [name for name in fields if name not in _V2_FIELDS]
    return cls(**{name: _field(obj, name, _KINDS.get(name, "int"), where) for name in fields})


def _manifest_from_body(body: dict[str, Any], signer: str, raw: bytes) -> Manifest:
    fmt = body.get("feed")
    _check_format(fmt, "signed manifest")
    assert isinstance(fmt, str)
    snap = body.get("snapshot")
    deltas = body.get("deltas")
    if not isinstance(snap, dict) or not isinstance(deltas, list):
        raise ManifestError("the manifest needs a 'snapshot' object and a 'deltas' list")
    snapshot = _entry(SnapshotEntry, snap, "snapshot", fmt)
    entries = []
    for number, item in enumerate(deltas):
        if not isinstance(item, dict):
            raise ManifestError(f"deltas[{number}] is not an object")
        entries.append(_entry(DeltaEntry, item, f"deltas[{number}]", fmt))
    counted: tuple[str, ...] = ("feed_id", "version", "published_at", "expires_at", "set_digest", "codes", "gtins")
    if fmt != FORMAT_1:
        counted += ("records",)
    elif "records" in body:
        raise ManifestError(f"a {FORMAT_1} manifest cannot count table records")
    manifest = Manifest(
        **{name: _field(body, name, _KINDS.get(name, "int"), "manifest") for name in counted},
        snapshot=snapshot,
        deltas=tuple(entries),
        key_id=signer,
        raw=raw,
        format=fmt,
    )
    if snapshot.version != manifest.version or (snapshot.codes, snapshot.gtins, snapshot.records) != (
            manifest.codes, manifest.gtins, manifest.records):
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


def _entry_body(entry: SnapshotEntry | DeltaEntry, fmt: str) -> dict[str, Any]:
    body = dataclasses.asdict(entry)
    if fmt == FORMAT_1:
        for name in _V2_FIELDS:
            body.pop(name, None)
    return body


def _current(feed_dir: Path, key: Ed25519PublicKey) -> Manifest | None:
    path = feed_dir / MANIFEST_NAME
    if not path.exists():
        return None
    return parse_manifest(path.read_bytes(), key)


def _check_replay(manifest: Manifest, version: int, digest: str, published_at: int | None, where: str) -> None:
    """Order by version first: a higher version is newer whatever its signing time says (so one manifest signed by
    a clock years ahead never makes every later one look older); only the same version is ordered by
    `published_at` (a re-signed heartbeat), and the same version must hold the same list."""
    if manifest.version < version:
        raise ReplayError(f"the feed offers version {manifest.version}; {where} already holds {version}")
    if manifest.version > version:
        return
    if manifest.set_digest != digest:
        raise ReplayError(
            f"the feed's version {version} has digest {manifest.set_digest}, {where} holds {digest} under that version"
        )
    if published_at is not None and manifest.published_at < published_at:
        raise ReplayError(
            f"the manifest was signed at {manifest.published_at}, before the one {where} last applied "
            f"({published_at}); if that one was signed by a clock running ahead, the publisher moves the feed to "
            f"a new version (`lmcz-fast publish FEED_DIR --key KEY --version {version + 1}`)"
        )


def _check_not_ahead(manifest: Manifest, now: float) -> None:
    """Refuse a manifest signed further ahead of `now` than `MAX_AHEAD`: the publisher's clock or this one is
    wrong, and recording its signing time would make every later manifest of the same version a "replay"."""
    if manifest.published_at > now + MAX_AHEAD:
        raise FutureManifestError(
            f"the manifest for version {manifest.version} is signed at {manifest.published_at}, "
            f"{manifest.published_at - now:.0f} s ahead of this machine's clock (at most {MAX_AHEAD} s allowed): "
            "the publisher's clock or this one is wrong; nothing was changed"
        )


def _check_fresh(manifest: Manifest, now: float) -> None:
    _check_not_ahead(manifest, now)
    if now > manifest.expires_at:
        raise ExpiredManifestError(
            f"the manifest for version {manifest.version} expired {now - manifest.expires_at:.0f} s ago "
            f"(signed at {manifest.published_at}); the publisher or mirror has stopped refreshing it"
        )
