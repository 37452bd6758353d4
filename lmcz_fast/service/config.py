"""What an operator sets for `serve`, and the constants the official module's API fixes (port, error codes)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from ..front import FrontConfig
from ..front.watch import WatchOptions

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5995
DEFAULT_USER = "admin"
DEFAULT_PASSWORD = "admin"
DEFAULT_MAX_BODY = 1 << 20
#: Bytes of request bodies the whole server holds at once (being read or queued); a body past it is refused 503.
DEFAULT_MAX_PENDING_BODIES = 64 << 20
DEFAULT_MAX_CODES = 1000
DEFAULT_MAX_CODE_LENGTH = 512
DEFAULT_KEEPALIVE_TIMEOUT = 120.0
DEFAULT_REQUEST_TIMEOUT = 30.0
MAX_HEAD_BYTES = 64 * 1024

ERROR_NOT_READY = 4045
ERROR_SYNC = 4050


def software_version() -> str:
    """The installed package's version (the LM's `version` field in /status)."""
    try:
        from importlib.metadata import version

        return version("lmcz-fast")
    except Exception:  # not installed: running from the source tree
        return "0.1.0"


@dataclass(frozen=True)
class ServiceConfig:
    """Everything an operator sets for `serve`. Credentials stay here and are never logged."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    user: str = DEFAULT_USER
    password: str = DEFAULT_PASSWORD
    auth: bool = True
    max_body: int = DEFAULT_MAX_BODY
    #: Bytes of request bodies held by all connections at once (reserved at their declared length); past it 503.
    max_pending_bodies: int = DEFAULT_MAX_PENDING_BODIES
    max_codes: int = DEFAULT_MAX_CODES
    keepalive_timeout: float = DEFAULT_KEEPALIVE_TIMEOUT
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    status_cache: float = 0.25
    name: str = "lmcz-fast"
    inn: str = ""
    operation_mode: str = "active"
    #: Most sales one durable commit carries (group commit); 1 commits (and fsyncs) each request on its own.
    sold_max_batch: int = 1024
    #: Days a reported sale is remembered; None keeps what the database holds (30 days for a new one).
    sold_expire_days: float | None = None
    #: Tokens accepted as `Authorization: Token <token>` beside HTTP Basic (`serve --token-file`).
    tokens: tuple[Token, ...] = ()
    #: `GET /api/v{1,2}/status` also requires credentials (the official module's does not; `serve --status-auth`).
    status_auth: bool = False
    #: In front of the official module at this URL (`serve --front`, docs/front.md), or None: the service alone.
    front: FrontConfig | None = None
    #: Several organisations served by one module (`serve --organisations FILE`, service/organisations.py): their
    #: credentials replace `user`/`password`/`tokens`. Empty: one organisation, as the official module.
    organisations: tuple[Any, ...] = ()     # of organisations.Organisation (which imports this module)
    #: The file they were read from (SIGHUP reads it again), or None.
    organisations_file: str | None = None
    #: What the front watches beside forwarding (cross-check, outbox, watchdog; lmcz_fast/front/watch.py), or None.
    front_watch: WatchOptions | None = None

    def __repr__(self) -> str:
        return (f"ServiceConfig(host={self.host!r}, port={self.port}, user={self.user!r}, password=<hidden>, "
                f"tokens={len(self.tokens)}, organisations={len(self.organisations)})")



# -- `Authorization: Token <uuid>` (serve --token-file) ------------------------------------------------------------

#: Shortest token accepted from a token file: the ones seen in the field are UUIDs (36 characters).
MIN_TOKEN_LENGTH = 16


@dataclass(frozen=True)
class AuditOptions:
    """Where `serve` keeps its audit log of checks and sales (`lmcz_fast.audit.AuditLog`): the directory, how many
    days of it are kept, how often it is flushed (seconds)."""

    directory: str | os.PathLike[str]
    retention_days: int = 100
    flush_interval: float = 0.5


@dataclass(frozen=True)
class Token:
    """One token an operator allowed (`serve --token-file`): never logged, never sent; `label` names it instead."""

    secret: bytes
    label: str
    #: Unix seconds after which the token is refused, or None.
    expires_at: float | None = None

    def __repr__(self) -> str:
        return f"Token(label={self.label!r}, expires_at={self.expires_at!r}, secret=<hidden>)"


def _expiry(text: str) -> float | None:
    """A token file's expiry field: '-' (none), a date (valid to its end, UTC) or an ISO 8601 date and time."""
    import datetime as dt

    if text == "-":
        return None
    try:
        if len(text) == 10:
            day = dt.date.fromisoformat(text)
            return dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc).timestamp() + 86400.0
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not a date (2027-01-31) or a date and time (2027-01-31T18:00:00+03:00)") \
            from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.timestamp()


def parse_tokens(text: str, source: str = "the token file") -> tuple[Token, ...]:
    """The tokens of a token file: one a line, `TOKEN [EXPIRY|-] [LABEL ...]`; blank lines and `#` comments skipped.

    A line holding only a token is valid (no expiry; labelled by its line number). The second field is an expiry
    when it starts with a digit or is '-'; anything after it is the label. `ValueError` in words (naming the line,
    never the token) for a token shorter than MIN_TOKEN_LENGTH, a bad expiry or a token given twice.
    """
    tokens: list[Token] = []
    seen: set[bytes] = set()
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        secret = fields[0]
        if len(secret) < MIN_TOKEN_LENGTH:
            raise ValueError(f"{source}, line {number}: a token must have at least {MIN_TOKEN_LENGTH} characters")
        expires_at = None
        rest = fields[1:]
        if rest and (rest[0] == "-" or rest[0][:1].isdigit()):
            try:
                expires_at = _expiry(rest[0])
            except ValueError as exc:
                raise ValueError(f"{source}, line {number}: the expiry {exc}") from None
            rest = rest[1:]
        raw = secret.encode("utf-8")
        if raw in seen:
            raise ValueError(f"{source}, line {number}: this token is already on an earlier line")
        seen.add(raw)
        tokens.append(Token(raw, " ".join(rest) or f"line {number}", expires_at))
    return tuple(tokens)


def read_token_file(path: str) -> tuple[Token, ...]:
    """`parse_tokens` of the file at `path`; `ValueError` in words when it cannot be read or holds no token."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read the token file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    tokens = parse_tokens(text, f"the token file {path}")
    if not tokens:
        raise ValueError(f"the token file {path} holds no token")
    return tokens
