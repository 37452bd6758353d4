"""Commands of the Local-Module-compatible service: `serve` and `audit export`."""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import sys
from typing import TYPE_CHECKING, Any, TextIO

import click

from ..audit import DEFAULT_FLUSH_INTERVAL, DEFAULT_RETENTION_DAYS, AuditError, export, parse_when
from ..secret_files import first_line
from ..store import Blocklist, StoreError
from .common import EXIT_STORE, EXIT_USAGE, setup_logging
from .front import front_config, front_options
from .front_watch import front_watch_options, watch_options

if TYPE_CHECKING:   # the service (its event loop, HTTP parser, answer encoder) loads when `serve` runs
    from ..service.config import Token
    from ..service.organisations import Organisation

#: The service's defaults (service/config.py) as `serve --help` shows them, stated here so that every other command
#: starts without loading the service; tests/test_cli_startup.py checks that they are the service's own.
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5995
DEFAULT_USER = "admin"
DEFAULT_PASSWORD = "admin"
DEFAULT_MAX_BODY = 1 << 20
DEFAULT_MAX_CODES = 1000
DEFAULT_KEEPALIVE_TIMEOUT = 120.0


def _password_in(path: str) -> str:
    """The first line of the password file (without a BOM, CR or trailing spaces; a warning when others may read
    or change the file: `secret_files.first_line`); `ValueError` in words when it cannot be read or is empty."""
    try:
        password = first_line(path, "password file")
    except OSError as exc:
        raise ValueError(f"cannot read the password file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ValueError(f"the password file {path} is not UTF-8 text") from None
    if not password:
        raise ValueError(f"the first line of the password file {path} is empty")
    return password


def _read_tokens(path: str | None) -> tuple[Token, ...]:
    if path is None:
        return ()
    from ..service.config import read_token_file

    try:
        return read_token_file(path)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--token-file") from None


def _read_organisations(path: str | None, password_file: str | None, token_file: str | None,
                        no_auth: bool) -> tuple[Organisation, ...]:
    """The organisations of --organisations (none without it); refuses options that would contradict it."""
    if path is None:
        return ()
    for given, option in ((password_file, "--password-file"), (token_file, "--token-file"), (no_auth, "--no-auth")):
        if given:
            raise click.UsageError(f"--organisations and {option} do not go together: with --organisations, each "
                                   "organisation's own credentials (its password_file, token_file) are the only "
                                   "ones accepted")
    from ..service.organisations import read_organisations

    try:
        return read_organisations(path)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--organisations") from None


def _set_timezone(zone: str) -> None:
    """Make `zone` this process's local time zone (the page's and the log's times), after checking it exists."""
    import time
    import zoneinfo
    try:
        zoneinfo.ZoneInfo(zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise click.BadParameter(f"unknown time zone {zone!r} (e.g. Europe/Moscow, Asia/Yekaterinburg, UTC)",
                                 param_hint="--timezone") from None
    os.environ["TZ"] = zone
    time.tzset()


def _read_password(path: str | None) -> str:
    if path is None:
        return DEFAULT_PASSWORD
    try:
        return _password_in(path)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--password-file") from None


@click.command()
@click.argument("db", type=click.Path(file_okay=False))
@click.option("--host", default=DEFAULT_HOST, show_default=True,
              help="Address to listen on. Keep loopback unless tills on other machines must reach it; then "
                   "set a password (with the default one the server warns at start and in /api/v1/status).")
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=click.IntRange(0, 65535),
              help="TCP port (the official Local Module's is 5995; 0 picks a free one).")
@click.option("--user", default=DEFAULT_USER, show_default=True, help="HTTP Basic user name.")
@click.option("--password-file", type=click.Path(dir_okay=False), envvar="LMCZ_FAST_PASSWORD_FILE",
              help="File whose first line is the HTTP Basic password (default password: admin, as in the "
                   "official guide's examples). Env: LMCZ_FAST_PASSWORD_FILE.")
@click.option("--token-file", type=click.Path(dir_okay=False), envvar="LMCZ_FAST_TOKEN_FILE",
              help="Also accept `Authorization: Token <token>` (tills set up through a TS PIoT, newer FMU-API): one "
                   "token a line, optionally followed by an expiry (2027-01-31, an ISO date and time, or -) and a "
                   "label the audit log records instead of the token. Re-read on SIGHUP. Env: LMCZ_FAST_TOKEN_FILE.")
@click.option("--organisations", "organisations_file", type=click.Path(dir_okay=False),
              envvar="LMCZ_FAST_ORGANISATIONS",
              help="Serve several organisations (INNs) from this one store: a TOML file of [[organisation]] tables "
                   "(inn, name, user, password_file; optional token_file, page_user/page_password_file, "
                   "earlier_sales). A till's credentials decide its organisation; only these credentials are "
                   "accepted (not --user/--password-file/--token-file). Re-read on SIGHUP. See docs/service.md, "
                   "\"Several organisations\". Env: LMCZ_FAST_ORGANISATIONS.")
@click.option("--status-auth", is_flag=True,
              help="Require credentials for GET /api/v{1,2}/status too (the official module answers it without "
                   "any; monitoring such as Zabbix templates calls it so).")
@click.option("--no-auth", is_flag=True, help="Accept requests without credentials (not recommended).")
@click.option("--audit-dir", type=click.Path(file_okay=False),
              help="Directory of the audit log [default: DB.audit next to the database].")
@click.option("--no-audit", is_flag=True, help="Do not record checks (the audit log is on by default).")
@click.option("--retention-days", default=DEFAULT_RETENTION_DAYS, show_default=True, type=click.IntRange(0),
              help="Delete audit segments older than this many days (0: keep forever).")
@click.option("--audit-flush", default=DEFAULT_FLUSH_INTERVAL, show_default=True, type=click.FloatRange(0.01, 1.0),
              help="Seconds between audit writes: the most a crash can lose.")
@click.option("--max-codes", default=DEFAULT_MAX_CODES, show_default=True, type=click.IntRange(1),
              help="Most codes accepted in one check request (more: HTTP 413).")
@click.option("--max-body", default=DEFAULT_MAX_BODY, show_default=True, type=click.IntRange(64),
              help="Largest request body in bytes (more: HTTP 413).")
@click.option("--keepalive-timeout", default=DEFAULT_KEEPALIVE_TIMEOUT, show_default=True,
              type=click.FloatRange(1), help="Close keep-alive connections idle this many seconds.")
@click.option("--name", default="lmcz-fast", show_default=True, help="`name` reported by /api/v1/status.")
@click.option("--inn", default="", help="Participant's INN reported by /api/v1/status.")
@click.option("--sold-days", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Remember sales reported by tills (POST /api/v2/cis/sell) this many days; stored in the "
                   "database [default: as stored, 30 days for a new one].")
@click.option("--sold-max-batch", default=1024, show_default=True, type=click.IntRange(1),
              help="Most sales one durable commit carries (group commit). 1 commits each sale on its own, "
                   "which costs one fsync per sale (for measurements).")
@click.option("--page-user", default="page", show_default=True,
              help="User name of the status page's own read-only login (with --page-password-file).")
@click.option("--page-password-file", type=click.Path(dir_okay=False), default=None,
              help="File whose first line is the password of a login that opens the status page (GET /) and "
                   "nothing else: a manager reads the page without the tills' API password.")
@click.option("--timezone", default=None, metavar="ZONE",
              help="Time zone of the times on the status page and in the log, e.g. Europe/Moscow [default: the "
                   "server's local zone].")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
@front_options
@front_watch_options
def serve(db: str, host: str, port: int, user: str, password_file: str | None, token_file: str | None,
          organisations_file: str | None, status_auth: bool, no_auth: bool,
          audit_dir: str | None, no_audit: bool, retention_days: int, audit_flush: float, max_codes: int,
          max_body: int, keepalive_timeout: float, name: str, inn: str, sold_days: float | None,
          sold_max_batch: int, page_user: str, page_password_file: str | None, timezone: str | None,
          log_level: str, **front: Any) -> None:
    """Serve the database DB over HTTP as a drop-in for the official Local Module.

    Runs in the foreground with logs on stderr; SIGTERM or SIGINT drains connections and flushes the audit
    log; SIGHUP reads --password-file and --token-file again without dropping connections. Under systemd
    (Type=notify) it reports readiness with sd_notify. A person reads GET / in a browser: the status page
    (Russian; ?lang=en).
    Tills keep using their Local Module settings: http://127.0.0.1:5995, HTTP Basic auth (or
    `Authorization: Token` with --token-file; GET /api/v1/status answers without credentials, as the official one),
    POST /api/v1/cis/outCheck {"cis_list": [...]}, GET /api/v1/status, and protocol 2 under /api/v2 (its
    {"results": [...]} answers, {"cis", "pg"} items, greyList). Sales reported by tills
    (POST /api/v2/cis/sell, answered 201 once committed to disk) are answered `sold: true` to every till.
    Prometheus metrics: GET /metrics. The database is kept fresh by `lmcz-fast sync` running beside it;
    readers see a new version within 0.25 s. A DB that does not exist yet is made empty: checks are answered 4045
    ("not configured") until a sync, replication or load fills it, with no restart.

    \b
    Examples:
      lmcz-fast serve /var/lib/lmcz-fast/store.db
      lmcz-fast serve store.db --port 5995 --user till --password-file /etc/lmcz-fast/password
      lmcz-fast serve store.db --password-file /etc/lmcz-fast/password --token-file /etc/lmcz-fast/tokens
      lmcz-fast serve store.db --audit-dir /var/log/lmcz-fast/audit --retention-days 120
      lmcz-fast serve store.db --front http://127.0.0.1:5996 --front-credentials-file /etc/lmcz-fast/lm-admin
      lmcz-fast serve store.db --organisations organisations.toml
      curl -u admin:admin -H 'Content-Type: application/json' \\
           -d '{"cis_list": ["0104650000000010215abcdef\\u001d93ab12"]}' http://127.0.0.1:5995/api/v1/cis/outCheck
    """
    from ..service import ServiceConfig, run
    from ..service.config import AuditOptions, read_token_file

    watching = watch_options(front)
    fronting = front_config(db, **front)
    if timezone is not None:
        _set_timezone(timezone)
    setup_logging(log_level, names=("lmcz_fast",))
    page_credentials = None
    if page_password_file is not None:
        try:
            page_credentials = (page_user, _password_in(page_password_file))
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--page-password-file") from None
    if not os.path.exists(os.path.join(db, "data.mdb")):
        # Like the official module before its first initialisation: start, answer 4045 ("not configured"), and
        # answer from the list as soon as a sync, a replication or a load puts one into this (empty) store.
        try:
            Blocklist.create(db).close()
        except StoreError as exc:
            click.secho(f"error: no database at {db} and none can be made there ({exc}); create one with "
                        f"`lmcz-fast load {db} FILE` or `lmcz-fast sync {db} --feed URL`", fg="red", err=True)
            sys.exit(EXIT_STORE)
        logging.getLogger("lmcz_fast.service").warning(
            "no database at %s: made an empty one; checks are answered 4045 (not configured) until its first "
            "list arrives (`lmcz-fast sync %s --feed URL`, `replicate` or `load`); no restart is needed", db, db)
    organisations = _read_organisations(organisations_file, password_file, token_file, no_auth)
    config = ServiceConfig(host=host, port=port, user=user, password=_read_password(password_file),
                           auth=not no_auth, max_body=max_body, max_codes=max_codes,
                           keepalive_timeout=keepalive_timeout, name=name, inn=inn,
                           sold_max_batch=sold_max_batch,
                           sold_expire_days=sold_days, tokens=_read_tokens(token_file), status_auth=status_auth,
                           organisations=organisations, organisations_file=organisations_file)
    config = dataclasses.replace(config, front=fronting, front_watch=watching if fronting is not None else None)
    if no_auth:
        logging.getLogger("lmcz_fast.service").warning("authentication is OFF (--no-auth)")
    if no_audit:
        audit_path = None
    else:
        audit_path = audit_dir or os.path.normpath(db) + ".audit"
    try:
        audit = None if audit_path is None else AuditOptions(audit_path, retention_days, audit_flush)
        run(db, config, audit=audit,
            password=None if password_file is None else lambda: _password_in(password_file),
            tokens=None if token_file is None else lambda: read_token_file(token_file),
            page_credentials=page_credentials)
    except StoreError as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(EXIT_STORE)
    except AuditError as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(EXIT_STORE)
    except OSError as exc:
        message = f"error: cannot listen on {host}:{port}: {exc.strerror or exc}"
        if exc.errno == errno.EADDRINUSE:
            message += "; " + port_holder_advice(port)
        click.secho(message, fg="red", err=True)
        sys.exit(EXIT_STORE)


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as fh:
                next(fh, None)
                for line in fh:
                    fields = line.split()
                    if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(fields[9])
        except (OSError, ValueError):
            continue
    return inodes


def port_holder(port: int) -> str | None:
    """`pid N (command line)` of the process listening on TCP `port`, if this user may see it (/proc)."""
    inodes = {f"socket:[{inode}]" for inode in _listening_inodes(port)}
    if not inodes:
        return None
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            if not any(os.readlink(f"/proc/{pid}/fd/{fd}") in inodes for fd in fds):
                continue
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                words = fh.read().split(b"\0")
            return f"pid {pid} ({' '.join(w.decode(errors='replace') for w in words if w)[:200]})"
        except OSError:
            continue
    return None


def port_holder_advice(port: int) -> str:
    """Who likely holds `port`, and what to do, in words."""
    holder = port_holder(port)
    who = f"it is held by {holder}" if holder else "another program holds it"
    if port == DEFAULT_PORT:
        who += (f"; {DEFAULT_PORT} is the official Local Module's port (its service \"regime\", on Linux in a Docker "
                f"container; stop it first) and lmcz-fast serve's default")
    return f"{who}; choose another port with --port"


@click.group()
def audit() -> None:
    """The audit log of checks answered by `serve`."""


@audit.command("export")
@click.argument("db", required=False, type=click.Path(file_okay=False))
@click.option("--audit-dir", type=click.Path(file_okay=False), envvar="LMCZ_FAST_AUDIT_DIR",
              help="The audit directory, if `serve` was given another one than its default DB.audit. "
                   "Env: LMCZ_FAST_AUDIT_DIR.")
@click.option("--since", help="From this time on: 2026-11-01, 2026-11-01T10:00+03:00, a Unix time, or an age "
                              "such as 24h, 7d [default: the oldest record].")
@click.option("--until", help="Before this time (same forms) [default: now].")
@click.option("--json", "fmt", flag_value="json", default=True, help="JSON lines, one per request (default).")
@click.option("--csv", "fmt", flag_value="csv",
              help="CSV, one row per checked code; the last column, inn, is the organisation (empty without "
                   "serve --organisations).")
@click.option("--inn", default=None, metavar="INN",
              help="Only the requests of this organisation (serve --organisations records each request's INN).")
@click.option("-o", "--output", type=click.File("w", encoding="utf-8"), default="-", show_default=True,
              help="Write here instead of stdout.")
def audit_export(db: str | None, audit_dir: str | None, since: str | None, until: str | None, fmt: str,
                 inn: str | None, output: TextIO) -> None:
    """Export the audit records of the database DB (kept in DB.audit by `serve`) between --since and --until.

    \b
    Examples:
      lmcz-fast audit export store.db --since 24h
      lmcz-fast audit export store.db --since 2026-11-01 --until 2026-12-01 --csv -o nov.csv
      lmcz-fast audit export /var/lib/lmcz-fast/store.db --since 7d        # the systemd units' store
      lmcz-fast audit export --audit-dir /var/log/lmcz-fast/audit --since 7d  # serve --audit-dir DIR
      lmcz-fast audit export store.db --since 7d --inn 7701234567   # one organisation's requests
    """
    if audit_dir is None:
        if db is None:
            raise click.UsageError("give the database DB (its audit log is DB.audit) or --audit-dir")
        audit_dir = os.path.normpath(db) + ".audit"
    if not os.path.isdir(audit_dir):
        click.secho(f"error: no audit log at {audit_dir} (`serve` keeps one there unless given --no-audit or "
                    f"another --audit-dir)", fg="red", err=True)
        sys.exit(EXIT_USAGE)
    try:
        since_ms = parse_when(since) if since else None
        until_ms = parse_when(until) if until else None
        stats = export(audit_dir, output, since_ms=since_ms, until_ms=until_ms, fmt=fmt, inn=inn)
    except AuditError as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(EXIT_USAGE)
    if stats.damaged:
        click.secho(f"warning: {stats.damaged} damaged lines skipped (a crash cuts the last line short)",
                    fg="yellow", err=True)
    click.echo(f"{stats.records} records exported", err=True)


def register(group: click.Group) -> None:
    group.add_command(serve)
    group.add_command(audit)
