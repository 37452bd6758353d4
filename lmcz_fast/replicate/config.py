"""What to replicate from where: the source, its databases, the document mapping, credentials; and the errors."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:   # the HTTP client (httpx) loads with source.py, not with the CLI's choices and defaults
    from ..upstream import ProxyConfig


#: What each kind of data is called in the official module's database (LM 2.x), and the kinds we replicate:
#: blocked codes, wholly blocked GTINs, minimum prices, grey GTINs (no database of its own by default).
DEFAULT_DATABASES = {"codes": "blocked_cis", "gtins": "blocked_gtin", "prices": "min_price"}
KINDS = ("codes", "gtins", "prices", "grey")
DEFAULT_BATCH = 10_000
#: Seconds `follow` lets changes gather after a batch before it asks for more.
DEFAULT_SETTLE = 5.0


class ReplicationError(Exception):
    """Replication could not go on; the store holds what it held before the failing batch."""


class SourceUnavailable(ReplicationError):
    """The source did not answer, answered an error, or cut the answer short."""


class SourceMalformed(SourceUnavailable):
    """The source answered something that is not a `_changes` answer we can trust: no `results` list, a sequence
    that is not a number or a string (NaN, Infinity), JSON nested too deeply, or pages that do not move forward
    (a source or a caching proxy that ignores `since`). Nothing of the answer is applied; the checkpoint stays."""


class SourceAuthError(ReplicationError):
    """The source refused our credentials (HTTP 401/403)."""


class MappingError(ReplicationError):
    """A mapping (a mapping file, or fields given as options) that cannot be used: the message names the key."""


class MappingRefused(ReplicationError):
    """A full pass under which a source database's documents map to nothing: a wrong mapping, never a list of
    nothing. The pass is refused and the store keeps what it held."""


@dataclass(frozen=True)
class Mapping:
    """Where the data sits in a source document: a field name, a dotted path into nested objects (`item.cis`),
    or `_id` for the document id.

    `code_field`: the marking code in `blocked_cis` documents (any form a scan or a CIS line takes).
    `gtin_field`: the GTIN in `blocked_gtin` documents.
    `price_key_field`: what a minimum price applies to in `min_price` documents: a 14-digit GTIN, or a product
    group as `pg:N` or a bare number up to 3 digits. `price_field`: the price in kopecks (a non-negative integer).
    `price_group_field` (optional, "" for none): a product group id (1-65535), used where the key field is absent
    or empty. `grey_field`: the GTIN in the grey-list database's documents.
    """

    code_field: str = "_id"
    gtin_field: str = "_id"
    price_key_field: str = "_id"
    price_field: str = "price"
    price_group_field: str = ""
    grey_field: str = "_id"

    def __post_init__(self) -> None:
        for name in ("code_field", "gtin_field", "price_field", "grey_field"):
            check_path(getattr(self, name), name)
        for name in ("price_key_field", "price_group_field"):
            if getattr(self, name):
                check_path(getattr(self, name), name)
        if not self.price_key_field and not self.price_group_field:
            raise MappingError("price_key_field (prices.key in a mapping file): a minimum price needs a key field or "
                               "a group field (prices.group)")

    def field_of(self, kind: str) -> str:
        return {"codes": self.code_field, "gtins": self.gtin_field, "prices": self.price_key_field,
                "grey": self.grey_field}[kind]

    def as_dict(self) -> dict[str, str]:
        """The mapping as recorded with the checkpoints (a change means a full pass); the fields added later
        appear only when they differ from their default, so a store replicated before keeps its record."""
        out = {"code_field": self.code_field, "gtin_field": self.gtin_field,
               "price_key_field": self.price_key_field, "price_field": self.price_field}
        if self.price_group_field:
            out["price_group_field"] = self.price_group_field
        if self.grey_field != "_id":
            out["grey_field"] = self.grey_field
        return out


def check_path(path: object, key: str) -> str:
    """A field path: `_id`, a name, or names joined by dots (no empty part). `MappingError` naming `key`."""
    if not isinstance(path, str) or not path:
        raise MappingError(f"{key}: a field is a non-empty string (a name, a dotted path, or _id), not {path!r}")
    if any(not part for part in path.split(".")) or any(c in path for c in "\r\n\t"):
        raise MappingError(f"{key}: {path!r} is not a field path (names joined by single dots)")
    return path


@dataclass(frozen=True)
class ReplicationConfig:
    """A source and what to pull from it."""

    source: str
    databases: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_DATABASES))
    mapping: Mapping = field(default_factory=Mapping)
    credentials: tuple[str, str] | None = field(default=None, repr=False)
    proxy: ProxyConfig | None = None
    batch_size: int = DEFAULT_BATCH
    timeout: float = 60.0
    longpoll_timeout: float = 30.0

    def __post_init__(self) -> None:
        parts = urlsplit(self.source)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ReplicationError(f"a source is an http:// or https:// URL of a CouchDB server, not {self.source!r}")
        if parts.username is not None or parts.password is not None:
            raise ReplicationError("the source URL must not carry credentials (the command line is visible to "
                                   "other users); give them in a file (--credentials-file) or the environment")
        unknown = set(self.databases) - set(KINDS)
        if unknown:
            raise ReplicationError(f"unknown kinds of data {sorted(unknown)}; known: {', '.join(KINDS)}")
        if not self.databases:
            raise ReplicationError("no source database to replicate")
        if self.batch_size < 1:
            raise ReplicationError("the batch size is at least 1")

    @property
    def base(self) -> str:
        parts = urlsplit(self.source)
        return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def read_credentials(path: str | os.PathLike[str] | None = None,
                     environ: dict[str, str] | None = None) -> tuple[str, str] | None:
    """Source credentials: a file whose first line is `user:password`, else LMCZ_FAST_SOURCE_USER and
    LMCZ_FAST_SOURCE_PASSWORD from the environment, else None (an open source)."""
    env = os.environ if environ is None else environ
    if path is not None:
        try:
            with open(path, encoding="utf-8") as fh:
                line = fh.readline().rstrip("\r\n")
        except OSError as exc:
            raise ReplicationError(f"cannot read the credentials file {os.fspath(path)}: {exc.strerror}") from None
        user, sep, password = line.partition(":")
        if not sep or not user:
            raise ReplicationError(f"the first line of {os.fspath(path)} must be user:password")
        return user, password
    user = env.get("LMCZ_FAST_SOURCE_USER")
    if user:
        return user, env.get("LMCZ_FAST_SOURCE_PASSWORD", "")
    return None
