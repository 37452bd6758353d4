"""`lmcz-fast compact`: give a store's file back the pages it no longer uses."""

from __future__ import annotations

import json
import os
import sys

import click

from ..store.compaction import StoreBusyError, compact as compact_store, space
from ..store.errors import StoreError

EXIT_STORE = 4
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


def register(group: click.Group) -> None:
    group.add_command(compact)
