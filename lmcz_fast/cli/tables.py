"""Commands over the store's tables beside the blocked codes: minimum prices and grey GTINs."""

from __future__ import annotations

import json
import os

import click

from ..store import Blocklist, LoadError, StoreError, VersionError
from .common import EXIT_INVALID, EXIT_STORE, fail, print_errors


def _open_writable(db: str) -> Blocklist:
    try:
        if os.path.exists(os.path.join(db, "data.mdb")):
            return Blocklist.open(db, readonly=False)
        return Blocklist.create(db)
    except StoreError as exc:
        fail(str(exc))
        raise  # unreachable: fail exits


def _load(db: str, sources: tuple[str, ...], version: int | None, what: str) -> None:
    with _open_writable(db) as bl:
        try:
            if what == "prices":
                report = bl.load_prices(list(sources), version=version)
            else:
                report = bl.load_grey(list(sources), version=version)
        except LoadError as exc:
            print_errors(exc.report)
            fail(str(exc), EXIT_INVALID)
        except (StoreError, VersionError) as exc:
            fail(str(exc), EXIT_STORE)
    click.echo(f"loaded {db}: {report.summary()}")


def _list(db: str, kinds: tuple[str, ...], as_json: bool) -> None:
    try:
        with Blocklist.open(db) as bl:
            records = [r for r in bl.iter_records() if r.split()[0] in kinds]
    except StoreError as exc:
        fail(str(exc))
    for text in records:
        kind, *rest = text.split()
        if as_json:
            row: dict[str, object] = {"kind": kind}
            if kind == "min_price":
                row.update(gtin=rest[0], price=int(rest[1]))
            elif kind == "group_min_price":
                row.update(pg=int(rest[0]), price=int(rest[1]))
            else:
                row.update(gtin=rest[0])
            click.echo(json.dumps(row))
        elif kind == "grey_gtin":
            click.echo(rest[0])
        else:
            click.echo(f"{rest[0] + ',' if kind == 'min_price' else ',' + rest[0]},{rest[1]}")


@click.group()
def prices() -> None:
    """The minimum-price table: the least a product may be sold for (kopecks), per GTIN or per product group.

    \b
    Checks answer it as `smp`: the GTIN's own entry, else its product group's (the group a till sends as
    `pg`; a 29-character tobacco pack is group 3 by itself). It travels through the feed like the codes
    (lmcz-fast publish --prices FILE).
    """


@prices.command("load")
@click.argument("db", type=click.Path(file_okay=False))
@click.argument("sources", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--version", "version", type=int, default=None,
              help="Version number to give the result (default: current + 1). Must move forward.")
def prices_load(db: str, sources: tuple[str, ...], version: int | None) -> None:
    """Replace the minimum-price table of DB (created if missing) with the rows of SOURCES.

    \b
    SOURCES are CSV files (optionally gzip) with a header naming a 'price' column (kopecks: a whole,
    non-negative number) and a 'gtin' and/or 'pg' column (a product group id or name: 3 or tobacco);
    each row fills 'gtin' or 'pg'. '#' starts a comment line. Any bad row refuses the whole file and
    nothing changes (exit 3). The grey list and the blocked codes are kept.
    \b
    Example:
      printf 'gtin,pg,price\\n04600439931256,,14630\\n,tobacco,12000\\n' > min-prices.csv
      lmcz-fast prices load store.db min-prices.csv
    """
    _load(db, sources, version, "prices")


@prices.command("list")
@click.argument("db", type=click.Path(exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per entry (JSON lines).")
def prices_list(db: str, as_json: bool) -> None:
    """Print the minimum-price table of DB as 'gtin,pg,price' rows (loadable again by `prices load`)."""
    if not as_json:
        click.echo("gtin,pg,price")
    _list(db, ("min_price", "group_min_price"), as_json)


@click.group()
def grey() -> None:
    """The grey list: GTINs of the "grey zone" (goods the national catalogue does not describe).

    \b
    Checks answer it as `grey_gtin` (`isGreyGtin`); a blocked code of a grey GTIN may be sold only after an
    online check says so. It travels through the feed like the codes (lmcz-fast publish --grey FILE).
    """


@grey.command("load")
@click.argument("db", type=click.Path(file_okay=False))
@click.argument("sources", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--version", "version", type=int, default=None,
              help="Version number to give the result (default: current + 1). Must move forward.")
def grey_load(db: str, sources: tuple[str, ...], version: int | None) -> None:
    """Replace the grey list of DB (created if missing) with the GTINs in SOURCES.

    \b
    SOURCES hold one 14-digit GTIN per line (or a CSV with a 'gtin' column), optionally gzip; '#' starts a
    comment. A bad GTIN refuses the whole file and nothing changes (exit 3). Prices and codes are kept.
    \b
    Example:
      printf '04600439931256\\n' > grey.txt
      lmcz-fast grey load store.db grey.txt
    """
    _load(db, sources, version, "grey")


@grey.command("list")
@click.argument("db", type=click.Path(exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per GTIN (JSON lines).")
def grey_list(db: str, as_json: bool) -> None:
    """Print the grey list of DB, one GTIN per line (loadable again by `grey load`)."""
    _list(db, ("grey_gtin",), as_json)


def register(group: click.Group) -> None:
    group.add_command(prices)
    group.add_command(grey)

