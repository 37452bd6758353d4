"""`serve`'s options for what the front watches (docs/front.md): the cross-check, the sold register's outbox and
the watchdog of the official module; one decorator and the `WatchOptions` they make (the forwarding options are in
front.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:   # the front (asyncio) loads when `serve` runs
    from ..front.watch import WatchOptions

F = TypeVar("F", bound=Callable[..., Any])
NAMES = ("front_poll", "front_reinit_every", "front_database", "no_front_crosscheck", "front_retry_max")


def front_watch_options(command: F) -> F:
    """Add the watch's options to a click command (they arrive with the front's, popped by `watch_options`)."""
    options = [
        click.option("--front-poll", type=click.FloatRange(0), default=10.0, show_default=True, metavar="S",
                     help="Seconds between two polls of the official module's status and database (0: no "
                          "watchdog)."),
        click.option("--front-reinit-every", type=click.FloatRange(0), default=300.0, show_default=True, metavar="S",
                     help="On the module's sync_error, call its init again with the kept participant token at most "
                          "this often."),
        click.option("--front-database", metavar="URL", default=None,
                     help="Root URL of the official module's database, watched for life [default: the module's "
                          "host on CouchDB's port 5984]; `none` to not watch it."),
        click.option("--no-front-crosscheck", is_flag=True,
                     help="Do not check the official answers here too (the cross-check is on by default)."),
        click.option("--front-retry-max", type=click.FloatRange(0.1), default=30.0, show_default=True, metavar="S",
                     help="Longest pause between two tries of a sale waiting for the official module."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def watch_options(values: dict[str, Any]) -> WatchOptions:
    """The `WatchOptions` of the watch's options, popped from `values` (serve's front options)."""
    from ..front.watch import WatchOptions

    poll, reinit, database, no_cross, retry_max = (values.pop(name) for name in NAMES)
    if values.get("front") is None:
        given = [option for option, value, default in (
            ("--front-poll", poll, 10.0), ("--front-reinit-every", reinit, 300.0), ("--front-database", database, None),
            ("--no-front-crosscheck", no_cross, False), ("--front-retry-max", retry_max, 30.0)) if value != default]
        if given:
            raise click.UsageError(f"{given[0]} is given without --front URL")
    return WatchOptions(crosscheck=not no_cross, poll_every=poll, reinit_every=reinit,
                        database_url=None if database == "none" else (database or ""), retry_max=retry_max)
