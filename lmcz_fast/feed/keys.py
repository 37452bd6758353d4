"""The feed's Ed25519 signing keys: make a pair, load either half, name a key."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .directory import _atomic_write
from .errors import FeedError


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
