"""Store maintenance with the services stopped: `compact` (the file back to the pages in use) and `adopt` (a
store loaded from files moves to a feed)."""

from __future__ import annotations

import json
import os
import sys

import click

from ..feed import FeedError
from ..store import StoreBusyError, StoreError, space
from ..store import compact as compact_store
from .common import EXIT_FEED, EXIT_STORE
from .upstream import proxy_config, proxy_options

#: The store is in use by another process (compaction needs it alone).
EXIT_BUSY = 6


@click.command()
@click.argument("db", type=click.Path(file_okay=False))
@click.option("--check", "only_check", is_flag=True,
              help="Only print the file's size and the size of what the store holds (nothing is changed).")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def compact(db: str, only_check: bool, as_json: bool) -> None:
    """Rewrite the store DB's file with only the pages in use (codes, tables, sold register, metadata).

    \b
    LMDB never shrinks its file and keeps the two latest versions valid, so repeated full loads leave a file of
    ~3x the list; later writes reuse that room, but the file keeps its size. `load` compacts by itself when the
    file is over 1.5x what the store holds and it has the store to itself. Compacting needs the store to itself:
    stop serve and sync first (it refuses, exit 6, when another process has the store open).
    Exit status: 0 compacted (or --check), 4 store error, 6 the store is in use.
    \b
    Examples:
      lmcz-fast compact store.db --check
      lmcz-fast compact store.db
    """
    if not os.path.exists(os.path.join(db, "data.mdb")):
        click.secho(f"error: no database at {db}", fg="red", err=True)
        sys.exit(EXIT_STORE)
    try:
        if only_check:
            size, live = space(db)
            if as_json:
                click.echo(json.dumps({"path": db, "file_bytes": size, "live_bytes": live}))
            else:
                click.echo(f"{db}: file {size / 2**20:.1f} MiB, in use {live / 2**20:.1f} MiB "
                           f"({size / max(live, 1):.2f}x)")
            return
        report = compact_store(db)
    except StoreBusyError as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(EXIT_BUSY)
    except StoreError as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(EXIT_STORE)
    if as_json:
        click.echo(json.dumps({"path": db, "before_bytes": report.before, "after_bytes": report.after,
                               "seconds": round(report.seconds, 3)}))
    else:
        click.echo(report.summary())



@click.command()
@click.argument("db", type=click.Path(file_okay=False))
@click.option("--feed", "feed_url", required=True, metavar="URL", help="The feed the store will follow.")
@click.option("--public-key", "public_key", required=True, type=click.Path(exists=True, dir_okay=False),
              help="The feed's public key file.")
@proxy_options
def adopt(db: str, feed_url: str, public_key: str, proxy_url: str | None, proxy_auth_file: str | None) -> None:
    """Move the store DB, loaded from files until now, to a signed feed: its list becomes the feed's snapshot.

    
    `sync` refuses a feed whose version is behind the store's own count ("the feed offers version 2; the store
    already holds 3"). This builds the store anew from the feed's snapshot (every check of `sync`), under the
    same instance id, carries over the sold register (its codes stay refused), its retention and the grey-list
    switch, and puts it in DB's place; the old store is kept beside it as DB.before-adopt-TIME. The audit log
    (DB.audit) is not touched. Stop serve and sync first (exit 6 otherwise); then `sync DB` follows the feed.
    Exit status: 0 adopted, 4 store error, 5 feed error (nothing changed), 6 the store is in use.
    
    Example:
      lmcz-fast adopt store.db --feed https://feed.example/lmcz/ --public-key feed.pub
    """
    from ..feed.adopting import adopt as adopt_feed   # the feed's cryptography and HTTP client: loaded here

    proxy = proxy_config(proxy_url, proxy_auth_file)
    try:
        report = adopt_feed(db, feed_url, public_key, proxy=proxy)
    except StoreBusyError as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(EXIT_BUSY)
    except FeedError as exc:
        click.secho(f"error: {exc}; the store was not changed", fg="red", err=True)
        sys.exit(EXIT_FEED)
    except StoreError as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(EXIT_STORE)
    click.echo(report.summary())


def register(group: click.Group) -> None:
    group.add_command(compact)
    group.add_command(adopt)
