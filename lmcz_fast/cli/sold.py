"""Commands over the sold register: `sold export`, `sold import`, `sold list`, `sold record`, `sold return`."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import time
from collections.abc import Callable
from typing import TextIO, TypeVar

import click

from .._codes import CodeError
from ..store import Blocklist, SoldRegisterError, StoreError
from .common import EXIT_INVALID, fail

_T = TypeVar("_T")


def _open(db: str) -> Blocklist:
    if not os.path.exists(os.path.join(db, "data.mdb")):
        fail(f"no database at {db}")
    try:
        return Blocklist.open(db)
    except StoreError as exc:
        fail(str(exc))
        raise


def _change(db: str, codes: tuple[str, ...], change: Callable[[Blocklist, list[str]], _T], nothing: str) -> _T:
    """`change` (a sale or a return) applied to CODES in the register of DB; a code that is not a marking code
    changes nothing and exits 3, naming it (`nothing` says what did not happen)."""
    with _open(db) as bl:
        try:
            return change(bl, list(codes))
        except CodeError as exc:
            fail(f"code {getattr(exc, 'index', 0) + 1} is not a marking code: {exc}; {nothing}", EXIT_INVALID)
            raise


@click.group()
def sold() -> None:
    """The sold register: codes this store sold, refused as `sold` at every till for 30 days.

    \b
    Tills report sales through `serve` (POST /api/v2/cis/sell); these commands back the register up, move it to
    new hardware, and look into it.
      lmcz-fast sold export store.db -o sold.jsonl       # a backup, JSON lines
      lmcz-fast sold import new.db sold.jsonl --force    # the store moved: the new database is a new instance
      lmcz-fast sold list store.db --limit 20            # the oldest sales still remembered
    """


@sold.command("export")
@click.argument("db", type=click.Path(file_okay=False))
@click.option("-o", "--output", type=click.File("w", encoding="utf-8"), default="-", show_default=True,
              help="Write here instead of stdout.")
@click.option("--to-dir", "to_dir", type=click.Path(file_okay=False), default=None,
              help="Write DIR/sold-YYYY-MM-DD.jsonl (UTC date; written to a temporary name and renamed, so a "
                   "file there is always whole) instead of --output; with --keep, a daily backup.")
@click.option("--keep", type=click.IntRange(1), default=None,
              help="With --to-dir: keep the newest KEEP exports there and delete older ones.")
def sold_export(db: str, output: TextIO, to_dir: str | None, keep: int | None) -> None:
    """Write the register of DB as JSON lines: a header naming its instance, then one sale per line.

    \b
    Examples:
      lmcz-fast sold export store.db -o sold.jsonl
      lmcz-fast sold export store.db | gzip > sold.jsonl.gz
      lmcz-fast sold export store.db --to-dir sold-backups --keep 30     # what the daily timer unit runs
    """
    if keep is not None and to_dir is None:
        raise click.UsageError("--keep goes with --to-dir")
    target = None
    if to_dir is not None:
        os.makedirs(to_dir, exist_ok=True)
        target = os.path.join(to_dir, time.strftime("sold-%Y-%m-%d.jsonl", time.gmtime()))
        output = open(target + ".part", "w", encoding="utf-8")  # noqa: SIM115 (closed below)
    try:
        with _open(db) as bl:
            count = -1
            for line in bl.sold.export_lines():
                output.write(line + "\n")
                count += 1
        output.flush()
        if target is not None:
            os.fsync(output.fileno())
    except BaseException:
        if target is not None:
            output.close()
            with contextlib.suppress(OSError):
                os.unlink(target + ".part")
        raise
    if target is not None:
        output.close()
        os.replace(target + ".part", target)
        click.echo(f"{count} sold codes exported to {target}", err=True)
        if keep is not None:
            old = sorted(name for name in os.listdir(to_dir)
                         if name.startswith("sold-") and name.endswith(".jsonl"))[:-keep]
            for name in old:
                os.unlink(os.path.join(to_dir, name))
            if old:
                click.echo(f"{len(old)} older exports deleted (--keep {keep})", err=True)
        return
    click.echo(f"{count} sold codes exported", err=True)


@sold.command("import")
@click.argument("db", type=click.Path(file_okay=False))
@click.argument("source", type=click.File("r", encoding="utf-8"))
@click.option("--force", is_flag=True,
              help="Accept an export of another instance (the store moved to new hardware; never another store's).")
@click.option("--replace", is_flag=True, help="Empty the register first (default: merge, the later sale wins).")
def sold_import(db: str, source: TextIO, force: bool, replace: bool) -> None:
    """Load an export made by `sold export` into the register of DB, in one durable transaction.

    The whole file is checked first; a damaged file, or an export of another instance without --force, changes
    nothing. Sales already older than the register's expiry are skipped.

    \b
    Examples:
      lmcz-fast sold import store.db sold.jsonl
      lmcz-fast sold import new.db sold.jsonl --force
    """
    with _open(db) as bl:
        try:
            written = bl.sold.import_lines(source, force=force, replace=replace)
        except SoldRegisterError as exc:
            fail(f"{exc}; nothing changed", EXIT_INVALID)
        click.echo(f"{written} sold codes imported", err=True)


@sold.command("list")
@click.argument("db", type=click.Path(file_okay=False))
@click.option("--skip", default=0, show_default=True, type=click.IntRange(0), help="Leave out the oldest N.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(0, 1000), help="Show at most N.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def sold_list(db: str, skip: int, limit: int, as_json: bool) -> None:
    """Show sales in the register of DB, oldest first: time (UTC), CIS, and the INN of the organisation that sold
    it when `serve --organisations` recorded one.

    \b
    Example:
      lmcz-fast sold list store.db --skip 100 --limit 50
    """
    with _open(db) as bl:
        total, entries = bl.sold.page(skip, limit)
    for entry in entries:
        if as_json:
            item = {"cis": entry.cis, "soldAt": entry.sold_at_ms}
            if entry.organisation is not None:      # serve --organisations: the INN of who sold it
                item["organisation"] = entry.organisation
            click.echo(json.dumps(item, ensure_ascii=False))
        else:
            when = datetime.datetime.fromtimestamp(entry.sold_at_ms / 1000, datetime.timezone.utc)
            org = "" if entry.organisation is None else f"  (INN {entry.organisation})"
            click.echo(f"{when:%Y-%m-%dT%H:%M:%SZ}  {entry.cis}{org}")
    click.echo(f"{len(entries)} of {total} sold codes", err=True)


@sold.command("record")
@click.argument("db", type=click.Path(file_okay=False))
@click.argument("codes", nargs=-1, required=True)
def sold_record(db: str, codes: tuple[str, ...]) -> None:
    """Record sales of CODES (scans in any form a till sends), durable on return; a bad code records none.

    \b
    Example:
      lmcz-fast sold record store.db '0104600000000008215abcdef'
    """
    entries = _change(db, codes, lambda bl, scans: bl.record_sold(scans), "nothing recorded")
    click.echo(f"{len(entries)} sales recorded", err=True)


@sold.command("return")
@click.argument("db", type=click.Path(file_okay=False))
@click.argument("codes", nargs=-1, required=True)
def sold_return(db: str, codes: tuple[str, ...]) -> None:
    """Take returned CODES out of the register of DB.

    \b
    Example:
      lmcz-fast sold return store.db '0104600000000008215abcdef'
    """
    found = _change(db, codes, lambda bl, scans: bl.return_sold(scans), "nothing changed")
    click.echo(f"{sum(found)} of {len(found)} codes were in the register and are removed", err=True)


def register(group: click.Group) -> None:
    group.add_command(sold)
