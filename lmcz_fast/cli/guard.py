"""`lmcz-fast guard`: the shrink guard of a store (store/guard.py): its state, its limit, an operator's acceptance."""

from __future__ import annotations

import json

import click

from ..store import Blocklist, StoreError
from ..store import guard as shrink_guard
from .feed import EXIT_STORE, _fail, _setup_logging


@click.command()
@click.argument("db", type=click.Path(exists=True, file_okay=False))
@click.option("--accept", is_flag=True, help="Let the next full replacement through whatever it shrinks (one "
                                             "shot: the next full replacement consumes it; logged).")
@click.option("--note", default=None, help="With --accept: why (kept with the acceptance and logged).")
@click.option("--limit", type=click.FloatRange(0, 100), default=None,
              help="Set the share, in percent, by which a full replacement may shrink the list (default 20; "
                   "100 turns the guard off for this store).")
@click.option("--json", "as_json", is_flag=True, help="Print the guard's state as JSON.")
def guard(db: str, accept: bool, note: str | None, limit: float | None, as_json: bool) -> None:
    """The shrink guard of DB: a full replacement (a full re-replication, `load --replace`, a feed snapshot) that
    would shrink the blocked codes and GTINs, or the table records, by more than the limit is refused; the old
    list keeps serving and every surface says why, until an operator accepts it here.

    \b
    Examples:
      lmcz-fast guard store.db                        # the limit, a standing refusal, a pending acceptance
      lmcz-fast guard store.db --accept --note "CRPT confirmed the mass unblocking of 2026-12-07"
      lmcz-fast guard store.db --limit 30
    Exit codes: 0 nothing held (or an acceptance was recorded), 1 a refusal stands, 4 store error.
    """
    _setup_logging(False)
    if note is not None and not accept:
        raise click.UsageError("--note goes with --accept")
    try:
        with Blocklist.open(db, readonly=not (accept or limit is not None)) as bl:
            if limit is not None:
                shrink_guard.set_limit(bl, limit / 100)
            if accept:
                shrink_guard.accept(bl, note)
            state = shrink_guard.state(bl)
    except StoreError as exc:
        _fail(str(exc), EXIT_STORE)
    if as_json:
        click.echo(json.dumps(state, indent=1))
    else:
        click.echo(f"limit: a full replacement may shrink the list by at most {state['limit']:.0%}")
        if state["held"] is not None:
            click.secho(f"HELD: {shrink_guard.describe(state['held'])}", fg="red", bold=True)
        else:
            click.echo("held: nothing (no full replacement refused since the last one that went through)")
        if state["accepted"] is not None:
            click.echo(f"accepted: the next full replacement goes through whatever it shrinks (by "
                       f"{state['accepted'].get('by')}" + (f": {state['accepted']['note']}"
                                                           if state["accepted"].get("note") else "") + ")")
    if state["held"] is not None and not accept:
        raise SystemExit(1)


def register(group: click.Group) -> None:
    group.add_command(guard)
