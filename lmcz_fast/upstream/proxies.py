"""Which proxy an upstream request goes through: `ProxyConfig` (an explicit proxy, or the environment's proxy
variables with NO_PROXY), its credentials file, and the `ProxyRoute` one request takes."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit, urlunsplit

from ..secret_files import first_line
from .errors import ProxyConfigError


@dataclass(frozen=True)
class ProxyRoute:
    """The proxy one request goes through: its URL (without credentials) and the Basic credentials, if any."""

    url: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def auth(self) -> tuple[str, str] | None:
        return None if self.username is None else (self.username, self.password or "")

    def describe(self) -> str:
        return self.url + (f" (as {self.username})" if self.username is not None else "")


_ENV_NAMES = {"http": ("http_proxy", "HTTP_PROXY"), "https": ("https_proxy", "HTTPS_PROXY"),
              "all": ("all_proxy", "ALL_PROXY"), "no": ("no_proxy", "NO_PROXY")}


def _env(kind: str, environ: Mapping[str, str]) -> str | None:
    for name in _ENV_NAMES[kind]:
        value = environ.get(name, "").strip()
        if value:
            return value
    return None


def _split_proxy_url(text: str, where: str) -> tuple[str, str | None, str | None]:
    """A proxy URL (scheme optional, default http) -> (URL without credentials, user, password)."""
    raw = text.strip()
    if "://" not in raw:
        raw = "http://" + raw
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError as exc:
        raise ProxyConfigError(f"{where}: not a proxy URL: {text!r} ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ProxyConfigError(f"{where}: a proxy URL is http://HOST:PORT or https://HOST:PORT, not {text!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ProxyConfigError(f"{where}: a proxy URL has no path or query: {text!r}")
    host = parts.hostname
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    user = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    return urlunsplit((parts.scheme, netloc, "", "", "")), user, password


def read_auth_file(path: str | os.PathLike[str]) -> tuple[str, str]:
    """`user:password` from the first line of `path` (the password may hold ':'; the line end, a BOM and trailing
    spaces are not part of it: `secret_files.first_line`, which also warns when others may read the file)."""
    try:
        line = first_line(path, "proxy credentials file")
    except OSError as exc:
        raise ProxyConfigError(f"cannot read the proxy credentials file {os.fspath(path)}: "
                               f"{exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ProxyConfigError(f"the proxy credentials file {os.fspath(path)} is not UTF-8 text") from None
    user, sep, password = line.partition(":")
    if not sep or not user:
        raise ProxyConfigError(f"the proxy credentials file {os.fspath(path)} must hold one line user:password")
    return user, password


def _bypass(host: str, port: int, no_proxy: str | None) -> bool:
    """Whether NO_PROXY names `host` (exact name, domain suffix with or without a leading dot, IP, CIDR, `*`)."""
    if not no_proxy:
        return False
    host = host.strip("[]").lower().rstrip(".")
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for entry in no_proxy.replace(" ", ",").split(","):
        entry = entry.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        name, entry_port = entry, None
        if entry.startswith("[") and "]" in entry:  # [v6]:port
            name, _, rest = entry[1:].partition("]")
            entry_port = rest[1:] if rest.startswith(":") else None
        elif entry.count(":") == 1:
            name, entry_port = entry.split(":")
        if entry_port is not None and entry_port.isdigit() and int(entry_port) != port:
            continue
        if address is not None:
            try:
                if address in ipaddress.ip_network(name, strict=False):
                    return True
            except ValueError:
                pass
            continue
        name = name.lstrip("*").lstrip(".").rstrip(".")
        if name and (host == name or host.endswith("." + name)):
            return True
    return False


@dataclass(frozen=True)
class ProxyConfig:
    """Which proxy upstream requests use.

    `url`: an explicit proxy for http and https targets (None: take it from the environment when `trust_env`).
    `username`/`password`: its Basic credentials (`from_options` reads them from a file); they also apply to a
    proxy taken from the environment, unless that URL carries its own. `trust_env`: read the proxy variables
    (`https_proxy`, `http_proxy`, `all_proxy`, `no_proxy`, upper or lower case). `ProxyConfig.direct()` uses none.
    """

    url: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    trust_env: bool = True

    def __post_init__(self) -> None:
        if self.url is not None:
            clean, user, password = _split_proxy_url(self.url, "proxy")
            object.__setattr__(self, "url", clean)
            if user is not None and self.username is None:
                object.__setattr__(self, "username", user)
                object.__setattr__(self, "password", password or "")

    @classmethod
    def direct(cls) -> ProxyConfig:
        """No proxy at all, whatever the environment says."""
        return cls(trust_env=False)

    @classmethod
    def from_options(cls, url: str | None = None, auth_file: str | os.PathLike[str] | None = None,
                     *, trust_env: bool = True) -> ProxyConfig:
        """What the command line gives: `--proxy URL` and `--proxy-auth-file PATH`.

        A password inside the URL is refused: a command line is visible to every user of the machine (`ps`).
        """
        if url is not None:
            _clean, _user, password = _split_proxy_url(url, "--proxy")
            if password is not None:
                raise ProxyConfigError("--proxy must not carry a password (the command line is visible to other "
                                       "users); put user:password in a file and give it with --proxy-auth-file")
        user = password = None
        if auth_file is not None:
            user, password = read_auth_file(auth_file)
        return cls(url=url, username=user, password=password, trust_env=trust_env)

    def route(self, url: str, environ: Mapping[str, str] | None = None) -> ProxyRoute | None:
        """The proxy a request to `url` goes through, or None for a direct connection."""
        env = os.environ if environ is None else environ
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        host = parts.hostname or ""
        port = parts.port or (443 if scheme == "https" else 80)
        if self.trust_env and _bypass(host, port, _env("no", env)):
            return None
        if self.url is not None:
            return ProxyRoute(self.url, self.username, self.password)
        if not self.trust_env:
            return None
        raw = _env(scheme, env) if scheme in ("http", "https") else None
        raw = raw or _env("all", env)
        if raw is None:
            return None
        clean, user, password = _split_proxy_url(raw, f"the {scheme}_proxy environment variable")
        if user is None and self.username is not None:
            user, password = self.username, self.password
        return ProxyRoute(clean, user, password)

    def describe(self) -> str:
        """For logs: where requests go, without the password."""
        if self.url is not None:
            return ProxyRoute(self.url, self.username).describe()
        return "proxy from the environment" if self.trust_env else "direct"
