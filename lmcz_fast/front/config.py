"""What `serve --front URL` is told: where the official Local Module now listens, how to log in to it, how long a
till's check may wait for it, and where the front keeps what it learns (the participant token, the module's last
`inst` and `version`).

Credentials never travel in the URL (a URL is logged, shown on the status page and in `ps`): they come from
`--front-credentials-file`, whose first line is `user:password` (HTTP Basic, as the module's installer sets it) or
a token (sent as `Authorization: Token <token>`, as tills set up through a TS PIoT call the module).
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..secret_files import first_line

#: A till's whole offline answer stays well inside its own timeout (clients treat > 1500 ms as no answer).
DEFAULT_DEADLINE_MS = 300
#: Kept-alive connections to the official module at most (a till's check takes one while it is forwarded).
DEFAULT_POOL_SIZE = 256
#: The official module's installer default credentials (its guide's examples).
DEFAULT_CREDENTIALS = "admin:admin"


class FrontConfigError(ValueError):
    """A front setting that cannot be used, in words (never quoting a secret)."""


@dataclass(frozen=True)
class Credentials:
    """How the front logs in to the official module: the `Authorization` header it sends (never logged)."""

    header: bytes
    kind: str          # "basic" or "token"
    user: str = ""     # the Basic user (not secret), "" for a token

    def __repr__(self) -> str:
        return f"Credentials(kind={self.kind!r}, user={self.user!r}, secret=<hidden>)"


def parse_credentials(line: str, source: str = "the front credentials file") -> Credentials:
    """`user:password` -> HTTP Basic; a line without a colon -> `Authorization: Token <line>`."""
    line = line.strip()
    if not line:
        raise FrontConfigError(f"{source} is empty: write `user:password` or a token on its first line")
    if ":" in line:
        user, _, password = line.partition(":")
        if not user or not password:
            raise FrontConfigError(f"{source}: `user:password` needs both a user and a password")
        return Credentials(b"Basic " + base64.b64encode(line.encode("utf-8")), "basic", user)
    if any(c.isspace() for c in line):
        raise FrontConfigError(f"{source}: a token is one word (or write `user:password`)")
    return Credentials(b"Token " + line.encode("utf-8"), "token")


def read_credentials(path: str | os.PathLike[str] | None) -> Credentials:
    """The credentials in `path` (its first line; `secret_files.first_line` warns when others may read it), or
    the installer's default `admin:admin` when no file is given."""
    if path is None:
        return parse_credentials(DEFAULT_CREDENTIALS, "the default credentials")
    try:
        line = first_line(path, "front credentials file")
    except OSError as exc:
        raise FrontConfigError(f"cannot read the front credentials file {os.fspath(path)}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise FrontConfigError(f"the front credentials file {os.fspath(path)} is not UTF-8 text") from None
    return parse_credentials(line, f"the front credentials file {os.fspath(path)}")


@dataclass(frozen=True)
class Target:
    """The official module's base URL, split: host, port, the path prefix its API lives under."""

    url: str
    host: str
    port: int
    prefix: str

    @property
    def host_header(self) -> bytes:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}".encode()


def parse_url(url: str) -> Target:
    """`http://host:port[/prefix]` of the official module. Refuses credentials in the URL (they would be logged and
    shown: use --front-credentials-file), a query or fragment, and any scheme but http (the module speaks plain
    HTTP on loopback)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise FrontConfigError(f"--front {url!r} is not a URL: {exc}") from None
    if parts.username is not None or parts.password is not None:
        raise FrontConfigError("--front must not hold credentials (they would show in logs, the status page and "
                               "`ps`): put `user:password` or a token in --front-credentials-file")
    if parts.scheme != "http":
        raise FrontConfigError(f"--front {url!r}: only http:// is supported (the official module listens on plain "
                               f"HTTP, on this machine or the store's network)")
    if not parts.hostname:
        raise FrontConfigError(f"--front {url!r} names no host")
    if parts.query or parts.fragment:
        raise FrontConfigError(f"--front {url!r}: no query or fragment, only http://host:port")
    prefix = parts.path.rstrip("/")
    return Target(f"http://{parts.netloc}{prefix}", parts.hostname, port or 80, prefix)


@dataclass(frozen=True)
class FrontConfig:
    """Everything `serve --front` was told. `state_dir` holds the participant token (mode 0600) and the module's
    last-known `inst`/`version` (so a restart while it is down still answers with them)."""

    target: Target
    credentials: Credentials
    deadline: float = DEFAULT_DEADLINE_MS / 1000.0
    pool_size: int = DEFAULT_POOL_SIZE
    state_dir: str | None = None

    @classmethod
    def build(cls, url: str, credentials_file: str | None = None, deadline_ms: float = DEFAULT_DEADLINE_MS,
              state_dir: str | None = None, pool_size: int = DEFAULT_POOL_SIZE) -> FrontConfig:
        if not 1 <= deadline_ms <= 60_000:
            raise FrontConfigError(f"--front-deadline {deadline_ms:g} ms: give 1..60000 ms (default "
                                   f"{DEFAULT_DEADLINE_MS})")
        if pool_size < 1:
            raise FrontConfigError("the front's pool needs at least one connection")
        return cls(parse_url(url), read_credentials(credentials_file), deadline_ms / 1000.0, pool_size, state_dir)

    def __repr__(self) -> str:
        return (f"FrontConfig(url={self.target.url!r}, credentials={self.credentials!r}, "
                f"deadline={self.deadline:g}, pool_size={self.pool_size}, state_dir={self.state_dir!r})")
