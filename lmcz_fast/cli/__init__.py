"""`lmcz-fast`: the command line. Only this package knows click; every command is a thin face over the library."""

from __future__ import annotations

import click

from . import core, demo, feed, guard, maintenance, monitoring, replicate, serve, sold, systemd, tables, till

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 110}


@click.group(context_settings=CONTEXT)
@click.version_option(package_name="lmcz-fast", prog_name="lmcz-fast")
def main() -> None:
    """Offline blocklist checks for Chestny Znak marking codes: a faster, smaller Local Module.

    \b
    Typical first steps:
      lmcz-fast demo                                   # generate 900k blocked codes, load, check, time it
      lmcz-fast load store.db blocked.txt              # build a database from your list (text, CSV, .gz)
      lmcz-fast lookup store.db 0104650000000010215abcdef      # check scans; exit 1 if any is blocked
      lmcz-fast info store.db                          # version, counts, sizes, times
      lmcz-fast sync store.db --feed https://feed.example/ --public-key feed.pub   # signed updates (sync --help)
      lmcz-fast replicate store.db --source http://127.0.0.1:5984   # from a CouchDB-compatible source
      lmcz-fast serve store.db                         # Local-Module-compatible HTTP service on 127.0.0.1:5995
      lmcz-fast sold export store.db -o sold.jsonl     # back up the codes this store sold (sold --help)
      lmcz-fast check --db store.db "0104650000000010215abcdef<GS>93ab12"   # till-side: online first, then offline
      /opt/lmcz-fast/bin/lmcz-fast systemd --feed https://feed.example/   # hardened systemd units (docs/operations.md)
      lmcz-fast prices load local.db min-prices.csv    # minimum prices (gtin,price / pg,price); also: grey load
    """


maintenance.register(main)
monitoring.register(main)
core.register(main)
demo.register(main)
feed.register(main)
guard.register(main)
replicate.register(main)
serve.register(main)
sold.register(main)
systemd.register(main)
tables.register(main)
till.register(main)
