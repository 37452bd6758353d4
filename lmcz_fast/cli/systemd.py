"""`lmcz-fast systemd`: print or install the systemd units for `serve` and `sync`."""

from __future__ import annotations

import os
import shutil
import sys

import click

from ..replicate import MappingError, read_mapping
from ..units import UnitOptions, install, reachability_problems, readability_problems, render
from .common import EXIT_USAGE


def _this_program() -> str | None:
    """The absolute path of the `lmcz-fast` being run (what the units should start), if it can be told."""
    argv0 = sys.argv[0] if sys.argv else ""
    if os.path.basename(argv0) == "lmcz-fast" and os.path.isfile(argv0):
        return os.path.abspath(argv0)
    found = shutil.which("lmcz-fast", path=os.path.dirname(sys.executable)) or shutil.which("lmcz-fast")
    return os.path.abspath(found) if found else None


@click.command()
@click.option("--db", default="/var/lib/lmcz-fast/store.db", show_default=True,
              help="The store both units use (absolute path); its directory is the one the services may write.")
@click.option("--user", "user", default="lmcz-fast", show_default=True,
              help="The dedicated system user the services run as (created by the sysusers.d file).")
@click.option("--group", default=None, help="Its group [default: same as --user].")
@click.option("--audit-dir", default=None, help="serve's audit log [default: DB.audit].")
@click.option("--host", default="127.0.0.1", show_default=True, help="serve's listening address.")
@click.option("--port", default=5995, show_default=True, type=click.IntRange(1, 65535), help="serve's port.")
@click.option("--password-file", default=None, help="serve's HTTP Basic password file [default: none: admin].")
@click.option("--organisations", "organisations_file", default=None, metavar="FILE",
              help="serve's organisations file (several organisations, one module; `systemctl reload` re-reads it).")
@click.option("--feed", "feed_url", default=None, metavar="URL", help="The feed the sync unit follows.")
@click.option("--public-key", default="/etc/lmcz-fast/feed.pub", show_default=True,
              help="The feed's public key (with --feed).")
@click.option("--every", default="2h", show_default=True, help="The sync interval.")
@click.option("--nice", "nice", default=10, show_default=True, type=click.IntRange(0, 19),
              help="The sync unit's CPU priority offset (Nice=): tills' lookups come first.")
@click.option("--replicate-source", default=None, metavar="URL",
              help="Keep the store current by replicating this CouchDB-compatible source (a replicate unit "
                   "instead of the sync unit; see `lmcz-fast replicate --help`).")
@click.option("--source-credentials-file", default=None, metavar="FILE",
              help="The replication source's user:password file.")
@click.option("--replicate-mapping", default=None, metavar="FILE",
              help="The replicate unit's mapping file (`replicate --mapping`; docs/replication.md), with "
                   "--replicate-source; read now, and refused if malformed or not readable by the service user.")
@click.option("--proxy", default=None, metavar="URL", help="The sync unit's HTTP proxy (see `lmcz-fast sync --help`).")
@click.option("--proxy-auth-file", default=None, metavar="FILE", help="Its user:password file.")
@click.option("--front", default=None, metavar="URL",
              help="serve runs in front of the official module moved to URL (docs/front.md; see `lmcz-fast serve "
                   "--help`).")
@click.option("--front-credentials-file", default=None, metavar="FILE",
              help="The official module's user:password (or token) file, for --front.")
@click.option("--front-deadline", default=None, type=click.FloatRange(1, 60000), metavar="MS",
              help="serve's --front-deadline [default: serve's].")
@click.option("--bin", "binary", default=None, metavar="PATH",
              help="The lmcz-fast program the units start [default: this one].")
@click.option("--prefix", default="lmcz-fast", show_default=True, help="Unit name prefix: PREFIX-serve.service ...")
@click.option("--install", "unit_dir", is_flag=False, flag_value="/etc/systemd/system", default=None,
              metavar="[DIR]", help="Write the units into DIR [default DIR: /etc/systemd/system] instead of printing "
                                    "them, with the user and directory files in --sysusers-dir and --tmpfiles-dir.")
@click.option("--sold-keep", default=30, show_default=True, type=click.IntRange(1),
              help="Daily sold-register exports kept by the timer unit (in DB's directory, sold-export/).")
@click.option("--force", is_flag=True,
              help="Write the units even when the service user cannot reach the program under the units' sandbox "
                   "(with a loud warning).")
@click.option("--sysusers-dir", default="/etc/sysusers.d", show_default=True)
@click.option("--tmpfiles-dir", default="/etc/tmpfiles.d", show_default=True)
def systemd(db: str, user: str, group: str | None, audit_dir: str | None, host: str, port: int,
            password_file: str | None, feed_url: str | None, public_key: str, every: str, nice: int,
            replicate_source: str | None, source_credentials_file: str | None, replicate_mapping: str | None,
            proxy: str | None, proxy_auth_file: str | None,
            front: str | None, front_credentials_file: str | None, front_deadline: float | None,
            binary: str | None, prefix: str, unit_dir: str | None,
            sold_keep: int, force: bool, sysusers_dir: str, tmpfiles_dir: str,
            organisations_file: str | None = None) -> None:
    """Print (or --install) systemd units that run `serve` and `sync` (or `replicate`) as a hardened service.

    \b
    With them: a timer unit that exports the sold register daily (`sold export --to-dir DB's directory/sold-export
    --keep N`), the sysusers.d file that makes the service user and the tmpfiles.d file for its directories.

    \b
    The program the units start (and its interpreter) must be reachable by the service user under the units'
    sandbox: not under /home or /root (ProtectHome=yes), not under /tmp (PrivateTmp=yes), every directory on
    the way searchable by the user. Otherwise the units are refused (--force writes them with a warning): install
    into a venv under /opt/lmcz-fast (docs/operations.md).

    The units run under a dedicated user with the file system read-only except the store's directory and the
    audit log, no capabilities, private /tmp, only IP and Unix sockets, and restart when the process dies.
    Examples:
      /opt/lmcz-fast/bin/lmcz-fast systemd            # print the units and the user/directory files
      /opt/lmcz-fast/bin/lmcz-fast systemd --feed https://feed.example/ --install
      /opt/lmcz-fast/bin/lmcz-fast systemd --organisations /etc/lmcz-fast/organisations.toml
      /opt/lmcz-fast/bin/lmcz-fast systemd --replicate-source http://127.0.0.1:5984 --source-credentials-file /etc/lmcz-fast/couch.cred
      /opt/lmcz-fast/bin/lmcz-fast systemd --replicate-source http://127.0.0.1:5984 --replicate-mapping /etc/lmcz-fast/mapping.toml
      /opt/lmcz-fast/bin/lmcz-fast systemd --front http://127.0.0.1:5996 --front-credentials-file /etc/lmcz-fast/lm-admin
      systemd-sysusers && systemd-tmpfiles --create
      systemctl daemon-reload && systemctl enable --now lmcz-fast-sync.service lmcz-fast-serve.service lmcz-fast-sold-export.timer
    """
    binary = binary or _this_program()
    if binary is None:
        raise click.UsageError("cannot tell where the lmcz-fast program is: give --bin PATH")
    options = UnitOptions(binary=os.path.abspath(binary), db=db, user=user, group=group, audit_dir=audit_dir,
                          host=host, port=port, password_file=password_file, feed_url=feed_url,
                          public_key=public_key, every=every, nice=nice, proxy=proxy,
                          proxy_auth_file=proxy_auth_file, prefix=prefix, replicate_source=replicate_source,
                          source_credentials_file=source_credentials_file, replicate_mapping=replicate_mapping,
                          sold_keep=sold_keep, front=front,
                          front_credentials_file=front_credentials_file, front_deadline=front_deadline,
                          organisations_file=organisations_file)
    try:
        files = render(options)
    except ValueError as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(EXIT_USAGE)
    if options.replicate_mapping:
        try:        # what `replicate --mapping FILE` would refuse at every start of the unit, refused now
            read_mapping(options.replicate_mapping)
        except MappingError as exc:
            raise click.UsageError(str(exc)) from None
    problems, unreadable = reachability_problems(options), readability_problems(options)
    if problems or unreadable:
        lines = "\n".join(f"  - {p}" for p in problems + unreadable)
        advice = "the service user could not start these units:\n" + lines
        if problems:
            advice += ("\n  Install lmcz-fast where the service can run it, e.g. a venv under /opt/lmcz-fast "
                       "(docs/operations.md), and give --bin /opt/lmcz-fast/bin/lmcz-fast")
        if unreadable:
            advice += ("\n  Keep the files the units read where the service user can read them, e.g. "
                       "/etc/lmcz-fast/mapping.toml, mode 0644 or 0640 with group the service user's")
        if not force:
            click.secho(f"error: {advice}\n  (--force writes the units anyway)", fg="red", err=True)
            sys.exit(EXIT_USAGE)
        click.secho(f"WARNING: --force: {advice}\n  THE UNITS BELOW WILL FAIL TO START AS THEY ARE.", fg="red",
                    bold=True, err=True)
    if unit_dir is None:
        for name, text in files.items():
            click.echo(f"# ---- {name}")
            click.echo(text)
        return
    try:
        written = install(files, unit_dir, sysusers_dir, tmpfiles_dir)
    except OSError as exc:
        click.secho(f"error: cannot write {exc.filename}: {exc.strerror}", fg="red", err=True)
        sys.exit(EXIT_USAGE)
    for path in written:
        click.echo(f"wrote {path}")
    serve_unit, sync_unit = options.unit_name("serve"), options.unit_name(options.updater)
    timer = options.unit_name("sold-export-timer")
    click.echo("next: systemd-sysusers && systemd-tmpfiles --create && systemctl daemon-reload && "
               f"systemctl enable --now {sync_unit} {serve_unit} {timer}")


def register(group: click.Group) -> None:
    group.add_command(systemd)
