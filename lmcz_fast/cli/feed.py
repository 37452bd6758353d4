"""Commands over the update feed: keygen, publish, sync, mirror, status."""

from __future__ import annotations

import functools
import json
import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import click

from .. import feed
from ..store import Blocklist, StoreError, replication_status
from ..store import guard as shrink_guard
from .common import (
    EXIT_FEED,
    EXIT_STORE,
    WRITER_NICE,
    Duration,
    error_kind,
    exists,
    fail,
    log,
    lower_priority,
    run_forever,
    setup_logging,
    span,
    when,
)
from .progress import progress_shown
from .upstream import proxy_config, proxy_options

if TYPE_CHECKING:
    import http.server

#: `status --check` exit codes, as monitoring plugins (Nagios, Icinga, Zabbix agents) read them.
CHECK_CODES = {"ready": 0, "stale": 1, "expired": 2, "empty": 2}

def _retry(attempts: int, timeout: float, sleep: Callable[[float], Any] = time.sleep) -> feed.RetryPolicy:
    return feed.RetryPolicy(attempts=attempts, timeout=timeout, sleep=sleep)


def _status_line(bl: Blocklist) -> str:
    status = bl.status()
    return (f"store state {status.state.upper()}, version {status.version}, {status.codes} codes, "
            f"{status.gtins} GTINs")


@click.command()
@click.argument("private_key", type=click.Path(dir_okay=False))
@click.option("--public", "public_path", type=click.Path(dir_okay=False), default=None,
              help="Where to write the public key (default: PRIVATE_KEY with the suffix .pub).")
@click.option("--force", is_flag=True, help="Overwrite existing key files.")
def keygen(private_key: str, public_path: str | None, force: bool) -> None:
    """Make an Ed25519 signing key for a feed.

    \b
    The private key (PEM, mode 0600) stays with the publisher; the public key (one line of base64) is what
    every store and mirror is configured with:
      lmcz-fast keygen /etc/lmcz-fast/feed.key          # writes feed.key and feed.pub
      lmcz-fast sync store.db --feed https://feed.example/ --public-key feed.pub
    """
    try:
        priv, pub = feed.write_keypair(private_key, public_path, overwrite=force)
    except FileExistsError as exc:
        fail(f"{exc}: give --force to replace it (stores holding the old public key then refuse the feed until "
              f"they are given the new one)", EXIT_FEED)
    click.echo(f"private key: {priv} (keep it secret)")
    click.echo(f"public key:  {pub}: {pub.read_text().strip()}")


@click.command()
@click.argument("feed_dir", type=click.Path(file_okay=False))
@click.option("--key", "key_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="The feed's private key (from `lmcz-fast keygen`).")
@click.option("--snapshot", "snapshots", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="The complete new list (repeatable; text, CSV or .gz, as `lmcz-fast load` reads).")
@click.option("--delta", "delta_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="A change to the current list: +CODE/-CODE/+GTIN/-GTIN lines.")
@click.option("--prices", "price_files", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Replace the minimum-price table with these CSV files (gtin,price / pg,price; kopecks), as "
                   "`lmcz-fast prices load` reads them (repeatable).")
@click.option("--grey", "grey_files", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Replace the grey list with these files of GTINs, as `lmcz-fast grey load` reads them.")
@click.option("--from-store", "from_store", type=click.Path(exists=True, file_okay=False), default=None,
              help="Take the complete new list from a store (e.g. one kept by `lmcz-fast replicate`): one server "
                   "pulls from upstream, the chain's stores sync the signed feed.")
@click.option("--version", "version", type=int, default=None, help="The new version (default: current + 1).")
@click.option("--feed-id", default=None, help="Name of the feed (set on first publish; default 'lmcz').")
@click.option("--keep-deltas", type=int, default=feed.DEFAULT_KEEP_DELTAS, show_default=True,
              help="How many of the last deltas stay listed; stores further behind load the snapshot.")
@click.option("--valid-for", type=Duration(), default=str(feed.DEFAULT_VALID_FOR), show_default=True,
              help="How long the signed manifest stays acceptable; re-publish (heartbeat) well within it.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def publish(feed_dir: str, key_path: str, snapshots: tuple[str, ...], delta_path: str | None,
            price_files: tuple[str, ...], grey_files: tuple[str, ...], from_store: str | None,
            version: int | None, feed_id: str | None, keep_deltas: int, valid_for: float, as_json: bool) -> None:
    """Publish a new version of the feed in FEED_DIR (the central side), or re-sign the current one.

    \b
    FEED_DIR becomes a set of static files (manifest.json, snapshot-*.txt.gz, delta-*.txt.gz) to serve with
    any HTTP server, object store or CDN as is. Examples:
      lmcz-fast publish /srv/feed --key feed.key --snapshot blocked-2026-11-23.csv.gz
      lmcz-fast publish /srv/feed --key feed.key --delta changes.txt
      lmcz-fast publish /srv/feed --key feed.key --prices min-prices.csv --grey grey.txt
      lmcz-fast publish /srv/feed --key feed.key --from-store replica.db   # after `lmcz-fast replicate replica.db`
      lmcz-fast publish /srv/feed --key feed.key          # heartbeat: same version, fresh signature
    Run the heartbeat from cron at least hourly: stores refuse a manifest older than --valid-for.
    On a terminal each step shows progress (rate, time left); logs and --json stay quiet.
    The first publish with a price or grey-list entry switches the feed to format lmcz-feed/2: upgrade every
    store and mirror first (older versions refuse it by name and keep their data).
    """
    if sum(map(bool, (snapshots, delta_path, from_store))) > 1:
        raise click.UsageError("give one of --snapshot, --delta and --from-store")
    snapshot: list | None = list(snapshots) or None
    if from_store is not None:
        try:
            with Blocklist.open(from_store) as source:
                snapshot = [list(source.snapshot_lines())]
        except StoreError as exc:
            fail(str(exc), EXIT_STORE)
    try:
        with progress_shown(quiet=as_json) as bar:
            report = feed.publish(feed_dir, key_path, snapshot=snapshot, delta=delta_path,
                                  prices=list(price_files) or None, grey=list(grey_files) or None,
                                  version=version, feed_id=feed_id, keep_deltas=keep_deltas,
                                  valid_for=int(valid_for), progress=bar)
    except feed.FeedError as exc:
        fail(str(exc), EXIT_FEED)
    _echo_report(report, as_json)


def _echo_report(report: Any, as_json: bool) -> None:
    """A publish or sync report: its summary, or with --json the whole report."""
    click.echo(json.dumps(asdict(report), indent=1) if as_json else report.summary())


@click.command()
@click.argument("db", type=click.Path(file_okay=False))
@click.option("--feed", "feed_url", default=None,
              help="Feed URL (http(s)://, file:// or a directory). Default: the one the store last synced from.")
@click.option("--public-key", "public_key", type=click.Path(exists=True, dir_okay=False), default=None,
              help="The feed's public key file. Needed on the first sync; then kept in the store.")
@click.option("--every", type=Duration(), default=None,
              help="Keep running and sync at this interval (e.g. 2h, 30m) until SIGTERM.")
@click.option("--attempts", type=click.IntRange(1, 20), default=5, show_default=True,
              help="Tries per file, with exponential backoff and jitter, on network errors and 5xx.")
@click.option("--timeout", type=float, default=30.0, show_default=True, help="Seconds per network operation.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (one-shot mode).")
@click.option("--nice", "niceness", type=click.IntRange(0, 19), default=WRITER_NICE, show_default=True,
              help="Lower this process's CPU priority by this much, so tills' lookups in other processes on the "
                   "same cores come first while an update is applied (0: leave it).")
@proxy_options
@click.option("-v", "--verbose", is_flag=True, help="Log retries and decisions in detail.")
def sync(db: str, feed_url: str | None, public_key: str | None, every: float | None, attempts: int,
         timeout: float, as_json: bool, niceness: int, proxy_url: str | None, proxy_auth_file: str | None,
         verbose: bool) -> None:
    """Bring DB up to date from a signed feed: deltas when possible, the snapshot when too far behind.

    \b
    Every byte is verified (signature, size, SHA-256, set digest) before anything is applied, and the change is
    one transaction: readers keep answering and see the new version at once. Examples:
      lmcz-fast sync store.db --feed https://mirror.shop.local/feed/ --public-key feed.pub
      lmcz-fast sync store.db --every 2h        # daemon; logs to stderr; stops on SIGTERM
      lmcz-fast sync store.db --proxy http://proxy.shop.local:3128 --proxy-auth-file /etc/lmcz-fast/proxy.auth
    On a terminal a one-shot sync shows a progress bar (download, check, load); logs and --json stay quiet.
    Exit codes: 0 synced or up to date, 4 store error (e.g. disk full), 5 feed error (nothing changed).
    """
    proxy = proxy_config(proxy_url, proxy_auth_file)
    setup_logging(logging.DEBUG if verbose else logging.INFO)
    lower_priority(niceness)
    if feed_url is None and not exists(db):
        raise click.UsageError(f"no database at {db} yet: give --feed (and --public-key) for its first sync")
    # Until its first sync succeeds the store does not exist: `feed.sync` given a path builds it beside DB and
    # moves it in only then, so a failed first sync leaves no (empty) database behind.
    first = not exists(db)
    store: list[Blocklist | None] = [None]
    try:
        if not first:
            store[0] = Blocklist.open(db, readonly=False)
        url = feed_url or (store[0].get_meta("feed_url") if store[0] is not None else None)
        if url is None:
            raise click.UsageError("no --feed given and the store has never synced from one")
        if every is None:
            with progress_shown(quiet=as_json) as bar:
                report = feed.sync(store[0] or db, url, public_key, retry=_retry(attempts, timeout), proxy=proxy,
                                   progress=bar)
            _echo_report(report, as_json)
            return
        key = [public_key]

        def once(sleep: Callable[[float], Any]) -> str:
            try:
                report = feed.sync(store[0] or db, url, key[0], retry=_retry(attempts, timeout, sleep),
                                   proxy=proxy)
            except (feed.FeedError, StoreError, OSError) as exc:
                _record_round(store[0], f"{error_kind(exc)}: {exc}")
                raise
            key[0] = None
            bl = store[0]
            if bl is None:
                bl = store[0] = Blocklist.open(db, readonly=False)
            _record_round(bl, None)
            return f"sync ok: {report.summary()}; {_status_line(bl)}"

        def on_schedule(at: float) -> None:
            bl = store[0]
            if bl is None:
                log.warning("no store yet at %s: its first sync has not succeeded", db)
                return
            status = bl.status()
            if status.state != "ready":
                log.warning("store is %s: last successful sync %s", status.state.upper(),
                            when(status.last_sync_at, time.time()))
            bl.set_meta(feed_next_sync_at=at)

        run_forever(every, once, on_schedule, lambda: store[0])
    except feed.FeedError as exc:
        fail(f"{error_kind(exc)}: {exc}; " + ("no database was created" if first and not exists(db)
                                         else "the store was not changed"), EXIT_FEED)
    except StoreError as exc:
        fail(str(exc), EXIT_STORE)
    except OSError as exc:
        fail(f"{exc.filename or db}: {exc.strerror or exc}; " + ("no database was created" if first and not
                                                                 exists(db) else "the store was not changed"),
              EXIT_STORE)
    finally:
        if store[0] is not None:
            store[0].close()


def _record_round(bl: Blocklist | None, error: str | None) -> None:
    """Keep the last failed round's error in the store (`sync_last_error`, `sync_last_error_at`) for the status page
    and `status`; a successful round clears it. Best effort: a store that cannot be written (a full disk) keeps
    what it had, and the log says the rest."""
    if bl is None or (error is None and bl.get_meta("sync_last_error") is None):
        return
    try:
        bl.set_meta(sync_last_error=error[:500] if error else None, sync_last_error_at=time.time() if error else None)
    except StoreError as exc:
        log.debug("could not record the round's outcome in the store: %s", exc)


def _serve(directory: str, address: str) -> http.server.ThreadingHTTPServer:
    import http.server   # ~20 ms: loaded by `mirror --serve` only

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            log.debug("http %s - %s", self.address_string(), format % args)

    host, _, port = address.rpartition(":")
    handler = functools.partial(QuietHandler, directory=directory)
    server = http.server.ThreadingHTTPServer((host or "0.0.0.0", int(port)), handler)
    threading.Thread(target=server.serve_forever, name="mirror-http", daemon=True).start()
    log.info("serving %s at http://%s:%d/", directory, *server.server_address[:2])
    return server


@click.command()
@click.argument("mirror_dir", type=click.Path(file_okay=False))
@click.option("--feed", "feed_url", required=True, help="Upstream feed URL (http(s)://, file:// or a directory).")
@click.option("--public-key", "public_key", required=True, type=click.Path(exists=True, dir_okay=False),
              help="The feed's public key file; the mirror verifies everything and never re-signs.")
@click.option("--db", default=None, type=click.Path(file_okay=False),
              help="Also sync this store from the mirror directory (no second upstream download).")
@click.option("--every", type=Duration(), default=None, help="Keep running at this interval until SIGTERM.")
@click.option("--serve", "serve_address", default=None, metavar="HOST:PORT",
              help="Also serve MIRROR_DIR over HTTP (Python's http.server; put nginx in front for thousands).")
@click.option("--attempts", type=click.IntRange(1, 20), default=5, show_default=True)
@click.option("--timeout", type=float, default=30.0, show_default=True)
@click.option("--nice", "niceness", type=click.IntRange(0, 19), default=WRITER_NICE, show_default=True,
              help="Lower this process's CPU priority by this much (as `sync --nice`; 0: leave it).")
@proxy_options
@click.option("-v", "--verbose", is_flag=True)
def mirror(mirror_dir: str, feed_url: str, public_key: str, db: str | None, every: float | None,
           serve_address: str | None, attempts: int, timeout: float, niceness: int, proxy_url: str | None,
           proxy_auth_file: str | None, verbose: bool) -> None:
    """Re-serve a verified copy of an upstream feed from MIRROR_DIR, for a chain's stores to sync from.

    \b
    Only the mirror pulls from upstream; stores point at the mirror. Files are verified against the upstream's
    signed manifest, which the mirror serves byte for byte, so stores still verify the publisher's signature.
      lmcz-fast mirror /srv/lmcz-mirror --feed https://feed.example/ --public-key feed.pub --every 30m
      lmcz-fast mirror /srv/lmcz-mirror --feed https://feed.example/ --public-key feed.pub --db store.db \\
          --serve 0.0.0.0:8080 --every 30m
      lmcz-fast sync till-store.db --feed http://mirror.local:8080/ --public-key feed.pub --every 2h
    Behind a proxy: --proxy http://proxy.shop.local:3128 --proxy-auth-file /etc/lmcz-fast/proxy.auth
    """
    proxy = proxy_config(proxy_url, proxy_auth_file)
    setup_logging(logging.DEBUG if verbose else logging.INFO)
    lower_priority(niceness)
    server = _serve(mirror_dir, serve_address) if serve_address else None
    try:
        def once(sleep: Callable[[float], Any]) -> str:
            report = feed.mirror(feed_url, mirror_dir, public_key, db=db, retry=_retry(attempts, timeout, sleep),
                                 proxy=proxy)
            return f"mirror ok: {report.summary()}"

        if every is None:
            click.echo(once(time.sleep))
            return
        run_forever(every, once, lambda at: None)
    except feed.FeedError as exc:
        fail(f"{error_kind(exc)}: {exc}; the mirror was not changed", EXIT_FEED)
    except StoreError as exc:
        fail(str(exc), EXIT_STORE)
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()


@click.command()
@click.argument("db", type=click.Path(exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--check", is_flag=True,
              help="Exit 0 if ready, 1 if stale or a full replacement is held by the shrink guard (`lmcz-fast "
                   "guard`), 2 if expired or empty (for monitoring).")
def status(db: str, as_json: bool, check: bool) -> None:
    """Freshness of DB: READY, STALE (still serving, sync overdue) or EXPIRED (beyond the offline limit).

    \b
    READY while the last successful sync (or, never synced, the last full load) is within the refresh window
    (default 2h), STALE after it, EXPIRED after the offline limit (default 72h): from `expires` on, the
    Local-Module-compatible service and the checker refuse offline checks. EMPTY: no list loaded yet.
      lmcz-fast status store.db
      lmcz-fast status store.db --json --check      # for monitoring
    """
    try:
        with Blocklist.open(db) as bl:
            now = time.time()
            st = bl.status(now)
            extra = {name: bl.get_meta(name) for name in
                     ("feed_id", "feed_key_id", "feed_published_at", "feed_expires_at", "feed_next_sync_at",
                      "sync_last_error", "sync_last_error_at")}
            replication = replication_status(bl, now)
            held = shrink_guard.state(bl)
    except StoreError as exc:
        fail(str(exc), EXIT_STORE)
    scheduled = extra["feed_next_sync_at"]
    if as_json:
        click.echo(json.dumps({**asdict(st), **extra, "replication": replication, "shrink_guard": held}, indent=1))
    else:
        colour = {"ready": "green", "stale": "yellow", "expired": "red", "empty": "red"}[st.state]
        label = "EMPTY (no list loaded)" if st.state == "empty" else st.state.upper()
        if st.clock_behind is not None:
            label += " (the clock is behind the store's last sync)"
        click.echo(f"{'state':>12}: " + click.style(label, fg=colour, bold=st.state != "ready"))
        click.echo(f"{'version':>12}: {st.version}")
        click.echo(f"{'codes':>12}: {st.codes:,}")
        click.echo(f"{'gtins':>12}: {st.gtins:,}")
        click.echo(f"{'last sync':>12}: {when(st.last_sync_at, now)}")
        if st.last_sync_at is None and st.loaded_at is not None:
            click.echo(f"{'loaded':>12}: {when(st.loaded_at, now)} (from a file: the clocks count from here)")
        if scheduled is not None and scheduled > now - 60:
            click.echo(f"{'next sync':>12}: {when(scheduled, now)} (scheduled by the sync daemon)")
        click.echo(f"{'refresh due':>12}: {when(st.next_sync_at, now)} (window {span(st.refresh_window)})")
        expires = ("- (no list loaded: no offline answers at all)" if st.expires_at is None
                   else f"{when(st.expires_at, now)} (offline limit {span(st.expire_after)})")
        click.echo(f"{'expires':>12}: {expires}")
        click.echo(f"{'feed':>12}: {st.feed_url or '-'}" + (f" ({extra['feed_id']})" if extra["feed_id"] else ""))
        if extra["feed_published_at"] is not None:
            click.echo(f"{'manifest':>12}: signed {when(extra['feed_published_at'], now)} by key "
                       f"{extra['feed_key_id']}, valid until {when(extra['feed_expires_at'], now)}")
        if extra["sync_last_error"]:
            click.echo(f"{'last failure':>12}: {when(extra['sync_last_error_at'], now)}: {extra['sync_last_error']}")
        if replication is not None:
            click.echo(f"{'replicated':>12}: from {replication['source']}")
            for name, db in replication["databases"].items():
                lag = "?" if db["seqLag"] is None else f"{db['seqLag']:,}"
                theirs = "?" if db["serverDocCount"] is None else f"{db['serverDocCount']:,}"
                click.echo(f"{name:>12}: {db['localDocCount']:,} here / {theirs} at the source, seq lag {lag}, "
                           f"last batch {when(db['lastBatchAt'], now)}"
                           + (f", {db['unmapped']:,} documents that do not map" if db["unmapped"] else ""))
        if held["held"] is not None:
            click.secho(f"{'HELD':>12}: {shrink_guard.describe(held['held'])}", fg="red", bold=True)
        if st.clock_behind is not None:
            click.secho(f"WARNING: the blocklist is EXPIRED: this machine's clock reads {span(st.clock_behind)} "
                        "before the store's last sync or load; the clock is behind (a dead CMOS battery, NTP not "
                        "running?) and nothing is aged by it: checks are refused until the clock is right",
                        fg=colour, bold=True, err=True)
        elif st.state in ("stale", "expired"):
            click.secho(f"WARNING: the blocklist is {st.state.upper()}: last successful sync "
                        f"{when(st.last_sync_at, now)}", fg=colour, bold=True, err=True)
    if check:      # a refused full replacement (store/guard.py) needs an operator: at least a warning
        sys.exit(max(CHECK_CODES[st.state], 1 if held["held"] is not None else 0))


def register(group: click.Group) -> None:
    for command in (keygen, publish, sync, mirror, status):
        group.add_command(command)
