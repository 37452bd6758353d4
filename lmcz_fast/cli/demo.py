"""`lmcz-fast demo`: the whole job on an embedded default, a generated realistic 900k-code blocklist."""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import time

import click

from .. import synth
from .._codes import CodeError
from ..store import Blocklist


def _per_call_ns(function, items, repeat: int = 3) -> float:
    """Best of `repeat` runs of a Python loop calling `function` on each item, in ns per item."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for item in items:
            function(item)
        best = min(best, time.perf_counter() - started)
    return best / len(items) * 1e9


def _batch_ns(function, items, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        function(items)
        best = min(best, time.perf_counter() - started)
    return best / len(items) * 1e9


def _show(label: str, raw: str, bl: Blocklist) -> None:
    try:
        verdict = bl.check(raw)
    except CodeError as exc:
        click.echo(f"  {label:<26} INVALID  {exc.reason}: {exc}")
        return
    state = click.style("BLOCKED", fg="red", bold=True) if verdict.blocked else click.style("ok     ", fg="green")
    click.echo(f"  {label:<26} {state}  {verdict.cis}  {raw!r:.60}")


@click.command()
@click.option("--codes", "n_codes", type=click.IntRange(1, 20_000_000), default=900_000, show_default=True,
              help="How many blocked codes to generate.")
@click.option("--probes", "n_probes", type=click.IntRange(100, 5_000_000), default=200_000, show_default=True,
              help="How many till scans to time (1 % of them blocked).")
@click.option("--seed", type=int, default=2026, show_default=True, help="Generator seed (same seed, same codes).")
@click.option("--dir", "directory", type=click.Path(file_okay=False), default=None,
              help="Keep the blocklist file and database here instead of a temporary folder.")
def demo(n_codes: int, n_probes: int, seed: int, directory: str | None) -> None:
    """Generate a realistic blocklist, load it, check sample scans and time the checks.

    The codes come from lmcz_fast.synth: valid GTINs and each product group's serials and tails (shoes and
    clothing with 91/92 crypto tails, milk and water with 93, 29-character tobacco packs...). Sample scans
    show the scanner damage the parser repairs. Timings compare against a Python set of the already-cut
    codes on the same probes; see benches/ for the full, repeatable comparison.

    \b
    Examples:
      lmcz-fast demo
      lmcz-fast demo --codes 100000 --probes 20000 --dir demo   # keep demo/blocked.txt and demo/db to try things on
    """
    workdir = directory or tempfile.mkdtemp(prefix="lmcz-demo-")
    os.makedirs(workdir, exist_ok=True)
    try:
        click.echo(f"generating {n_codes:,} blocked codes and {n_probes:,} till scans (seed {seed})...")
        started = time.perf_counter()
        blocked, scans, probe_cis, truth = synth.blocklist_and_probes(n_codes, n_probes, seed=seed)
        listing = os.path.join(workdir, "blocked.txt")
        with open(listing, "w", encoding="ascii") as stream:
            stream.write("\n".join(blocked) + "\n")
        click.echo(f"  done in {time.perf_counter() - started:.1f} s -> {listing} "
                   f"({os.path.getsize(listing) / 1e6:.1f} MB)")

        db_path = os.path.join(workdir, "db")
        if os.path.exists(db_path):
            shutil.rmtree(db_path)
        with Blocklist.create(db_path) as writer:
            report = writer.load(listing, block={"authority": "demo", "reason": "generated"})
            info = writer.info()
        click.echo(f"loaded: {report.summary()}")
        click.echo(f"  database {info['used_bytes'] / 1e6:.1f} MB on disk (prefilter "
                   f"{info['prefilter_bytes'] / 1e6:.2f} MB), version {info['version']}")

        started = time.perf_counter()
        bl = Blocklist.open(db_path)
        first = bl.is_blocked(scans[0])
        open_ms = (time.perf_counter() - started) * 1000
        with bl:
            click.echo(f"opened and answered the first scan in {open_ms:.2f} ms (blocked: {first})")
            rng = random.Random(seed)
            hit = scans[truth.index(True)]
            miss = scans[truth.index(False)]
            click.echo("sample verdicts:")
            _show("blocked, clean scan", hit, bl)
            for kind in ("lost_gs", "symbology_prefix", "cyrillic_layout", "escaped_gs"):
                _show(f"blocked, {kind}", synth.damage(hit, kind, rng), bl)
            _show("not blocked", miss, bl)
            _show("garbage", "hello, till", bl)

            results = bl.is_blocked_many(scans)
            if results != truth:
                raise click.ClickException("verdicts disagree with the generator's truth")
            cis_set = set(blocked)
            single = _per_call_ns(bl.is_blocked, scans)
            batch = _batch_ns(bl.is_blocked_many, scans)
            baseline = _per_call_ns(cis_set.__contains__, probe_cis)
            click.echo(f"timings over {len(scans):,} scans ({sum(truth):,} blocked), best of 3:")
            click.echo(f"  is_blocked(raw scan)          {single:7.0f} ns/scan")
            click.echo(f"  is_blocked_many(raw scans)    {batch:7.0f} ns/scan")
            click.echo(f"  Python set, pre-cut CIS       {baseline:7.0f} ns/code  (baseline)")
            click.echo("all verdicts match the generator's truth.")
    finally:
        if directory is None:
            shutil.rmtree(workdir, ignore_errors=True)


def register(group: click.Group) -> None:
    group.add_command(demo)
