"""What an operator sets for `serve`, and the constants the official module's API fixes (port, error codes)."""

from __future__ import annotations

from dataclasses import dataclass

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

    def __repr__(self) -> str:
        return f"ServiceConfig(host={self.host!r}, port={self.port}, user={self.user!r}, password=<hidden>)"

