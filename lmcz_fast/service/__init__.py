"""Local-Module-compatible HTTP service: the official module's API, served from an lmcz-fast database.

Till software already speaks to the official Local Module (LM) on 127.0.0.1:5995; this package answers the same
requests under the same names (see docs/service.md for every deviation and guess) and adds the ready-made value of
fiscal tag 1265, the database's age, Prometheus metrics and an audit log of every check.

Its files say their jobs: `api/` is the protocol (`LocalModule`: one parsed request in, one `Response` out, no
I/O), with `checks.py` (the check path), `v2.py`, `sold.py`, `answers.py` and `auth.py` (credentials) beside it;
`http/` is the HTTP/1.1 stack (`Server`: asyncio protocols over httptools, uvloop when installed); `scheduler.py`
takes slow work round-robin between turns of the event loop; `throttle.py` delays failed logins per address;
`runner.py` runs it all in the foreground; `config.py`, `responses.py` and `metrics.py` are what they say.
"""

from .api import LocalModule
from .config import (
    DEFAULT_HOST,
    DEFAULT_KEEPALIVE_TIMEOUT,
    DEFAULT_MAX_BODY,
    DEFAULT_MAX_CODES,
    DEFAULT_PASSWORD,
    DEFAULT_PORT,
    DEFAULT_USER,
    ERROR_NOT_READY,
    ERROR_SYNC,
    ServiceConfig,
    software_version,
)
from .http import Server
from .metrics import Metrics
from .responses import HttpError, Response
from .runner import install_uvloop, run

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_KEEPALIVE_TIMEOUT",
    "DEFAULT_MAX_BODY",
    "DEFAULT_MAX_CODES",
    "DEFAULT_PASSWORD",
    "DEFAULT_PORT",
    "DEFAULT_USER",
    "ERROR_NOT_READY",
    "ERROR_SYNC",
    "HttpError",
    "LocalModule",
    "Metrics",
    "Response",
    "Server",
    "ServiceConfig",
    "install_uvloop",
    "run",
    "software_version",
]
