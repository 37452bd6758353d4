"""Debian's nginx as tests start it: in the foreground without a master process (it keeps the test's user and
needs no system directory), every file it writes in one work directory, one server block on 127.0.0.1."""

from __future__ import annotations

import shutil
from pathlib import Path

NGINX = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
MISSING = "nginx is not installed (.ci/run installs Debian's nginx-light)"


def nginx_main(work: Path, port: int, server: str, *, log_format: str | None = None,
               default_type: str | None = None) -> str:
    """A whole nginx.conf: its pid, logs and temporary files in `work`, JSON and gzip types, and one server
    listening on 127.0.0.1:`port` whose block holds `server` (lines already indented). `log_format` gives the
    access log that format, `default_type` the type of files the types do not name."""
    log = f"    log_format feed '{log_format}';\n    access_log {work}/access.log feed;" if log_format else \
        f"    access_log {work}/access.log;"
    default = f"\n    default_type {default_type};" if default_type else ""
    return f"""\
daemon off;
master_process off;
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{ worker_connections 128; }}
http {{
{log}
    client_body_temp_path {work}/body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    types {{ application/json json; application/gzip gz; }}{default}
    server {{
        listen 127.0.0.1:{port};
{server}
    }}
}}
"""


def nginx_command(binary: str, work: Path, conf: Path) -> list[str]:
    """The command line that runs `conf` with `work` as nginx's prefix and its error log there."""
    return [binary, "-p", str(work), "-e", str(work / "error.log"), "-c", str(conf)]
