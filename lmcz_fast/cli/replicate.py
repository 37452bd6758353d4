"""`lmcz-fast replicate`: pull the blocklist from a CouchDB-compatible source (the official module's database)."""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from dataclasses import asdict
from typing import Any

import click
from click.core import ParameterSource

from .. import replicate as repl
from ..store import Blocklist, StoreError
from ..store import guard as shrink_guard
from .common import (
    EXIT_FEED,
    EXIT_STORE,
    WRITER_NICE,
    Duration,
    exists,
    fail,
    log,
    lower_priority,
    run_forever,
    setup_logging,
)
from .progress import progress_for

EXIT_SOURCE = EXIT_FEED


def _databases(text: str) -> dict[str, str]:
    """'codes=blocked_cis,gtins=blocked_gtin,prices=min_price' (any subset) -> {kind: name}."""
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        kind, sep, name = part.partition("=")
        if not sep or kind not in repl.KINDS or not name:
            raise click.BadParameter(f"expected KIND=NAME with KIND one of {', '.join(repl.KINDS)}: {part!r}",
                                     param_hint="--databases")
        out[kind] = name
    if not out:
        raise click.BadParameter("no database named", param_hint="--databases")
    return out


#: The options a mapping file replaces: given together with --mapping, they are refused.
_MAPPING_OPTIONS = ("databases", "code_field", "gtin_field", "price_key_field", "price_field")


@click.command()
@click.argument("db", type=click.Path(file_okay=False), required=False)
@click.option("--source", required=True, help="Base URL of the CouchDB-compatible server, without credentials "
                                              "(e.g. http://lm-server.shop.local:5984).")
@click.option("--inspect", "inspect_only", is_flag=True,
              help="Do not replicate: sample the source's databases, propose a mapping (which database and field "
                   "holds codes, GTINs, prices, grey GTINs) with its evidence, and print it or write it (--out).")
@click.option("--db", "db_names", multiple=True, metavar="NAME",
              help="With --inspect: a database to inspect (repeat it); default: all the source lists (_all_dbs).")
@click.option("--sample", "sample_size", type=click.IntRange(1, 10_000), default=200, show_default=True,
              help="With --inspect: documents sampled per database, from four evenly spaced places.")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="With --inspect: write the proposed mapping file here (refused if it exists).")
@click.option("--mapping", "mapping_file", type=click.Path(dir_okay=False), default=None,
              help="A mapping file (TOML; docs/replication.md): databases and fields, instead of --databases and "
                   "the --*-field options. The built-in mapping is the same file's default content.")
@click.option("--databases", default="codes=blocked_cis,gtins=blocked_gtin,prices=min_price", show_default=True,
              help="Which source databases hold which data: KIND=NAME for codes, gtins, prices, grey.")
@click.option("--code-field", default="_id", show_default=True,
              help="Field of a blocked_cis document holding the code (_id: the document id).")
@click.option("--gtin-field", default="_id", show_default=True, help="Field of a blocked_gtin document holding the GTIN.")
@click.option("--price-key-field", default="_id", show_default=True,
              help="Field of a min_price document naming what the price applies to: a GTIN, or a product group "
                   "(pg:N or a number up to 3 digits).")
@click.option("--price-field", default="price", show_default=True,
              help="Field of a min_price document holding the price in kopecks.")
@click.option("--credentials-file", type=click.Path(dir_okay=False), envvar="LMCZ_FAST_SOURCE_CREDENTIALS_FILE",
              help="File whose first line is user:password for the source. Without it: LMCZ_FAST_SOURCE_USER and "
                   "LMCZ_FAST_SOURCE_PASSWORD from the environment, else no credentials.")
@click.option("--proxy", default=None, help="HTTP proxy (http://HOST:PORT) for the source; default: the "
                                            "environment's https_proxy/http_proxy/no_proxy.")
@click.option("--proxy-auth-file", type=click.Path(dir_okay=False), default=None,
              help="File whose first line is user:password for the proxy.")
@click.option("--batch", "batch_size", type=click.IntRange(1, 1_000_000), default=repl.DEFAULT_BATCH,
              show_default=True, help="Changes per page of _changes; each page is one transaction.")
@click.option("--full", is_flag=True, help="Re-replicate everything from the start, swapped in at once.")
@click.option("--accept-shrink", is_flag=True,
              help="Accept that the next full re-replication shrinks the list by more than the shrink guard's "
                   "limit (logged; `lmcz-fast guard --help`).")
@click.option("--every", type=Duration(), default=None, help="Keep running: a pass at this interval (e.g. 2h).")
@click.option("--follow", is_flag=True, help="Keep running on the longpoll feed: apply changes as they come.")
@click.option("--settle", type=click.FloatRange(0, 3600), default=repl.DEFAULT_SETTLE, show_default=True,
              help="With --follow: seconds to let changes gather after a batch (each batch rewrites the "
                   "prefilter and syncs the disk; 0: apply every change at once).")
@click.option("--timeout", type=float, default=60.0, show_default=True, help="Seconds per network operation.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (one pass).")
@click.option("--nice", "niceness", type=click.IntRange(0, 19), default=WRITER_NICE, show_default=True,
              help="Lower this process's CPU priority by this much (as `sync --nice`; 0: leave it).")
@click.option("-v", "--verbose", is_flag=True, help="Log every batch.")
def replicate(db: str | None, source: str, inspect_only: bool, db_names: tuple[str, ...], sample_size: int,
              out: str | None, mapping_file: str | None, databases: str, code_field: str, gtin_field: str,
              price_key_field: str,
              price_field: str, credentials_file: str | None, proxy: str | None, proxy_auth_file: str | None,
              batch_size: int, full: bool, accept_shrink: bool, every: float | None, follow: bool, settle: float,
              timeout: float,
              as_json: bool, niceness: int, verbose: bool) -> None:
    """Replicate DB from a CouchDB-compatible SOURCE: the official Local Module's own database, or a chain's CouchDB.

    \b
    Reads the source's _changes feed from the store's checkpoints. Each page of changes is one transaction
    together with its checkpoint, so a restart resumes where it stopped; deletions unblock. The first pass, or a
    source that was recreated, is a full re-replication swapped in at once (never a half-filled store). Counts
    as a sync for the 2-hour / 72-hour windows. Documents that do not map are counted and reported. On a
    terminal a one-shot pass shows a progress bar (rate, ETA); logs and --json stay quiet.
    Examples:
      lmcz-fast replicate store.db --source http://127.0.0.1:5984 --credentials-file /etc/lmcz-fast/couch.cred
      lmcz-fast replicate store.db --source http://hq.chain.local:5984 --every 2h
      lmcz-fast replicate store.db --source http://hq.chain.local:5984 --follow --proxy http://proxy.shop.local:3128
      lmcz-fast replicate store.db --source http://127.0.0.1:5984 --databases codes=blocked_cis,gtins=blocked_gtin
      lmcz-fast replicate --inspect --source http://127.0.0.1:5984 --out mapping.toml
      lmcz-fast replicate store.db --source http://127.0.0.1:5984 --mapping mapping.toml

    The layout of the official module's documents is not public: --inspect samples each database, reads every
    field with our own parser and proposes which database and field hold what (with the share of documents that
    map, examples and a confidence); --mapping takes the file it writes. A full pass under which a database's
    documents map to nothing is refused (exit 5), never taken as an empty list.

    
    Trust nothing upstream (docs/replication.md): the source's identity (server uuid, instance_start_time, an
    anchor in the database's history) is checked before every pass, so a source deleted and created again is
    re-replicated in full, never read from a checkpoint of another history; an answer without a results list,
    with a sequence that is not one, nested too deeply or not moving forward is refused; a full pass that would
    shrink the list by more than the shrink guard's limit (20 %) is refused and the old list keeps serving until
    an operator accepts it (--accept-shrink, `lmcz-fast guard DB --accept`). With --every and --follow every
    failure is retried with a growing back-off (as `sync --every`).
    Exit codes: 0 replicated, 4 store error or a shrink refused, 5 source error (the store keeps what it held).
    """
    setup_logging(logging.DEBUG if verbose else logging.INFO)
    context = click.get_current_context()
    if inspect_only:
        _inspect(context, db, source, db_names, sample_size, out, credentials_file, proxy, proxy_auth_file,
                 timeout, as_json)
        return
    if db is None:
        raise click.UsageError("missing argument DB (the store), or give --inspect")
    for name in ("db_names", "sample_size", "out"):
        if context.get_parameter_source(name) is ParameterSource.COMMANDLINE:
            raise click.UsageError(f"{_flag(context, name)} goes with --inspect")
    if every is not None and follow:
        raise click.UsageError("give --every or --follow, not both")
    if not follow and context.get_parameter_source("settle") is ParameterSource.COMMANDLINE:
        raise click.UsageError("--settle goes with --follow (it spaces the batches of a continuous follow)")
    from ..upstream import ProxyConfig, ProxyConfigError   # httpx: loaded by the commands that reach upstream

    try:
        kinds, mapping = _mapping_of(context, mapping_file, databases,
                                     (code_field, gtin_field, price_key_field, price_field))
        config = repl.ReplicationConfig(
            source=source,
            databases=kinds,
            mapping=mapping,
            credentials=repl.read_credentials(credentials_file),
            proxy=ProxyConfig.from_options(proxy, proxy_auth_file),
            batch_size=batch_size,
            timeout=timeout,
        )
    except (repl.ReplicationError, ProxyConfigError) as exc:
        raise click.UsageError(str(exc)) from None
    lower_priority(niceness)
    try:
        if accept_shrink and exists(db):
            with Blocklist.open(db, readonly=False) as bl:
                shrink_guard.accept(bl, "replicate --accept-shrink")
        if every is None and not follow:
            bar = progress_for(quiet=as_json)
            try:
                report = _recorded(db, lambda: repl.replicate(db, config, full=full,
                                                              progress=_progress(verbose, bar)))
            finally:
                if bar is not None:
                    bar.close()
            if as_json:
                click.echo(json.dumps(asdict(report), indent=1, default=str))
            else:
                click.echo(report.summary())
                for example in report.unmapped_examples[:5]:
                    click.secho(f"unmapped: {example}", fg="yellow", err=True)
            return
        there = exists(db)
        if follow and not there:
            _follow(db, config, settle)       # the first pass builds the store aside: it appears complete
            return
        with Blocklist.open(db, readonly=False) if there else Blocklist.create(db) as bl:
            if follow:
                _follow(bl, config, settle)
            else:
                # A source outage, a refused answer or a refused shrink is retried with sync's back-off.
                run_forever(every, lambda sleep: "replicate ok: " + _recorded(bl, lambda: repl.replicate(bl, config))
                            .summary(),
                            lambda at: bl.set_meta(replication_next_at=at), lambda: bl,
                            retry_on=(repl.ReplicationError,))
    except repl.SourceAuthError as exc:
        fail(str(exc), EXIT_SOURCE)
    except repl.ReplicationError as exc:
        fail(f"{exc}; the store keeps what it held", EXIT_SOURCE)
    except StoreError as exc:
        fail(str(exc), EXIT_STORE)


def _recorded(db: Blocklist | str, run: Any) -> Any:
    """Run one pass; a refused one (a source error, a wrong mapping) is recorded in an existing store as its last
    failed round (`sync_last_error`: `lmcz-fast status` and the status page say it), a good one clears it."""
    try:
        report = run()
    except repl.ReplicationError as exc:
        _record_round(db, str(exc))
        raise
    _record_round(db, None)
    return report


def _record_round(db: Blocklist | str, error: str | None) -> None:
    """Best effort, as `sync` does: a store that cannot be written keeps what it had; the log says the rest."""
    try:
        if isinstance(db, Blocklist):
            _write_round(db, error)
        elif exists(db):
            with Blocklist.open(db, readonly=False) as bl:
                _write_round(bl, error)
    except StoreError as exc:
        log.debug("could not record the round's outcome in the store: %s", exc)


def _write_round(bl: Blocklist, error: str | None) -> None:
    if error is None and bl.get_meta("sync_last_error") is None:
        return
    bl.set_meta(sync_last_error=error[:500] if error else None, sync_last_error_at=time.time() if error else None)


def _mapping_of(context: click.Context, mapping_file: str | None, databases: str,
                fields: tuple[str, str, str, str]) -> tuple[dict[str, str], repl.Mapping]:
    """The databases and the mapping: from --mapping FILE, or from --databases and the --*-field options."""
    if mapping_file is None:
        return _databases(databases), repl.Mapping(*fields)
    given = [name for name in _MAPPING_OPTIONS if context.get_parameter_source(name) is ParameterSource.COMMANDLINE]
    if given:
        raise click.UsageError(f"--mapping names the databases and fields; {_flag(context, given[0])} goes "
                               f"without it")
    return repl.read_mapping(mapping_file)


def _inspect(context: click.Context, db: str | None, source: str, db_names: tuple[str, ...], sample_size: int,
             out: str | None, credentials_file: str | None, proxy: str | None, proxy_auth_file: str | None,
             timeout: float, as_json: bool) -> None:
    """`--inspect`: sample the source, propose a mapping, print it or write it to --out."""
    if db is not None:
        raise click.UsageError("--inspect reads the source only: give no DB")
    for name in (*_MAPPING_OPTIONS, "mapping_file", "full", "accept_shrink", "every", "follow", "settle",
                 "batch_size"):
        if context.get_parameter_source(name) is ParameterSource.COMMANDLINE:
            raise click.UsageError(f"{_flag(context, name)} does not go with --inspect")
    if out is not None and os.path.lexists(out):
        raise click.UsageError(f"{out} exists: --inspect does not overwrite a mapping file; remove it or choose "
                               f"another --out")
    from ..upstream import ProxyConfig, ProxyConfigError

    try:
        config = repl.ReplicationConfig(source=source, credentials=repl.read_credentials(credentials_file),
                                        proxy=ProxyConfig.from_options(proxy, proxy_auth_file), timeout=timeout)
    except (repl.ReplicationError, ProxyConfigError) as exc:
        raise click.UsageError(str(exc)) from None
    try:
        proposal = repl.inspect_source(config, db_names, sample_size,
                                       on_database=lambda name: log.debug("sampling %s", name))
    except repl.SourceAuthError as exc:
        fail(str(exc), EXIT_SOURCE)
    except repl.ReplicationError as exc:
        fail(str(exc), EXIT_SOURCE)
    if not proposal.choices:
        for note in proposal.notes:
            click.echo(note, err=True)
        fail("no database of the source reads as codes, GTINs or prices: nothing to propose (no file written)",
             EXIT_SOURCE)
    text = repl.mapping_text(proposal, config.base)
    if out is not None:
        with open(out, "x", encoding="utf-8") as fh:
            fh.write(text)
    if as_json:
        click.echo(json.dumps(proposal.as_dict(), indent=1, ensure_ascii=False, default=str))
    elif out is None:
        click.echo(text, nl=False)
    else:
        for kind, choice in proposal.choices.items():
            click.echo(f"{kind}: database {choice.database!r}, "
                       + ", ".join(f"{k} {v!r}" for k, v in choice.fields.items() if v)
                       + f": {choice.share:.0%} of {choice.sampled} sampled documents map, confidence "
                         f"{choice.confidence}")
        for note in proposal.notes:
            click.echo(note)
        click.echo(f"wrote {out}: read it, then `lmcz-fast replicate DB --source {config.base} --mapping {out}`")


def _flag(context: click.Context, name: str) -> str:
    """The option's flag as the user types it (`--batch` for `batch_size`)."""
    for param in context.command.params:
        if param.name == name and param.opts:
            return max(param.opts, key=len)
    return name


def _follow(db: Blocklist | str, config: repl.ReplicationConfig, settle: float) -> None:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    log.info("following %s (longpoll, batches at most every %g s); SIGTERM stops", config.base, settle)
    def on_report(report: repl.ReplicationReport) -> None:
        log.info("replicate ok: %s", report.summary())
        if isinstance(db, Blocklist):
            _record_round(db, None)

    def on_error(exc: BaseException) -> None:
        log.error("replicate: %s; retrying", exc)
        if isinstance(db, Blocklist) and isinstance(exc, repl.ReplicationError):
            _record_round(db, str(exc))

    repl.follow(db, config, stop=stop, on_report=on_report, on_error=on_error, settle=settle)


def _progress(verbose: bool, bar: Any) -> Any:
    """A bar (rate, and ETA from the source's document count) on a terminal; a log line a second with -v."""
    if bar is None and not verbose:
        return None
    last = [0.0]

    def report(name: str, changes: int, total: int | None) -> None:
        if bar is not None:
            bar(f"replicating {name}", changes, total, "changes")
        now = time.monotonic()
        if verbose and now - last[0] >= 1.0:
            last[0] = now
            log.info("%s: %d changes read", name, changes)

    return report


def register(group: click.Group) -> None:
    group.add_command(replicate)
