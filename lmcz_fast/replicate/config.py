"""What to replicate from where: the source, its databases, the document mapping, credentials; and the errors."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from ..upstream import ProxyConfig


#: What each kind of data is called in the official module's database (LM 2.x), and the kinds we replicate.
DEFAULT_DATABASES = {"codes": "blocked_cis", "gtins": "blocked_gtin", "prices": "min_price"}
KINDS = ("codes", "gtins", "prices")
DEFAULT_BATCH = 10_000


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


@dataclass(frozen=True)
class Mapping:
    """Where the data sits in a source document. A field name, or `_id` for the document id.

    `code_field`: the marking code in `blocked_cis` documents (any form a scan or a CIS line takes).
    `gtin_field`: the GTIN in `blocked_gtin` documents.
    `price_key_field`: what a minimum price applies to in `min_price` documents: a 14-digit GTIN, or a product
    group as `pg:N` or a bare number up to 3 digits. `price_field`: the price in kopecks (a non-negative integer).
    """

    code_field: str = "_id"
    gtin_field: str = "_id"
    price_key_field: str = "_id"
    price_field: str = "price"

    def field_of(self, kind: str) -> str:
        return {"codes": self.code_field, "gtins": self.gtin_field, "prices": self.price_key_field}[kind]


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
