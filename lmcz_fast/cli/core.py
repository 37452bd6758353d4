"""Commands over the store itself: load, lookup, info, delta, demo."""

from __future__ import annotations

import datetime
import json
import os
import sys
from collections.abc import Iterator
from typing import Any

import click

from .._codes import CodeError
from ..progress import announce_after, estimate_lines, line_counter
from ..store import Blocklist, Change, LoadError, NoListError, StoreError, Verdict, VersionError, compact_if_worth
from ..store import guard as shrink_guard
from .common import EXIT_BLOCKED, EXIT_INVALID, EXIT_OK, fail, print_errors
from .progress import progress_shown



@click.command()
@click.argument("db", type=click.Path(file_okay=False))
@click.argument("sources", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--replace/--add", default=True, show_default=True,
              help="Replace the whole list with SOURCES (a new full version) or add them to what is there.")
@click.option("--strict", is_flag=True, help="Refuse the whole load if any line is bad (nothing changes).")
@click.option("--version", "version", type=int, default=None,
              help="Version number to give the result (default: current + 1). Must move forward.")
@click.option("--authority", default=None, help="Who blocked these codes, recorded with every code loaded.")
@click.option("--reason", default=None, help="Why they are blocked, recorded with every code loaded.")
@click.option("--accept-shrink", is_flag=True,
              help="Accept a replacement that shrinks the list by more than the shrink guard's limit (logged; "
                   "`lmcz-fast guard --help`).")
def load(db: str, sources: tuple[str, ...], replace: bool, strict: bool, version: int | None,
         authority: str | None, reason: str | None, accept_shrink: bool) -> None:
    """Load blocked codes from SOURCES into the database DB (created if missing).

    \b
    SOURCES are files of one of these kinds, optionally gzip-compressed:
      plain text   one scan, CIS or 14-digit GTIN (a whole product) per line; '#' starts a comment
      CSV          a header naming a 'cis' (or 'code', 'km') column; optional 'gtin', 'authority',
                   'reason', 'since' columns; ',' ';' or tab separated
    Raw scans (with crypto tails, lost GS, scanner prefixes) are cut to their identity. Bad lines are
    counted and the first ones shown with their line numbers; --strict refuses the load instead. On a terminal a
    progress bar shows the lines read, their rate and the time left; logs and pipes get none.

    \b
    Exit status:
      0  loaded
      3  refused: --strict and bad lines (nothing changed)
      4  store error, e.g. disk full or map size reached, or a replacement the shrink guard refused (nothing
         changed; the old version is still served)
    \b
    Example:
      lmcz-fast load store.db blocked-2026-11-23.csv.gz --strict
    """
    block = {k: v for k, v in (("authority", authority), ("reason", reason)) if v}
    first = not os.path.exists(os.path.join(db, "data.mdb"))
    try:
        # A first load builds the store beside DB and moves it in only when the load succeeded: a refused load
        # leaves no (empty) database behind.
        store = Blocklist.building(db) if first else Blocklist.open(db, readonly=False)
        with progress_shown() as bar, store as bl:
            if accept_shrink:
                shrink_guard.accept(bl, "load --accept-shrink")
            counter = None
            inputs: Any = list(sources)
            if bar is not None:
                counter = line_counter(bar, "reading", estimate_lines(sources))
                inputs = announce_after(inputs, bar, "writing the database")
            report = bl.load(inputs, replace=replace, strict=strict, version=version,
                             block=block or None, progress=counter)
    except LoadError as exc:
        print_errors(exc.report)
        fail(f"{exc}" + ("; no database was created" if first else ""), EXIT_INVALID)
    except (StoreError, VersionError) as exc:
        fail(str(exc) + ("; no database was created" if first else ""))
    print_errors(report)
    click.echo(f"loaded {db}: {report.summary()}")
    compacted = compact_if_worth(db)      # a full load leaves ~3x the list in the file: give it back when alone
    if compacted is not None:
        click.echo(compacted.summary())
    try:
        with Blocklist.open(db) as bl:
            info = bl.info()
    except StoreError as exc:
        fail(str(exc))
    click.echo(f"database size {info['used_bytes'] / 1e6:.1f} MB, prefilter {info['prefilter_bytes'] / 1e6:.2f} MB")


def _verdict_dict(verdict: Verdict) -> dict[str, Any]:
    block = verdict.block
    return {
        "cis": verdict.cis,
        "blocked": verdict.blocked,
        "gtin": verdict.gtin,
        "block": None if block is None else {
            "scope": block.scope, "authority": block.authority, "reason": block.reason,
            "since": block.since, "source": block.source,
        },
        "db_version": verdict.db_version,
        "db_age": verdict.db_age,
        "instance_id": verdict.instance_id,
        "mrp": verdict.mrp,
        "smp": verdict.smp,
        "grey_gtin": verdict.grey_gtin,
    }


def _codes_from(codes: tuple[str, ...]) -> Iterator[str]:
    if codes:
        yield from codes
        return
    for line in sys.stdin:
        line = line.rstrip("\r\n")
        if line.strip():
            yield line


@click.command()
@click.argument("db", type=click.Path(exists=True, file_okay=False))
@click.argument("codes", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per code (JSON lines).")
def lookup(db: str, codes: tuple[str, ...], as_json: bool) -> None:
    """Check CODES (or stdin, one per line) against the database DB.

    Codes may be raw scans as a till sends them (GS as 0x1D, lost GS, ']d2' prefix, Russian layout). GS may be
    written as text: <GS>, {GS}, [GS], \\x1d, \\u001d, %1D (docs/codes.md). A scan that reads more than one way
    is blocked when any reading is.

    \b
    Exit status:
      0  every code may be sold
      1  at least one code is blocked
      3  no code is blocked, but at least one is not a valid marking code
      4  the database cannot be read, or holds no list yet ("no list loaded": never loaded or synced)
    \b
    Examples:
      lmcz-fast lookup store.db "010460537036288621CfG9VcmbLzUky<GS>93Ab12"
      printf '%s\\n' "$SCAN1" "$SCAN2" | lmcz-fast lookup store.db --json
    """
    blocked = invalid = False
    try:
        bl = Blocklist.open(db)
    except StoreError as exc:
        fail(str(exc))
    with bl:
        if bl.status().state == "empty":
            fail(f"no list loaded: {db} has never held a blocklist; nothing can be checked against it "
                  f"(`lmcz-fast load {db} FILE` or `lmcz-fast sync {db} --feed URL --public-key KEY` first)")
        for raw in _codes_from(codes):
            try:
                verdict = bl.check(raw)
            except NoListError as exc:
                fail(str(exc))
            except CodeError as exc:
                invalid = True
                if as_json:
                    click.echo(json.dumps({"code": raw, "error": exc.reason, "message": str(exc)},
                                          ensure_ascii=False))
                else:
                    click.echo(f"INVALID  {raw!r}: {exc}")
                continue
            blocked |= verdict.blocked
            if as_json:
                click.echo(json.dumps(_verdict_dict(verdict), ensure_ascii=False))
            elif verdict.blocked:
                details = verdict.block
                why = ", ".join(x for x in (details.scope if details else None,
                                            details.authority if details else None,
                                            details.reason if details else None) if x)
                click.echo(f"BLOCKED  {verdict.cis}  ({why}; db v{verdict.db_version})")
            else:
                click.echo(f"ok       {verdict.cis}  (db v{verdict.db_version})")
    sys.exit(EXIT_BLOCKED if blocked else EXIT_INVALID if invalid else EXIT_OK)


def _local_time(ts: float) -> str:
    """A Unix time as this machine's local time with its UTC offset, and the Unix time itself."""
    stamp = datetime.datetime.fromtimestamp(ts, tz=datetime.timezone.utc).astimezone()
    return f"{stamp.isoformat(sep=' ', timespec='seconds')} ({int(ts)})"


@click.command()
@click.argument("db", type=click.Path(exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the fields as one JSON object.")
def info(db: str, as_json: bool) -> None:
    """Show the version, counts, sizes, times and freshness of the database DB.

    Times are local, with their offset from UTC (`2026-11-23 14:05:09+03:00`); --json gives Unix seconds.
    `state` and `expires_at` (when offline answers stop: the last sync or load plus the offline limit) are
    what `lmcz-fast status` and `serve` report too; a store that never held a list says "no list loaded".

    \b
    Examples:
      lmcz-fast info store.db
      lmcz-fast info store.db --json
    """
    try:
        with Blocklist.open(db) as bl:
            fields = bl.info()
    except StoreError as exc:
        fail(str(exc))
    if as_json:
        click.echo(json.dumps(fields, ensure_ascii=False, indent=2))
        return
    for name in sorted(fields):
        value = fields[name]
        if name == "state" and value == "empty":
            value = "empty (no list loaded)"
        elif name == "expires_at" and value is None:
            value = "- (no list loaded: no offline answers at all)"
        elif name == "clock_behind":
            if value is None:
                continue
            value = (f"{value:.0f} s: this machine's clock reads before the store's last sync or load; nothing is "
                     "aged by it (state expired) until it is right")
        elif name.endswith("_at") and isinstance(value, (int, float)):
            value = _local_time(value)
        click.echo(f"{name:>18}: {value}")


@click.command()
@click.argument("db", type=click.Path(exists=True, file_okay=False))
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--to-version", type=int, default=None, help="Version after the delta (default: current + 1).")
@click.option("--from-version", type=int, default=None,
              help="Refuse unless the database is at exactly this version (guards against gaps).")
def delta(db: str, file: str, to_version: int | None, from_version: int | None) -> None:
    """Apply a delta FILE to DB in one atomic transaction.

    \b
    FILE (optionally gzip; a feed's delta file works as is) has one change per line:
      +CODE   block a code (scan or CIS)      -CODE   unblock it
      +GTIN   block a whole product (14 digits)  -GTIN   unblock it
      +@min_price GTIN KOPECKS   set a minimum price (also @group_min_price PG KOPECKS)
      -@min_price GTIN KOPECKS   delete it (only if it holds that price)
      +@grey_gtin GTIN           add a GTIN to the grey list       -@grey_gtin GTIN   take it out
    Readers in other processes keep answering and see the new version atomically. A bad line refuses the
    whole delta and changes nothing; a delta that changes nothing keeps the version.

    \b
    Exit status: 0 applied (or already there, or nothing to change), 3 bad delta file or code, 4 store error
    (version gap, disk full, map size reached); on 3 and 4 nothing changed.
    \b
    Examples:
      printf "+%s\\n" "$CIS" > changes.txt && lmcz-fast delta store.db changes.txt
      lmcz-fast delta store.db more-changes.txt --from-version 2    # refused unless the store is at version 2
    """
    from ..feed import FeedError, read_delta

    try:
        changes = read_delta(file)
    except FeedError as exc:
        fail(f"bad delta file, nothing changed: {exc}", EXIT_INVALID)
    try:
        with Blocklist.open(db, readonly=False) as bl:
            start = from_version if from_version is not None else changes.from_version
            target = to_version if to_version is not None else changes.to_version
            if target is None:
                target = bl.get_meta("version") + 1
            report = bl.apply(Change(add=changes.add, remove=changes.remove, add_gtins=changes.add_gtins,
                                     remove_gtins=changes.remove_gtins, add_records=changes.add_records,
                                     remove_records=changes.remove_records, to_version=target, from_version=start))
    except CodeError as exc:
        fail(f"bad code in the delta, nothing changed: {exc}", EXIT_INVALID)
    except (StoreError, VersionError) as exc:
        fail(str(exc))
    if not report.applied:
        if report.to_version == target:
            click.echo(f"already at version {report.to_version}; nothing to do")
        else:
            click.echo(f"nothing changed: the codes it adds are blocked already and those it removes are not; "
                       f"the store stays at version {report.to_version}")
        return
    tables = (f", +{report.records_added} -{report.records_removed} table records"
              if report.records_added or report.records_removed else "")
    click.echo(f"version {report.from_version} -> {report.to_version}: +{report.added} -{report.removed} codes, "
               f"+{report.gtins_added} -{report.gtins_removed} GTINs{tables} in {report.seconds * 1000:.1f} ms")


def register(group: click.Group) -> None:
    for command in (load, lookup, info, delta):
        group.add_command(command)
