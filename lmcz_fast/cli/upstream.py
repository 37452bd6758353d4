"""Command-line options for reaching upstream servers (the feed, the True API) through a proxy."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:   # the HTTP client (httpx) loads with the first command that reaches upstream
    from ..upstream import ProxyConfig

F = TypeVar("F", bound=Callable[..., Any])

PROXY_HELP = (
    "HTTP proxy for upstream requests, e.g. http://proxy.shop.local:3128 (https:// targets are tunnelled with "
    "CONNECT). Default: the https_proxy / http_proxy / all_proxy environment variables; no_proxy applies to both."
)
AUTH_HELP = (
    "File whose first line is the proxy's user:password (Basic auth; keep it mode 0600). Credentials never go on "
    "the command line, where other users see them."
)


def proxy_options(func: F) -> F:
    """Add --proxy and --proxy-auth-file; the command receives `proxy: ProxyConfig`."""
    func = click.option("--proxy-auth-file", "proxy_auth_file", type=click.Path(dir_okay=False), default=None,
                        metavar="FILE", help=AUTH_HELP)(func)
    func = click.option("--proxy", "proxy_url", default=None, metavar="URL", help=PROXY_HELP)(func)
    return func


def proxy_config(proxy_url: str | None, proxy_auth_file: str | None) -> ProxyConfig:
    """The options as a `ProxyConfig`, or a usage error that names the cause."""
    from ..upstream import ProxyConfig, ProxyConfigError

    try:
        return ProxyConfig.from_options(proxy_url, proxy_auth_file)
    except ProxyConfigError as exc:
        hint = "--proxy-auth-file" if proxy_auth_file is not None and "file" in str(exc) else "--proxy"
        raise click.BadParameter(str(exc), param_hint=hint) from None
